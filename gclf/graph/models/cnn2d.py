"""A small 2-D CNN on MFCC "images" with batch norm, in the spirit of the AudioMNIST and Common Voice age
projects (conv 3x3 -> BN -> ReLU -> pool, repeated, then a linear classifier), as a graph of ops.

Default (40 MFCCs, 99 frames; 19,356 parameters for 12 classes, 18,866 for 2; ~1.0M MACs per window):
    x (B, 40, T) -> norm -> image (B, 1, T, 40) -> conv1 Conv2d(1,16,3x3,stride 2) BN ReLU -> pool1 MaxPool2d(2)
    -> conv2 Conv2d(16,32,3x3) BN ReLU -> pool2 MaxPool2d(2) -> conv3 Conv2d(32,48,3x3) BN ReLU
    -> gpool GlobalMaxPool -> (B, 48) -> fc1 48-N (logits)
The global max pool makes the network take any window of at least 33 frames (1-s keyword clips: 51 frames;
2-s windows: 99). Batch norm trains in float and is folded into each convolution for quantization and every
export (:mod:`gclf.backends.bnfold`).
"""
from __future__ import annotations

from dataclasses import dataclass

from gclf.graph.models.config import JsonConfig
from gclf.graph.ops import Conv2d, GlobalMaxPool, Graph, Image, Linear, MaxPool2d, Norm

ARCH = "cnn2d"


@dataclass(frozen=True)
class Cnn2dConfig(JsonConfig):
    n_mfcc: int = 40                        # input coefficients (the image's width)
    n_frames: int = 99                      # window length the model is built for (the image's height)
    channels: tuple[int, ...] = (16, 32, 48)
    kernel: int = 3                         # square kernels, valid convolutions
    strides: tuple[int, ...] = (2, 1, 1)    # per convolution (the first halves the image: 4x fewer MACs after it)
    pool: int = 2                           # max pool after every convolution but the last (then global max)
    batch_norm: bool = True
    n_classes: int = 2
    dropout: float = 0.2                    # on the classifier's input, training only
    cmn: bool = True                        # per-window cepstral mean normalisation in norm


def build(cfg: Cnn2dConfig = Cnn2dConfig(), classes: tuple[str, ...] = ("M", "F")) -> Graph:
    ops, c_in = [Norm("norm", cfg.n_mfcc, cfg.cmn), Image("image")], 1
    for i, c in enumerate(cfg.channels, start=1):
        ops.append(Conv2d(f"conv{i}", c_in, c, cfg.kernel, cfg.strides[i - 1], bn=cfg.batch_norm))
        if i < len(cfg.channels):
            ops.append(MaxPool2d(f"pool{i}", cfg.pool))
        c_in = c
    ops += [GlobalMaxPool("gpool"), Linear("fc1", c_in, len(classes), dropout=cfg.dropout)]
    d = {**cfg.to_dict(), "n_classes": len(classes)}
    return Graph(ARCH, (cfg.n_mfcc, cfg.n_frames), tuple(ops), tuple(classes), "mfcc", d)
