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
from gclf.data.pipeline import features_for_checkpoint, has_heldout
from gclf.manifest import check_run, clear_step_dir, new_run_id, write_manifest

StepFn = Callable[[dict, list], tuple[dict, dict]]  # (checkpoint, utterances) -> (new checkpoint, report)


def default_out(model_path: str | Path, suffix: str) -> Path:
    """runs/model + "-q8" -> runs/model-q8 (a checkpoint file: next to it)."""
    p = Path(model_path)
    return p.with_name(p.stem + suffix) if p.is_file() else p.with_name(p.name + suffix)


def apply_step(model_path: str | Path, out: str | Path | None, fn: StepFn, cache_root: str | Path = "pkl_data",
               on_fold: Callable[[int, dict], None] | None = None, write: bool = True,
               data: str | Path | None = None, command: str | None = None, step_name: str = "step",
               views: bool = False) -> dict:
    """Run ``fn`` on each fold checkpoint and on the run's ``final.pt`` (calibrated and fine-tuned on all its
    speakers, with the fold's recipe; it has no held-out speakers, so the figures are the folds'); write the
    new ones to ``out`` (same file names) with a manifest naming the source run as parent.

    ``data``: where the run's corpus lies, read only when its features are not in the cache (and for ``views``).
    ``views``: ``fn`` gets the utterances with the run's augmented views (:func:`gclf.train.augment.run_views`).
    """
    src = Path(model_path)
    man = check_run(src) if src.is_dir() else None
    write = write and out is not None
    paths = checkpoint_paths(src, include_final=write)   # a sweep (nothing written) measures the folds only
    reports, final_report, utts, run_id = [], None, None, new_run_id()
    if write:
        info = dict(run_id=run_id, parent=man["run_id"] if man else None,
                    folds=sum(p.name.startswith("fold") for p in paths), final=any(p.name == "final.pt" for p in paths),
                    checkpoints=[p.name for p in paths], seed=man["seed"] if man else None,
                    arch=man["arch"] if man else None, corpus=man["corpus"] if man else None,
                    command=command or f"gclf {step_name} --model {src} --out {out}")
    for i, p in enumerate(paths, start=1):
        ck = load_checkpoint(p)
        if utts is None:
            utts = features_for_checkpoint(ck, cache_root, data)
            if views:
                from gclf.train.augment import run_views

                utts = run_views(ck, utts, data, cache_root)
        if write and i == 1:          # inputs read: only now is a previous output replaced
            out = clear_step_dir(out, src)
            info["chain"] = [s["step"] for s in ck.get("chain", [])] + [step_name]
            info["config"] = {"source": str(src)}
            write_manifest(out, complete=False, **info)
        new, report = fn(ck, utts)
        if write:
            new = {**new, "run_id": run_id}
            save_checkpoint(Path(out) / p.name, new)
        if not has_heldout(ck):
            final_report = {"checkpoint": p.name, "measured": False, **{k: v for k, v in report.items()
                                                                        if not k.startswith("accuracy")}}
            continue
        reports.append({"checkpoint": p.name, **report})
        if on_fold:
            on_fold(i, report)
    if not reports:
        summary = {"folds": [], "note": f"{paths[0].name} has no held-out speakers: nothing measured (the "
                                        "figures of a run are its folds')"}
    else:
        summary = mean_report(reports)
        summary["folds"] = reports
    summary["final"] = final_report
    summary["model"] = str(out) if write else None
    if write:
        atomic_json(Path(out) / "step.json", summary)
        write_manifest(out, complete=True, **info)
    return summary


def mean_report(reports: list[dict]) -> dict:
    """Mean (and std for accuracies) over folds of every numeric field."""
    out = {}
    for key, v in reports[0].items():
        if isinstance(v, bool) and all(r.get(key) is v for r in reports):
            out[key] = v                                   # a flag of the step, e.g. views
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
