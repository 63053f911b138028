"""The float twin of a fixed-point model: the float network with every weight and bias rounded (and
saturated) to its format in the quantize spec, as the fake-quant model holds them, and float activations.

LRP needs a float network (the integer datapath has no gradients); this one multiplies by exactly the numbers
the integer datapath stores, so its maps explain the rounded model, not the weights before rounding. The
LSTM's two biases are folded into ``ih.bias`` (``hh.bias`` = 0), as the spec quantizes their float64 sum.
"""
from __future__ import annotations

import copy

import torch

from gclf.graph.ops import LSTM


def rounded_twin(model, spec):
    """A copy of GraphNet ``model`` with its weights and biases on the grid of ``spec`` (``model`` unchanged)."""
    from gclf.backends.fakequant import fq
    from gclf.backends.fixed import HANDLERS as FIXED

    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for op in twin.graph.weighted:
            ospec = spec.ops[op.name]
            for local, (path, mod) in FIXED[op].matrices(op, twin).items():
                f = ospec.weights[local]
                w = fq(mod.weight.detach().double(), f.frac, f.width, True, spec.rounding, None, path)
                mod.weight.copy_(w.to(mod.weight.dtype))
            f = ospec.bias
            b = fq(FIXED[op].float_bias(op, twin).detach(), f.frac, f.width, True, spec.rounding, None, op.name)
            mod = twin.module_of(op)
            if isinstance(op, LSTM):
                mod.ih.bias.copy_(b.to(mod.ih.bias.dtype))
                mod.hh.bias.zero_()
            else:
                mod.bias.copy_(b.to(mod.bias.dtype))
    return twin
