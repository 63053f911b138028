"""Applying a post-processing step to every fold checkpoint of a run, and summarising what it cost.

Each fold checkpoint knows its held-out speakers, so a step's before/after accuracy is always measured
on speakers the model never heard; the mean and std over folds is the figure gclf reports.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gclf.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from gclf.io import atomic_json
from gclf.data.pipeline import features_for_checkpoint

StepFn = Callable[[dict, list], tuple[dict, dict]]  # (checkpoint, utterances) -> (new checkpoint, report)


def default_out(model_path: str | Path, suffix: str) -> Path:
    """runs/model + "-q8" -> runs/model-q8 (a checkpoint file: next to it)."""
    p = Path(model_path)
    return p.with_name(p.stem + suffix) if p.is_file() else p.with_name(p.name + suffix)


def apply_step(model_path: str | Path, out: str | Path | None, fn: StepFn, cache_root: str | Path = "pkl_data",
               on_fold: Callable[[int, dict], None] | None = None, write: bool = True) -> dict:
    """Run ``fn`` on each fold checkpoint; write the new ones to ``out`` (same file names)."""
    paths = checkpoint_paths(model_path)
    reports, utts = [], None
    if write and out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths, start=1):
        ck = load_checkpoint(p)
        utts = utts if utts is not None else features_for_checkpoint(ck, cache_root)
        new, report = fn(ck, utts)
        if write and out is not None:
            save_checkpoint(Path(out) / p.name, new)
        reports.append({"checkpoint": p.name, **report})
        if on_fold:
            on_fold(i, report)
    summary = mean_report(reports)
    summary["folds"] = reports
    summary["model"] = str(out) if write and out is not None else None
    if write and out is not None:
        atomic_json(Path(out) / "step.json", summary)
    return summary


def mean_report(reports: list[dict]) -> dict:
    """Mean (and std for accuracies) over folds of every numeric field."""
    out = {}
    for key, v in reports[0].items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        raw = [r[key] for r in reports]
        vals = np.array(raw, dtype=float)
        if "mismatch" in key or "saturation" in key:
            out[key] = int(vals.sum())                     # counts add up over folds
        elif all(isinstance(v, int) for v in raw) and len(set(raw)) == 1:
            out[key] = raw[0]                              # a setting, e.g. the block size
        else:
            out[key] = float(vals.mean())
        if "accuracy" in key:
            out[key + "_std"] = float(vals.std())
    for key in ("overflows",):
        if key in reports[0]:
            tot: dict[str, int] = {}
            for r in reports:
                for k, n in r[key].items():
                    tot[k] = tot.get(k, 0) + n
            out[key] = tot
    return out
