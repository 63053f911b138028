"""From cached utterances to tensors: fixed evaluation windows and randomly shifted training windows, read
from the cache a batch at a time (memory does not grow with the corpus)."""
from __future__ import annotations

import numpy as np
import torch

from gclf.data.features import FeatureConfig, UtteranceFeatures, window_starts


class Windows:
    """Windows read on demand: window k is frames ``starts[k] ..`` of ``utts[utt_index[k]]``. Indexing (an
    int, a slice, or an index array/tensor) stacks the chosen windows into a (n, n_mfcc, width) float32
    tensor, so only the windows asked for are ever in memory."""

    def __init__(self, utts: list[UtteranceFeatures], utt_index: np.ndarray, starts: np.ndarray, width: int,
                 pad: str = "wrap"):
        self.utts, self.utt_index, self.starts, self.width, self.pad = utts, utt_index, starts, width, pad

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.numpy()
        sel = np.arange(len(self))[key]
        if sel.ndim == 0:
            return self[sel[None]][0]
        if not len(sel):
            u = self.utts[0] if self.utts else None
            channels = 0 if u is None else u.data.shape[0] if isinstance(u.data, np.ndarray) else u.data.channels
            return torch.empty((0, channels, self.width))
        first = self.utts[self.utt_index[sel[0]]].window(self.starts[sel[0]], self.width, self.pad)
        out = np.empty((len(sel), first.shape[0], self.width), dtype=np.float32)   # C order, always
        for k, (i, s) in enumerate(zip(self.utt_index[sel], self.starts[sel])):
            out[k] = first if k == 0 else self.utts[i].window(s, self.width, self.pad)
        return torch.from_numpy(out)


class WindowSet:
    """All evaluation windows of some utterances, with the utterance each came from. ``x`` may be a tensor
    or :class:`Windows` read on demand: :meth:`batches` streams either; the ``x`` property gives (and
    keeps) the whole tensor, for the callers that need every window at once."""

    def __init__(self, x: "torch.Tensor | Windows", y: torch.Tensor, utt_index: np.ndarray,
                 utts: list[UtteranceFeatures]):
        self._x, self.y, self.utt_index, self.utts = x, y, utt_index, utts

    @property
    def x(self) -> torch.Tensor:  # (N, n_mfcc, frames) float32
        if not isinstance(self._x, torch.Tensor):
            self._x = self._x[:]
        return self._x

    def batches(self, size: int):
        """(windows, labels) in order, ``size`` at a time."""
        for i in range(0, len(self.y), size):
            yield self._x[i:i + size], self.y[i:i + size]

    @property
    def utt_labels(self) -> np.ndarray:
        return np.array([u.label for u in self.utts])


def eval_windows(utts: list[UtteranceFeatures], cfg: FeatureConfig) -> WindowSet:
    """Fixed windows (``window_hop`` apart) of every utterance (as :func:`cut_windows` cuts them), read
    from the cache when iterated."""
    starts, ys, idx = [], [], []
    for i, u in enumerate(utts):
        s = window_starts(max(u.n_frames, cfg.window_frames), cfg)
        starts.append(np.asarray(s, dtype=np.int64))
        ys.append(np.full(len(s), u.label))
        idx.append(np.full(len(s), i))
    idx_a = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    starts_a = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    y = torch.from_numpy(np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64)).long()
    return WindowSet(Windows(utts, idx_a, starts_a, cfg.window_frames, cfg.pad), y, idx_a, utts)


def random_windows(utts: list[UtteranceFeatures], cfg: FeatureConfig, rng: np.random.Generator,
                   min_windows: int = 0) -> tuple[Windows, torch.Tensor]:
    """One epoch of training windows: as many per utterance as it has fixed windows, at random offsets
    (time-shift augmentation: the network never sees the same crop twice). A small corpus is sampled
    several times over, so that an epoch holds at least ``min_windows`` windows. The windows are read
    when indexed (a batch at a time)."""
    idx, starts, ys = [], [], []
    w = cfg.window_frames
    lengths = [max(u.n_frames, w) for u in utts]                  # after padding short utterances
    counts = [len(window_starts(n, cfg)) for n in lengths]
    reps = max(1, -(-min_windows // max(sum(counts), 1)))
    for i, (u, n_frames, n) in enumerate(zip(utts, lengths, counts)):
        s = rng.integers(0, n_frames - w + 1, size=n * reps)
        starts.append(s)
        idx.append(np.full(len(s), i))
        ys.append(np.full(len(s), u.label))
    return (Windows(utts, np.concatenate(idx), np.concatenate(starts), w, cfg.pad),
            torch.from_numpy(np.concatenate(ys)).long())


def select(utts: list[UtteranceFeatures], speakers) -> list[UtteranceFeatures]:
    keep = set(speakers)
    return [u for u in utts if u.speaker in keep]
