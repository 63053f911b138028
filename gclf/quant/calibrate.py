"""Post-training calibration: observe every site's range on training speakers, choose Q formats, and
derive the integer weights of a float model under a spec."""
from __future__ import annotations

import math

import numpy as np
import torch

from gclf.model import GenderNet
from gclf.quant.fakequant import FakeQuantNet
from gclf.quant.layers import float_bias_tensors, layer_kind, weighted_layers
from gclf.quant.qformat import QFormat
from gclf.quant.spec import QuantConfig, WeightQ, act_format, bias_format_entry, config_dict, weight_format_entry

@torch.no_grad()
def observe_ranges(model: GenderNet, x: torch.Tensor, batch: int = 512) -> dict[str, float]:
    """Max |value| at every activation site of the float datapath."""
    obs = FakeQuantNet(model, None, "observe").eval()
    for i in range(0, len(x), batch):
        obs(x[i:i + batch])
    return obs.ranges


def acc_fracs(spec: dict, model: GenderNet) -> dict[str, np.ndarray]:
    """Fraction of each layer's accumulator (per output channel) = weight fraction + input fraction."""
    def wf(name):
        s = spec["weights"][name]
        return s["width"] - 1 - np.array(s["integer"])

    def af(site):
        return QFormat.from_dict(spec["acts"][site]).frac

    out = {"conv1": wf("conv1") + af("input"), "conv2": wf("conv2") + af("conv1")}
    ih, hh = wf("lstm.ih") + af("conv2"), wf("lstm.hh") + af("hidden")
    out["lstm.ih"], out["lstm.hh"] = ih, hh
    out["lstm"] = np.maximum(ih, hh)                 # both products are aligned to the finer one
    prev = "hidden"
    for name in model.fc_names:
        out[name] = wf(name) + af(prev)
        prev = name
    return out


def make_spec(model: GenderNet, ranges: dict[str, float] | None, cfg: QuantConfig) -> dict:
    """The full spec of a fixed-point model: config, activation formats, weight and bias formats."""
    spec = {**config_dict(cfg), "act_bits": cfg.a_bits, "bias_bits": cfg.b_bits, "acts": {}, "weights": {},
            "biases": {}, "sigmoid": model.lstm.sigmoid_name, "tanh": model.lstm.tanh_name}
    for name, mod in weighted_layers(model):
        per_ch = cfg.per_channel and layer_kind(mod) != "circulant"
        spec["weights"][name] = weight_format_entry(mod.weight, cfg.bits, cfg.rounding, per_ch)
    if not cfg.weights_only:
        for site, r in ranges.items():
            spec["acts"][site] = act_format(r, cfg.a_bits, cfg.rounding).to_dict()
    fracs = acc_fracs(spec, model) if not cfg.weights_only else {}
    for name, b in float_biases(model).items():
        spec["biases"][name] = bias_format_entry(b, cfg.b_bits, fracs.get(name, np.array(60)), cfg.rounding)
    spec["acc_bits"] = accumulator_bits(model, spec) if not cfg.weights_only else None
    return spec


def float_biases(model: GenderNet) -> dict[str, np.ndarray]:
    """Biases by owner; the LSTM's b_ih + b_hh are folded into one."""
    return {k: v.detach().numpy() for k, v in float_bias_tensors(model).items()}



def integer_weights(model: GenderNet, spec: dict) -> tuple[dict[str, WeightQ], int]:
    """The stored integers of every weight and bias under ``spec`` (formats fixed by the spec)."""
    out, n_sat = {}, 0
    rnd = spec["rounding"]
    for name, mod in weighted_layers(model):
        e = spec["weights"][name]
        out[name + ".weight"], n = _quant_rows(mod.weight.detach().double().numpy(), e, rnd, layer_kind(mod))
        n_sat += n
    for name, b in float_biases(model).items():
        out[name + ".bias"], n = _quant_rows(b, spec["biases"][name], rnd, "bias")
        n_sat += n
    return out, n_sat


def _quant_rows(w: np.ndarray, entry: dict, rounding: str, kind: str) -> tuple[WeightQ, int]:
    from gclf.quant.primitives import quantize_fixed

    integers = np.array(entry["integer"])
    width = entry["width"]
    rows = w.reshape(len(integers), -1) if len(integers) > 1 else w.reshape(1, -1)
    qs, n_sat = [], 0
    for r, integer in zip(rows, integers):
        q, n = quantize_fixed(r, QFormat(width, int(integer), True, rounding))
        qs.append(q)
        n_sat += n
    return WeightQ(np.concatenate(qs).reshape(w.shape).astype(np.int64), width, integers, kind), n_sat


def accumulator_bits(model: GenderNet, spec: dict) -> int:
    """Smallest signed accumulator width that cannot overflow, from the worst case of every sum:
    fan-in x max |weight| x max |input| (each shifted left by its alignment), plus the aligned bias."""
    wb, ab = spec["bits"], spec["act_bits"]
    fr = acc_fracs(spec, model)
    prod = 2.0 ** (wb - 1) * 2.0 ** (ab - 1)

    def fan_in(mod):
        return mod.weight[0].numel() if layer_kind(mod) == "conv" else mod.in_features

    def bias_max(owner):
        e = spec["biases"][owner]
        return float(np.max(2.0 ** (e["width"] - 1) * 2.0 ** (fr[owner] - (e["width"] - 1 - np.array(e["integer"])))))

    worst = 0.0
    for name, mod in weighted_layers(model):
        if not name.startswith("lstm."):
            worst = max(worst, fan_in(mod) * prod + bias_max(name))
    lstm = model.lstm
    ih = fan_in(lstm.ih) * prod * float(np.max(2.0 ** (fr["lstm"] - fr["lstm.ih"])))
    hh = fan_in(lstm.hh) * prod * float(np.max(2.0 ** (fr["lstm"] - fr["lstm.hh"])))
    worst = max(worst, ih + hh + bias_max("lstm"))
    return int(math.ceil(math.log2(worst + 1))) + 1
