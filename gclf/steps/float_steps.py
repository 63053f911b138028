"""The float post-processing steps per fold: block-circulant compression and approximate sigmoid/tanh.

Each takes one fold checkpoint and its utterances, and returns the new checkpoint and a report with the
accuracy on the fold's held-out speakers before the step, right after it, and after fine-tuning.
Order in a chain: compress, approx, quantize.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from gclf.backends.torch_float import n_params
from gclf.checkpoint import build_float_model, chain_of, graph_of, make_checkpoint
from gclf.data.dataset import select
from gclf.data.features import FeatureConfig
from gclf.data.pipeline import heldout_or_none
from gclf.graph.chain import check_order
from gclf.steps.api import ApproxConfig, CompressConfig, approx_, compress_
from gclf.train.augment import AugmentedUtterance, run_augment
from gclf.train.evaluate import evaluate, torch_prob_fn
from gclf.train.fit import TrainConfig, fit


def finetune(model, ck: dict, utts, epochs: int, lr: float, seed: int, forward=None, **overrides) -> dict:
    """Fine-tune on the fold's training speakers, early stopping on its validation speakers; on their views too
    when ``utts`` carry them (:func:`gclf.train.augment.run_views`, `--views`), with the run's augmentation."""
    if epochs <= 0:
        return {"epochs_run": 0, "views": False}
    split = ck["split"]
    if any(isinstance(u, AugmentedUtterance) for u in utts):   # run_views: the views, taken as the run took them
        overrides = {"augment": run_augment(ck), **overrides}
    torch.manual_seed(seed)
    tcfg = replace(TrainConfig(), epochs=epochs, lr=lr, patience=max(3, epochs // 2), **overrides)
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    hist = fit(model, select(utts, split["train_speakers"]), select(utts, split["val_speakers"]), fcfg, tcfg,
               seed=seed, forward=forward)
    return {"epochs_run": hist["epochs_run"], "views": "augment" in overrides}


def accuracy(prob_model, test, classes) -> dict:
    """Utterance and window accuracy on ``test``; None for both without held-out windows (final.pt)."""
    if test is None:
        return {"utt": None, "win": None}
    m = evaluate(torch_prob_fn(prob_model), test, classes)
    return {"utt": m["accuracy_utterance"], "win": m["accuracy_window"]}


def approx_one(ck: dict, utts, sigmoid: str, tanh: str, epochs: int = 10, lr: float = 1e-3,
               seed: int = 0, device: str = "cpu") -> tuple[dict, dict]:
    """Swap the LSTM's sigmoid/tanh for approximations, fine-tune with them in the loop. A graph without an
    LSTM is passed through unchanged (no step is recorded; the report says so)."""
    chain = chain_of(ck)
    check_order(chain, "approx")
    model, test, classes = build_float_model(ck), heldout_or_none(ck, utts), graph_of(ck).classes
    before = accuracy(model, test, classes)
    step = approx_(model, ApproxConfig(sigmoid, tanh))
    if step is None:
        report = {"sigmoid": sigmoid, "tanh": tanh, "applied": False, "note": "no LSTM: nothing to approximate",
                  "accuracy_before": before["utt"], "accuracy_swapped": before["utt"], "accuracy_after": before["utt"],
                  "accuracy_before_window": before["win"], "accuracy_swapped_window": before["win"],
                  "accuracy_after_window": before["win"], "epochs_run": 0}
        return ck, report
    swapped = accuracy(model, test, classes)
    ft = finetune(model, ck, utts, epochs, lr, seed, device=device)
    after = accuracy(model, test, classes)
    step = replace(step, finetune_epochs=epochs)
    report = {"sigmoid": sigmoid, "tanh": tanh, "accuracy_before": before["utt"], "accuracy_swapped": swapped["utt"],
              "accuracy_after": after["utt"], "accuracy_before_window": before["win"],
              "accuracy_swapped_window": swapped["win"], "accuracy_after_window": after["win"], **ft}
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    return make_checkpoint(model, fcfg, chain + [step], ck["split"], ck.get("corpus"), report), report


def compress_one(ck: dict, utts, block: int, layers, epochs: int = 15, lr: float = 1e-3,
                 seed: int = 0, device: str = "cpu") -> tuple[dict, dict]:
    """Project the chosen layers onto block-circulant matrices, then fine-tune."""
    chain = chain_of(ck)
    check_order(chain, "compress")
    model, test, classes = build_float_model(ck), heldout_or_none(ck, utts), graph_of(ck).classes
    before = accuracy(model, test, classes)
    params_before = n_params(model)
    step, layers = compress_(model, CompressConfig(block, tuple(layers) if not isinstance(layers, str) else (layers,)))
    projected = accuracy(model, test, classes)
    ft = finetune(model, ck, utts, epochs, lr, seed, device=device)
    after = accuracy(model, test, classes)
    params_after = n_params(model)
    step = replace(step, finetune_epochs=epochs)
    report = {"block": block, "layers": list(layers.values()), "params_before": params_before,
              "params_after": params_after, "bytes_before": 4 * params_before, "bytes_after": 4 * params_after,
              "compression": params_before / params_after, "accuracy_before": before["utt"],
              "accuracy_projected": projected["utt"], "accuracy_after": after["utt"],
              "accuracy_before_window": before["win"], "accuracy_after_window": after["win"], **ft}
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    return make_checkpoint(model, fcfg, chain + [step], ck["split"], ck.get("corpus"), report), report
