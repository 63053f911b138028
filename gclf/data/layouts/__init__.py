"""Corpus adapters: one module per on-disk layout, each turning a folder into a :class:`~gclf.data.corpus.Corpus`
of (path, speaker, label) utterances for one task (:mod:`gclf.data.tasks`).

A layout module offers ``NAME``, ``TASKS`` (the tasks it can label, its default first),
``detect(path) -> Path | None`` (the corpus root if ``path`` is in that layout), ``scan(path, task) -> Corpus``
and optionally ``EVALUATION_ONLY = True`` (training refuses it). :func:`scan_any` detects the layout (or takes
the one named, ``--corpus``) and the task (``--task``, else the layout's default).
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from gclf.data.corpus import Corpus
from gclf.data.layouts import common_voice, fsdd, librispeech, ravdess, speech_commands
from gclf.errors import GclfError

LAYOUTS: tuple[ModuleType, ...] = (librispeech, ravdess, speech_commands, fsdd, common_voice)
LAYOUT_NAMES = tuple(m.NAME for m in LAYOUTS)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise GclfError(f"data path does not exist: {path}")
    if not path.is_dir():
        raise GclfError(f"data path is not a folder: {path}")


def detect_layout(path: str | Path, corpus: str | None = None) -> tuple[ModuleType, Path]:
    """(layout module, corpus root) of ``path`` (in layout ``corpus`` when named); a one-line GclfError when
    no layout matches, or when two do and none was named."""
    path = Path(path).expanduser()
    _check_path(path)
    if corpus is not None:
        layout = layout_named(corpus)
        root = layout.detect(path)
        if root is None:
            raise GclfError(f"{path}: not a {corpus}-layout corpus")
        return layout, root
    found = [(m, r) for m in LAYOUTS for r in [m.detect(path)] if r is not None]
    if len(found) > 1:
        raise GclfError(f"{path} looks like {' and '.join(m.NAME for m, _ in found)} corpora: name one with "
                        f"--corpus")
    if found:
        return found[0]
    raise GclfError(f"{path}: not a known corpus layout (no SPEAKERS.TXT here nor in {path / 'LibriSpeech'} for "
                    "LibriSpeech, no Actor_NN folders for RAVDESS, no word folders of *_nohash_* clips for Speech "
                    "Commands, no recordings/D_NAME_N clips for FSDD, no validated.tsv and clips/ for Common Voice)")


def layout_named(name: str) -> ModuleType:
    for m in LAYOUTS:
        if m.NAME == name:
            return m
    raise GclfError(f"unknown corpus layout {name!r}: choose one of {', '.join(LAYOUT_NAMES)}")


def task_of(layout: ModuleType, task: str | None) -> str:
    """The task asked for, checked against what the layout labels (its default when None)."""
    if task is None:
        return layout.TASKS[0]
    if task not in layout.TASKS:
        raise GclfError(f"a {layout.NAME} corpus has no {task!r} labels: its tasks are {', '.join(layout.TASKS)}")
    return task


def scan_any(path: str | Path, task: str | None = None, corpus: str | None = None) -> Corpus:
    """Scan a corpus in any known layout for ``task`` (the layout's default when None)."""
    layout, root = detect_layout(path, corpus)
    c = layout.scan(root, task_of(layout, task))
    c.layout, c.task = layout.NAME, task_of(layout, task)
    return c


def find_any_root(path: str | Path, corpus: str | None = None) -> Path:
    return detect_layout(path, corpus)[1]


def check_trainable(path: str | Path, corpus: str | None = None) -> None:
    """A one-line GclfError for a corpus whose layout is read for evaluation only (RAVDESS)."""
    layout, root = detect_layout(path, corpus)
    if getattr(layout, "EVALUATION_ONLY", False):
        raise GclfError(f"{root} is a {layout.NAME} corpus, read only to measure generalisation (gclf never "
                        "trains on it): train on another layout")
