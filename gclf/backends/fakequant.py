"""The fixed-point datapath in PyTorch float64 ("fake-quant"), bit-exact with the integer reference.

Every value is an integer times a power of two; float64 holds all products and sums of these models exactly
(magnitudes stay far below 2**53 units of the finest fraction), and requantization applies the same rounding
rule to the same exact numbers, so this module and :mod:`gclf.backends.intref` agree bit for bit. Gradients
pass straight through the rounding (STE), which makes it the quantization-aware training model.

Modes: ``observe`` runs in float and records the range at every site (calibration); ``weights`` quantizes
weights only; ``full`` quantizes weights, activations and the LSTM state. One handler per op kind.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gclf.backends.fixed import expand, lstm_formats
from gclf.backends.fixed import HANDLERS as FIXED
from gclf.backends.torch_float import activation
from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Image, Linear, MaxPool, MaxPool2d, Norm
from gclf.graph.registry import Registry
from gclf.graph.spec import QuantSpec, site_name
from gclf.quant.formats import activation_fixed
from gclf.quant.primitives import round_torch

HANDLERS = Registry("fake-quant")


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):  # value q, gradient of x
        return q

    @staticmethod
    def backward(ctx, g):
        return g, None


def fq(v: torch.Tensor, frac, width: int, signed: bool, rounding: str, counter: dict | None, site: str) -> torch.Tensor:
    """Quantize to ``width`` bits with fraction ``frac`` (int or per-row tensor), saturate, count, STE."""
    scale = torch.as_tensor(np.power(2.0, np.asarray(frac, dtype=np.float64)), dtype=torch.float64)
    if scale.ndim:
        scale = scale.reshape(-1, *([1] * (v.ndim - 1)))
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2 ** width - 1)
    with torch.no_grad():
        q = round_torch(v.double() * scale, rounding)
        if counter is not None:
            counter[site] = counter.get(site, 0) + int(((q < lo) | (q > hi)).sum())
        q = q.clamp(lo, hi) / scale
    return _STE.apply(v, q.to(v.dtype))


class FakeQuantNet(nn.Module):
    """Runs a GraphNet's float parameters through the fixed-point datapath of a quantize spec."""

    def __init__(self, model, spec: QuantSpec | None, mode: str = "full"):
        super().__init__()
        assert mode in ("observe", "weights", "full")
        self.model, self.spec, self.mode = model, spec, mode
        self.graph = model.graph
        self.ranges: dict[str, float] = {}
        self.overflows: dict[str, int] = {}

    # ---- helpers used by the handlers ----------------------------------------------------------------
    def act(self, v: torch.Tensor, op: str, site: str = "out") -> torch.Tensor:
        name = site_name(op, site)
        if self.mode == "observe":
            self.ranges[name] = max(self.ranges.get(name, 0.0), float(v.detach().abs().max()))
            return v
        if self.mode == "weights":
            return v
        f = self.spec.act(op, site)
        return fq(v, f.frac, f.width, f.signed, f.rounding, self.overflows, name)

    def weight(self, op, local: str = "weight") -> torch.Tensor:
        """The matrix to multiply by, with weights quantized per the spec (float in observe mode)."""
        path, module = FIXED[op].matrices(op, self.model)[local]
        w = module.weight.double()
        if self.mode != "observe":
            f = self.spec.ops[op.name].weights[local]
            w = fq(w, f.frac, f.width, True, self.spec.rounding, self.overflows, path + ".weight")
        return expand(module, w)

    def bias(self, op) -> torch.Tensor:
        b = FIXED[op].float_bias(op, self.model)
        if self.mode == "observe":
            return b
        f = self.spec.ops[op.name].bias
        return fq(b, f.frac, f.width, True, self.spec.rounding, self.overflows, op.name + ".bias")

    def lstm_fn(self, v: torch.Tensor, op, in_site: str, func: str) -> torch.Tensor:
        """sigmoid/tanh of the LSTM's scheme: float, or (full mode) the exact integer table with STE."""
        cell = self.model.module_of(op)
        name = cell.sigmoid_name if func == "sigmoid" else cell.tanh_name
        y = activation(name, func)(v)
        if self.mode != "full":
            return y
        from gclf.approx import get_approx

        fin = self.spec.act(op.name, in_site).frac
        fout = lstm_formats(self.spec)[0 if func == "sigmoid" else 1].frac
        qin = torch.round(v.detach() * 2.0 ** fin).to(torch.int64).numpy()  # v is on the grid: exact
        qout = activation_fixed(get_approx(name, func), qin, fin, fout)
        return _STE.apply(y, torch.from_numpy(np.asarray(qout, dtype=np.float64) * 2.0 ** -fout).to(y.dtype))

    # ---- datapath --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        for op in self.graph.ops:
            x = HANDLERS[op](self, op, x)
        return x


@HANDLERS.register(Norm)
def _norm(fq_net: FakeQuantNet, op, x):
    m = fq_net.model
    if m.int_input_frac is None or fq_net.mode in ("observe", "weights"):
        return fq_net.act(m.module_of(op)(x), op.name)
    from gclf.frontend.norm import int_norm, ints_of_frames, model_norm_params

    f = fq_net.spec.act(op.name)          # an int_mfcc model: the integer Norm, exactly (it has no parameters)
    y, counts = int_norm(ints_of_frames(x.detach().cpu().numpy(), m.int_input_frac), model_norm_params(m, f))
    name = site_name(op.name, "out")
    fq_net.overflows[name] = fq_net.overflows.get(name, 0) + sum(counts.values())
    return torch.from_numpy(y.astype(np.float64) * 2.0 ** -f.frac).to(x.dtype)


@HANDLERS.register(Conv1d)
def _conv(n: FakeQuantNet, op: Conv1d, x):
    y = F.conv1d(x, n.weight(op), stride=op.stride) + n.bias(op)[:, None]
    return n.act(F.relu(y) if op.relu else y, op.name)


@HANDLERS.register(Conv2d)
def _conv2d(n: FakeQuantNet, op: Conv2d, x):
    y = F.conv2d(x, n.weight(op), stride=op.stride) + n.bias(op)[:, None, None]
    return n.act(F.relu(y) if op.relu else y, op.name)


@HANDLERS.register(MaxPool)
def _pool(n, op: MaxPool, x):
    return F.max_pool1d(x, op.kernel, op.step)


@HANDLERS.register(Image, MaxPool2d, GlobalMaxPool)
def _move(n, op, x):                                  # data movement and max: the float handler's, exact
    from gclf.backends.torch_float import HANDLERS as FLOAT

    return FLOAT[op].forward(op, None, x, False)


@HANDLERS.register(Flatten)
def _flatten(n, op, x):
    return x.transpose(1, 2).flatten(1)


@HANDLERS.register(Linear)
def _linear(n: FakeQuantNet, op: Linear, x):
    y = x @ n.weight(op).T + n.bias(op)
    return n.act(F.relu(y) if op.relu else y, op.name)


@HANDLERS.register(LSTM)
def _lstm(n: FakeQuantNet, op: LSTM, x):                     # (B, C, T) -> (B, H, T)
    wi, wh, bias = n.weight(op, "ih"), n.weight(op, "hh"), n.bias(op)   # the two biases, folded
    x = x.transpose(1, 2)
    bsz, steps, _ = x.shape
    h = x.new_zeros(bsz, op.hidden)
    c = x.new_zeros(bsz, op.hidden)
    outs = []
    for t in range(steps):
        g = n.act(x[:, t] @ wi.T + h @ wh.T + bias, op.name, "gates")
        i, f, gg, o = g.chunk(4, dim=1)
        sig = lambda v: n.lstm_fn(v, op, "gates", "sigmoid")       # noqa: E731
        c = n.act(sig(f) * c + sig(i) * n.lstm_fn(gg, op, "gates", "tanh"), op.name, "cell")
        h = n.act(sig(o) * n.lstm_fn(c, op, "cell", "tanh"), op.name, "hidden")
        outs.append(h)
    return torch.stack(outs, dim=2)
