"""Fixed-point primitives: rounding goldens, exact shifts, saturation, SQNR, and torch == numpy bit for bit."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from gclf.quant.primitives import (
    OverflowCounter, dequantize_fixed, dequantize_per_channel, fake_quantize, fake_quantize_per_channel,
    fake_requantize, quantize_fixed, quantize_per_channel, requantize, round_float, round_shift, round_torch,
    saturate, sqnr_db,
)
from gclf.quant.qformat import ROUNDINGS, QFormat, format_for_range, formats_per_channel

I64 = np.iinfo(np.int64)
TIES = [2.5, -2.5, 3.5, -0.5, 0.5, 1.5, -1.5, 2.4, -2.6, 0.49999999999999994]
GOLDEN = {  # hand-computed at frac 0
    "half_up":   [3, -2, 4, 0, 1, 2, -1, 2, -3, 0],
    "half_away": [3, -3, 4, -1, 1, 2, -2, 2, -3, 0],
    "half_even": [2, -2, 4, 0, 0, 2, -2, 2, -3, 0],
    "floor":     [2, -3, 3, -1, 0, 1, -2, 2, -3, 0],
}


def exact_round(v: Fraction, rounding: str) -> int:
    """Reference rounding on exact rationals."""
    if rounding == "floor":
        return math.floor(v)
    if rounding == "half_up":
        return math.floor(v + Fraction(1, 2))
    if rounding == "half_away":
        r = math.floor(abs(v) + Fraction(1, 2))
        return r if v >= 0 else -r
    return round(v)                                   # Python's round on a Fraction: half to even


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_rounding_goldens_on_every_path(rounding):
    fmt = QFormat(16, 15, rounding=rounding)          # frac 0
    assert quantize_fixed(np.array(TIES), fmt)[0].tolist() == GOLDEN[rounding]
    assert round_torch(torch.tensor(TIES, dtype=torch.float64), rounding).tolist() == GOLDEN[rounding]
    ties = np.array(TIES[:7]) * 2                     # exact halves as integers over 2**1
    assert round_shift(ties.astype(np.int64), 1, rounding).tolist() == GOLDEN[rounding][:7]


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_float_rounding_is_exact_near_ties(rounding):
    rng = np.random.default_rng(1)
    halves = rng.integers(-2**20, 2**20, 300) + 0.5
    v = np.concatenate([halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf),
                        rng.normal(0, 1e6, 300), rng.normal(0, 1, 300)])
    want = [exact_round(Fraction(float(x)), rounding) for x in v]
    assert round_float(v, rounding).tolist() == want


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_round_trip_and_error_bound(rounding):
    rng = np.random.default_rng(2)
    for width, integer, signed in [(8, 3, True), (4, 0, False), (16, -5, True), (12, 14, True), (2, 0, True)]:
        fmt = QFormat(width, integer, signed, rounding)
        q = rng.integers(fmt.min_int, fmt.max_int + 1, 1000)
        back, n = quantize_fixed(dequantize_fixed(q, fmt), fmt)
        assert n == 0 and np.array_equal(back, q)
        x = rng.uniform(fmt.min_value, fmt.max_value, 5000)
        q, n = quantize_fixed(x, fmt)
        err = dequantize_fixed(q, fmt) - x
        assert n == 0 and q.dtype == np.int64
        if rounding == "floor":
            assert np.all((err <= 0) & (err > -fmt.scale))
        else:
            assert np.all(np.abs(err) <= fmt.scale / 2)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_round_shift_matches_float_quantization(rounding):
    rng = np.random.default_rng(3)
    acc = rng.integers(-2**40, 2**40, 4000)
    acc[:8] = [0, 1, -1, 2**40, -2**40, 3, -3, 2**39]
    for s in range(-10, 45):
        want = round_float(acc * 2.0 ** -s, rounding)  # exact in float64: |acc| <= 2**40
        assert np.array_equal(round_shift(acc, s, rounding), want.astype(np.int64)), s
    shifts = rng.integers(-8, 41, (6, 1))              # per-channel shifts, broadcast along rows
    rows = acc[:600].reshape(6, 100)
    got = round_shift(rows, shifts, rounding)
    for r in range(6):
        assert np.array_equal(got[r], round_shift(rows[r], int(shifts[r, 0]), rounding))


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_round_shift_is_exact_at_int64_extremes(rounding):
    accs = [I64.min, I64.max, I64.min + 1, -1, 1, 0, 3 << 61, -(3 << 61), 2**62, -2**62 - 1]
    for a in accs:
        for s in range(0, 72):
            assert int(round_shift(a, s, rounding)) == exact_round(Fraction(a, 2**s), rounding), (a, s)


def test_round_shift_left_is_exact_and_overflow_raises():
    assert round_shift(np.array([3, -3]), -4, "half_up").tolist() == [48, -48]
    assert int(round_shift(-1, -63, "floor")) == I64.min
    assert int(round_shift(0, -100, "floor")) == 0
    for acc, s in [(1, -63), (2**40, -23), (I64.min, -1), (1, -64)]:
        with pytest.raises(OverflowError):
            round_shift(acc, s, "half_up")
    with pytest.raises(TypeError, match="integer array"):
        round_shift(np.array([1.5]), 1, "floor")
    with pytest.raises(ValueError, match="rounding must be one of"):
        round_shift(1, 1, "nearest")


def test_saturate_clips_and_counts():
    q = np.array([-10**12, -200, -129, -128, 0, 127, 128, 10**12])
    out, n = saturate(q, QFormat(8, 7))
    assert out.tolist() == [-128, -128, -128, -128, 0, 127, 127, 127] and n == 5
    out, n = saturate(q, QFormat(8, 0, signed=False))
    assert out.tolist() == [0, 0, 0, 0, 0, 127, 128, 255] and n == 5


def test_huge_values_saturate_never_wrap():
    fmt = QFormat(8, 7)
    q, n = quantize_fixed(np.array([1e30, -1e30, np.inf, -np.inf, 128.0, 127.5, -128.5, -128.6]), fmt)
    assert q.tolist() == [127, -128, 127, -128, 127, 127, -128, -128] and n == 7
    q, n = requantize(np.array([2**62, -2**62, I64.max, 2**40 + 1]), 20, fmt)
    assert q.tolist() == [127, -128, 127, 127] and n == 4
    with pytest.raises(ValueError, match="NaN"):
        quantize_fixed(np.array([np.nan]), fmt)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_requantize_equals_quantizing_the_accumulator_value(rounding):
    rng = np.random.default_rng(4)
    acc = rng.integers(-2**36, 2**36, (4, 500))
    acc_frac = np.array([[20], [24], [12], [30]])
    fmt = QFormat(12, 3, rounding=rounding)
    q, n = requantize(acc, acc_frac, fmt)
    want, want_n = quantize_fixed(acc * np.ldexp(1.0, -acc_frac), fmt)
    assert np.array_equal(q, want) and n == want_n > 0
    x = torch.from_numpy(acc * np.ldexp(1.0, -acc_frac))
    assert torch.equal(fake_requantize(x, fmt), torch.from_numpy(dequantize_fixed(q, fmt)))


@pytest.mark.parametrize("bits", range(4, 17))
def test_sqnr_floor_per_bit_width(bits):
    # Gaussian data truncated at 4 sigma (beyond it clipping noise, not rounding, would cap the SQNR near 48 dB)
    x = np.random.default_rng(bits).normal(0.0, 1.0, 50_000)
    x = x[np.abs(x) <= 4.0]
    fmt = format_for_range(np.abs(x).max(), bits)  # max <= 4 -> at most 3 integer bits
    q, n = quantize_fixed(x, fmt)
    got = sqnr_db(x, dequantize_fixed(q, fmt))
    uniform = 10 * math.log10(np.mean(x ** 2) * 12 / fmt.scale ** 2)   # rounding noise scale**2 / 12
    assert n == 0
    assert got >= 6.02 * bits - 14.0                # 3 integer bits: 6.02 (b - 4) + 10.8 = 6.02 b - 13.3 dB
    assert abs(got - uniform) < 1.0                 # a frac off by one would be 6 dB away


def test_sqnr_db_values():
    assert sqnr_db(np.ones(4), np.ones(4)) == math.inf
    assert sqnr_db(np.array([1.0, 1.0]), np.array([0.9, 1.1])) == pytest.approx(20.0)
    assert sqnr_db(np.zeros(2), np.ones(2)) == -math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        sqnr_db(np.ones(2), np.ones(3))


def _mixed_data(rng: np.random.Generator, fmt: QFormat) -> np.ndarray:
    """Random values across and beyond the range, exact ties, their neighbours, signed zeros, infinities."""
    span = max(abs(fmt.min_value), fmt.max_value)
    ties = (rng.integers(fmt.min_int - 4, fmt.max_int + 4, 200) + 0.5) * fmt.scale
    return np.concatenate([rng.uniform(-1.3 * span, 1.3 * span, 400), rng.normal(0, fmt.scale, 100), ties,
                           np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                           [0.0, -0.0, np.inf, -np.inf, -fmt.scale / 4, 1e300, -1e300, 5e-324]])


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_fake_quantize_equals_numpy_bit_for_bit(rounding):
    rng = np.random.default_rng(5)
    for width in range(2, 17):
        for signed in (True, False):
            fmt = QFormat(width, int(rng.integers(-4, 8)), signed, rounding)
            x = _mixed_data(rng, fmt)
            want = dequantize_fixed(quantize_fixed(x, fmt)[0], fmt)
            got = fake_quantize(torch.from_numpy(x), fmt).numpy()
            assert np.array_equal(got.view(np.int64), want.view(np.int64)), str(fmt)   # bits, incl. +0.0


def test_per_channel_quantization_matches_per_tensor():
    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (5, 3, 4)) * np.array([1e-3, 0.1, 1, 10, 0])[:, None, None]
    fmts = formats_per_channel(w, 8)
    q, n = quantize_per_channel(w, fmts)
    assert n == 0
    for c, fmt in enumerate(fmts):
        assert np.array_equal(q[c], quantize_fixed(w[c], fmt)[0])
    deq = dequantize_per_channel(q, fmts)
    assert np.array_equal(fake_quantize_per_channel(torch.from_numpy(w), fmts).numpy(), deq)
    fmts_t = formats_per_channel(w, 6, axis=2)
    assert np.array_equal(fake_quantize_per_channel(torch.from_numpy(w), fmts_t, axis=2).numpy(),
                          dequantize_per_channel(quantize_per_channel(w, fmts_t, axis=2)[0], fmts_t, axis=2))
    with pytest.raises(ValueError, match="share width"):
        quantize_per_channel(w, [QFormat(8, 0), QFormat(6, 0)] + fmts[2:])


def test_straight_through_gradient():
    fmt = QFormat(8, 3)
    x = torch.tensor([-7.9, -1.234, 0.0, 0.51, 7.9, 20.0, -30.0], dtype=torch.float64, requires_grad=True)
    fake_quantize(x, fmt).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    x.grad = None
    fake_quantize(x, fmt, clip_grad=True).sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert not fake_quantize(x, fmt, ste=False).requires_grad


def test_fake_quantize_rejects_float32():
    with pytest.raises(TypeError, match="float64"):
        fake_quantize(torch.zeros(3), QFormat(16, 3))


def test_overflow_counter():
    a, b = OverflowCounter(), OverflowCounter()
    a.add("fc1.acc", 3)
    a.add("fc1.acc", 2)
    a.add("lstm.h", 0)
    b.add("lstm.h", 4)
    assert a["fc1.acc"] == 5 and a["missing"] == 0 and a.total == 5
    assert a.merge(b).as_dict() == {"fc1.acc": 5, "lstm.h": 4} and a.total == 9
    with pytest.raises(ValueError):
        a.add("x", -1)
