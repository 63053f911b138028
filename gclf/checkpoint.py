"""Checkpoints: the file alone rebuilds the model, from its graph and the chain of steps applied.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"gclf": 2, "graph": {...}, "feature_config": {...}, "state_dict": {...},
     "chain": [{"step": "train", ...}, {"step": "compress", "block": 8, ...}, ...],
     "split": {"fold": 1, "folds": 5, "test_speakers": [...], "val_speakers": [...], "train_speakers": [...]},
     "corpus": "/path/to/LibriSpeech", "metrics": {...}}

The graph and chain are stored in the dict forms of :mod:`gclf.graph.serial`; :func:`graph_of`,
:func:`chain_of` and :func:`quant_of` give them typed. Format-1 files (the CNN-LSTM before the graph) are
upgraded when read. A *model path* on the command line is a checkpoint file or a run folder of ``fold*.pt``
files (one per cross-validation fold, each knowing its held-out speakers), optionally with ``final.pt``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.graph.chain import Approx, Compress, Quantize, Step, quant_step
from gclf.graph.ops import Graph
from gclf.graph.serial import chain_from_dicts, chain_to_dicts, graph_from_dict, graph_to_dict, upgrade_checkpoint
from gclf.io import atomic_torch_save

FORMAT_VERSION = 2


def make_checkpoint(model, feature_cfg: FeatureConfig, chain: list[Step], split: dict | None,
                    corpus: str | None, metrics: dict | None = None, extra: dict | None = None) -> dict:
    """The checkpoint dict of a :class:`gclf.backends.torch_float.GraphNet` after ``chain``."""
    ck = {"gclf": FORMAT_VERSION, "graph": graph_to_dict(model.graph), "feature_config": asdict(feature_cfg),
          "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
          "chain": chain_to_dicts(chain), "split": split or {}, "corpus": corpus, "metrics": metrics or {}}
    ck.update(extra or {})
    return ck


def save_checkpoint(path: str | Path, ck: dict) -> Path:
    return atomic_torch_save(path, ck)


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True``; a missing or foreign file is a one-line GclfError."""
    path = Path(path)
    if not path.is_file():
        raise GclfError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GclfError(f"{path}: not a loadable gclf checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(ck, dict) or ck.get("gclf") not in (1, FORMAT_VERSION):
        raise GclfError(f"{path}: not a gclf checkpoint (format {FORMAT_VERSION})")
    return upgrade_checkpoint(ck, str(path))


def checkpoint_paths(path: str | Path, include_final: bool = False) -> list[Path]:
    """Fold checkpoints of a run folder (sorted), or the single file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise GclfError(f"no model at {path}: give a checkpoint file or a run folder from `gclf train`")
    folds = sorted(path.glob("fold*.pt"), key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else 0)
    if include_final and (path / "final.pt").is_file():
        folds.append(path / "final.pt")
    if not folds:
        raise GclfError(f"{path} holds no fold*.pt checkpoints")
    return folds


def graph_of(ck: dict) -> Graph:
    return graph_from_dict(ck["graph"])


def chain_of(ck: dict) -> list[Step]:
    return chain_from_dicts(ck.get("chain", []))


def quant_of(ck: dict) -> Quantize | None:
    """The checkpoint's quantize step (its config and spec), or None for a float model."""
    return quant_step(chain_of(ck))


def load_fixed_point(model_path: str | Path, integer: bool = False):
    """(checkpoint path, checkpoint, float GraphNet, QuantSpec) of a checkpoint file or a run folder's fold1.

    A float checkpoint is a one-line GclfError; so is a weights-only one when ``integer`` (an integer
    datapath is asked for: its activations are float)."""
    path = checkpoint_paths(model_path)[0]
    ck = load_checkpoint(path)
    q = quant_of(ck)
    if q is None:
        raise GclfError(f"{path} is a float checkpoint: run `gclf quantize` first")
    if integer and q.spec.weights_only:
        raise GclfError(f"{path} is a weights-only checkpoint: its activations are float, there is no integer "
                        "inference (run `gclf quantize` without --weights-only)")
    return path, ck, build_float_model(ck), q.spec


def apply_structure(model, step: Step) -> None:
    """Apply the structural part of one chain step to a GraphNet in place (compress, approx; others: none)."""
    if isinstance(step, Approx):
        for cell in model.lstm_cells():
            cell.set_activations(step.sigmoid, step.tanh)
    elif isinstance(step, Compress):
        from gclf.circulant import compress_model

        compress_model(model, step.block, list(step.targets))


def build_float_model(ck: dict):
    """Rebuild the float GraphNet of a checkpoint: graph, structural steps (compress, approx), weights."""
    from gclf.backends.torch_float import GraphNet

    model = GraphNet(graph_of(ck))
    for step in chain_of(ck):
        apply_structure(model, step)
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        raise GclfError(f"the checkpoint's weights do not fit its graph ({str(exc).splitlines()[0][:160]}); "
                        "rerun `gclf train`") from None
    model.eval()
    return model
