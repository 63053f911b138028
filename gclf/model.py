"""The CNN-LSTM: a ModelConfig, the network, and an LSTM whose sigmoid/tanh can be swapped.

Default (11,834 parameters, the architecture gclf starts from):
    x (B, 40, T=84..99) -> InputNorm -> Conv1d(40,16,k4) ReLU -> Conv1d(16,8,k2) ReLU -> MaxPool1d(16)
    -> (B, 8, 5) -> LSTM(8,16) over the 5 pooled steps -> (B, 5, 16) -> flatten 80
    -> FC 80-64 ReLU -> FC 64-32 ReLU -> FC 32-2 (logits; class 1 = female)
InputNorm (buffers, no parameters) subtracts each window's per-coefficient mean (cepstral mean
normalisation, which removes gain and channel colouring) and scales by training-set statistics.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
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
    cmn: bool = True            # per-window cepstral mean normalisation in InputNorm

    @property
    def lstm_steps(self) -> int:
        t = self.n_frames - (self.conv1_kernel - 1) - (self.conv2_kernel - 1)
        return t // self.pool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fc_hidden"] = list(self.fc_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "fc_hidden" in d:
            d["fc_hidden"] = tuple(d["fc_hidden"])
        return cls(**d)


class InputNorm(nn.Module):
    """(x - window mean) * scale - offset, per coefficient; statistics set from training data."""

    def __init__(self, n: int, cmn: bool = True):
        super().__init__()
        self.cmn = cmn
        self.register_buffer("offset", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        if self.cmn:
            x = x - x.mean(dim=-1, keepdim=True)
        return (x - self.offset[:, None]) * self.scale[:, None]


def _activation(name: str, func: str):
    if name == "exact":
        return torch.sigmoid if func == "sigmoid" else torch.tanh
    from gclf.approx.schemes import get_approx

    return get_approx(name, func).float


class LSTM(nn.Module):
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
        self._sigmoid, self._tanh = _activation(sigmoid, "sigmoid"), _activation(tanh, "tanh")

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


class GenderNet(nn.Module):
    """The CNN-LSTM voice classifier."""

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.norm = InputNorm(cfg.n_mfcc, cfg.cmn)
        self.conv1 = nn.Conv1d(cfg.n_mfcc, cfg.conv1_channels, cfg.conv1_kernel)
        self.conv2 = nn.Conv1d(cfg.conv1_channels, cfg.conv2_channels, cfg.conv2_kernel)
        self.pool = nn.MaxPool1d(cfg.pool)
        self.lstm = LSTM(cfg.conv2_channels, cfg.lstm_hidden)
        sizes = [cfg.lstm_steps * cfg.lstm_hidden, *cfg.fc_hidden, cfg.n_classes]
        self.fc_names = [f"fc{i + 1}" for i in range(len(sizes) - 1)]
        for name, a, b in zip(self.fc_names, sizes[:-1], sizes[1:]):
            setattr(self, name, nn.Linear(a, b))   # fc1 (80->64), fc2 (64->32), fc3 (32->2)
        self.drop = nn.Dropout(cfg.dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)                       # (B, 40, T)
        x = F.relu(self.conv1(x))              # (B, 16, T-3)
        x = F.relu(self.conv2(x))              # (B, 8, T-4)
        x = self.pool(x)                       # (B, 8, 5)
        x = self.lstm(x.transpose(1, 2))       # (B, 5, 16)
        return x.flatten(1)                    # (B, 80)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.cfg.n_frames:
            steps = (x.shape[-1] - self.cfg.conv1_kernel - self.cfg.conv2_kernel + 2) // self.cfg.pool
            if steps != self.cfg.lstm_steps:
                raise ValueError(f"window of {x.shape[-1]} frames gives {steps} LSTM steps, "
                                 f"the model needs {self.cfg.lstm_steps}")
        x = self.features(x)
        for i, name in enumerate(self.fc_names):
            x = getattr(self, name)(self.drop(x))
            if i < len(self.fc_names) - 1:
                x = F.relu(x)
        return x                               # (B, 2)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def valid_frame_range(cfg: ModelConfig) -> tuple[int, int]:
    """Window lengths (frames) that give the configured number of LSTM steps."""
    lo = cfg.lstm_steps * cfg.pool + cfg.conv1_kernel + cfg.conv2_kernel - 2
    return lo, lo + cfg.pool - 1
