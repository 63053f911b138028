"""Run folders as a whole: ``manifest.json`` says what a folder holds, and a folder that does not match it
is refused with one line saying what to rerun.

A run folder (from `gclf train`, or from a step such as `gclf quantize` applied to a run) holds
``fold1.pt .. foldK.pt``, optionally ``final.pt``, and ``manifest.json``::

    {"gclf_run": 1, "run_id": "3f2a...", "parent": null | "<run id of the source run>", "complete": true,
     "folds": 5, "final": false, "checkpoints": ["fold1.pt", ..., "fold5.pt"], "arch": "cnn_lstm",
     "seed": 0, "config": {...}, "chain": ["train"], "corpus": {...}, "versions": {...}, "command": "gclf train ..."}

The manifest is written first with ``complete: false`` and rewritten with ``complete: true`` once every
checkpoint is on disk, so a run killed half way is recognised; every checkpoint carries the ``run_id`` of
its folder, so files left over from another run (``fold4.pt`` of an earlier 5-fold run beside a 3-fold one)
are recognised too.
"""
from __future__ import annotations

import json
import platform
import uuid
from pathlib import Path

from gclf.errors import GclfError
from gclf.io import atomic_json

MANIFEST = "manifest.json"
FORMAT = 1
# What gclf writes into a run folder: a folder holding only these may be cleared by `train --force`.
RUN_FILES = ("manifest.json", "summary.json", "step.json", "train_log.csv", "curves.png")
VERSION_PACKAGES = ("gclf", "torch", "numpy", "scipy", "librosa", "soundfile", "onnx", "onnxruntime")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def versions() -> dict:
    """Python and the versions of the packages that decide the figures."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def checkpoint_names(folds: int, final: bool) -> list[str]:
    return [f"fold{i}.pt" for i in range(1, folds + 1)] + (["final.pt"] if final else [])


def write_manifest(folder: str | Path, *, run_id: str, folds: int, final: bool, complete: bool, arch: str,
                   seed: int | None, config: dict, chain: list[str], corpus, command: str,
                   parent: str | None = None, checkpoints: list[str] | None = None) -> Path:
    man = {"gclf_run": FORMAT, "run_id": run_id, "parent": parent, "complete": complete, "folds": folds,
           "final": final, "checkpoints": checkpoints or checkpoint_names(folds, final), "arch": arch, "seed": seed,
           "config": config, "chain": chain, "corpus": corpus, "versions": versions(), "command": command}
    return atomic_json(Path(folder) / MANIFEST, man)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a run folder; a missing or corrupt one is a one-line GclfError."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise GclfError(f"{folder} has no {MANIFEST}: not a complete gclf run folder (rerun `gclf train --out "
                        f"{folder} --force`, or the step that made it)")
    try:
        man = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GclfError(f"{path} is corrupt ({exc.__class__.__name__}): rerun the command that made {folder}") from None
    if not isinstance(man, dict) or man.get("gclf_run") != FORMAT or not isinstance(man.get("checkpoints"), list):
        raise GclfError(f"{path} is not a gclf run manifest: rerun the command that made {folder}")
    return man


def _rerun(folder: Path, man: dict) -> str:
    cmd = man.get("command") or f"gclf train --out {folder}"
    if cmd.startswith("gclf train") and "--force" not in cmd.split():
        cmd += " --force"
    return cmd


def _resume(man: dict) -> str:
    """How to continue an interrupted `gclf train` (its folds resume from their last saved epoch)."""
    cmd = man.get("command") or ""
    if "--resume" not in cmd.split():
        cmd += " --resume"
    return f"continue it with `{cmd}`, or " if cmd.startswith("gclf train") else ""


def check_run(folder: str | Path) -> dict:
    """The manifest of ``folder`` if the folder is a complete run of exactly the checkpoints it lists
    (checkpoint run ids are checked by :func:`check_member` when each is loaded); else a GclfError."""
    folder = Path(folder)
    man = read_manifest(folder)
    if not man.get("complete"):
        have = sum((folder / n).is_file() for n in man["checkpoints"])
        raise GclfError(f"{folder} is an incomplete run ({have} of {len(man['checkpoints'])} checkpoints written; "
                        f"it was interrupted): {_resume(man)}rerun `{_rerun(folder, man)}`")
    missing = [n for n in man["checkpoints"] if not (folder / n).is_file()]
    if missing:
        raise GclfError(f"{folder} lacks {', '.join(missing)} listed in its manifest: rerun `{_rerun(folder, man)}`")
    extra = sorted(p.name for p in folder.glob("*.pt") if p.name not in man["checkpoints"])
    if extra:
        raise GclfError(f"{folder} mixes runs: {', '.join(extra)} is not part of its {man['folds']}-fold run "
                        f"{man['run_id']}: rerun `{_rerun(folder, man)}` (or remove the extra files)")
    return man


def check_member(path: Path, ck: dict, man: dict) -> None:
    """A checkpoint loaded from a run folder must belong to that folder's run."""
    if ck.get("run_id") != man["run_id"]:
        raise GclfError(f"{path} belongs to another run ({ck.get('run_id') or 'unknown'}, the folder's manifest says "
                        f"{man['run_id']}): the folder mixes runs; rerun `{_rerun(path.parent, man)}`")


def _gclf_made(p: Path) -> bool:
    return p.name in RUN_FILES or p.suffix == ".pt" or (p.name.startswith(".") and p.name.endswith(".tmp"))


def check_run_dir(folder: str | Path, force: bool) -> list[Path]:
    """What :func:`prepare_run_dir` would clear; raises (and changes nothing) if it would refuse."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GclfError(f"{folder} is a file, not a folder: choose another --out")
    entries = list(folder.iterdir()) if folder.is_dir() else []
    if entries:
        foreign = [p.name for p in entries if p.is_dir() or not _gclf_made(p)]
        if foreign:
            raise GclfError(f"{folder} holds files that are not a gclf run ({foreign[0]}, ...): choose another --out")
        if not force:
            raise GclfError(f"{folder} already holds a run: pass --force to replace it, or choose another --out")
    return entries


def prepare_run_dir(folder: str | Path, force: bool) -> Path:
    """Make ``folder`` ready for a new run: created if missing; a non-empty one is refused unless ``force``,
    which clears it, and only if it holds nothing but gclf's own run files (never a folder of other files)."""
    for p in check_run_dir(folder, force):
        p.unlink()
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def clear_step_dir(out: str | Path, source: str | Path) -> Path:
    """Make a step's output folder ready: a previous output of a step (a manifest with a parent) is replaced;
    the source run itself, a training run, or a folder of other files is refused."""
    out, source = Path(out), Path(source)
    if out.resolve() == (source if source.is_dir() else source.parent).resolve():
        raise GclfError(f"--out {out} is the folder of the model being changed: choose another --out")
    entries = list(out.iterdir()) if out.is_dir() else []
    if entries:
        man = None
        if (out / MANIFEST).is_file():
            try:
                man = json.loads((out / MANIFEST).read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                man = None
        if isinstance(man, dict) and man.get("gclf_run") and not man.get("parent"):
            raise GclfError(f"{out} holds a training run: choose another --out")
        foreign = [p.name for p in entries if p.is_dir() or not _gclf_made(p)]
        if foreign:
            raise GclfError(f"{out} holds files that are not a gclf run ({foreign[0]}, ...): choose another --out")
        for p in entries:
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out

