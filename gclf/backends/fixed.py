"""What each op kind means in fixed point, and the walkers that derive a spec and a datapath plan from it.

Every integer backend (fake-quant, the integer reference, ONNX QDQ, C) and the weight exporter read the same
three things from here:

- :func:`make_spec`: the :class:`~gclf.graph.spec.QuantSpec` of a float GraphNet (weight formats from the
  weights, activation formats from calibrated ranges, bias formats capped at the accumulator fraction) and
  the accumulator width a worst-case bound proves sufficient;
- :func:`plan`: per op, its input and output formats and accumulator fractions (every shift follows);
- :func:`integer_weights`: the stored integers of every weight and bias.

One handler per op kind (:data:`HANDLERS`) states the op's activation sites, its weight matrices, its float
bias, its accumulator fractions and its worst case. Pass-through ops (MaxPool, MaxPool2d, GlobalMaxPool,
Flatten, Image) keep their input's format. A convolution with batch norm still unfolded is refused: fold it
first (:func:`gclf.backends.bnfold.fold_batchnorm`, which :func:`gclf.steps.api.quantize` and the ONNX export
apply).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from gclf.errors import GclfError
from gclf.graph.ops import (LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Graph, Image, Linear, MaxPool, MaxPool2d,
                            Norm, Op)
from gclf.graph.registry import Registry
from gclf.graph.spec import OpSpec, QuantConfig, QuantSpec, site_name
from gclf.quant.formats import (TensorFormat, WeightQ, act_format, bias_format, quantize_tensor, sigmoid_format,
                                tanh_format, weight_format)
from gclf.quant.qformat import QFormat

HANDLERS = Registry("fixed-point spec")
NO_ACC_FRAC = 60        # bias fraction cap when there is no accumulator (weights-only specs)


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if type(module).__name__ == "BlockCirculantLinear":
        return "circulant"
    raise TypeError(f"unsupported layer {type(module).__name__}")


def expand(module: nn.Module, stored: torch.Tensor) -> torch.Tensor:
    """The matrix a layer multiplies by, from its stored weight: circulant vectors are materialised
    (the integer reference multiplies the materialised integer matrix directly; no FFT)."""
    if layer_kind(module) == "circulant":
        from gclf.circulant import circulant_to_dense

        return circulant_to_dense(stored, module.out_features, module.in_features)
    return stored


def fan_in(module: nn.Module) -> int:
    return module.weight[0].numel() if layer_kind(module) == "conv" else module.in_features


# ---- one handler per op kind ---------------------------------------------------------------------------
class _PassThrough:
    sites: tuple[str, ...] = ()
    out_site: str | None = None            # None: the output keeps the input's format

    @staticmethod
    def matrices(op: Op, net) -> dict[str, tuple[str, nn.Module]]:
        return {}

    @staticmethod
    def float_bias(op: Op, net) -> torch.Tensor | None:
        return None

    @staticmethod
    def acc(op: Op, ospec: OpSpec, in_frac: int) -> dict[str, np.ndarray]:
        return {}

    @staticmethod
    def worst(op, net, ospec, acc, prod) -> float:
        return 0.0


@HANDLERS.register(MaxPool, Flatten, Image, MaxPool2d, GlobalMaxPool)
class _Pass(_PassThrough):
    pass


@HANDLERS.register(Norm)
class _Norm(_PassThrough):
    sites = ("out",)
    out_site = "out"


@HANDLERS.register(Conv1d, Conv2d, Linear)
class _Affine(_PassThrough):
    """y = requant(relu?(W x + b)): one accumulator per output channel at weight fraction + input fraction."""

    sites = ("out",)
    out_site = "out"

    @staticmethod
    def matrices(op, net):
        if getattr(op, "bn", False):
            raise GclfError(f"{op.name} still has its batch norm: fold it into the convolution first "
                            "(gclf.backends.bnfold.fold_batchnorm; `gclf quantize` does)")
        return {"weight": (op.name, net.module_of(op))}

    @staticmethod
    def float_bias(op, net):
        return net.module_of(op).bias.double()

    @staticmethod
    def acc(op, ospec, in_frac):
        return {"acc": ospec.weights["weight"].frac + in_frac}

    @staticmethod
    def worst(op, net, ospec, acc, prod):
        return fan_in(net.module_of(op)) * prod + bias_max(ospec.bias, acc["acc"])


@HANDLERS.register(LSTM)
class _LSTM(_PassThrough):
    """Gates = requant((Wih x << a) + (Whh h << b) + B): the two products aligned to the finer fraction."""

    sites = ("gates", "cell", "hidden")
    out_site = "hidden"

    @staticmethod
    def matrices(op, net):
        cell = net.module_of(op)
        return {"ih": (f"{op.name}.ih", cell.ih), "hh": (f"{op.name}.hh", cell.hh)}

    @staticmethod
    def float_bias(op, net):
        """The LSTM's b_ih + b_hh folded *in float64*: the one definition shared by the integer weights and the
        fake-quant model (a float32 sum differs at 32-bit bias widths)."""
        cell = net.module_of(op)
        return cell.ih.bias.double() + cell.hh.bias.double()

    @staticmethod
    def acc(op, ospec, in_frac):
        ih = ospec.weights["ih"].frac + in_frac
        hh = ospec.weights["hh"].frac + ospec.acts["hidden"].frac
        return {"ih": ih, "hh": hh, "acc": np.maximum(ih, hh)}

    @staticmethod
    def worst(op, net, ospec, acc, prod):
        cell = net.module_of(op)
        ih = fan_in(cell.ih) * prod * float(np.max(2.0 ** (acc["acc"] - acc["ih"])))
        hh = fan_in(cell.hh) * prod * float(np.max(2.0 ** (acc["acc"] - acc["hh"])))
        return ih + hh + bias_max(ospec.bias, acc["acc"])


def bias_max(bias: TensorFormat, acc_frac: np.ndarray) -> float:
    """Largest |bias| in accumulator LSB."""
    return float(np.max(2.0 ** (bias.width - 1) * 2.0 ** (acc_frac - bias.frac)))


# ---- the walkers ---------------------------------------------------------------------------------------
def make_spec(net, ranges: dict[str, float] | None, cfg: QuantConfig) -> QuantSpec:
    """The full spec of a fixed-point model: activation formats from ``ranges`` (site -> max |value|; None for
    weights only), weight formats from the weights, bias formats capped at the accumulator fraction."""
    cells = net.lstm_cells()
    spec = QuantSpec(cfg, {}, cells[0].sigmoid_name if cells else "exact", cells[0].tanh_name if cells else "exact")
    in_frac = None
    for op in net.graph.ops:
        h = HANDLERS[op]
        o = OpSpec()
        for local, (_, mod) in h.matrices(op, net).items():
            per_ch = cfg.per_channel and layer_kind(mod) != "circulant"
            o.weights[local] = weight_format(mod.weight.detach().double().cpu().numpy(), cfg.bits, cfg.rounding, per_ch)
        if not cfg.weights_only:
            for site in h.sites:
                o.acts[site] = act_format(ranges[site_name(op.name, site)], cfg.a_bits, cfg.rounding)
        b = h.float_bias(op, net)
        if b is not None:
            max_frac = h.acc(op, o, in_frac)["acc"] if not cfg.weights_only else np.array(NO_ACC_FRAC)
            o.bias = bias_format(b.detach().numpy(), cfg.b_bits, max_frac, cfg.rounding)
        if o.acts or o.weights:
            spec.ops[op.name] = o
        if h.out_site and not cfg.weights_only:
            in_frac = o.acts[h.out_site].frac
    spec.acc_bits = accumulator_bits(net, spec) if not cfg.weights_only else None
    return spec


@dataclass
class OpPlan:
    """An op in the integer datapath: its input and output formats and its accumulator fractions."""

    op: Op
    in_fmt: QFormat
    out_fmt: QFormat
    acc: dict[str, np.ndarray]


def plan(graph: Graph, spec: QuantSpec) -> dict[str, OpPlan]:
    """Formats and accumulator fractions of every op, walking the graph from the input format."""
    out, fmt = {}, spec.act(graph.norm.name)
    for op in graph.ops:
        h = HANDLERS[op]
        o = spec.ops.get(op.name, OpSpec())
        acc = h.acc(op, o, fmt.frac)
        new = o.acts[h.out_site] if h.out_site else fmt
        out[op.name] = OpPlan(op, fmt, new, acc)
        fmt = new
    return out


def accumulator_bits(net, spec: QuantSpec) -> int:
    """Smallest signed accumulator width that cannot overflow, from the worst case of every sum:
    fan-in x max |weight| x max |input| (each shifted left by its alignment), plus the aligned bias."""
    prod = 2.0 ** (spec.config.bits - 1) * 2.0 ** (spec.act_bits - 1)
    worst = 0.0
    for p in plan(net.graph, spec).values():
        if p.op.name in spec.ops:
            worst = max(worst, HANDLERS[p.op].worst(p.op, net, spec.ops[p.op.name], p.acc, prod))
    return int(math.ceil(math.log2(worst + 1))) + 1


def integer_weights(net, spec: QuantSpec) -> tuple[dict[str, WeightQ], int]:
    """The stored integers of every weight (``<module>.weight``) and bias (``<op>.bias``) under ``spec``."""
    out, n_sat = {}, 0
    for op in net.graph.weighted:
        h, o = HANDLERS[op], spec.ops[op.name]
        for local, (path, mod) in h.matrices(op, net).items():
            w = mod.weight.detach().double().numpy()
            out[path + ".weight"], n = quantize_tensor(w, o.weights[local], spec.rounding, layer_kind(mod))
            n_sat += n
    for op in net.graph.weighted:
        b = HANDLERS[op].float_bias(op, net)
        out[op.name + ".bias"], n = quantize_tensor(b.detach().numpy(), spec.ops[op.name].bias, spec.rounding, "bias")
        n_sat += n
    return out, n_sat


def lstm_formats(spec: QuantSpec) -> tuple[QFormat, QFormat]:
    """Output formats of sigmoid (UQ1.n) and tanh (Q1.n) at the spec's activation width."""
    return sigmoid_format(spec.act_bits, spec.rounding), tanh_format(spec.act_bits, spec.rounding)


def weight_bytes_float(model: torch.nn.Module) -> int:
    """float32 bytes of all parameters (InputNorm buffers are front-end constants, not counted)."""
    return 4 * sum(p.numel() for p in model.parameters())
