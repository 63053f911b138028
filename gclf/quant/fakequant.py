"""The fixed-point datapath in PyTorch float64 ("fake-quant"), bit-exact with the integer reference.

Every value is an integer times a power of two; float64 holds all products and sums of this model exactly
(magnitudes stay far below 2**53 units of the finest fraction), and requantization applies the same
rounding rule to the same exact numbers, so this module and :mod:`gclf.quant.intref` agree bit for bit.
Gradients pass straight through the rounding (STE), which makes it the quantization-aware training model.

Modes: ``observe`` runs in float and records the range at every site (calibration); ``weights`` quantizes
weights only; ``full`` quantizes weights, activations and the LSTM state.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gclf.model import GenderNet
from gclf.quant.layers import expand, float_bias_tensors
from gclf.quant.primitives import round_torch
from gclf.quant.qformat import QFormat
from gclf.quant.spec import activation_fixed, sigmoid_format, tanh_format


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
    """Runs a GenderNet's float parameters through the fixed-point datapath of a quantize spec."""

    def __init__(self, model: GenderNet, spec: dict | None, mode: str = "full"):
        super().__init__()
        assert mode in ("observe", "weights", "full")
        self.model, self.spec, self.mode = model, spec, mode
        self.ranges: dict[str, float] = {}
        self.overflows: dict[str, int] = {}
        lstm = model.lstm
        self.sigmoid_name, self.tanh_name = lstm.sigmoid_name, lstm.tanh_name

    # ---- helpers -------------------------------------------------------------------------
    def _act(self, v: torch.Tensor, site: str) -> torch.Tensor:
        if self.mode == "observe":
            self.ranges[site] = max(self.ranges.get(site, 0.0), float(v.detach().abs().max()))
            return v
        if self.mode == "weights":
            return v
        f = QFormat.from_dict(self.spec["acts"][site])
        return fq(v, f.frac, f.width, f.signed, f.rounding, self.overflows, site)

    def _weight(self, name: str, module: nn.Module) -> torch.Tensor:
        """The matrix to multiply by, with weights quantized per the spec (float in observe mode)."""
        w = module.weight.double()
        if self.mode != "observe":
            s = self.spec["weights"][name]
            w = fq(w, s["width"] - 1 - np.array(s["integer"]), s["width"], True, self.spec["rounding"],
                   self.overflows, name + ".weight")
        return expand(module, w)

    def _bias(self, name: str) -> torch.Tensor:
        b = float_bias_tensors(self.model)[name]
        if self.mode == "observe":
            return b
        s = self.spec["biases"][name]
        return fq(b, s["width"] - 1 - np.array(s["integer"]), s["width"], True, self.spec["rounding"],
                  self.overflows, name + ".bias")

    def frac(self, site: str) -> int:
        return QFormat.from_dict(self.spec["acts"][site]).frac

    def wfrac(self, name: str) -> np.ndarray:
        s = self.spec["weights"][name]
        return s["width"] - 1 - np.array(s["integer"])

    # ---- datapath --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = self._act(m.norm(x.double()), "input")                       # (B, 40, T)
        for name in ("conv1", "conv2"):
            w = self._weight(name, getattr(m, name))
            x = self._act(F.relu(F.conv1d(x, w) + self._bias(name)[:, None]), name)
        x = m.pool(x)                                                    # (B, 8, 5)
        h_all = self._lstm(x.transpose(1, 2))                            # (B, 5, 16)
        x = h_all.flatten(1)
        for i, name in enumerate(m.fc_names):
            w = self._weight(name, getattr(m, name))
            x = x @ w.T + self._bias(name)
            x = self._act(F.relu(x) if i < len(m.fc_names) - 1 else x, name)
        return x

    def _sig(self, v: torch.Tensor, in_site: str) -> torch.Tensor:
        return self._fn(v, in_site, "sigmoid", self.sigmoid_name)

    def _tanh(self, v: torch.Tensor, in_site: str) -> torch.Tensor:
        return self._fn(v, in_site, "tanh", self.tanh_name)

    def _fn(self, v: torch.Tensor, in_site: str, func: str, name: str) -> torch.Tensor:
        from gclf.model import _activation

        y = _activation(name, func)(v)
        if self.mode != "full":
            return y
        from gclf.approx.schemes import get_approx

        fin = self.frac(in_site)
        out = sigmoid_format if func == "sigmoid" else tanh_format
        fout = out(self.spec["act_bits"], self.spec["rounding"]).frac
        qin = torch.round(v.detach() * 2.0 ** fin).to(torch.int64).numpy()  # v is on the grid: exact
        qout = activation_fixed(get_approx(name, func), qin, fin, fout)
        return _STE.apply(y, torch.from_numpy(np.asarray(qout, dtype=np.float64) * 2.0 ** -fout).to(y.dtype))

    def _lstm(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        wi = self._weight("lstm.ih", m.lstm.ih)
        wh = self._weight("lstm.hh", m.lstm.hh)
        bias = self._bias("lstm")                                     # the two biases, folded
        bsz, steps, _ = x.shape
        hid = m.lstm.hidden
        h = x.new_zeros(bsz, hid)
        c = x.new_zeros(bsz, hid)
        outs = []
        for t in range(steps):
            g = self._act(x[:, t] @ wi.T + h @ wh.T + bias, "gates")
            i, f, gg, o = g.chunk(4, dim=1)
            c = self._act(self._sig(f, "gates") * c + self._sig(i, "gates") * self._tanh(gg, "gates"), "cell")
            h = self._act(self._sig(o, "gates") * self._tanh(c, "cell"), "hidden")
            outs.append(h)
        return torch.stack(outs, dim=1)
