"""Speaker-level honest evaluation: window accuracy, utterance accuracy (mean of window probabilities),
confusion matrix and recall per sex."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from gclf.data.dataset import WindowSet

ProbFn = Callable[[torch.Tensor], np.ndarray]  # windows (N, C, T) -> P(female) (N,)


def torch_prob_fn(model: torch.nn.Module, batch_size: int = 1024) -> ProbFn:
    """P(female) per window from a PyTorch model, in eval mode, batched."""

    @torch.no_grad()
    def fn(x: torch.Tensor) -> np.ndarray:
        model.eval()
        out = [torch.softmax(model(x[i:i + batch_size]).double(), dim=1)[:, 1] for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    return fn


def utterance_probs(window_p: np.ndarray, ws: WindowSet) -> np.ndarray:
    """Mean window probability per utterance."""
    n = len(ws.utts)
    sums = np.bincount(ws.utt_index, weights=window_p, minlength=n)
    counts = np.bincount(ws.utt_index, minlength=n)
    return sums / np.maximum(counts, 1)


def metrics_from_probs(window_p: np.ndarray, ws: WindowSet) -> dict:
    """All figures from P(female) per window."""
    y_w = ws.y.numpy()
    pred_w = (window_p >= 0.5).astype(int)
    up = utterance_probs(window_p, ws)
    y_u = ws.utt_labels
    pred_u = (up >= 0.5).astype(int)
    cm = np.zeros((2, 2), dtype=int)  # rows true (M, F), columns predicted (M, F)
    for t, p in zip(y_u, pred_u):
        cm[t, p] += 1
    rec = {s: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan") for i, s in enumerate(("M", "F"))}
    return {"accuracy_window": float((pred_w == y_w).mean()), "accuracy_utterance": float((pred_u == y_u).mean()),
            "windows": int(len(y_w)), "utterances": int(len(y_u)),
            "speakers": len({u.speaker for u in ws.utts}),
            "confusion": {"rows_true": ["M", "F"], "cols_pred": ["M", "F"], "matrix": cm.tolist()},
            "recall_male": rec["M"], "recall_female": rec["F"]}


def evaluate(prob_fn: ProbFn, ws: WindowSet) -> dict:
    return metrics_from_probs(prob_fn(ws.x), ws)


def summarize_folds(results: list[dict]) -> dict:
    """Mean and std (population) over folds of the accuracies."""
    out = {}
    for key in ("accuracy_utterance", "accuracy_window"):
        vals = np.array([r[key] for r in results])
        out[f"{key}_mean"] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    # pooled over folds: every utterance counted once
    out["utterances"] = int(sum(r["utterances"] for r in results))
    out["accuracy_utterance_pooled"] = float(sum(r["accuracy_utterance"] * r["utterances"] for r in results)
                                             / max(out["utterances"], 1))
    return out
