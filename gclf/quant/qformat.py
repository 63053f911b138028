"""The fixed-point number type: a true Q format with a power-of-two scale.

A :class:`QFormat` stores ``width`` bits in two's complement (or unsigned); the stored integer ``q``
means ``q * 2**-frac``. ``integer`` counts the integer bits *excluding* the sign bit, so

    frac = width - integer - (1 if signed else 0)

and ``integer`` may be negative (a format for small values: ``Q-2.9`` in 8 bits holds [-2**-2, 2**-2))
or larger than ``width`` (``frac < 0``: a step of 2, 4, ...). Examples: ``QFormat(8, 3)`` is Q3.4 with
range [-8, 7.9375] in steps of 1/16; ``QFormat(8, 0, signed=False)`` is UQ0.8 on [0, 0.99609375].

Rounding modes (defined once, implemented in :mod:`gclf.quant.primitives`):

- ``half_up``   floor(v + 0.5): add 2**(s-1), then arithmetic shift right. The default: cheapest in hardware.
- ``half_away`` sign(v) * floor(|v| + 0.5): ties away from zero.
- ``half_even`` ties to even (banker's; what ``np.round``/``torch.round`` do).
- ``floor``     floor(v): a bare arithmetic shift right (truncation towards -inf).

Overflow always saturates to [min_int, max_int]: gclf never wraps, so ``saturation`` accepts only
``"saturate"``; the field exists so a stored format states it explicitly.

``frac`` is limited to [-MAX_FRAC, MAX_FRAC] so that the scale, every representable value and the
products of two of them are normal float64 numbers (the fake-quant path computes in float64).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from numbers import Integral
from typing import Literal, get_args

import numpy as np

Rounding = Literal["half_up", "half_away", "half_even", "floor"]
ROUNDINGS: tuple[str, ...] = get_args(Rounding)
MIN_WIDTH, MAX_WIDTH = 2, 32
MAX_FRAC = 128


def _check_int(name: str, value: object) -> int:
    """``value`` as a plain int; bools, floats and strings raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"QFormat.{name} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


@dataclass(frozen=True)
class QFormat:
    width: int                      # total bits including the sign bit, 2..32
    integer: int                    # integer bits excluding the sign bit (may be negative or > width)
    signed: bool = True             # two's complement when True, unsigned otherwise
    rounding: str = "half_up"       # one of ROUNDINGS; half_up is the hardware default
    saturation: str = "saturate"    # the only allowed value: gclf never wraps

    def __post_init__(self) -> None:
        # Normalise numpy ints to plain ints so to_dict() is safe for torch.load(weights_only=True).
        object.__setattr__(self, "width", _check_int("width", self.width))
        object.__setattr__(self, "integer", _check_int("integer", self.integer))
        if not isinstance(self.signed, (bool, np.bool_)):
            raise ValueError(f"QFormat.signed must be a bool, got {self.signed!r}")
        object.__setattr__(self, "signed", bool(self.signed))
        if not MIN_WIDTH <= self.width <= MAX_WIDTH:
            raise ValueError(f"QFormat.width must be in {MIN_WIDTH}..{MAX_WIDTH}, got {self.width}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"QFormat.rounding must be one of {', '.join(ROUNDINGS)}; got {self.rounding!r}")
        if self.saturation != "saturate":
            raise ValueError(f"QFormat.saturation must be 'saturate' (gclf never wraps), got {self.saturation!r}")
        if abs(self.frac) > MAX_FRAC:
            raise ValueError(f"QFormat {self.width} bits with {self.integer} integer bits has frac={self.frac}; "
                             f"frac must be in [-{MAX_FRAC}, {MAX_FRAC}]")

    @property
    def frac(self) -> int:
        """Fractional bits: value = q * 2**-frac."""
        return self.width - self.integer - int(self.signed)

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def scale(self) -> float:
        """The value of one least significant bit, 2**-frac (exact in float64)."""
        return 2.0 ** -self.frac

    @property
    def min_value(self) -> float:
        return self.min_int * self.scale

    @property
    def max_value(self) -> float:
        return self.max_int * self.scale

    def __str__(self) -> str:
        name = f"{'Q' if self.signed else 'UQ'}{self.integer}.{self.frac} ({self.width}b"
        return name + (")" if self.rounding == "half_up" else f", {self.rounding})")

    def to_dict(self) -> dict:
        """Plain ints, a bool and strings: storable in a checkpoint loaded with weights_only=True."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "QFormat":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError (a typo must not pass silently)."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown QFormat keys: {sorted(unknown)}")
        return cls(**d)


def _fits(max_abs: float, integer: int, width: int, signed: bool, rounding: str) -> bool:
    """Whether ``max_abs`` (and ``-max_abs`` if signed) quantizes without saturating.

    The positive end binds: the negative range is one step wider. With M = max_int and v = max_abs * 2**frac
    (exact, a power-of-two scaling), the rounding modes keep v below M + 0.5 inside the range (M is odd,
    so half_even also rounds M + 0.5 up to M + 1) and floor keeps v below M + 1.
    """
    fmt = QFormat(width, integer, signed, rounding)
    limit = fmt.max_int + (1.0 if rounding == "floor" else 0.5)
    return max_abs * 2.0 ** fmt.frac < limit


def format_for_range(max_abs: float, width: int, signed: bool = True, rounding: str = "half_up") -> QFormat:
    """The format of ``width`` bits with the fewest integer bits (most fractional bits) that holds ``max_abs``.

    "Holds" means quantizing ``max_abs`` (and ``-max_abs`` when signed) does not saturate, with the
    given rounding. ``max_abs == 0`` gives ``integer = 0`` (Q0.(width-1), range about [-1, 1)): any
    format holds zero, and this one is a neutral choice. A tiny ``max_abs`` gets ``frac = MAX_FRAC``
    (it fits; the format cannot be finer). Negative, NaN, infinite, or too large (would need
    ``frac < -MAX_FRAC``) values raise ValueError.
    """
    max_abs = float(max_abs)
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max_abs must be finite and >= 0, got {max_abs}")
    if max_abs == 0.0:
        return QFormat(width, 0, signed, rounding)
    sign_bit = int(signed)
    lowest = width - sign_bit - MAX_FRAC            # integer bits at frac = MAX_FRAC
    highest = width - sign_bit + MAX_FRAC           # integer bits at frac = -MAX_FRAC
    if not _fits(max_abs, highest, width, signed, rounding):
        raise ValueError(f"max_abs={max_abs:g} does not fit any {width}-bit format with frac >= -{MAX_FRAC}")
    integer = min(max(math.frexp(max_abs)[1], lowest), highest)   # max_abs < 2**integer
    while integer < highest and not _fits(max_abs, integer, width, signed, rounding):
        integer += 1
    while integer > lowest and _fits(max_abs, integer - 1, width, signed, rounding):
        integer -= 1
    return QFormat(width, integer, signed, rounding)


def formats_per_channel(w: np.ndarray, width: int, axis: int = 0, signed: bool = True,
                        rounding: str = "half_up") -> list[QFormat]:
    """One :func:`format_for_range` per slice of ``w`` along ``axis`` (per output channel)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0:
        raise ValueError("formats_per_channel needs an array with at least one axis")
    if not -w.ndim <= axis < w.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {w.ndim} dimensions")
    axis = axis % w.ndim
    others = tuple(a for a in range(w.ndim) if a != axis)
    max_abs = np.max(np.abs(w), axis=others, initial=0.0)           # (channels,)
    return [format_for_range(m, width, signed, rounding) for m in max_abs]
