"""The float PyTorch backend: a :class:`GraphNet` built from a graph, one handler per op kind.

A handler makes the op's module (None for ops without parameters or buffers) and runs it. Modules are
registered under the op's name, so parameters are ``conv1.weight``, ``lstm.ih.weight``, ``fc1.bias``, ...,
created in graph order (the same random initialisation for the same seed), and a later step may replace a
module in place (block-circulant compression swaps an ``nn.Linear`` for a ``BlockCirculantLinear``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Graph, Image, Linear, MaxPool, MaxPool2d, Norm
from gclf.graph.registry import Registry

HANDLERS = Registry("PyTorch float")


class InputNorm(nn.Module):
    """(x - window mean) * scale - offset, per channel; statistics set from training data."""

    def __init__(self, n: int, cmn: bool = True):
        super().__init__()
        self.cmn = cmn
        self.register_buffer("offset", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        if self.cmn:
            x = x - x.mean(dim=-1, keepdim=True)
        return (x - self.offset[:, None]) * self.scale[:, None]


def activation(name: str, func: str):
    """The float function of sigmoid/tanh scheme ``name`` ("exact" or a gclf.approx scheme)."""
    if name == "exact":
        return torch.sigmoid if func == "sigmoid" else torch.tanh
    from gclf.approx import get_approx

    return get_approx(name, func).float


class LSTMCell(nn.Module):
    """Single-layer batch-first LSTM with gates (i, f, g, o) as in nn.LSTM, and swappable sigmoid/tanh.

    ``ih`` (in -> 4H) and ``hh`` (H -> 4H) are separate Linear maps so they can be compressed or quantized
    independently; :meth:`load_torch_lstm` copies an ``nn.LSTM``'s weights in unchanged.
    """

    def __init__(self, input_size: int, hidden: int, sigmoid: str = "exact", tanh: str = "exact"):
        super().__init__()
        self.hidden = hidden
        self.ih = nn.Linear(input_size, 4 * hidden)
        self.hh = nn.Linear(hidden, 4 * hidden)
        self.set_activations(sigmoid, tanh)

    def set_activations(self, sigmoid: str, tanh: str) -> None:
        self.sigmoid_name, self.tanh_name = sigmoid, tanh
        self._sigmoid, self._tanh = activation(sigmoid, "sigmoid"), activation(tanh, "tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, in) -> (B, S, H)
        b, s, _ = x.shape
        h = x.new_zeros(b, self.hidden)
        c = x.new_zeros(b, self.hidden)
        xi = self.ih(x)  # (B, S, 4H)
        outs = []
        for t in range(s):
            g = xi[:, t] + self.hh(h)
            i, f, gg, o = g.chunk(4, dim=1)
            c = self._sigmoid(f) * c + self._sigmoid(i) * self._tanh(gg)
            h = self._sigmoid(o) * self._tanh(c)
            outs.append(h)
        return torch.stack(outs, dim=1)

    @torch.no_grad()
    def load_torch_lstm(self, lstm: nn.LSTM) -> None:
        self.ih.weight.copy_(lstm.weight_ih_l0)
        self.ih.bias.copy_(lstm.bias_ih_l0)
        self.hh.weight.copy_(lstm.weight_hh_l0)
        self.hh.bias.copy_(lstm.bias_hh_l0)


class _NoModule:
    """A handler of an op without parameters: it builds no module."""

    @staticmethod
    def build(op):
        return None


@HANDLERS.register(Norm)
class _Norm:
    @staticmethod
    def build(op: Norm):
        return InputNorm(op.channels, op.cmn)

    @staticmethod
    def forward(op, mod, x, training):
        return mod(x)


class ConvBN(nn.Module):
    """A convolution (no bias: the batch norm's shift replaces it) followed by batch norm, as trained; its
    parameters are ``<op>.conv.weight`` and ``<op>.bn.*``. :func:`gclf.backends.bnfold.fold_batchnorm` turns
    it into one plain convolution for every other backend."""

    def __init__(self, conv: nn.Module, bn: nn.Module):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def conv_module(op: Conv1d | Conv2d) -> nn.Module:
    """The module of a convolution op: nn.Conv1d/2d, or a :class:`ConvBN` when the op has batch norm."""
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if isinstance(op, Conv2d) else (nn.Conv1d, nn.BatchNorm1d)
    if op.bn:
        return ConvBN(conv(op.in_channels, op.out_channels, op.kernel, stride=op.stride, bias=False),
                      norm(op.out_channels))
    return conv(op.in_channels, op.out_channels, op.kernel, stride=op.stride)


@HANDLERS.register(Conv1d, Conv2d)
class _Conv:
    @staticmethod
    def build(op):
        return conv_module(op)

    @staticmethod
    def forward(op, mod, x, training):
        y = mod(x)
        return F.relu(y) if op.relu else y


@HANDLERS.register(Image)
class _Image(_NoModule):
    @staticmethod
    def forward(op, mod, x, training):                  # (B, C, T) -> (B, 1, T, C)
        return x.transpose(1, 2).unsqueeze(1)


@HANDLERS.register(MaxPool2d)
class _Pool2d(_NoModule):
    @staticmethod
    def forward(op: MaxPool2d, mod, x, training):
        return F.max_pool2d(x, op.kernel, op.step)


@HANDLERS.register(GlobalMaxPool)
class _GlobalPool(_NoModule):
    @staticmethod
    def forward(op, mod, x, training):                  # (B, C, ...) -> (B, C)
        return x.flatten(2).amax(dim=2)


@HANDLERS.register(MaxPool)
class _Pool(_NoModule):
    @staticmethod
    def forward(op: MaxPool, mod, x, training):
        return F.max_pool1d(x, op.kernel, op.step)


@HANDLERS.register(LSTM)
class _LSTM:
    @staticmethod
    def build(op: LSTM):
        return LSTMCell(op.input_size, op.hidden)

    @staticmethod
    def forward(op, mod, x, training):                  # (B, C, T) -> (B, H, T)
        return mod(x.transpose(1, 2)).transpose(1, 2)


@HANDLERS.register(Flatten)
class _Flatten(_NoModule):
    @staticmethod
    def forward(op, mod, x, training):                  # (B, C, T) -> (B, T*C), time-major
        return x.transpose(1, 2).flatten(1)


@HANDLERS.register(Linear)
class _Linear:
    @staticmethod
    def build(op: Linear):
        return nn.Linear(op.in_features, op.out_features)

    @staticmethod
    def forward(op: Linear, mod, x, training):
        y = mod(F.dropout(x, op.dropout, training))
        return F.relu(y) if op.relu else y


class GraphNet(nn.Module):
    """The float network of a graph: modules named after the ops, run in graph order."""

    def __init__(self, graph: Graph):
        super().__init__()
        self.graph = graph
        self.int_input_frac: int | None = None   # set for int_mfcc models: the input is integer Q(frac) and
        for op in graph.ops:                      # the integer paths normalise it in integers (frontend/norm.py)
            mod = HANDLERS[op].build(op)
            if mod is not None:
                self.add_module(op.name, mod)
        self._lengths: dict[int, bool] = {graph.input_shape[1]: True}

    def module_of(self, op) -> nn.Module | None:
        return getattr(self, op.name, None)

    def input_norm(self) -> InputNorm:
        """The module of the graph's Norm op (the host front-end)."""
        return self.module_of(self.graph.norm)

    def check_length(self, length: int) -> None:
        if length not in self._lengths:
            self._lengths[length] = self.graph.accepts(length)
        if not self._lengths[length]:
            raise ValueError(f"a window of {length} steps does not fit the {self.graph.arch} graph "
                             f"(built for {self.graph.input_shape[1]})")

    def forward(self, x: torch.Tensor, upto: str | None = None) -> torch.Tensor:
        """Logits (B, classes) of windows (B, C, T); ``upto``: stop after that op and return its output."""
        self.check_length(x.shape[-1])
        for op in self.graph.ops:
            x = HANDLERS[op].forward(op, self.module_of(op), x, self.training)
            if op.name == upto:
                break
        return x

    def lstm_cells(self) -> list[LSTMCell]:
        return [self.module_of(op) for op in self.graph.of_kind(LSTM)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
