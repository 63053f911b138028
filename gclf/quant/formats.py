"""Choosing fixed-point formats, and the quantized-tensor type: pure functions of numbers and arrays.

Weights are symmetric signed ``bits``-bit with a power-of-two scale chosen from their range (per tensor,
or per output channel); biases are ``bias_bits`` wide, their fraction capped at the accumulator's so that
aligning them is an exact left shift; activations take the format that holds their calibrated range;
sigmoid outputs are UQ1.n and tanh outputs Q1.n, so 1.0 is representable. Nothing here knows a network:
:mod:`gclf.backends.fixed` applies these per op of a graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gclf.quant.qformat import QFormat, format_for_range


@dataclass(frozen=True)
class TensorFormat:
    """Signed power-of-two format of a stored tensor: ``width`` bits, integer bits per output channel
    (one entry: per tensor)."""

    width: int
    integer: tuple[int, ...]

    @property
    def frac(self) -> np.ndarray:
        return self.width - 1 - np.array(self.integer, dtype=np.int64)

    def to_dict(self) -> dict:
        return {"width": int(self.width), "integer": [int(i) for i in self.integer]}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorFormat":
        return cls(int(d["width"]), tuple(int(i) for i in d["integer"]))


@dataclass
class WeightQ:
    """A quantized weight tensor: integers, width and integer bits per output channel (len 1: per tensor)."""

    ints: np.ndarray      # int64, the stored shape (circulant: (p, q, k) defining vectors)
    width: int
    integer: np.ndarray   # (channels,) int
    kind: str             # "conv", "dense", "circulant", "bias"

    @property
    def frac(self) -> np.ndarray:
        return self.width - 1 - self.integer

    def frac_rows(self) -> np.ndarray:
        """Fraction per output channel, broadcastable to ``ints`` along axis 0."""
        return self.frac.reshape(-1, *([1] * (self.ints.ndim - 1)))

    def values(self) -> np.ndarray:
        return self.ints * np.power(2.0, -self.frac_rows())


def act_format(max_abs: float, bits: int, rounding: str) -> QFormat:
    return format_for_range(max(float(max_abs), 2.0 ** -(bits - 2)), bits, signed=True, rounding=rounding)


def sigmoid_format(bits: int, rounding: str) -> QFormat:
    return QFormat(bits, 1, signed=False, rounding=rounding)  # [0, 2): holds 1.0 exactly


def tanh_format(bits: int, rounding: str) -> QFormat:
    return QFormat(bits, 1, signed=True, rounding=rounding)   # [-2, 2)


def weight_format(w: np.ndarray, bits: int, rounding: str, per_channel: bool) -> TensorFormat:
    """Symmetric power-of-two format(s) of a stored weight chosen from its range: one for the tensor, or one
    per output channel (first axis)."""
    w = np.asarray(w, dtype=np.float64)
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    return TensorFormat(bits, tuple(
        int(format_for_range(float(np.abs(r).max()) or 2.0 ** -(bits - 2), bits, True, rounding).integer)
        for r in rows))


def bias_format(b: np.ndarray, bits: int, max_frac: np.ndarray, rounding: str) -> TensorFormat:
    """Format of a bias, ``bits`` wide, per channel: fraction min(range-derived, accumulator fraction), so
    aligning it to the accumulator is an exact left shift."""
    f = format_for_range(float(np.abs(b).max()) or 1.0, bits, signed=True, rounding=rounding)
    frac = np.minimum(f.frac, max_frac).astype(int) * np.ones(b.shape[0], dtype=int)
    return TensorFormat(bits, tuple(int(bits - 1 - fr) for fr in frac))


def quantize_tensor(w: np.ndarray, fmt: TensorFormat, rounding: str, kind: str) -> tuple[WeightQ, int]:
    """The stored integers of ``w`` in ``fmt`` (one format per row of the first axis, or one), saturated;
    returns (tensor, saturation count)."""
    from gclf.quant.primitives import quantize_fixed

    integers = np.array(fmt.integer)
    rows = w.reshape(len(integers), -1) if len(integers) > 1 else w.reshape(1, -1)
    qs, n_sat = [], 0
    for r, integer in zip(rows, integers):
        q, n = quantize_fixed(r, QFormat(fmt.width, int(integer), True, rounding))
        qs.append(q)
        n_sat += n
    return WeightQ(np.concatenate(qs).reshape(w.shape).astype(np.int64), fmt.width, integers, kind), n_sat


def packed_bytes(n: int, bits: int) -> int:
    return math.ceil(n * bits / 8)


def activation_fixed(approx, q: np.ndarray, in_frac: int, out_frac: int) -> np.ndarray:
    """``approx.fixed`` for any input fraction: a negative one is first shifted to fraction 0 (exact)."""
    if in_frac < 0:
        return approx.fixed(np.asarray(q, dtype=np.int64) << -in_frac, 0, out_frac)
    return approx.fixed(q, in_frac, out_frac)
