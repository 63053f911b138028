"""Batch norm folded into the convolution before it: the one definition, applied before quantization and
before every export.

A convolution op with ``bn=True`` trains as conv (no bias) -> BatchNorm -> ReLU. At inference BatchNorm is an
affine map per output channel, with running mean m, running variance v, scale gamma, shift beta and eps:

    BN(z) = gamma * (z - m) / sqrt(v + eps) + beta = s * z + (beta - s * m),    s = gamma / sqrt(v + eps)

so conv then BN is one convolution with weight ``W' = s * W`` (s per output channel) and bias
``b' = beta + s * (b - m)`` (b = 0 when the convolution has none). Computed in float64, stored in the
parameter dtype. Folded and unfolded float models (eval mode) agree to float rounding: in float64 to 1e-9 of
the logits, in float32 to 1e-4 (tests/test_cnn.py states and checks both bounds).

Every backend other than the float PyTorch one (fixed-point spec, fake-quant, integer reference, ONNX, C,
weight export) reads the folded graph: :func:`gclf.backends.fixed` refuses a convolution that still has
``bn``.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn as nn

from gclf.graph.ops import Graph


def fold_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None,
                 bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') in float64 of a convolution (weight, bias or None) followed by batch norm ``bn`` (eval mode)."""
    s = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    w = weight.detach().double() * s.reshape(-1, *([1] * (weight.ndim - 1)))
    b0 = bias.detach().double() if bias is not None else torch.zeros_like(s)
    return w, bn.bias.detach().double() + s * (b0 - bn.running_mean.detach().double())


def folded_graph(graph: Graph) -> Graph:
    """The graph with ``bn=False`` on every convolution (what the folded model runs)."""
    return replace(graph, ops=tuple(replace(op, bn=False) if getattr(op, "bn", False) else op for op in graph.ops))


def has_batchnorm(graph: Graph) -> bool:
    return any(getattr(op, "bn", False) for op in graph.ops)


@torch.no_grad()
def fold_batchnorm(model):
    """A copy of GraphNet ``model`` with every batch norm folded into its convolution (a plain nn.Conv1d/2d
    named after the op, the op with ``bn=False``); ``model`` itself when it has no batch norm."""
    from gclf.backends.torch_float import conv_module

    if not has_batchnorm(model.graph):
        return model
    new = copy.deepcopy(model)
    for op in model.graph.ops:
        if not getattr(op, "bn", False):
            continue
        mod = model.module_of(op)
        w, b = fold_conv_bn(mod.conv.weight, mod.conv.bias, mod.bn)
        plain = conv_module(replace(op, bn=False)).to(mod.conv.weight.dtype)
        plain.weight.copy_(w.to(plain.weight.dtype))
        plain.bias.copy_(b.to(plain.bias.dtype))
        setattr(new, op.name, plain)
    new.graph = folded_graph(model.graph)
    return new.train(model.training)
