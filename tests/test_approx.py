"""Sigmoid/tanh approximations: float accuracy and shape, fixed point against float, and the integer tables alone."""
from __future__ import annotations

import bisect
import copy
import json
import pickle

import numpy as np
import pytest
import torch

from gclf.approx.schemes import FUNCS, Approx, available, error_table, get_approx

NAMES = available()
CASES = [(n, f) for n in NAMES for f in FUNCS]
PAIRS = [(4, 6), (4, 14), (6, 9), (8, 8), (8, 12), (10, 10), (12, 6), (12, 14)]   # (in_frac, out_frac)
Q16 = np.arange(-32768, 32768, dtype=np.int64)

# Max |error| on [-8, 8] as measured (in brackets), with a small margin. Lower bounds where the value is
# known from the literature / construction, so a "too good to be true" scheme is caught too.
MAX_ERR = {
    ("exact", "sigmoid"): 1e-12, ("exact", "tanh"): 1e-12,
    ("hard", "sigmoid"): 0.13, ("hard", "tanh"): 0.25,          # [0.1192 = 1 - sigmoid(2), 0.2384 = 1 - tanh(1)]
    ("plan", "sigmoid"): 0.02, ("plan", "tanh"): 0.04,          # [0.01894, 0.03788]
    ("pwl8", "sigmoid"): 0.022, ("pwl8", "tanh"): 0.044,        # [0.02063, 0.04126]
    ("pwl16", "sigmoid"): 0.0072, ("pwl16", "tanh"): 0.0144,    # [0.00654, 0.01308]
    ("pwl20", "sigmoid"): 0.0047, ("pwl20", "tanh"): 0.0093,    # [0.00424, 0.00848]
    ("pwl32", "sigmoid"): 0.0027, ("pwl32", "tanh"): 0.0055,    # [0.00247, 0.00495]
    ("lut64", "sigmoid"): 0.026, ("lut64", "tanh"): 0.051,      # [0.02342, 0.04684]
    ("lut256", "sigmoid"): 0.0065, ("lut256", "tanh"): 0.013,   # [0.00586, 0.01172]
}
MIN_ERR = {("hard", "sigmoid"): 0.119, ("hard", "tanh"): 0.238, ("plan", "sigmoid"): 0.0188}
PLAN_DROP = {"sigmoid": (2.375, 2.0 ** -8), "tanh": (1.1875, 2.0 ** -7)}   # PLAN's published discontinuity


def exact(func: str, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x) if func == "sigmoid" else torch.tanh(x)


def mirror_float(func: str, y: torch.Tensor) -> torch.Tensor:
    return 1 - y if func == "sigmoid" else -y


def grid(lo: float = -8.0, hi: float = 8.0, n: int = 200001) -> torch.Tensor:
    return torch.linspace(lo, hi, n, dtype=torch.float64)


# ---------------------------------------------------------------- registry


def test_available_lists_the_standard_schemes():
    assert NAMES == ["exact", "hard", "plan", "pwl8", "pwl16", "pwl20", "pwl32", "lut64", "lut256"]
    for n, f in CASES:
        ap = get_approx(n, f)
        assert isinstance(ap, Approx) and (ap.name, ap.func) == (n, f)


@pytest.mark.parametrize("bad", ["foo", "", "pwl", "pwl0", "pwl1", "lut9999", "PWL16", "pwl016", "lut-4", "hard "])
def test_unknown_names_raise_listing_valid_ones(bad):
    with pytest.raises(ValueError, match="valid are exact, hard, plan.*pwl16"):
        get_approx(bad, "sigmoid")


def test_unknown_function_raises():
    with pytest.raises(ValueError, match="sigmoid, tanh"):
        get_approx("pwl16", "relu")


@pytest.mark.parametrize("name", ["pwl3", "pwl7", "lut5", "pwl2", "lut2"])
def test_odd_and_small_sizes_work(name):
    for f in FUNCS:
        ap = get_approx(name, f)
        x = grid(-10, 10, 20001)
        y = ap.float(x)
        assert torch.all(torch.diff(y) >= -1e-12)
        assert torch.allclose(ap.float(-x), mirror_float(f, y), atol=1e-12, rtol=0)
        q = np.arange(-4000, 4001)
        assert np.array_equal(ap.fixed(q, 8, 10), _reimplement(ap.fixed_tables(8, 10), q))


def test_approx_pickles_and_deep_copies_with_its_bound_method():
    ap = get_approx("pwl16", "tanh")
    x = grid(-4, 4, 101)
    for fn in (pickle.loads(pickle.dumps(ap.float)), copy.deepcopy(ap.float)):
        assert torch.equal(fn(x), ap.float(x))


# ---------------------------------------------------------------- float


@pytest.mark.parametrize("name,func", CASES)
def test_float_max_error_bounds(name, func):
    x = grid()
    err = float((get_approx(name, func).float(x) - exact(func, x)).abs().max())
    assert err <= MAX_ERR[(name, func)]
    assert err >= MIN_ERR.get((name, func), 0.0)


def test_pwl16_meets_the_two_percent_target_and_interpolates_its_knots():
    for func, r in (("sigmoid", 6.0), ("tanh", 3.0)):
        ap = get_approx("pwl16", func)
        knots = torch.linspace(-r, r, 17, dtype=torch.float64)[1:-1]
        assert torch.allclose(ap.float(knots), exact(func, knots), atol=1e-15, rtol=0)
        assert float(ap.float(torch.tensor([r, 50.0], dtype=torch.float64)).min()) == 1.0


def test_plan_published_values():
    ap = get_approx("plan", "sigmoid")
    x = torch.tensor([0.0, 0.5, 1.0, 2.0, 2.375, 4.0, 5.0, 9.0, -1.0, -2.375], dtype=torch.float64)
    want = [0.5, 0.625, 0.75, 0.875, 0.91796875, 0.96875, 1.0, 1.0, 0.25, 0.08203125]
    assert ap.float(x).tolist() == want
    t = get_approx("plan", "tanh").float(x / 2)
    assert torch.allclose(t, 2 * ap.float(x) - 1, atol=1e-15, rtol=0)


@pytest.mark.parametrize("name,func", CASES)
def test_float_monotone_and_in_range(name, func):
    ap = get_approx(name, func)
    x = grid(-12, 12, 240001)
    y = ap.float(x)
    lo = 0.0 if func == "sigmoid" else -1.0
    assert float(y.min()) >= lo and float(y.max()) <= 1.0
    assert float(ap.float(torch.tensor([-1e6], dtype=torch.float64))) == lo
    assert float(ap.float(torch.tensor([1e6], dtype=torch.float64))) == 1.0
    d = torch.diff(y)
    if ap.monotone:
        assert float(d.min()) >= -1e-12
    else:   # PLAN: the only decreases are the published drops at |x| = b
        b, drop = PLAN_DROP[func]
        idx = torch.nonzero(d < 0).flatten()
        assert len(idx) == 2
        for i in idx:
            assert x[i] <= b <= x[i + 1] or x[i] <= -b <= x[i + 1]
            assert float(-d[i]) <= drop + 1e-12


@pytest.mark.parametrize("name,func", CASES)
def test_float_symmetry(name, func):
    ap = get_approx(name, func)
    assert ap.symmetric
    x = torch.cat([grid(0, 10, 20001), torch.tensor([0.0, 0.375, 0.75, 1.0, 2.375, 3.0, 6.0], dtype=torch.float64)])
    assert torch.allclose(ap.float(-x), mirror_float(func, ap.float(x)), atol=1e-7, rtol=0)
    assert float((ap.float(-x) - mirror_float(func, ap.float(x))).abs().max()) <= 1e-14


@pytest.mark.parametrize("name,func", CASES)
def test_float_shapes_and_float32(name, func):
    ap = get_approx(name, func)
    x32 = torch.randn(3, 4, 50, generator=torch.Generator().manual_seed(0)) * 4
    y64, y32 = ap.float(x32.double()), ap.float(x32)
    assert y64.shape == x32.shape and y64.dtype == torch.float64 and y32.dtype == torch.float32
    assert float((y32.double() - y64).abs().max()) <= 1e-6
    assert ap.float(torch.tensor(0.5)).shape == ()
    with pytest.raises(TypeError):
        ap.float(torch.tensor([1, 2]))


@pytest.mark.parametrize("name,func", CASES)
def test_float_is_differentiable(name, func):
    ap = get_approx(name, func)
    x = torch.tensor([-0.9, -0.3, 0.0, 0.2, 0.8], dtype=torch.float64, requires_grad=True)
    ap.float(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad > 0).all()
    far = torch.tensor([-50.0, 50.0], dtype=torch.float64, requires_grad=True)
    ap.float(far).sum().backward()
    assert torch.isfinite(far.grad).all() and (far.grad.abs() < 1e-12).all()


def test_gradients_are_the_segment_slopes():
    for name, func, x, g in [("hard", "sigmoid", 0.5, 0.25), ("hard", "tanh", -0.5, 1.0),
                             ("plan", "sigmoid", 1.5, 0.125), ("plan", "sigmoid", -3.0, 0.03125),
                             ("plan", "tanh", 0.0, 1.0)]:
        t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        get_approx(name, func).float(t).backward()
        assert float(t.grad) == g
    t = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)     # lut: straight-through, exact gradient
    get_approx("lut64", "tanh").float(t).backward()
    assert abs(float(t.grad) - (1 - np.tanh(0.3) ** 2)) < 1e-12


def test_error_table_matches_a_direct_computation():
    rows = error_table(x_range=6.0, n=20001)
    assert {(r["name"], r["func"]) for r in rows} == set(CASES) and len(rows) == len(CASES)
    x = grid(-6.0, 6.0, 20001)
    for r in rows:
        err = (get_approx(r["name"], r["func"]).float(x) - exact(r["func"], x)).abs()
        assert r["max_abs_error"] == pytest.approx(float(err.max()), abs=1e-15)
        assert r["mean_abs_error"] == pytest.approx(float(err.mean()), rel=1e-9, abs=1e-15)
        assert r["mean_abs_error"] <= r["max_abs_error"] <= MAX_ERR[(r["name"], r["func"])]
    seg = {(r["name"], r["func"]): r["segments"] for r in rows}
    assert seg[("pwl16", "tanh")] == 16 and seg[("lut256", "sigmoid")] == 256 and seg[("plan", "sigmoid")] == 5
    (row,) = error_table(funcs=("tanh",), names=["pwl16"])          # defaults: [-8, 8], 200001 points
    err = (get_approx("pwl16", "tanh").float(grid()) - torch.tanh(grid())).abs()
    assert row["max_abs_error"] == float(err.max()) and row["mean_abs_error"] == float(err.mean())


# ---------------------------------------------------------------- fixed point


def _reimplement(t: dict, q: np.ndarray) -> np.ndarray:
    """What a C version does with the tables: segment by segment, magnitude then mirror (independent of gclf)."""
    a = np.abs(q)
    y = np.full(a.shape, t["sat"], dtype=np.int64)
    if t["kind"] == "table":
        inside = a < len(t["table"])
        y[inside] = np.array(t["table"], dtype=np.int64)[a[inside]]
    for k in range(len(t.get("breaks", [])) - 1):
        b0, b1 = t["breaks"][k], t["breaks"][k + 1]
        m = (a >= b0) & (a < b1)
        if t["kind"] == "lut":
            y[m] = t["table"][k]
        else:
            s = t["slope_shift"]
            y[m] = (t["intercepts"][k] + t["slopes"][k] * (a[m] - b0) + (1 << (s - 1))) >> s
    return np.where(q < 0, t["one"] - y if t["mirror"] == "one_minus" else -y, y)


def _scalar_c(t: dict, q: int) -> int:
    """The same, one plain-int value at a time with a binary search, as a C loop would."""
    a = abs(q)
    if t["kind"] == "table":
        y = t["table"][a] if a < len(t["table"]) else t["sat"]
    elif a >= t["breaks"][-1]:
        y = t["sat"]
    else:
        k = bisect.bisect_right(t["breaks"], a) - 1
        if t["kind"] == "lut":
            y = t["table"][k]
        else:
            s = t["slope_shift"]
            y = (t["intercepts"][k] + t["slopes"][k] * (a - t["breaks"][k]) + (1 << (s - 1))) >> s
    return y if q >= 0 else (t["one"] - y if t["mirror"] == "one_minus" else -y)


@pytest.mark.parametrize("name,func", CASES)
def test_fixed_range_monotone_symmetry_and_agreement(name, func):
    ap = get_approx(name, func)
    for i, o in PAIRS:
        y = ap.fixed(Q16, i, o)
        one = 1 << o
        assert y.dtype == np.int64 and y.shape == Q16.shape
        assert y.min() >= (0 if func == "sigmoid" else -one) and y.max() <= one
        if name != "exact" or i < 12:     # exact sigmoid(8) is not 1 at 14 fraction bits
            assert y[-1] == one and y[0] == (0 if func == "sigmoid" else -one)
        ref = ap.float(torch.from_numpy(Q16 * 2.0 ** -i)).numpy()
        assert np.abs(y * 2.0 ** -o - ref).max() * one <= ap.fixed_tolerance_lsb + 1e-6
        pos = y[Q16 > 0]
        assert np.array_equal(ap.fixed(-Q16[Q16 > 0], i, o), one - pos if func == "sigmoid" else -pos)
        _check_monotone(ap, y, i, o)


def _check_monotone(ap: Approx, y: np.ndarray, in_frac: int, out_frac: int) -> None:
    d = np.diff(y)
    if ap.monotone:
        assert d.min() >= 0
        return
    b, drop = PLAN_DROP[ap.func]                       # PLAN: only at +-b, by its published drop (rounded)
    at = Q16[:-1][d < 0]
    brk = int(np.ceil(b * 2 ** in_frac))
    assert set(np.abs(at).tolist()) <= {brk, brk - 1}
    assert (-d).max(initial=0) <= drop * 2 ** out_frac + 1


def test_fixed_hard_and_plan_are_the_exactly_rounded_float():
    for name in ("hard", "plan"):
        for func in FUNCS:
            ap = get_approx(name, func)
            for i, o in PAIRS[::2]:
                ref = ap.float(torch.from_numpy(Q16 * 2.0 ** -i)).numpy() * 2.0 ** o
                pos = Q16 >= 0
                assert np.array_equal(ap.fixed(Q16, i, o)[pos], np.floor(ref[pos] + 0.5).astype(np.int64))


def test_fixed_exact_is_the_rounded_function():
    q = np.arange(0, 40000, 7, dtype=np.int64)
    for i, o in PAIRS:
        x = q * 2.0 ** -i
        want = np.floor(1 / (1 + np.exp(-x)) * 2.0 ** o + 0.5)
        assert np.array_equal(get_approx("exact", "sigmoid").fixed(q, i, o), want)
        assert np.array_equal(get_approx("exact", "tanh").fixed(q, i, o), np.floor(2.0 ** o * np.tanh(x) + 0.5))


@pytest.mark.parametrize("name,func", CASES)
def test_fixed_is_reproduced_from_its_tables_alone(name, func):
    ap = get_approx(name, func)
    for i, o in PAIRS:
        t = json.loads(json.dumps(ap.fixed_tables(i, o)))          # plain ints, nothing else needed
        head = (t["name"], t["func"], t["in_frac"], t["out_frac"], t["one"], t["sat"])
        assert head == (name, func, i, o, 1 << o, 1 << o)
        assert np.array_equal(_reimplement(t, Q16), ap.fixed(Q16, i, o))
    t = ap.fixed_tables(8, 12)
    last = len(t["table"]) if t["kind"] == "table" else t["breaks"][-1]
    qs = list(range(-last - 3, last + 4, max(1, last // 500))) + [-32768, 32767, 0, 1, -1]
    assert [_scalar_c(t, q) for q in qs] == ap.fixed(np.array(qs), 8, 12).tolist()


@pytest.mark.parametrize("name", ["hard", "plan", "pwl8", "pwl16", "pwl20", "pwl32"])
def test_pwl_tables_shape_and_int32_headroom(name):
    for func in FUNCS:
        for i, o in [(p, q) for p in range(4, 13) for q in range(6, 15)]:
            t = get_approx(name, func).fixed_tables(i, o)
            b, s = t["breaks"], t["slope_shift"]
            assert t["kind"] == "pwl" and b[0] == 0 and b == sorted(b) and s == i + 4
            assert len(t["slopes"]) == len(t["intercepts"]) == len(b) - 1 and min(t["slopes"]) >= 0
            if name == "plan":    # shifts only
                assert all(m & (m - 1) == 0 for m in t["slopes"])
            if i + o <= 26:
                top = max(a + m * max(b1 - b0 - 1, 0) for a, m, b0, b1 in zip(t["intercepts"], t["slopes"], b, b[1:]))
                assert top + (1 << (s - 1)) < 2 ** 31


@pytest.mark.parametrize("name", ["hard", "plan", "pwl16", "pwl20", "lut256", "exact"])
def test_extreme_formats(name):
    q = np.concatenate([np.arange(-3000, 3001), np.array([-(2 ** 40), 2 ** 40, 123456789])])
    for func in FUNCS:
        ap = get_approx(name, func)
        for i, o in [(0, 0), (0, 1), (2, 3), (16, 24), (28, 28)]:
            y = ap.fixed(q, i, o)
            ref = ap.float(torch.from_numpy(q * 2.0 ** -i)).numpy()
            assert np.abs(y * 2.0 ** -o - ref).max() * 2 ** o <= ap.fixed_tolerance_lsb + 1e-6
            if name != "exact" or i < 20:
                assert np.array_equal(_reimplement(ap.fixed_tables(i, o), q), y)
    with pytest.raises(ValueError, match="too many"):
        get_approx("exact", "sigmoid").fixed_tables(28, 8)


def test_lut_tables_and_zero_entry():
    t = get_approx("lut256", "sigmoid").fixed_tables(8, 12)
    assert t["kind"] == "lut" and len(t["table"]) == len(t["breaks"]) - 1 == 129
    assert t["breaks"][:2] == [0, 1] and t["table"][0] == 2048 and t["breaks"][-1] == 6 * 256
    assert t["table"] == sorted(t["table"])
    assert get_approx("lut256", "tanh").fixed(np.array([0, 1, -1]), 8, 12).tolist()[0] == 0


def test_fixed_rejects_bad_inputs():
    ap = get_approx("pwl16", "sigmoid")
    with pytest.raises(TypeError):
        ap.fixed(np.array([0.5]), 8, 12)
    for i, o in [(-1, 8), (8, -1), (8, 40), (2.0, 8), (8, True)]:
        with pytest.raises(ValueError):
            ap.fixed(np.array([1]), i, o)
    assert ap.fixed(np.array([3], dtype=np.int16), 4, 8).dtype == np.int64
    assert ap.fixed(np.int64(0), 4, 8) == 128


def test_lstm_runs_and_trains_with_approximations():
    from gclf.backends.torch_float import LSTMCell as LSTM

    torch.manual_seed(0)
    lstm = LSTM(8, 16, sigmoid="plan", tanh="pwl16")
    x = torch.randn(4, 5, 8)
    out = lstm(x)
    out.pow(2).sum().backward()
    assert out.shape == (4, 5, 16) and all(torch.isfinite(p.grad).all() for p in lstm.parameters())
    ref = LSTM(8, 16)
    ref.load_state_dict(lstm.state_dict())
    assert (out - ref(x)).abs().max() < 0.05
