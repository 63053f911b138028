"""A 1-D CNN on MFCC windows with batch norm (the coefficients are the input channels, convolved over time),
as a graph of ops.

Default (40 MFCCs; 22,988 parameters for 12 classes, 22,338 for 2):
    x (B, 40, T) -> norm -> conv1 Conv1d(40,48,k3) BN ReLU -> pool1 MaxPool(2) -> conv2 Conv1d(48,48,k3) BN ReLU
    -> pool2 MaxPool(2) -> conv3 Conv1d(48,64,k3) BN ReLU -> gpool GlobalMaxPool -> (B, 64) -> fc1 64-N (logits)
The global max pool makes it take any window of at least 18 frames. Batch norm trains in float and is folded
into each convolution for quantization and every export (:mod:`gclf.backends.bnfold`).
"""
from __future__ import annotations

from dataclasses import dataclass

from gclf.graph.models.config import JsonConfig
from gclf.graph.ops import Conv1d, GlobalMaxPool, Graph, Linear, MaxPool, Norm

ARCH = "cnn1d"


@dataclass(frozen=True)
class Cnn1dConfig(JsonConfig):
    n_mfcc: int = 40                        # input coefficients (channels)
    n_frames: int = 99                      # window length the model is built for
    channels: tuple[int, ...] = (48, 48, 64)
    kernel: int = 3
    pool: int = 2                           # max pool after every convolution but the last (then global max)
    batch_norm: bool = True
    n_classes: int = 2
    dropout: float = 0.2                    # on the classifier's input, training only
    cmn: bool = True                        # per-window cepstral mean normalisation in norm


def build(cfg: Cnn1dConfig = Cnn1dConfig(), classes: tuple[str, ...] = ("M", "F")) -> Graph:
    ops, c_in = [Norm("norm", cfg.n_mfcc, cfg.cmn)], cfg.n_mfcc
    for i, c in enumerate(cfg.channels, start=1):
        ops.append(Conv1d(f"conv{i}", c_in, c, cfg.kernel, bn=cfg.batch_norm))
        if i < len(cfg.channels):
            ops.append(MaxPool(f"pool{i}", cfg.pool))
        c_in = c
    ops += [GlobalMaxPool("gpool"), Linear("fc1", c_in, len(classes), dropout=cfg.dropout)]
    d = {**cfg.to_dict(), "n_classes": len(classes)}
    return Graph(ARCH, (cfg.n_mfcc, cfg.n_frames), tuple(ops), tuple(classes), "mfcc", d)
