"""Corpus adapters: one module per on-disk layout, each turning a folder into a :class:`~gclf.data.corpus.Corpus`
of (path, speaker, label) utterances.

A layout module offers ``NAME``, ``detect(path) -> Path | None`` (the corpus root if ``path`` is in that layout),
``scan(path) -> Corpus`` and optionally ``EVALUATION_ONLY = True`` (training refuses it). :func:`scan_any` tries each in turn; :func:`find_any_root` gives the root.
LibriSpeech (SPEAKERS.TXT, SPK/CHAP/SPK-CHAP-UTT) is the training layout; RAVDESS (Actor_NN/..-NN.flac) is
read only to measure generalisation.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from gclf.data.corpus import Corpus
from gclf.data.layouts import librispeech, ravdess
from gclf.errors import GclfError

LAYOUTS: tuple[ModuleType, ...] = (librispeech, ravdess)


def detect_layout(path: str | Path) -> tuple[ModuleType, Path]:
    """(layout module, corpus root) of ``path``; a one-line GclfError when no layout matches."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GclfError(f"data path does not exist: {path}")
    if not path.is_dir():
        raise GclfError(f"data path is not a folder: {path}")
    for layout in LAYOUTS:
        root = layout.detect(path)
        if root is not None:
            return layout, root
    raise GclfError(f"{path}: not a known corpus layout (no SPEAKERS.TXT here nor in {path / 'LibriSpeech'} "
                    "for LibriSpeech, no Actor_NN folders for RAVDESS)")


def scan_any(path: str | Path) -> Corpus:
    """Scan a corpus in any known layout."""
    layout, root = detect_layout(path)
    return layout.scan(root)


def find_any_root(path: str | Path) -> Path:
    return detect_layout(path)[1]


def check_trainable(path: str | Path) -> None:
    """A one-line GclfError for a corpus whose layout is read for evaluation only (RAVDESS)."""
    layout, root = detect_layout(path)
    if getattr(layout, "EVALUATION_ONLY", False):
        raise GclfError(f"{root} is a {layout.NAME} corpus, read only to measure generalisation (gclf never "
                        "trains on it): train on a LibriSpeech-layout corpus")
