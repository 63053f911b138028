"""LRP over a graph: a forward pass keeping every op's input, then the rules of :mod:`gclf.explain.rules`
walked backwards from the explained score to the input window.

The explained score of class k is ``sum_j c_j z_j`` over the logits ``z`` with ``c = e_k`` ("logit") or
``c_k = 1, c_j = -1/(n-1)`` ("contrast": the log-odds of k for two classes, what its probability depends on).
The propagation starts from ``R_j = c_j z_j`` at the last op's output, so the total relevance starts equal to
the score; each rule keeps it (up to the biases' share and epsilon, see the rules).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gclf.backends.torch_float import HANDLERS as FORWARD
from gclf.explain.rules import RULES, LrpConfig


@dataclass
class Explanation:
    """Relevance of every input value of a batch of windows, and what was explained."""

    relevance: np.ndarray         # (B, C, T): sums (up to the biases' share and epsilon) to ``score``
    score: np.ndarray             # (B,) the explained score of ``target``
    target: np.ndarray            # (B,) the class explained
    probabilities: np.ndarray     # (B, classes) softmax of the logits
    logits: np.ndarray            # (B, classes)


def score_weights(logits: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    """The coefficients ``c`` (B, n) of the explained score ``sum_j c_j z_j``."""
    n = logits.shape[1]
    onehot = torch.nn.functional.one_hot(target, n).to(logits.dtype)
    if score == "logit" or n == 1:
        return onehot
    return onehot - (1 - onehot) / (n - 1)


def forward_inputs(model, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The input of every op (in graph order) and the logits, by the float backend's own handlers."""
    model.eval()
    model.check_length(x.shape[-1])
    acts = []
    with torch.no_grad():
        for op in model.graph.ops:
            acts.append(x)
            x = FORWARD[op].forward(op, model.module_of(op), x, False)
    return acts, x


def explain_windows(model, x: torch.Tensor, cfg: LrpConfig = LrpConfig(), batch_size: int = 256) -> Explanation:
    """LRP relevance of windows ``x`` (B, C, T) for a float :class:`GraphNet` (in eval mode; not modified)."""
    parts = [_explain_batch(model, x[i:i + batch_size].float(), cfg) for i in range(0, len(x), batch_size)]
    return Explanation(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("relevance", "score", "target", "probabilities", "logits")))


def _explain_batch(model, x: torch.Tensor, cfg: LrpConfig) -> Explanation:
    acts, logits = forward_inputs(model, x)
    if cfg.target is None:
        target = logits.argmax(dim=1)
    else:
        target = torch.full((len(x),), int(cfg.target), dtype=torch.long)
    c = score_weights(logits, target, cfg.score)
    r = c * logits                                        # R_j = c_j z_j: sums to the score
    for op, a in zip(reversed(model.graph.ops), reversed(acts)):
        r = RULES[op](op, model.module_of(op), a, r, cfg)
    return Explanation(r.double().numpy(), (c * logits).sum(1).double().numpy(), target.numpy(),
                       torch.softmax(logits.double(), dim=1).numpy(), logits.double().numpy())
