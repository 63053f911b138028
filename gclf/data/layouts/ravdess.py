"""RAVDESS layout: ``Actor_NN/MM-VV-EE-II-SS-RR-NN.{flac,wav}`` (modality, vocal channel, emotion, intensity,
statement, repetition, actor). The actor number gives the sex: odd = male, even = female. Audio at 48 kHz
or in stereo is mixed down and resampled when read (:func:`gclf.data.corpus.load_audio`).

Speaker ids are ``Actor_NN``, an utterance id keeps every field of the name, so ids never collide with
LibriSpeech's numeric speakers. Files whose name does not parse, or whose actor field disagrees with the
folder, are skipped and counted.
"""
from __future__ import annotations

import re
from pathlib import Path

from gclf.data.corpus import AUDIO_SUFFIXES, Corpus, Utterance
from gclf.errors import GclfError

NAME = "ravdess"
TASKS = ("sex",)
EVALUATION_ONLY = True      # a corpus to measure generalisation on: `gclf train` refuses it
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_FILE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def sex_of_actor(actor: int) -> str:
    """RAVDESS convention: odd-numbered actors are male, even-numbered female."""
    return "M" if actor % 2 else "F"


def _actor_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name))


def detect(path: Path) -> Path | None:
    """``path`` itself if it holds ``Actor_NN`` folders (or is one actor's folder: then its parent)."""
    if _ACTOR_DIR.match(path.name) and path.is_dir():
        return path.parent.resolve()
    return path.resolve() if _actor_dirs(path) else None


def scan(path: str | Path, task: str = "sex") -> Corpus:
    """Every audio file under the Actor_NN folders, sorted; a label from the actor number."""
    root = detect(Path(path))
    if root is None:
        raise GclfError(f"{path}: no Actor_NN folders (not a RAVDESS-layout corpus)")
    corpus = Corpus(root=root, utterances=[], layout=NAME, task="sex")
    for d in _actor_dirs(root):
        for f in sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
            m = _FILE.match(f.stem)
            if not m or int(m.group(7)) != int(_ACTOR_DIR.match(d.name).group(1)):
                corpus.skipped_bad_name += 1
                corpus.problems.append(f"{f.relative_to(root)}: name is not MM-VV-EE-II-SS-RR-NN of {d.name}")
                continue
            actor = int(m.group(7))
            corpus.utterances.append(Utterance(f, f"Actor_{actor:02d}", m.group(3), "_".join(m.groups()),
                                               sex_of_actor(actor)))
    if not corpus.utterances:
        raise GclfError(f"no usable .flac/.wav files under the Actor_NN folders of {root}")
    return corpus
