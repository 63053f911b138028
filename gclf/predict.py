"""`gclf predict`: label and probability per audio file, averaged over the run's models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gclf.checkpoint import build_float_model, checkpoint_paths, load_checkpoint
from gclf.data.corpus import load_audio
from gclf.errors import GclfError
from gclf.data.features import FeatureConfig, cut_windows, mfcc


def load_models(model_path: str | Path) -> list[tuple[torch.nn.Module, FeatureConfig]]:
    """final.pt of a run if present, else all its fold models (an ensemble)."""
    path = Path(model_path)
    paths = [path / "final.pt"] if path.is_dir() and (path / "final.pt").is_file() else checkpoint_paths(path)
    out = []
    for p in paths:
        ck = load_checkpoint(p)
        out.append((build_float_model(ck), FeatureConfig.from_dict(ck["feature_config"])))
    return out


@torch.no_grad()
def predict_file(path: str | Path, models: list[tuple[torch.nn.Module, FeatureConfig]]) -> dict:
    """P(female) of one file: mean over its windows, then over the models."""
    probs, cache = [], {}
    for model, fcfg in models:
        if fcfg not in cache:
            audio = load_audio(path, fcfg.sample_rate)
            if audio.size / fcfg.sample_rate < fcfg.min_seconds:
                raise GclfError(f"{path}: shorter than {fcfg.min_seconds} s")
            cache[fcfg] = torch.from_numpy(cut_windows(mfcc(audio, fcfg), fcfg))
        p = torch.softmax(model(cache[fcfg]).double(), dim=1)[:, 1].mean()
        probs.append(float(p))
    p = float(np.mean(probs))
    return {"file": str(path), "label": "F" if p >= 0.5 else "M", "p_female": round(p, 4),
            "windows": int(len(next(iter(cache.values()))))}
