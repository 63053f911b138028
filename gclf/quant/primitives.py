"""Pure fixed-point primitives: rounding, shifts, saturation, (de)quantization and float64 fake-quant.

Two paths must agree bit for bit: the integer reference (numpy int64) and the PyTorch fake-quant model
(float64 values that are exact multiples of 2**-frac). Both use the rounding defined once here, on the
real value v = x * 2**frac (or acc / 2**shift):

- ``half_up``   floor(v + 0.5). Integers: ``(acc + 2**(s-1)) >> s`` (numpy ``>>`` on int64 is arithmetic).
- ``half_away`` sign(v) * floor(|v| + 0.5).
- ``half_even`` round half to even (``np.rint`` / ``torch.round``).
- ``floor``     floor(v). Integers: ``acc >> s``.

Exactness traps, and how this module avoids them:

- float32 holds every integer exactly only up to 2**24 (an int8 x int8 dot product of 80 terms fits, a
  16-bit one does not). The fake-quant functions therefore accept float64 only (exact to 2**53); a
  float32 tensor raises TypeError instead of silently losing bits.
- floor(v + 0.5) evaluated in floating point is wrong near ties: 0.49999999999999994 + 0.5 rounds to
  1.0. The float path computes it as ``f + (v - f >= 0.5)`` with ``f = floor(v)``, which is exact
  (``v - f`` is exact, or rounds only where the comparison cannot change).
- x * 2**frac is exact (a power-of-two scaling) unless it leaves the float64 range; +-inf saturates.
- The integer shifts never overflow: the rounding increment is decided from the remainder
  ``acc & (2**s - 1)`` instead of adding 2**(s-1) to ``acc``, and shifts of 64 bits or more are handled.
- The fake-quant output adds +0.0 so a result of zero is +0.0, as the integer path gives, never -0.0.

NaN cannot be quantized: :func:`quantize_fixed` raises ValueError; the torch path lets NaN propagate
(checking would force a device sync on every call).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from gclf.quant.qformat import ROUNDINGS, QFormat

INT64_MIN = np.iinfo(np.int64).min


class OverflowCounter:
    """Saturation counts per named tensor or site (e.g. ``"fc1.acc"``); a plain object, no global state."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        """Add ``n`` saturated values to ``name`` (``n = 0`` still registers the site)."""
        if n < 0:
            raise ValueError(f"overflow count must be >= 0, got {n}")
        self._counts[name] = self._counts.get(name, 0) + int(n)

    def __getitem__(self, name: str) -> int:
        return self._counts.get(name, 0)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(self._counts)

    def merge(self, other: "OverflowCounter") -> "OverflowCounter":
        """Add ``other``'s counts into this counter; returns self."""
        for name, n in other.as_dict().items():
            self.add(name, n)
        return self

    def __repr__(self) -> str:
        return f"OverflowCounter(total={self.total}, {self._counts})"


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")


def _as_int64(a: np.ndarray | int, name: str) -> np.ndarray:
    """``a`` as an int64 array; non-integer dtypes raise TypeError, uint64 above int64 ValueError."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has values above the int64 range")
    return a.astype(np.int64, copy=False)


def round_float(v: np.ndarray, rounding: str) -> np.ndarray:
    """Round float64 values to integer-valued float64 with the module's definition of ``rounding``."""
    _check_rounding(rounding)
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(invalid="ignore"):              # inf - inf in the half-up fraction test
        if rounding == "floor":
            return np.floor(v)
        if rounding == "half_even":
            return np.rint(v)
        a = np.abs(v) if rounding == "half_away" else v
        f = np.floor(a)
        r = f + (a - f >= 0.5)
        return np.copysign(r, v) if rounding == "half_away" else r


def round_torch(x: torch.Tensor, rounding: str) -> torch.Tensor:
    """The torch twin of :func:`round_float`: the same IEEE operations, so the same results."""
    _check_rounding(rounding)
    if rounding == "floor":
        return torch.floor(x)
    if rounding == "half_even":
        return torch.round(x)
    a = torch.abs(x) if rounding == "half_away" else x
    f = torch.floor(a)
    r = f + (a - f >= 0.5).to(x.dtype)
    return torch.copysign(r, x) if rounding == "half_away" else r


def _shift_right(acc: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    """acc / 2**s rounded, for 1 <= s <= 63 elementwise; never overflows."""
    q = acc >> s                                     # floor
    if rounding == "floor":
        return q
    half = np.left_shift(1, s - 1)
    rem = acc & (half - 1 + half)                    # acc mod 2**s, in [0, 2**s); 2**s - 1 without overflow
    if rounding == "half_up":
        up = rem >= half
    elif rounding == "half_away":
        up = (rem > half) | ((rem == half) & (acc >= 0))
    else:                                            # half_even
        up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return q + up


def _shift_right_64_plus(acc: np.ndarray, s: np.ndarray, rounding: str) -> np.ndarray:
    """acc / 2**s rounded for s >= 64, where |acc / 2**s| <= 1/2 (= 1/2 only for INT64_MIN at s = 64)."""
    if rounding == "floor":
        return acc >> 63                             # -1 for negatives, 0 otherwise
    if rounding == "half_away":
        return -((acc == INT64_MIN) & (s == 64)).astype(np.int64)
    return np.zeros_like(acc)                        # half_up, half_even: every value rounds to 0


def round_shift(acc: np.ndarray | int, shift: int | np.ndarray, rounding: str) -> np.ndarray:
    """Exact integer ``acc / 2**shift`` rounded with ``rounding``, as int64.

    ``shift <= 0`` is an exact left shift (OverflowError if it leaves int64). ``shift`` may be an array
    broadcast against ``acc`` (per-channel shifts: shape it for broadcasting, e.g. ``s[:, None]``).
    """
    _check_rounding(rounding)
    acc, s = np.broadcast_arrays(_as_int64(acc, "acc"), _as_int64(shift, "shift"))
    right = _shift_right(acc, np.clip(s, 1, 63), rounding)
    if (s > 63).any():
        right = np.where(s > 63, _shift_right_64_plus(acc, s, rounding), right)
    k = np.clip(-s, 0, 63)
    left = acc << k
    bad = (s <= 0) & (((left >> k) != acc) | ((s < -63) & (acc != 0)))
    if bad.any():
        raise OverflowError(f"left shift of {int(np.count_nonzero(bad))} value(s) overflows int64")
    return np.where(s > 0, right, left)


def saturate(q: np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Clip integers to ``[fmt.min_int, fmt.max_int]``; returns (int64 values, how many were clipped)."""
    q = _as_int64(q, "q")
    n = int(np.count_nonzero((q < fmt.min_int) | (q > fmt.max_int)))
    return np.clip(q, fmt.min_int, fmt.max_int), n


def _quantize(x: np.ndarray, frac: int | np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Float -> saturated int64 at ``frac`` (scalar or broadcastable array), with fmt's range and rounding."""
    x = np.asarray(x, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("cannot quantize NaN")
    with np.errstate(over="ignore"):
        r = round_float(x * np.ldexp(1.0, frac), fmt.rounding)
    n = int(np.count_nonzero((r < fmt.min_int) | (r > fmt.max_int)))
    return np.clip(r, fmt.min_int, fmt.max_int).astype(np.int64), n


def quantize_fixed(x: np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Float -> int64 in ``fmt``: round(x * 2**frac) with fmt's rounding, then saturate.

    Computed in float64; +-inf saturate (and count), NaN raises ValueError. Returns (q, n_overflow).
    """
    return _quantize(x, fmt.frac, fmt)


def dequantize_fixed(q: np.ndarray, fmt: QFormat) -> np.ndarray:
    """int -> float64 value ``q * 2**-frac`` (exact)."""
    return _as_int64(q, "q").astype(np.float64) * fmt.scale


def requantize(acc: np.ndarray, acc_frac: int | np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """An integer accumulator with ``acc_frac`` fractional bits -> ``fmt``: round_shift, then saturate.

    ``acc_frac`` may be an array broadcast against ``acc`` (per-channel weight formats).
    """
    shift = _as_int64(acc_frac, "acc_frac") - fmt.frac
    return saturate(round_shift(acc, shift, fmt.rounding), fmt)


def _channel_fracs(fmts: Sequence[QFormat], ndim: int, axis: int) -> np.ndarray:
    """Per-channel fracs shaped to broadcast along ``axis``; the formats must differ in frac only."""
    if not fmts:
        raise ValueError("need at least one format")
    base = fmts[0]
    for f in fmts:
        if (f.width, f.signed, f.rounding) != (base.width, base.signed, base.rounding):
            raise ValueError(f"per-channel formats must share width, signedness and rounding: {base} vs {f}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {ndim} dimensions")
    shape = [1] * ndim
    shape[axis] = len(fmts)
    return np.array([f.frac for f in fmts], dtype=np.int64).reshape(shape)


def quantize_per_channel(w: np.ndarray, fmts: Sequence[QFormat], axis: int = 0) -> tuple[np.ndarray, int]:
    """:func:`quantize_fixed` with one format per slice along ``axis`` (see ``formats_per_channel``)."""
    w = np.asarray(w, dtype=np.float64)
    return _quantize(w, _channel_fracs(fmts, w.ndim, axis), fmts[0])


def dequantize_per_channel(q: np.ndarray, fmts: Sequence[QFormat], axis: int = 0) -> np.ndarray:
    """Inverse of :func:`quantize_per_channel` (exact)."""
    q = _as_int64(q, "q")
    return q.astype(np.float64) * np.ldexp(1.0, -_channel_fracs(fmts, q.ndim, axis))


def sqnr_db(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio 10*log10(sum x^2 / sum (x - x_hat)^2) in dB (inf if exact)."""
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {x_hat.shape}")
    noise = float(np.sum((x - x_hat) ** 2))
    signal = float(np.sum(x ** 2))
    if noise == 0.0:
        return math.inf
    return -math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise)


class _FakeQuantSTE(torch.autograd.Function):
    """Forward: the quantized values. Backward: identity, or zero where the value saturated (clip_grad)."""

    @staticmethod
    def forward(ctx, x, up, down, fmt, clip_grad):   # up, down: 2**frac and 2**-frac (floats or tensors)
        r = round_torch(x * up, fmt.rounding)
        if clip_grad:
            ctx.save_for_backward((r >= fmt.min_int) & (r <= fmt.max_int))
        ctx.clip_grad = clip_grad
        return r.clamp(fmt.min_int, fmt.max_int) * down + 0.0

    @staticmethod
    def backward(ctx, grad):
        if ctx.clip_grad:
            (inside,) = ctx.saved_tensors
            grad = grad * inside
        return grad, None, None, None, None


def _fake(x: torch.Tensor, up, down, fmt: QFormat, ste: bool, clip_grad: bool) -> torch.Tensor:
    if x.dtype != torch.float64:
        raise TypeError(f"fake quantization needs float64 (exact to 2**53), got {x.dtype}; "
                        "float32 holds integers exactly only up to 2**24")
    if not ste:
        with torch.no_grad():
            return _FakeQuantSTE.apply(x.detach(), up, down, fmt, False)
    return _FakeQuantSTE.apply(x, up, down, fmt, clip_grad)


def fake_quantize(x: torch.Tensor, fmt: QFormat, ste: bool = True, clip_grad: bool = False) -> torch.Tensor:
    """float64 -> float64 on fmt's grid; equals ``dequantize_fixed(quantize_fixed(x))`` bit for bit.

    ``ste=True``: straight-through estimator, the gradient passes unchanged (``clip_grad=True`` zeroes
    it where the value saturated, so a clipped value stops pulling). ``ste=False``: a detached result
    (the true gradient of rounding is zero almost everywhere). NaN propagates.
    """
    return _fake(x, math.ldexp(1.0, fmt.frac), fmt.scale, fmt, ste, clip_grad)


def fake_requantize(x: torch.Tensor, fmt: QFormat, ste: bool = True, clip_grad: bool = False) -> torch.Tensor:
    """:func:`fake_quantize` under the name used for accumulators.

    ``x`` holds float64 values that are exact multiples of 2**-acc_frac (an exact float64 accumulator);
    the result equals ``dequantize_fixed(requantize(acc, acc_frac, fmt)[0], fmt)`` for the matching ints.
    """
    return fake_quantize(x, fmt, ste, clip_grad)


def fake_quantize_per_channel(x: torch.Tensor, fmts: Sequence[QFormat], axis: int = 0, ste: bool = True,
                              clip_grad: bool = False) -> torch.Tensor:
    """:func:`fake_quantize` with one format per slice along ``axis``; matches :func:`quantize_per_channel`."""
    fracs = _channel_fracs(fmts, x.dim(), axis)
    up = torch.from_numpy(np.ldexp(1.0, fracs)).to(x.device)
    down = torch.from_numpy(np.ldexp(1.0, -fracs)).to(x.device)
    return _fake(x, up, down, fmts[0], ste, clip_grad)
