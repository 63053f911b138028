"""The network's ``Norm`` in integers: the front-end's int32 MFCC window -> the network's quantized input.

The float definition (:class:`gclf.backends.torch_float.InputNorm`) is ``y = (x - mean_t x - offset) * scale``
per channel, then quantization to the input format. Its integer version, for an input ``q`` in Q``in_frac``
(the front-end's int32 output, ``x = q / 2^in_frac``), per channel c of a window of T frames:

1. ``m = rdiv(sum_t q + B_c, n)``: the window mean plus the offset in one rounding, where ``n = T`` and
   ``B_c = round_half_up(offset_c * 2^in_frac * T)`` when the graph removes the window mean (``cmn``), else
   ``n = 1``, the sum is 0 and ``B_c = round_half_up(offset_c * 2^in_frac)``. ``rdiv(a, n) = floor((2a + n) /
   (2n))`` is a division rounded half up (exact in int64: |sum| < T 2^31).
2. ``d = sat_int32(q - m)`` (saturations counted under ``diff``).
3. ``y = sat_out(round_shift(d * M_c, S_c))`` with the output format's rounding: ``M_c`` a signed Q31 multiplier
   (``2^30 <= |M_c| < 2^31``) and ``S_c`` its shift, ``M_c 2^-S_c = scale_c 2^(out_frac - in_frac)`` to a
   relative error below 2^-31; the int64 product cannot overflow (|d M| < 2^62). Saturations counted (``out``).

Error against the float path (quantizing the float result with the same rounding): the value before the
last rounding differs by at most ``(0.5 + 0.5/n) |scale_c| 2^(out_frac-in_frac) + |y| 2^-30`` output LSBs
(the mean/offset rounding, then the multiplier), so for every realistic scale the integer input differs from
the float path's by at most one LSB, and only when the exact value lies that close to a rounding boundary
(tested in ``tests/test_frontend_norm.py``). No float and no division by a variable: the device does one
integer division per channel and window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gclf.errors import GclfError
from gclf.quant.primitives import round_shift, saturate
from gclf.quant.qformat import QFormat

INT32 = QFormat(32, 31, rounding="half_up")        # the saturation range of d (frac 0)


@dataclass(frozen=True)
class IntNormParams:
    in_frac: int                # fraction bits of the input (the front-end's out_frac)
    length: int                 # T: frames per window
    cmn: bool                   # subtract each window's mean
    bias: np.ndarray            # (C,) int64 B_c
    mult: np.ndarray            # (C,) int64 M_c (signed, |M| in [2^30, 2^31) or 0)
    shift: np.ndarray           # (C,) int64 S_c in 1..62
    out_fmt: QFormat            # the network's input format

    @property
    def n(self) -> int:
        return self.length if self.cmn else 1


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


def multiplier(m: float) -> tuple[int, int]:
    """``m`` as a Q31 multiplier and a right shift: (M, S) with 2^30 <= |M| < 2^31, M 2^-S ~ m; (0, 1) for 0."""
    if m == 0.0:
        return 0, 1
    f, e = math.frexp(abs(m))                      # |m| = f 2^e, f in [0.5, 1)
    mant, shift = _round_half_up(f * 2.0 ** 31), 31 - e
    if mant == 1 << 31:
        mant, shift = 1 << 30, shift - 1
    if not 1 <= shift <= 62:
        raise GclfError(f"a normalisation scale of {m:g} output LSBs per input LSB is outside the integer "
                        "normalisation's range (shift 1..62)")
    return (mant if m > 0 else -mant), shift


def norm_params(offset, scale, cmn: bool, in_frac: int, length: int, out_fmt: QFormat) -> IntNormParams:
    """The integer constants of a Norm from its float ``offset`` and ``scale`` (per channel)."""
    offset = np.asarray(offset, dtype=np.float64).ravel()
    scale = np.asarray(scale, dtype=np.float64).ravel()
    n = length if cmn else 1
    bias = np.array([_round_half_up(o * 2.0 ** in_frac * n) for o in offset], dtype=np.int64)
    ms = [multiplier(float(s) * 2.0 ** (out_fmt.frac - in_frac)) for s in scale]
    return IntNormParams(in_frac, int(length), bool(cmn), bias, np.array([m for m, _ in ms], dtype=np.int64),
                         np.array([s for _, s in ms], dtype=np.int64), out_fmt)


def rdiv(a: np.ndarray, n: int) -> np.ndarray:
    """``a / n`` rounded half up, exactly: floor((2a + n) / (2n)) (numpy's // floors)."""
    return (2 * np.asarray(a, dtype=np.int64) + n) // (2 * n)


def int_norm(q: np.ndarray, p: IntNormParams) -> tuple[np.ndarray, dict[str, int]]:
    """Integer windows (N, C, T) in Q``in_frac`` -> the network's input (N, C, T) int64 in ``p.out_fmt``,
    and the saturation counts {"diff": .., "out": ..}."""
    q = np.asarray(q, dtype=np.int64)
    if q.ndim != 3 or q.shape[2] != p.length or q.shape[1] != len(p.bias):
        raise ValueError(f"int_norm expects windows (N, {len(p.bias)}, {p.length}), got {q.shape}")
    s = q.sum(axis=2) if p.cmn else np.zeros(q.shape[:2], dtype=np.int64)
    m = rdiv(s + p.bias[None, :], p.n)
    d, n_diff = saturate(q - m[:, :, None], INT32)
    y, n_out = saturate(round_shift(d * p.mult[None, :, None], p.shift[None, :, None], p.out_fmt.rounding),
                        p.out_fmt)
    return y, {"diff": int(n_diff), "out": int(n_out)}


def ints_of_frames(x: np.ndarray, in_frac: int) -> np.ndarray:
    """The front-end's integers back from float frames ``q / 2^in_frac`` (exact: ValueError if not on the grid)."""
    v = np.asarray(x, dtype=np.float64) * 2.0 ** in_frac
    q = np.rint(v)
    if not np.array_equal(q, v):
        raise ValueError("the windows are not the integer front-end's output (values off the Q grid); "
                         "an int_mfcc model reads only features of the integer front-end")
    return q.astype(np.int64)


def model_norm_params(model, out_fmt: QFormat) -> IntNormParams:
    """The integer Norm of a GraphNet whose input is integer (``model.int_input_frac`` set)."""
    mod, op = model.input_norm(), model.graph.norm
    return norm_params(mod.offset.detach().double().numpy(), mod.scale.detach().double().numpy(), op.cmn,
                       model.int_input_frac, model.graph.input_shape[1], out_fmt)
