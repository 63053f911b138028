"""Speaker-level honest evaluation for any number of classes: window accuracy, utterance accuracy (from the
mean of window probabilities), confusion matrix and recall per class."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from gclf.data.dataset import WindowSet

ProbFn = Callable[[torch.Tensor], np.ndarray]  # windows (N, C, T) -> class probabilities (N, classes)
DEFAULT_CLASSES = ("M", "F")                   # the gender task: class 1 = female


def torch_prob_fn(model: torch.nn.Module, batch_size: int = 1024) -> ProbFn:
    """Class probabilities per window from a PyTorch model (softmax of its logits), eval mode, batched."""

    @torch.no_grad()
    def fn(x: torch.Tensor) -> np.ndarray:
        model.eval()
        out = [torch.softmax(model(x[i:i + batch_size]).double(), dim=1) for i in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    return fn


def decide(probs: np.ndarray) -> np.ndarray:
    """The predicted class of each row; a tie goes to the later class (binary: p >= 0.5 is class 1)."""
    k = probs.shape[1]
    return k - 1 - np.argmax(probs[:, ::-1], axis=1)


def utterance_probs(window_p: np.ndarray, ws: WindowSet) -> np.ndarray:
    """Mean window probabilities per utterance, (utterances, classes)."""
    n = len(ws.utts)
    counts = np.maximum(np.bincount(ws.utt_index, minlength=n), 1)
    return np.stack([np.bincount(ws.utt_index, weights=window_p[:, k], minlength=n) / counts
                     for k in range(window_p.shape[1])], axis=1)


def metrics_from_probs(window_p: np.ndarray, ws: WindowSet, classes=DEFAULT_CLASSES) -> dict:
    """All figures from the class probabilities of every window."""
    window_p = np.asarray(window_p, dtype=np.float64)
    if window_p.ndim == 1:                                   # P(class 1) of a binary model
        window_p = np.stack([1.0 - window_p, window_p], axis=1)
    k = len(classes)
    y_w, pred_w = ws.y.numpy(), decide(window_p)
    y_u, pred_u = ws.utt_labels, decide(utterance_probs(window_p, ws))
    cm = np.zeros((k, k), dtype=int)                         # rows true, columns predicted
    np.add.at(cm, (y_u, pred_u), 1)
    recall = {c: float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan") for i, c in enumerate(classes)}
    return {"accuracy_window": float((pred_w == y_w).mean()), "accuracy_utterance": float((pred_u == y_u).mean()),
            "windows": int(len(y_w)), "utterances": int(len(y_u)),
            "speakers": len({u.speaker for u in ws.utts}),
            "confusion": {"classes": list(classes), "rows_true": list(classes), "cols_pred": list(classes),
                          "matrix": cm.tolist()},
            "recall": recall}


EVAL_CHUNK = 1024   # windows per call of prob_fn (torch_prob_fn's batch: the same batches as one call)


def evaluate(prob_fn: ProbFn, ws: WindowSet, classes=DEFAULT_CLASSES) -> dict:
    """Figures of ``prob_fn`` on every window of ``ws``, reading EVAL_CHUNK windows at a time."""
    probs = [np.asarray(prob_fn(x)) for x, _ in ws.batches(EVAL_CHUNK)] or [np.asarray(prob_fn(ws.x))]
    return metrics_from_probs(np.concatenate(probs), ws, classes)


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
