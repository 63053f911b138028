"""Relevance maps of whole utterances: each window explained, the windows' maps placed on the utterance's
frames and averaged, and a summary (which frames and coefficients carry the relevance).

An utterance's map is the mean over its windows of each window's map placed at its frames (frames covered by
two windows add both halves), so it sums to the mean window score, as the utterance's label comes from the mean
window probability. Every window explains the same class: the utterance's label, unless a target is given.
Frames no window covers (a tail shorter than half a hop, which the model never reads either) get 0.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from gclf.data.features import FeatureConfig, pad_index, window_starts
from gclf.explain.lrp import Explanation, explain_windows
from gclf.explain.rules import LrpConfig


@dataclass
class UtteranceMap:
    name: str                      # file path or utterance id
    mfcc: np.ndarray               # (C, T) the utterance's frames (as the model reads them)
    relevance: np.ndarray          # (C, T) mean of the windows' maps placed on the frames
    windows: Explanation           # per window
    starts: np.ndarray             # (W,) first frame of each window
    classes: tuple[str, ...]
    target: int                    # the class explained
    probabilities: np.ndarray      # (classes,) mean window probabilities
    true_label: str | None = None  # held-out utterances: the speaker's class

    @property
    def label(self) -> str:
        p = self.probabilities
        return self.classes[len(p) - 1 - int(np.argmax(p[::-1]))]   # a tie goes to the later class

    @property
    def score(self) -> float:
        return float(self.windows.score.mean())


def window_batch(mfcc: np.ndarray, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows (W, C, w), starts (W,), frame index (W, w)) of an utterance, cut as :func:`cut_windows` cuts
    them (a clip shorter than a window is padded: its frame index is :func:`pad_index`'s)."""
    n, w = mfcc.shape[1], cfg.window_frames
    starts = np.asarray(window_starts(max(n, w), cfg))
    index = (starts[:, None] + np.arange(w)[None, :]) if n >= w else pad_index(n, w, cfg.pad)[None, :]
    return mfcc[:, index].transpose(1, 0, 2).astype(np.float32), starts, index


def explain_utterance(model, mfcc: np.ndarray, fcfg: FeatureConfig, cfg: LrpConfig = LrpConfig(),
                      name: str = "", true_label: str | None = None) -> UtteranceMap:
    """The relevance map of one utterance's frames ``mfcc`` (C, T)."""
    x, starts, index = window_batch(mfcc, fcfg)
    classes = model.graph.classes
    if cfg.target is None:                               # explain the utterance's label in every window
        from gclf.explain.lrp import forward_inputs

        _, logits = forward_inputs(model, torch.from_numpy(x))
        p = torch.softmax(logits.double(), dim=1).mean(0).numpy()
        cfg = replace(cfg, target=len(p) - 1 - int(np.argmax(p[::-1])))
    e = explain_windows(model, torch.from_numpy(x), cfg)
    rel = np.zeros(mfcc.shape, dtype=np.float64)
    for k in range(len(x)):
        np.add.at(rel, (slice(None), index[k]), e.relevance[k])
    return UtteranceMap(name, mfcc, rel / len(x), e, starts, tuple(classes), int(cfg.target),
                        e.probabilities.mean(0), true_label)


def summary(u: UtteranceMap, fcfg: FeatureConfig, top: int = 5) -> dict:
    """What a script reads: label, probabilities, the score explained and how much of it the map holds,
    relevance per coefficient, and the most relevant frames (with their time in seconds)."""
    frame_s = fcfg.hop_length / fcfg.sample_rate
    per_frame, per_coef = u.relevance.sum(0), u.relevance.sum(1)
    total = float(u.relevance.sum())
    order = np.argsort(-per_frame)[:top]
    out = {"name": u.name, "label": u.label,
           "probabilities": {c: round(float(v), 4) for c, v in zip(u.classes, u.probabilities)},
           "explained": u.classes[u.target], "score": round(u.score, 5), "relevance_sum": round(total, 5),
           "conserved": round(total / u.score, 4) if u.score else None,
           "windows": int(len(u.starts)), "frames": int(u.mfcc.shape[1]),
           "coefficient_relevance": [round(float(v), 5) for v in per_coef],
           "top_coefficients": [int(i) for i in np.argsort(-per_coef)[:top]],
           "top_frames": [{"frame": int(i), "seconds": round(float(i) * frame_s, 3),
                           "relevance": round(float(per_frame[i]), 5)} for i in order]}
    if u.true_label is not None:
        out["true_label"] = u.true_label
    return out


def arrays(u: UtteranceMap) -> dict[str, np.ndarray]:
    """The arrays of an explanation, for an .npz file."""
    return {"relevance": u.relevance.astype(np.float32), "mfcc": u.mfcc.astype(np.float32),
            "window_relevance": u.windows.relevance.astype(np.float32), "window_starts": u.starts,
            "window_score": u.windows.score, "window_probabilities": u.windows.probabilities,
            "classes": np.array(u.classes), "target": np.array(u.target)}
