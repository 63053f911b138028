"""Free Spoken Digit Dataset layout: ``recordings/<digit>_<speaker>_<n>.{wav,flac}`` (8 kHz mono: resampled to
the feature rate when read). Task ``digit``; the speaker is the name in the file name. The corpus root is the
folder holding ``recordings/`` (or ``recordings/`` itself). Utterance ids are ``<speaker>-<digit>-<n>``.
"""
from __future__ import annotations

import re
from pathlib import Path

from gclf.data.corpus import AUDIO_SUFFIXES, Corpus, Utterance
from gclf.errors import GclfError

NAME = "fsdd"
TASKS = ("digit",)
_FILE = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


def _clips(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _recordings(path: Path) -> Path | None:
    for cand in (path / "recordings", path):
        if cand.is_dir() and any(_FILE.match(f.stem) for f in _clips(cand)[:50]):
            return cand
    return None


def detect(path: Path) -> Path | None:
    """The folder holding ``recordings/`` (or, given the clips' folder itself, that folder)."""
    rec = _recordings(path)
    return None if rec is None else (rec.parent if rec.name == "recordings" else rec).resolve()


def scan(path: str | Path, task: str = "digit") -> Corpus:
    rec = _recordings(Path(path))
    if rec is None:
        raise GclfError(f"{path}: no recordings/D_NAME_N clips (not an FSDD-layout corpus)")
    corpus = Corpus(root=detect(Path(path)), utterances=[], layout=NAME, task=task)
    for f in _clips(rec):
        m = _FILE.match(f.stem)
        if not m:
            corpus.skipped_bad_name += 1
            corpus.problems.append(f"{f.name}: name is not DIGIT_SPEAKER_N")
            continue
        digit, spk, n = m.groups()
        corpus.utterances.append(Utterance(f, spk.lower(), digit, n, digit))
    return corpus
