"""The float post-processing steps: block-circulant compression and approximate sigmoid/tanh.

Each takes one fold checkpoint and its utterances, and returns the new checkpoint and a report with the
accuracy on the fold's held-out speakers before the step, right after it, and after fine-tuning.
Order in a chain: compress, approx, quantize.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from gclf.chain import describe_chain
from gclf.checkpoint import build_float_model, make_checkpoint, step_names
from gclf.data.dataset import select
from gclf.errors import GclfError
from gclf.train.evaluate import evaluate, torch_prob_fn
from gclf.data.features import FeatureConfig
from gclf.model import GenderNet, n_params
from gclf.train.cv import heldout_windows
from gclf.train.fit import TrainConfig, fit

LAYER_GROUPS = {"fc": ("fc1", "fc2", "fc3"), "lstm": ("lstm.ih", "lstm.hh")}
ORDER = ("train", "compress", "approx", "quantize")


def check_order(ck: dict, step: str) -> None:
    """Refuse a step that would come after a later one (e.g. compress after quantize)."""
    done = step_names(ck)
    later = [s for s in done if ORDER.index(s) >= ORDER.index(step) and s != "train"]
    if later:
        raise GclfError(f"cannot {step} a checkpoint whose chain is {describe_chain(ck['chain'])}: "
                        f"the order is compress, approx, quantize (each once); start from an earlier checkpoint")


def finetune(model: GenderNet, ck: dict, utts, epochs: int, lr: float, seed: int) -> dict:
    """Fine-tune on the fold's training speakers, early stopping on its validation speakers."""
    if epochs <= 0:
        return {"epochs_run": 0}
    split = ck["split"]
    torch.manual_seed(seed)
    tcfg = replace(TrainConfig(), epochs=epochs, lr=lr, patience=max(3, epochs // 2))
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    hist = fit(model, select(utts, split["train_speakers"]), select(utts, split["val_speakers"]), fcfg, tcfg, seed=seed)
    return {"epochs_run": hist["epochs_run"]}


def _acc(model, test) -> dict:
    m = evaluate(torch_prob_fn(model), test)
    return {"utt": m["accuracy_utterance"], "win": m["accuracy_window"]}


def approx_one(ck: dict, utts, sigmoid: str, tanh: str, epochs: int = 10, lr: float = 1e-3,
               seed: int = 0) -> tuple[dict, dict]:
    """Swap the LSTM's sigmoid/tanh for approximations, fine-tune with them in the loop."""
    check_order(ck, "approx")
    model, test = build_float_model(ck), heldout_windows(ck, utts)
    before = _acc(model, test)
    model.lstm.set_activations(sigmoid, tanh)
    swapped = _acc(model, test)
    ft = finetune(model, ck, utts, epochs, lr, seed)
    after = _acc(model, test)
    step = {"step": "approx", "sigmoid": sigmoid, "tanh": tanh, "finetune_epochs": epochs}
    report = {"sigmoid": sigmoid, "tanh": tanh, "accuracy_before": before["utt"], "accuracy_swapped": swapped["utt"],
              "accuracy_after": after["utt"], "accuracy_before_window": before["win"],
              "accuracy_swapped_window": swapped["win"], "accuracy_after_window": after["win"], **ft}
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    return make_checkpoint(model, fcfg, ck["chain"] + [step], ck["split"], ck.get("corpus"), report), report


def expand_layers(layers: str) -> list[str]:
    names = []
    for part in [p.strip() for p in layers.split(",") if p.strip()]:
        if part in LAYER_GROUPS:
            names += LAYER_GROUPS[part]
        elif any(part in g for g in LAYER_GROUPS.values()):
            names.append(part)
        else:
            raise GclfError(f"unknown layer {part!r}: use fc, lstm, or any of "
                            f"{', '.join(n for g in LAYER_GROUPS.values() for n in g)} (convolutions stay dense)")
    return list(dict.fromkeys(names))


def compress_one(ck: dict, utts, block: int, targets: list[str], epochs: int = 15, lr: float = 1e-3,
                 seed: int = 0) -> tuple[dict, dict]:
    """Project the target layers onto block-circulant matrices, then fine-tune."""
    from gclf.circulant.layer import compress_model

    check_order(ck, "compress")
    model, test = build_float_model(ck), heldout_windows(ck, utts)
    before = _acc(model, test)
    params_before = n_params(model)
    layers = compress_model(model, block, targets)
    projected = _acc(model, test)
    ft = finetune(model, ck, utts, epochs, lr, seed)
    after = _acc(model, test)
    params_after = n_params(model)
    step = {"step": "compress", "block": block, "targets": list(targets), "finetune_epochs": epochs}
    report = {"block": block, "layers": list(layers.values()), "params_before": params_before,
              "params_after": params_after, "bytes_before": 4 * params_before, "bytes_after": 4 * params_after,
              "compression": params_before / params_after, "accuracy_before": before["utt"],
              "accuracy_projected": projected["utt"], "accuracy_after": after["utt"],
              "accuracy_before_window": before["win"], "accuracy_after_window": after["win"], **ft}
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    return make_checkpoint(model, fcfg, ck["chain"] + [step], ck["split"], ck.get("corpus"), report), report
