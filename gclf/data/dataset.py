"""From cached utterances to tensors: fixed evaluation windows and randomly shifted training windows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gclf.data.features import FeatureConfig, UtteranceFeatures, cut_windows, pad_frames, window_starts


@dataclass
class WindowSet:
    """All evaluation windows of some utterances, with the utterance each came from."""

    x: torch.Tensor        # (N, n_mfcc, frames) float32
    y: torch.Tensor        # (N,) int64, 1 = female
    utt_index: np.ndarray  # (N,) index into ``utts``
    utts: list[UtteranceFeatures]

    @property
    def utt_labels(self) -> np.ndarray:
        return np.array([u.label for u in self.utts])


def eval_windows(utts: list[UtteranceFeatures], cfg: FeatureConfig) -> WindowSet:
    """Fixed windows (``window_hop`` apart) of every utterance."""
    xs, ys, idx = [], [], []
    for i, u in enumerate(utts):
        w = cut_windows(u.mfcc, cfg)
        xs.append(w)
        ys.append(np.full(len(w), u.label))
        idx.append(np.full(len(w), i))
    return WindowSet(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)).long(),
                     np.concatenate(idx), utts)


def random_windows(utts: list[UtteranceFeatures], cfg: FeatureConfig, rng: np.random.Generator,
                   min_windows: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch of training windows: as many per utterance as it has fixed windows, at random offsets
    (time-shift augmentation: the network never sees the same crop twice). A small corpus is sampled
    several times over, so that an epoch holds at least ``min_windows`` windows."""
    xs, ys = [], []
    w = cfg.window_frames
    padded = [pad_frames(u.mfcc, w) for u in utts]
    counts = [len(window_starts(m.shape[1], cfg)) for m in padded]
    reps = max(1, -(-min_windows // max(sum(counts), 1)))
    for u, m, n in zip(utts, padded, counts):
        for s in rng.integers(0, m.shape[1] - w + 1, size=n * reps):
            xs.append(m[:, s:s + w])
            ys.append(u.label)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.long)


def select(utts: list[UtteranceFeatures], speakers) -> list[UtteranceFeatures]:
    keep = set(speakers)
    return [u for u in utts if u.speaker in keep]
