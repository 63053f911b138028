"""gclf as a library: the steps as functions on a model and its config (what the CLI commands wrap).

    from gclf.api import ApproxConfig, CompressConfig, QuantConfig, approx_, compress_, load, quantize, windows

    model, ck = load("runs/model/fold1.pt")                   # a float GraphNet and its checkpoint dict
    compress_(model, CompressConfig(block=8))                 # FC + LSTM matrices block-circulant, in place
    approx_(model, ApproxConfig(sigmoid="plan", tanh="pwl16"))  # LSTM sigmoid/tanh swapped, in place
    fixed = quantize(model, QuantConfig(bits=8), windows(ck, "train"))  # calibrated on training speakers
    logits = fixed.reference().logits(windows(ck, "test"))   # the integer reference on held-out speakers

Fine-tuning after a step, measuring on held-out speakers per fold and writing run folders is what the CLI adds
(:mod:`gclf.steps.float_steps`, :mod:`gclf.steps.quantize`, :mod:`gclf.steps.runner`).
"""
from __future__ import annotations

from pathlib import Path

from gclf.backends.torch_float import GraphNet
from gclf.graph.models import build_graph
from gclf.graph.spec import QuantConfig
from gclf.steps.api import (ApproxConfig, CompressConfig, FixedPointModel, approx_, compress_, observe_ranges,
                            quantize)

__all__ = ["ApproxConfig", "CompressConfig", "FixedPointModel", "GraphNet", "QuantConfig", "approx_", "build_graph",
           "compress_", "load", "observe_ranges", "quantize", "windows"]


def load(path: str | Path) -> tuple[GraphNet, dict]:
    """The float model of a checkpoint (its graph and structural steps rebuilt) and the checkpoint dict."""
    from gclf.checkpoint import build_float_model, load_checkpoint

    ck = load_checkpoint(path)
    return build_float_model(ck), ck


def windows(ck: dict, speakers: str = "test", cache_root: str | Path = "pkl_data", data: str | Path | None = None):
    """Windows (N, C, T) of a fold checkpoint's held-out speakers ("test") or of its training and validation
    speakers ("train": what calibration and fine-tuning may see), from the feature cache (found by the
    checkpoint's corpus identity) or from its corpus at ``data``."""
    from gclf.data.dataset import eval_windows, select
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import features_for_checkpoint, heldout_windows
    from gclf.errors import GclfError

    utts = features_for_checkpoint(ck, cache_root, data)
    if speakers == "test":
        return heldout_windows(ck, utts).x
    if speakers != "train":
        raise GclfError(f"speakers must be 'train' or 'test', not {speakers!r}")
    split = ck["split"]
    return eval_windows(select(utts, split["train_speakers"] + split["val_speakers"]),
                        FeatureConfig.from_dict(ck["feature_config"])).x
