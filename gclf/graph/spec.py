"""What a fixed-point model is: the quantize config, and the Q format of every tensor, keyed by op.

Datapath (integer reference, fake-quant, ONNX QDQ and the generated C all follow it; ``>>`` is round_shift
with the spec's rounding, every requantization saturates and counts):

    x      = sat(round(Norm(x) * 2^f_norm))                          the input format (op ``norm``)
    Conv1d / Linear:  y = sat(relu(W x + (B << .)) >> (fW + fx - fy))  accumulator at fW + fx, bias aligned
    MaxPool, Flatten: integers pass through in their format
    LSTM, per step:   gates = sat((Wih x_t << a) + (Whh h << b) + B >> s)   one format for i, f, g, o
                      sig = sigmoid_fixed(gates) (UQ1.n)   tg = tanh_fixed(g) (Q1.n)
                      c = sat(f*c + i*tg >> s)      h = sat(o * tanh_fixed(c) >> s)
    logits in the last op's format; probabilities = softmax of the dequantized logits (host)

An :class:`OpSpec` holds an op's activation formats (``"out"``; an LSTM has ``"gates"``, ``"cell"`` and
``"hidden"``), its weight formats (``"weight"``; an LSTM ``"ih"`` and ``"hh"``) and its bias format (the
LSTM's two biases folded into one). Accumulators are int64 in the reference; ``acc_bits`` is the width a
worst-case bound proves sufficient, so an accumulator can never overflow and needs no saturation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gclf.quant.formats import TensorFormat
from gclf.quant.qformat import QFormat

ROUNDINGS = ("half_up", "half_away", "half_even", "floor")


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
class OpSpec:
    acts: dict[str, QFormat] = field(default_factory=dict)
    weights: dict[str, TensorFormat] = field(default_factory=dict)
    bias: TensorFormat | None = None


@dataclass
class QuantSpec:
    """The formats of a fixed-point model: ``ops[name]`` for every op that quantizes something."""

    config: QuantConfig
    ops: dict[str, OpSpec]
    sigmoid: str = "exact"          # the LSTM activations the integer tables are built from
    tanh: str = "exact"
    acc_bits: int | None = None     # proven worst-case accumulator width (None: weights only)

    @property
    def rounding(self) -> str:
        return self.config.rounding

    @property
    def act_bits(self) -> int:
        return self.config.a_bits

    @property
    def bias_bits(self) -> int:
        return self.config.b_bits

    @property
    def weights_only(self) -> bool:
        return self.config.weights_only

    def act(self, op: str, site: str = "out") -> QFormat:
        return self.ops[op].acts[site]

    def sites(self) -> dict[str, QFormat]:
        """Every activation format by site name (``conv1``, ``lstm.gates``, ...)."""
        return {site_name(op, s): f for op, o in self.ops.items() for s, f in o.acts.items()}


def site_name(op: str, site: str = "out") -> str:
    """The name of an activation site in overflow counts and calibration ranges."""
    return op if site == "out" else f"{op}.{site}"
