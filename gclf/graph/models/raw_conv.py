"""A small 1-D convolutional network on raw 16 kHz audio, in the spirit of AudioNet (Becker et al. 2018):
a strided convolution stack with ReLU and max pooling, then a fully connected head.

Default (input 0.5 s = 8,000 samples; 2,186 parameters, ~340k MACs per window):
    x (B, 1, 8000) -> norm (DC removal, scale) -> conv1 Conv1d(1,8,k32,s8) ReLU -> (B, 8, 997) -> pool1 MaxPool(4)
    -> conv2 Conv1d(8,16,k4,s2) ReLU -> (B, 16, 123) -> pool2 MaxPool(4) -> conv3 Conv1d(16,16,k3) ReLU
    -> (B, 16, 28) -> pool3 MaxPool(28) (global) -> flatten 16 -> fc1 16-32 ReLU -> fc2 32-N (logits)
"""
from __future__ import annotations

from dataclasses import dataclass

from gclf.graph.models.config import JsonConfig
from gclf.graph.ops import Conv1d, Flatten, Graph, Linear, MaxPool, Norm

ARCH = "raw_conv"


@dataclass(frozen=True)
class RawConvConfig(JsonConfig):
    n_samples: int = 8000                 # window: 0.5 s at 16 kHz
    channels: tuple[int, ...] = (8, 16, 16)
    kernels: tuple[int, ...] = (32, 4, 3)
    strides: tuple[int, ...] = (8, 2, 1)
    pools: tuple[int, ...] = (4, 4, 0)    # 0: global max pool over what is left
    fc_hidden: tuple[int, ...] = (32,)
    n_classes: int = 2
    dropout: float = 0.2
    cmn: bool = True                      # remove each window's DC offset


def build(cfg: RawConvConfig = RawConvConfig(), classes: tuple[str, ...] = ("M", "F")) -> Graph:
    ops, c_in, t = [Norm("norm", 1, cfg.cmn)], 1, cfg.n_samples
    for i, (c, k, s, p) in enumerate(zip(cfg.channels, cfg.kernels, cfg.strides, cfg.pools), start=1):
        ops.append(Conv1d(f"conv{i}", c_in, c, k, s))
        t = (t - k) // s + 1
        ops.append(MaxPool(f"pool{i}", p or t))
        t = (t - (p or t)) // (p or t) + 1
        c_in = c
    ops.append(Flatten("flatten"))
    sizes = [c_in * t, *cfg.fc_hidden, len(classes)]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        ops.append(Linear(f"fc{i + 1}", a, b, relu=i < len(sizes) - 2, dropout=cfg.dropout))
    return Graph(ARCH, (1, cfg.n_samples), tuple(ops), tuple(classes), "audio", cfg.to_dict())
