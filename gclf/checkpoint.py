"""Checkpoints: the file alone rebuilds the model, with its configs and the chain of steps applied.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"gclf": 1, "model_config": {...}, "feature_config": {...}, "state_dict": {...},
     "chain": [{"step": "train", ...}, {"step": "compress", "block": 8, ...}, ...],
     "split": {"fold": 1, "folds": 5, "test_speakers": [...], "val_speakers": [...], "train_speakers": [...]},
     "corpus": "/path/to/LibriSpeech", "metrics": {...}}

A *model path* on the command line is a checkpoint file or a run folder of ``fold*.pt`` files (one per
cross-validation fold, each knowing its held-out speakers), optionally with ``final.pt``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from gclf.errors import GclfError
from gclf.data.features import FeatureConfig
from gclf.io import atomic_torch_save
from gclf.model import GenderNet, ModelConfig

FORMAT_VERSION = 1


def make_checkpoint(model: GenderNet, feature_cfg: FeatureConfig, chain: list[dict], split: dict | None,
                    corpus: str | None, metrics: dict | None = None, extra: dict | None = None) -> dict:
    from dataclasses import asdict

    ck = {"gclf": FORMAT_VERSION, "model_config": model.cfg.to_dict(), "feature_config": asdict(feature_cfg),
          "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
          "chain": list(chain), "split": split or {}, "corpus": corpus, "metrics": metrics or {}}
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
    if not isinstance(ck, dict) or ck.get("gclf") != FORMAT_VERSION:
        raise GclfError(f"{path}: not a gclf checkpoint (format {FORMAT_VERSION})")
    return ck


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


def step_names(ck: dict) -> list[str]:
    return [s["step"] for s in ck.get("chain", [])]


def build_float_model(ck: dict) -> GenderNet:
    """Rebuild the float model of a checkpoint: architecture, structural steps (compress, approx), weights."""
    from gclf.chain import apply_structure

    model = GenderNet(ModelConfig.from_dict(ck["model_config"]))
    for step in ck.get("chain", []):
        apply_structure(model, step)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model
