"""The integer-only reference: what the hardware computes, in numpy int64.

Integer products, wide accumulators, explicit shifts with the spec's rounding, saturation that is
counted (never wraps). Circulant layers multiply their materialised integer matrix directly. The only
float work is outside the datapath: the front-end (InputNorm, then quantization of the input) and the
softmax over the dequantized logits. This is the definition; the fake-quant model must agree with it.
"""
from __future__ import annotations

import numpy as np
import torch

from gclf.model import GenderNet
from gclf.quant.calibrate import acc_fracs, integer_weights
from gclf.quant.layers import layer_kind, weighted_layers
from gclf.quant.primitives import quantize_fixed, requantize
from gclf.quant.qformat import QFormat
from gclf.quant.spec import activation_fixed, sigmoid_format, tanh_format


def frontend(model: GenderNet, x: torch.Tensor) -> np.ndarray:
    """InputNorm in float64: the one float step before the integer datapath (shared with fake-quant)."""
    with torch.no_grad():
        return model.norm(x.double()).numpy()


class IntegerReference:
    """Integer inference of a GenderNet under a quantize spec."""

    def __init__(self, model: GenderNet, spec: dict):
        if spec.get("weights_only"):
            raise ValueError("a weights-only spec has float activations: there is no integer reference")
        from gclf.approx.schemes import get_approx

        self.model, self.spec = model, spec
        self.fmt = {k: QFormat.from_dict(v) for k, v in spec["acts"].items()}
        self.q, self.weight_saturations = integer_weights(model, spec)
        self.acc = acc_fracs(spec, model)
        self.mats = {}
        for name, mod in weighted_layers(model):
            w = self.q[name + ".weight"].ints
            if layer_kind(mod) == "circulant":
                from gclf.circulant.layer import circulant_to_dense

                w = circulant_to_dense(torch.from_numpy(w), mod.out_features, mod.in_features).numpy()
            self.mats[name] = w
        self.sig = get_approx(spec["sigmoid"], "sigmoid")
        self.tanh = get_approx(spec["tanh"], "tanh")
        self.fsig = sigmoid_format(spec["act_bits"], spec["rounding"])
        self.ftanh = tanh_format(spec["act_bits"], spec["rounding"])
        self.rounding = spec["rounding"]
        self.overflows: dict[str, int] = {}

    # ---- primitives ---------------------------------------------------------------------
    def _requant(self, acc: np.ndarray, frac, site: str) -> np.ndarray:
        q, n = requantize(acc, frac, self.fmt[site])
        self.overflows[site] = self.overflows.get(site, 0) + int(n)
        return q

    def _bias(self, owner: str, acc_frac) -> np.ndarray:
        """The bias shifted left into the accumulator's fraction (exact: its fraction is never finer)."""
        b = self.q[owner + ".bias"]
        return b.ints << (np.asarray(acc_frac) - b.frac).astype(np.int64)

    def quantize_input(self, x: torch.Tensor) -> np.ndarray:
        q, n = quantize_fixed(frontend(self.model, x), self.fmt["input"])
        self.overflows["input"] = self.overflows.get("input", 0) + int(n)
        return q

    # ---- layers -------------------------------------------------------------------------
    def _conv(self, x: np.ndarray, name: str) -> np.ndarray:
        w = self.mats[name]                                          # (O, C, K)
        win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2], axis=2)  # (B, C, T', K)
        acc = np.einsum("bctk,ock->bot", win, w, optimize=True)
        acc = acc + self._bias(name, self.acc[name])[None, :, None]
        frac = np.asarray(self.acc[name]).reshape(1, -1, 1) if np.ndim(self.acc[name]) else self.acc[name]
        return self._requant(np.maximum(acc, 0), frac, name)

    def _fc(self, x: np.ndarray, name: str, relu: bool) -> np.ndarray:
        acc = x @ self.mats[name].T + self._bias(name, self.acc[name])
        return self._requant(np.maximum(acc, 0) if relu else acc, self.acc[name], name)

    def _lstm(self, x: np.ndarray) -> np.ndarray:                   # (B, S, 8) -> (B, S, H)
        H = self.model.lstm.hidden
        common = self.acc["lstm"]
        si = (common - self.acc["lstm.ih"]).astype(np.int64)
        sh = (common - self.acc["lstm.hh"]).astype(np.int64)
        bias = self._bias("lstm", common)
        fg, fc = self.fmt["gates"].frac, self.fmt["cell"].frac
        fs, ft = self.fsig.frac, self.ftanh.frac
        h = np.zeros((x.shape[0], H), dtype=np.int64)
        c = np.zeros_like(h)
        outs = []
        for t in range(x.shape[1]):
            acc = ((x[:, t] @ self.mats["lstm.ih"].T) << si) + ((h @ self.mats["lstm.hh"].T) << sh) + bias
            g = self._requant(acc, common, "gates")
            i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
            sf, si_, so = (activation_fixed(self.sig, v, fg, fs) for v in (f, i, o))
            tg = activation_fixed(self.tanh, gg, fg, ft)
            a, b = fs + fc, fs + ft                                  # fractions of f*c and i*tanh(g)
            m = max(a, b)
            c = self._requant(((sf * c) << (m - a)) + ((si_ * tg) << (m - b)), m, "cell")
            h = self._requant(so * activation_fixed(self.tanh, c, fc, ft), fs + ft, "hidden")
            outs.append(h)
        return np.stack(outs, axis=1)

    def run_int(self, xq: np.ndarray) -> np.ndarray:
        """Quantized input (N, 40, T) int64 -> logits (N, 2) int64 in the last layer's format."""
        x = self._conv(xq, "conv1")
        x = self._conv(x, "conv2")
        p = self.model.cfg.pool
        steps = x.shape[2] // p
        x = x[:, :, :steps * p].reshape(x.shape[0], x.shape[1], steps, p).max(axis=3)  # MaxPool1d
        x = self._lstm(x.transpose(0, 2, 1)).reshape(x.shape[0], -1)
        names = self.model.fc_names
        for k, name in enumerate(names):
            x = self._fc(x, name, relu=k < len(names) - 1)
        return x

    def logits(self, x: torch.Tensor) -> np.ndarray:
        """Dequantized logits (float64) of raw MFCC windows."""
        q = self.run_int(self.quantize_input(x))
        return q * 2.0 ** -self.fmt[self.model.fc_names[-1]].frac

    def prob_fn(self, batch: int = 2048):
        def fn(x: torch.Tensor) -> np.ndarray:
            out = []
            for i in range(0, len(x), batch):
                z = self.logits(x[i:i + batch])
                z = z - z.max(axis=1, keepdims=True)
                e = np.exp(z)
                out.append(e[:, 1] / e.sum(axis=1))
            return np.concatenate(out)
        return fn
