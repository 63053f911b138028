"""What a fixed-point model is: its config, the Q format of every tensor, and its integer weights.

Datapath (integer reference, fake-quant and generated C all follow it; ``>>`` is round_shift with the
spec's rounding, every requantization saturates and counts):

    x      = sat(round(InputNorm(mfcc) * 2^f_input))                       input format
    conv1  = sat(relu(conv(W1, x) + B1) >> (fW1 + f_input - f_conv1))    acc at fW + fx, bias aligned by <<
    conv2  likewise, maxpool on integers
    LSTM, per step:  gates = sat((Wih x_t << a) + (Whh h << b) + B >> s) (one format for i, f, g, o)
                     sig = sigmoid_fixed(gates)   (UQ1.n: 1.0 is representable)   tg = tanh_fixed(g)  (Q1.n)
                     c   = sat(f*c + i*tg >> s)      h = sat(o * tanh_fixed(c) >> s)
    fc1, fc2 (relu), fc3 -> logits in their formats; P(female) = softmax of the dequantized logits (host)

Weights are symmetric signed ``bits``-bit with a power-of-two scale chosen from their range (per tensor,
or per output channel); biases are ``bias_bits`` wide (default 2 x bits, at most 32), their fraction capped
at the accumulator's so alignment is an exact left shift. The LSTM's two biases are folded into one.
Accumulators are int64 in the reference; ``acc_bits`` is the width a worst-case bound proves sufficient
(so an accumulator can never overflow and needs no saturation); the generated C uses int32 where it fits.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gclf.quant.qformat import QFormat, format_for_range


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 8                # weight width
    act_bits: int | None = None  # activation / state width (default: same as bits)
    bias_bits: int | None = None # default: min(32, 2 * bits)
    weights_only: bool = False   # activations stay float (no integer reference then)
    per_channel: bool = False    # one weight format per output channel
    rounding: str = "half_up"
    acc_bits: int = 0            # 0: 32 when act and weight widths are <= 8, else 64

    @property
    def a_bits(self) -> int:
        return self.act_bits or self.bits

    @property
    def b_bits(self) -> int:
        return self.bias_bits or min(32, 2 * self.bits)

    @property
    def accumulator_bits(self) -> int:
        return self.acc_bits or (32 if max(self.bits, self.a_bits) <= 8 else 64)


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


def weight_format_entry(w: torch.Tensor, bits: int, rounding: str, per_channel: bool) -> dict:
    """Spec entry ``{"width", "integer": [...]}`` of a stored weight: symmetric power-of-two formats chosen
    from its range, one for the tensor or one per output channel."""
    w = w.detach().double().cpu().numpy()
    rows = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    return {"width": bits, "integer": [
        int(format_for_range(float(np.abs(r).max()) or 2.0 ** -(bits - 2), bits, True, rounding).integer)
        for r in rows]}


def bias_format_entry(b: np.ndarray, bits: int, max_frac: np.ndarray, rounding: str) -> dict:
    """Spec entry of a bias, ``bits`` wide, per channel: fraction min(range-derived, accumulator fraction),
    so aligning it to the accumulator is an exact left shift."""
    f = format_for_range(float(np.abs(b).max()) or 1.0, bits, signed=True, rounding=rounding)
    frac = np.minimum(f.frac, max_frac).astype(int) * np.ones(b.shape[0], dtype=int)
    return {"width": bits, "integer": [int(bits - 1 - fr) for fr in frac]}


def weight_bytes_float(model: torch.nn.Module) -> int:
    """float32 bytes of all parameters (InputNorm buffers are front-end constants, not counted)."""
    return 4 * sum(p.numel() for p in model.parameters())


def packed_bytes(n: int, bits: int) -> int:
    return math.ceil(n * bits / 8)


def config_dict(cfg: QuantConfig) -> dict:
    return asdict(cfg)


def activation_fixed(approx, q: np.ndarray, in_frac: int, out_frac: int) -> np.ndarray:
    """``approx.fixed`` for any input fraction: a negative one is first shifted to fraction 0 (exact)."""
    if in_frac < 0:
        return approx.fixed(np.asarray(q, dtype=np.int64) << -in_frac, 0, out_frac)
    return approx.fixed(q, in_frac, out_frac)
