"""The deletion check: remove the k most relevant frames of each window and the explained score should fall
more than when k random frames are removed (Samek et al. 2017, "Evaluating the visualization of what a deep
neural network has learned", as a frame-wise variant).

A removed frame is replaced by the window's mean frame (per coefficient): after the network's per-window
mean removal it is close to the "nothing" value 0 (the mean moves by the removed frames' share, k/T of their
distance to it).
"""
from __future__ import annotations

import numpy as np
import torch

from gclf.explain.lrp import Explanation, forward_inputs, score_weights


def delete_frames(x: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Windows ``x`` (B, C, T) with frames ``frames`` (B, k) of each replaced by the window's mean frame."""
    out = x.copy()
    mean = x.mean(axis=2)                                        # (B, C)
    rows = np.arange(len(x))[:, None]
    out[rows, :, frames] = mean[:, None, :]
    return out


def scores(model, x: np.ndarray, target: np.ndarray, score: str) -> np.ndarray:
    """The explained score (see :func:`gclf.explain.lrp.score_weights`) of class ``target`` per window."""
    _, logits = forward_inputs(model, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    c = score_weights(logits, torch.from_numpy(target).long(), score)
    return (c * logits).sum(1).double().numpy()


def deletion_curve(model, x: np.ndarray, e: Explanation, ks: list[int], score: str = "contrast",
                   random_draws: int = 5, seed: int = 0) -> list[dict]:
    """Mean drop of the explained score over windows ``x`` (B, C, T) when the k most relevant frames (by the
    relevance summed over coefficients) are removed, when k random frames are (mean of ``random_draws``
    draws), and when the k loudest frames are (largest first coefficient, the log energy: a check that LRP
    finds more than "where the speech is"), for each k of ``ks``."""
    rng = np.random.default_rng(seed)
    base = scores(model, x, e.target, score)
    order = np.argsort(-e.relevance.sum(axis=1), axis=1)         # (B, T) most relevant frame first
    loud = np.argsort(-x[:, 0, :], axis=1)                        # (B, T) loudest frame first
    b, t = order.shape
    out = []
    for k in ks:
        k = int(min(k, t))
        top = scores(model, delete_frames(x, order[:, :k]), e.target, score)
        rnd = np.mean([scores(model, delete_frames(x, np.argsort(rng.random((b, t)), axis=1)[:, :k]), e.target,
                              score) for _ in range(random_draws)], axis=0)
        loudest = scores(model, delete_frames(x, loud[:, :k]), e.target, score)
        out.append({"frames": k, "windows": int(b), "score": float(base.mean()),
                    "drop_relevant": float((base - top).mean()),
                    "drop_random": float((base - rnd).mean()), "drop_loudest": float((base - loudest).mean()),
                    "windows_relevant_lower": float(np.mean(top < rnd))})
    return out
