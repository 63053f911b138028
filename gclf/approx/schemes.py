"""Piecewise-linear and table approximations of sigmoid and tanh, in float (PyTorch) and fixed point (int64).

Each scheme has a float version (differentiable, for fine-tuning the LSTM with the approximation in place) and
a fixed-point version computed only from integer tables (:mod:`gclf.approx.fixed` documents the exact integer
formula a C/HDL implementation reproduces). ``get_approx(name, func)`` returns an :class:`Approx`. Schemes:

``exact``  torch.sigmoid / torch.tanh; fixed point round_half_up(f(|x|) * 2**out_frac) in float64, mirrored.
``hard``   sigmoid clip(x/4 + 1/2, 0, 1) (the tangent at 0, slope a power of two), tanh clip(x, -1, 1).
``plan``   PLAN (Amin, Curtis & Hayes-Gill 1997), as published: for |x| >= 5: 1; 2.375 <= |x| < 5:
           |x|/32 + 0.84375; 1 <= |x| < 2.375: |x|/8 + 0.625; |x| < 1: |x|/4 + 0.5; x < 0: 1 - y(|x|).
           tanh(x) = 2 * plan_sigmoid(2x) - 1. All slopes are powers of two (fixed point: shifts and adds) and
           fixed point equals the rounded float exactly. PLAN is *not* monotone: at |x| = 2.375 it drops by
           2**-8 (tanh: by 2**-7 at |x| = 1.1875); ``Approx.monotone`` is False for it.
``pwlN``   N-segment uniform piecewise-linear interpolation of f between the N+1 knots -R + 2Rk/N on [-R, R],
           constant saturation outside; the outermost knots take the saturation value (0/1, -1/1) instead of
           f(+-R), so the output reaches exactly 1 (same max error as f(R), smaller tail error).
``lutN``   N-entry table of f at the centres of N uniform bins on [-R, R], saturation value outside; in float
           the gradient is the exact function's (straight-through), since the steps have none.

Clipping ranges R (``X_RANGE``): sigmoid 6, tanh 3 (tanh(x) = 2 sigmoid(2x) - 1, so the same table up to scale).
Measured on [-8, 8] (see :func:`error_table`): max |error| pwl16 0.0065 (sigmoid) / 0.0131 (tanh), lut256
0.0059 / 0.0117; R = 8 / 4 would give pwl16 0.0116 / 0.0233 and is worse for every N tried (8..256).
Negative inputs mirror positive ones in every scheme, so all are ``symmetric``; a lut's value at exactly
x = 0 is f(0) (0.5 / 0) to keep the mirror exact.

Fixed point tracks float (inputs x = q 2**-in_frac, outputs in LSB = 2**-out_frac):
|fixed(q) * 2**-out_frac - float(q * 2**-in_frac)| <= ``fixed_tolerance_lsb`` LSB: 0.5 for exact/hard/plan/lut
(plain rounding), 0.5 + w/8 for pwl (w the segment width: slopes keep out_frac + 4 fraction bits).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
import torch

from gclf.approx.fixed import Segments, as_int64, build_tables, check_formats, eval_tables, exact_positive, mirror

Func = Literal["sigmoid", "tanh"]
FUNCS: tuple[str, ...] = ("sigmoid", "tanh")
X_RANGE = {"sigmoid": Fraction(6), "tanh": Fraction(3)}     # R of the pwl and lut schemes
N_RANGE = (2, 4096)                                          # accepted N in pwlN / lutN
_STANDARD = ("exact", "hard", "plan", "pwl8", "pwl16", "pwl20", "pwl32", "lut64", "lut256")


def _exact_torch(func: str, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x) if func == "sigmoid" else torch.tanh(x)


def _exact_float(func: str, x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if func == "sigmoid" else math.tanh(x)


def _centre(func: str) -> float:
    return 0.5 if func == "sigmoid" else 0.0


@dataclass(frozen=True)
class Approx:
    """One approximation of one function: float version, fixed-point version and its integer tables.

    ``segments`` counts the linear pieces between the saturated tails (table entries for lut; 0 for exact);
    ``symmetric`` promises sigmoid(-x) = 1 - sigmoid(x) / tanh(-x) = -tanh(x) (in float to rounding, in fixed
    point bit-exactly); ``monotone`` promises a non-decreasing output (float and fixed point).
    """

    name: str
    func: str
    symmetric: bool
    monotone: bool
    segments: int
    spec: Segments | None = None       # None: the exact function

    def float(self, x: torch.Tensor) -> torch.Tensor:
        """The approximation on a float tensor of any shape (float32/float64), differentiable."""
        if not torch.is_floating_point(x):
            raise TypeError(f"float() needs a floating-point tensor, got {x.dtype}")
        if self.spec is None:
            return _exact_torch(self.func, x)
        y = _segments_torch(self.spec, self.func, x)
        if self.spec.step:   # straight-through: the steps' values, the exact function's gradient
            f = _exact_torch(self.func, x)
            y = y.detach() + (f - f.detach())
        return y

    def fixed_tables(self, in_frac: int, out_frac: int) -> dict:
        """The integers that fully define :meth:`fixed` for these formats (formula: :mod:`gclf.approx.fixed`).

        pwl (hard, plan, pwlN): ``{"kind": "pwl", "breaks", "slopes", "intercepts", "slope_shift", ...}`` with
        y+ = (intercepts[k] + slopes[k] * (|q| - breaks[k]) + 2**(s-1)) >> s on breaks[k] <= |q| < breaks[k+1];
        lut: ``{"kind": "lut", "breaks", "table", ...}``; exact: ``{"kind": "table", "table", ...}`` indexed
        by |q|. All carry ``sat`` (value for |q| beyond the last break), ``mirror``, ``one``, the formats, and
        name/func. Plain Python ints, JSON-serialisable.
        """
        t = build_tables(self.spec, self.func, in_frac, out_frac)
        return {"name": self.name, "func": self.func, **t}

    def fixed(self, q: np.ndarray, in_frac: int, out_frac: int) -> np.ndarray:
        """Integer inputs (value q * 2**-in_frac) to int64 outputs (value y * 2**-out_frac).

        hard/plan/pwl/lut: integer arithmetic on :meth:`fixed_tables` only. exact: float64 round half up of
        f(|x|), mirrored (identical to its "table" tables, which a C version would use).
        """
        if self.spec is not None:
            return eval_tables(self.fixed_tables(in_frac, out_frac), q)
        check_formats(in_frac, out_frac)
        q = as_int64(q)
        rule = {"mirror": "one_minus" if self.func == "sigmoid" else "negate", "one": 1 << out_frac}
        return mirror(rule, q, exact_positive(self.func, np.abs(q), in_frac, out_frac))

    @property
    def fixed_tolerance_lsb(self) -> float:
        """Bound on |fixed * 2**-out_frac - float| in output LSB, for any in_frac and out_frac."""
        if self.spec is None or self.spec.step or self.name in ("hard", "plan"):
            return 0.5
        return 0.5 + self.spec.max_width / 8


def _segments_torch(seg: Segments, func: str, x: torch.Tensor) -> torch.Tensor:
    """Evaluate Segments on x >= 0 at |x| and mirror; gradients flow through the linear pieces."""
    opts = {"dtype": x.dtype, "device": x.device}
    starts = torch.tensor([float(b) for b in seg.starts], **opts)
    values = torch.tensor(seg.values, **opts)
    slopes = torch.tensor(seg.slopes, **opts)
    neg = x < 0
    sign = torch.where(neg, -1.0, 1.0).to(x.dtype)
    a = x * sign                                              # |x| with gradient +-1 (also at 0)
    k = torch.bucketize(a.detach(), starts, right=True).clamp(min=1) - 1
    y = values[k] + slopes[k] * (a - starts[k])
    y = torch.where(a >= float(seg.end), torch.ones_like(y), y)
    if seg.step:
        y = torch.where(a == 0, torch.full_like(y, seg.centre), y)
    return torch.where(neg, 1.0 - y, y) if func == "sigmoid" else sign * y


def _hard(func: str) -> Segments:
    if func == "sigmoid":
        return Segments((Fraction(0),), Fraction(2), (0.5,), (0.25,), 0.5)
    return Segments((Fraction(0),), Fraction(1), (0.0,), (1.0,), 0.0)


def _plan(func: str) -> Segments:
    """PLAN as published (sigmoid); tanh(x) = 2 sigmoid(2x) - 1 halves the breaks and doubles the values."""
    starts = (Fraction(0), Fraction(1), Fraction(19, 8))
    values, slopes, end = (0.5, 0.75, 0.91796875), (0.25, 0.125, 0.03125), Fraction(5)
    if func == "tanh":
        starts, end = tuple(b / 2 for b in starts), end / 2
        values, slopes = tuple(2 * v - 1 for v in values), tuple(4 * m for m in slopes)
    return Segments(starts, end, values, slopes, _centre(func), monotone=False)


def _pwl(func: str, n: int) -> Segments:
    """Interpolate f at the knots -R + 2Rk/n; on x >= 0 the pieces start at 0 and at each knot in (0, R)."""
    r = X_RANGE[func]
    starts = (Fraction(0), *(r * (2 * k - n) / n for k in range(n // 2 + 1, n)))
    nodes = [*starts, r]
    vals = [_centre(func), *(_exact_float(func, float(b)) for b in starts[1:]), 1.0]
    slopes = tuple((vals[k + 1] - vals[k]) / float(nodes[k + 1] - nodes[k]) for k in range(len(starts)))
    return Segments(starts, r, tuple(vals[:-1]), slopes, _centre(func))


def _lut(func: str, n: int) -> Segments:
    """f at bin centres; on x >= 0 the steps start at 0 and at each bin edge in (0, R)."""
    r = X_RANGE[func]
    w = 2 * r / n
    starts = (Fraction(0), *(r * (2 * k - n) / n for k in range(n // 2 + 1, n)))
    ends = (*starts[1:], r)
    vals = tuple(_exact_float(func, float(e - w / 2)) for e in ends)
    return Segments(starts, r, vals, (0.0,) * len(starts), _centre(func), step=True)


def available() -> list[str]:
    """The standard scheme names (any pwlN / lutN with N in N_RANGE is accepted too)."""
    return list(_STANDARD)


def get_approx(name: str, func: Func) -> Approx:
    """The approximation ``name`` of ``func``; ValueError listing the valid names for an unknown one."""
    if func not in FUNCS:
        raise ValueError(f"unknown function {func!r}: valid are {', '.join(FUNCS)}")
    m = re.fullmatch(r"(pwl|lut)([1-9][0-9]*)", name) if isinstance(name, str) else None
    if name == "exact":
        return Approx(name, func, True, True, 0)
    if name == "hard":
        return Approx(name, func, True, True, 1, _hard(func))
    if name == "plan":
        return Approx(name, func, True, False, 5, _plan(func))
    if m and N_RANGE[0] <= int(m.group(2)) <= N_RANGE[1]:
        n = int(m.group(2))
        return Approx(name, func, True, True, n, _pwl(func, n) if m.group(1) == "pwl" else _lut(func, n))
    raise ValueError(f"unknown approximation {name!r}: valid are exact, hard, plan, pwlN, lutN "
                     f"({N_RANGE[0]} <= N <= {N_RANGE[1]}), e.g. {', '.join(_STANDARD)}")


def error_table(funcs: tuple[str, ...] = FUNCS, names: list[str] | None = None, x_range: float = 8.0,
                n: int = 200001) -> list[dict]:
    """Max and mean |approx.float - exact| on n evenly spaced points of [-x_range, x_range] (float64)."""
    x = torch.linspace(-x_range, x_range, n, dtype=torch.float64)
    rows = []
    for func in funcs:
        ref = _exact_torch(func, x)
        for name in names if names is not None else available():
            ap = get_approx(name, func)
            err = (ap.float(x) - ref).abs()
            rows.append({"func": func, "name": name, "max_abs_error": float(err.max()),
                         "mean_abs_error": float(err.mean()), "segments": ap.segments})
    return rows
