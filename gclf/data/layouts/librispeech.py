"""LibriSpeech layout (the reader lives in :mod:`gclf.data.corpus`): SPEAKERS.TXT sex per speaker id."""
from __future__ import annotations

from pathlib import Path

from gclf.data.corpus import Corpus, find_root, scan_corpus
from gclf.errors import GclfError

NAME = "librispeech"
TASKS = ("sex",)          # the tasks it labels; the first is its default


def detect(path: Path) -> Path | None:
    try:
        return find_root(path)
    except GclfError:
        return None


def scan(path: str | Path, task: str = "sex") -> Corpus:
    return scan_corpus(path)
