"""The CNN-LSTM on MFCC windows (the default network), as a graph of ops.

Default (11,834 parameters):
    x (B, 40, T=84..99) -> norm -> conv1 Conv1d(40,16,k4) ReLU -> conv2 Conv1d(16,8,k2) ReLU -> pool MaxPool(16)
    -> (B, 8, 5) -> lstm LSTM(8,16) over the 5 pooled steps -> (B, 16, 5) -> flatten 80 (time-major)
    -> fc1 80-64 ReLU -> fc2 64-32 ReLU -> fc3 32-N (logits; gender: class 1 = female)
norm (no parameters, two buffers) subtracts each window's per-coefficient mean (cepstral mean normalisation,
which removes gain and channel colouring) and scales by training-set statistics.
"""
from __future__ import annotations

from dataclasses import dataclass

from gclf.graph.models.config import JsonConfig
from gclf.graph.ops import LSTM, Conv1d, Flatten, Graph, Linear, MaxPool, Norm

ARCH = "cnn_lstm"


@dataclass(frozen=True)
class CnnLstmConfig(JsonConfig):
    n_mfcc: int = 40            # input coefficients
    n_frames: int = 99          # window length the model was built for (84..99 give 5 LSTM steps)
    conv1_channels: int = 16
    conv1_kernel: int = 4
    conv2_channels: int = 8
    conv2_kernel: int = 2
    pool: int = 16
    lstm_hidden: int = 16
    fc_hidden: tuple[int, ...] = (64, 32)
    n_classes: int = 2
    dropout: float = 0.2        # on the FC inputs, training only
    cmn: bool = True            # per-window cepstral mean normalisation in norm

    @property
    def lstm_steps(self) -> int:
        t = self.n_frames - (self.conv1_kernel - 1) - (self.conv2_kernel - 1)
        return t // self.pool


def build(cfg: CnnLstmConfig = CnnLstmConfig(), classes: tuple[str, ...] = ("M", "F")) -> Graph:
    if len(classes) != cfg.n_classes:
        cfg = CnnLstmConfig.from_dict({**cfg.to_dict(), "n_classes": len(classes)})
    ops = [Norm("norm", cfg.n_mfcc, cfg.cmn),
           Conv1d("conv1", cfg.n_mfcc, cfg.conv1_channels, cfg.conv1_kernel),
           Conv1d("conv2", cfg.conv1_channels, cfg.conv2_channels, cfg.conv2_kernel),
           MaxPool("pool", cfg.pool),
           LSTM("lstm", cfg.conv2_channels, cfg.lstm_hidden),
           Flatten("flatten")]
    sizes = [cfg.lstm_steps * cfg.lstm_hidden, *cfg.fc_hidden, cfg.n_classes]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        ops.append(Linear(f"fc{i + 1}", a, b, relu=i < len(sizes) - 2, dropout=cfg.dropout))
    return Graph(ARCH, (cfg.n_mfcc, cfg.n_frames), tuple(ops), tuple(classes), "mfcc", cfg.to_dict())
