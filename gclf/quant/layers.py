"""Uniform access to the weight-bearing layers of a GenderNet, whatever the chain did to them."""
from __future__ import annotations

import torch
import torch.nn as nn

from gclf.model import GenderNet


def linear_names(model: GenderNet) -> list[str]:
    return ["lstm.ih", "lstm.hh", *model.fc_names]


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv1d):
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
        from gclf.circulant.layer import circulant_to_dense

        return circulant_to_dense(stored, module.out_features, module.in_features)
    return stored


def weighted_layers(model: GenderNet) -> list[tuple[str, nn.Module]]:
    """(name, module) in datapath order: conv1, conv2, lstm.ih, lstm.hh, fc1..fcN."""
    return [("conv1", model.conv1), ("conv2", model.conv2)] + [(n, model.get_submodule(n)) for n in linear_names(model)]


def float_bias_tensors(model: GenderNet) -> dict[str, torch.Tensor]:
    """The biases as float64 tensors (differentiable); the LSTM's two are folded *in float64*, the one
    definition shared by the integer weights and the fake-quant model (a float32 sum differs at 32-bit
    bias widths)."""
    b = {"conv1": model.conv1.bias.double(), "conv2": model.conv2.bias.double(),
         "lstm": model.lstm.ih.bias.double() + model.lstm.hh.bias.double()}
    b.update({n: getattr(model, n).bias.double() for n in model.fc_names})
    return b
