"""Where an export goes: a folder named after the run, and never silently over another run's files.

``export_dir(root, ckpt)`` is ``root/<run>-<fold>`` (``weights_data/model-c8-a-q8-fold1``). ``claim(out,
source, names, force)`` records the checkpoint an export folder was written from (``.gclf-source``) and
refuses, before anything is written, to overwrite files that came from another checkpoint (or from an
unknown one) unless ``force``.
"""
from __future__ import annotations

from pathlib import Path

from gclf.errors import GclfError
from gclf.io import atomic_text

MARKER = ".gclf-source"


def export_dir(root: str | Path, ckpt: str | Path) -> Path:
    p = Path(ckpt).resolve()
    return Path(root) / f"{p.parent.name}-{p.stem}"


def claim(out: str | Path, source: str | Path, names: list[str], force: bool = False) -> None:
    out, source = Path(out), str(Path(source).resolve())
    marker = out / MARKER
    present = [n for n in names if (out / n).exists()]
    if not force and present:
        old = marker.read_text().strip() if marker.is_file() else None
        if old != source:
            raise GclfError(f"{out} already holds {present[0]} from {old or 'another export'}: choose another --out, "
                            "or pass --force to overwrite")
    atomic_text(marker, source + "\n")
