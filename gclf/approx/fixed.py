"""Integer-only sigmoid/tanh: the tables that define each approximation in fixed point, and their evaluator.

This is the definition a C or HDL implementation reproduces. :func:`build_tables` turns a scheme's float
description (:class:`Segments`, on x >= 0) into integers once; :func:`eval_tables` then computes every output
from those integers alone, with integer adds, multiplies, compares and shifts (no float at run time).

Formats: an input q (int64) stands for x = q * 2**-in_frac, an output y for y * 2**-out_frac; ``one`` = 2**out_frac.

Every kind is evaluated on a = |q| and mirrored (a C version takes the sign, works on the magnitude, and mirrors)::

    y+ = F(a)                          (0 <= y+ <= sat = one)
    y  = y+                 if q >= 0
    y  = one - y+           if q < 0 and mirror == "one_minus"   (sigmoid)
    y  = -y+                if q < 0 and mirror == "negate"      (tanh)

so sigmoid(-x) = 1 - sigmoid(x) and tanh(-x) = -tanh(x) hold bit for bit, and the output lies in [0, one]
(sigmoid) or [-one, one] (tanh). With breaks B[0] = 0 <= B[1] <= ... <= B[n] (input units) and k the segment
holding a, i.e. B[k] <= a < B[k+1] (an empty segment, B[k] == B[k+1], is never chosen), F is by ``kind``::

    "pwl":   a >= B[n]: sat;   else (A[k] + S[k] * (a - B[k]) + 2**(s-1)) >> s          (s = slope_shift)
    "lut":   a >= B[n]: sat;   else T[k]
    "table": a >= len(T): sat; else T[a]                 (one entry per input value; the "exact" scheme)

For "pwl", A ("intercepts", the segment's value at B[k]) is in units of 2**-(out_frac + s) and S ("slopes") in
those units per input step, so the only rounding is the final half-up shift; every term is >= 0 and the sum never
exceeds one * 2**s + 2**(s-1), so int32 arithmetic suffices when in_frac + out_frac <= 26 (s = in_frac + 4).
Where the float scheme is monotone, slopes are lowered (rarely, by a fraction of an LSB) so that no segment ends
above the next one's start: the fixed-point output is then non-decreasing by construction. For "lut", B starts
[0, 1, ...]: T[0] is input 0's own entry, the centre value (one/2 or 0), which keeps the mirror exact at 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

SLOPE_EXTRA_BITS = 4     # slopes carry out_frac + 4 fraction bits of the real slope; slope_shift = in_frac + 4
MAX_FRAC = 28            # in_frac / out_frac accepted up to this (int64 headroom: pwl sums < 2**61)
MAX_EXACT_TABLE = 1 << 22   # the "exact" scheme's per-input table is refused beyond this many entries


@dataclass(frozen=True)
class Segments:
    """A symmetric scheme's float definition on x >= 0 (x < 0 follows by the mirror rule).

    Segment k covers [starts[k], starts[k+1]) (the last one ends at ``end``) and is
    ``values[k] + slopes[k] * (x - starts[k])``; x >= end gives the saturation value 1. At exactly x = 0 the
    value is ``centre`` (0.5 or 0; this only matters for step functions, where it keeps the mirror exact).
    Breakpoints are exact fractions so the integer breaks ceil(start * 2**in_frac) are exact.
    """

    starts: tuple[Fraction, ...]
    end: Fraction
    values: tuple[float, ...]
    slopes: tuple[float, ...]
    centre: float
    step: bool = False          # piecewise constant (lut): fixed point gets kind "lut"
    monotone: bool = True       # the float definition is non-decreasing (PLAN is not, by 2**-8 at 2.375)

    @property
    def max_width(self) -> float:
        """The widest segment, in x units."""
        edges = (*self.starts, self.end)
        return float(max(b - a for a, b in zip(edges[:-1], edges[1:])))


def check_formats(in_frac: int, out_frac: int) -> None:
    """Raise ValueError unless in_frac and out_frac are integers in [0, MAX_FRAC]."""
    for name, v in (("in_frac", in_frac), ("out_frac", out_frac)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 0 <= v <= MAX_FRAC:
            raise ValueError(f"{name} must be an integer in [0, {MAX_FRAC}], got {v!r}")


def as_int64(q: Any) -> np.ndarray:
    """The input as an int64 array; TypeError for anything but integers (no silent float truncation)."""
    arr = np.asarray(q)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"fixed-point input must be an integer array, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _round_half_up(v: Fraction) -> int:
    return math.floor(v + Fraction(1, 2))


def _int_break(x: Fraction, in_frac: int) -> int:
    """The first input integer at or beyond x: ceil(x * 2**in_frac), exactly."""
    return math.ceil(x * (1 << in_frac))


def _mirror_fields(func: str, out_frac: int) -> dict:
    one = 1 << out_frac
    return {"mirror": "one_minus" if func == "sigmoid" else "negate", "one": one, "sat": one}


def _pwl_tables(seg: Segments, in_frac: int, out_frac: int) -> dict:
    """Integer breaks, slopes and intercepts of a piecewise-linear Segments (see the module docstring)."""
    s = in_frac + SLOPE_EXTRA_BITS
    unit = Fraction(1 << (out_frac + s))                 # intercept units per 1.0 of output
    breaks = [_int_break(b, in_frac) for b in (*seg.starts, seg.end)]
    slopes = [_round_half_up(Fraction(m) * (1 << (out_frac + SLOPE_EXTRA_BITS))) for m in seg.slopes]
    inter = []
    for k, (b0, v, m) in enumerate(zip(seg.starts, seg.values, seg.slopes)):
        x = Fraction(breaks[k], 1 << in_frac)
        inter.append(_round_half_up((Fraction(v) + Fraction(m) * (x - b0)) * unit))
    if seg.monotone:
        slopes = _repair_monotone(breaks, slopes, inter, int(unit))
    return {"kind": "pwl", "breaks": breaks, "slopes": slopes, "intercepts": inter, "slope_shift": s}


def _repair_monotone(breaks: list[int], slopes: list[int], inter: list[int], sat: int) -> list[int]:
    """Lower a slope where its rounding would carry a segment's last value above the next segment's first.

    Pre-rounding values are compared, so the rounded output is non-decreasing too. A rounded-up slope can
    overshoot by at most w/32 LSB (w the segment width in x units), so the repair moves a segment's values by
    a small fraction of an LSB (within ``Approx.fixed_tolerance_lsb``), mostly in the nearly flat tails.
    """
    out = list(slopes)
    nxt = [*inter[1:], sat]
    for k, (s_k, a_k) in enumerate(zip(slopes, inter)):
        span = breaks[k + 1] - breaks[k] - 1          # largest a - B[k] inside the segment
        if span > 0 and a_k + s_k * span > nxt[k]:
            out[k] = (nxt[k] - a_k) // span
    return out


def _lut_tables(seg: Segments, in_frac: int, out_frac: int) -> dict:
    """Integer breaks and table of a step Segments; input 0 gets its own entry, the centre value."""
    one = 1 << out_frac
    breaks = [0, 1] + [_int_break(b, in_frac) for b in (*seg.starts[1:], seg.end)]
    table = [_round_half_up(Fraction(seg.centre) * one)]
    table += [_round_half_up(Fraction(v) * one) for v in seg.values]
    return {"kind": "lut", "breaks": breaks, "table": table}


def exact_positive(func: str, a: np.ndarray, in_frac: int, out_frac: int) -> np.ndarray:
    """round_half_up(f(a * 2**-in_frac) * 2**out_frac) in float64 for a >= 0 (int64 in, int64 out)."""
    x = a.astype(np.float64) * 2.0 ** -in_frac
    f = 1.0 / (1.0 + np.exp(-x)) if func == "sigmoid" else np.tanh(x)
    return np.floor(f * 2.0 ** out_frac + 0.5).astype(np.int64)


def _exact_tables(func: str, in_frac: int, out_frac: int) -> dict:
    """One entry per input magnitude up to the first that rounds to one (all larger ones do too)."""
    x_bound = (out_frac + 3) * math.log(2.0) / (1.0 if func == "sigmoid" else 2.0) + 1.0
    size = math.ceil(x_bound * (1 << in_frac)) + 1
    if size > MAX_EXACT_TABLE:
        raise ValueError(f"the exact {func} table for in_frac={in_frac} would have {size} entries (too many)")
    a = np.arange(size, dtype=np.int64)
    vals = exact_positive(func, a, in_frac, out_frac)
    n_sat = int(np.argmax(vals >= (1 << out_frac)))
    if vals[n_sat] < (1 << out_frac):
        raise AssertionError("exact table bound too small")   # cannot happen: x_bound is generous
    return {"kind": "table", "table": vals[:n_sat].tolist()}


def build_tables(seg: Segments | None, func: str, in_frac: int, out_frac: int) -> dict:
    """The integer tables of a scheme (``seg`` None: the exact function) for the given formats."""
    check_formats(in_frac, out_frac)
    if seg is None:
        body = _exact_tables(func, in_frac, out_frac)
    elif seg.step:
        body = _lut_tables(seg, in_frac, out_frac)
    else:
        body = _pwl_tables(seg, in_frac, out_frac)
    return {**body, **_mirror_fields(func, out_frac), "in_frac": in_frac, "out_frac": out_frac}


def _positive(t: dict, a: np.ndarray) -> np.ndarray:
    """F(a) for a >= 0 from the tables alone."""
    if t["kind"] == "table":
        table = np.asarray(t["table"], dtype=np.int64)
        if table.size == 0:
            return np.full_like(a, t["sat"])
        return np.where(a < table.size, table[np.minimum(a, table.size - 1)], t["sat"])
    breaks = np.asarray(t["breaks"], dtype=np.int64)
    n = breaks.size - 1
    a_in = np.minimum(a, breaks[-1])                   # keeps products small where the result is sat anyway
    k = np.minimum(np.searchsorted(breaks, a_in, side="right") - 1, n - 1)
    if t["kind"] == "lut":
        y = np.asarray(t["table"], dtype=np.int64)[k]
    elif t["kind"] == "pwl":
        s = t["slope_shift"]
        inter = np.asarray(t["intercepts"], dtype=np.int64)
        slopes = np.asarray(t["slopes"], dtype=np.int64)
        y = (inter[k] + slopes[k] * (a_in - breaks[k]) + (1 << (s - 1))) >> s
    else:
        raise ValueError(f"unknown table kind {t['kind']!r}")
    return np.where(a >= breaks[-1], t["sat"], y)


def mirror(t: dict, q: np.ndarray, y_pos: np.ndarray) -> np.ndarray:
    """Apply the mirror rule of tables ``t`` to the magnitudes' outputs ``y_pos``."""
    if t["mirror"] == "one_minus":
        return np.where(q < 0, t["one"] - y_pos, y_pos)
    if t["mirror"] == "negate":
        return np.where(q < 0, -y_pos, y_pos)
    raise ValueError(f"unknown mirror rule {t['mirror']!r}")


def eval_tables(t: dict, q: Any) -> np.ndarray:
    """Evaluate tables ``t`` (from :func:`build_tables`) at integer inputs ``q`` (|q| < 2**62): int64 out."""
    q = as_int64(q)
    return mirror(t, q, _positive(t, np.abs(q)).astype(np.int64))
