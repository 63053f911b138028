"""Speech Commands layout (Warden 2018): ``<word>/<speakerhash>_nohash_<n>.{wav,flac}``, plus
``_unknown_/<word>_<speakerhash>_nohash_<n>.*`` and ``_silence_/<n>.*`` (1-s background-noise clips) as the
v0.02 test set ships them. Task ``keyword``: the ten words are their own classes, every other word is
``_unknown_``, the noise clips ``_silence_`` (the full release's ``_background_noise_`` folder holds long
recordings, not clips: skipped).

Speaker = the hash before ``_nohash_``. A noise clip has no speaker: each is its own pseudo-speaker
``silence<n>``, so the silence clips spread over the folds like any speaker's (and never sit in train and test
at once). Utterance ids are ``<speaker>-<word>-<n>``.
"""
from __future__ import annotations

import re
from pathlib import Path

from gclf.data.corpus import AUDIO_SUFFIXES, Corpus, Utterance
from gclf.data.tasks import KEYWORDS
from gclf.errors import GclfError

NAME = "speech_commands"
TASKS = ("keyword",)
SILENCE, UNKNOWN, NOISE_DIR = "_silence_", "_unknown_", "_background_noise_"
_CLIP = re.compile(r"^(?:([a-z]+)_)?([0-9a-f]{8})_nohash_(\d+)$")
_SILENCE_CLIP = re.compile(r"^[A-Za-z0-9_]+$")


def _audio(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _word_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name != NOISE_DIR and not p.name.startswith("."))


def detect(path: Path) -> Path | None:
    """``path`` if one of its word folders holds a ``*_nohash_*`` clip, or it has a ``_silence_`` folder."""
    dirs = _word_dirs(path)
    if any(d.name == SILENCE for d in dirs):
        return path.resolve()
    for d in dirs:
        if any(_CLIP.match(f.stem) for f in _audio(d)[:50]):
            return path.resolve()
    return None


def label_of(word: str) -> str:
    """The keyword task's class of a spoken word (a folder name)."""
    return word if word in KEYWORDS else UNKNOWN


def scan(path: str | Path, task: str = "keyword") -> Corpus:
    root = Path(path).resolve()
    corpus = Corpus(root=root, utterances=[], layout=NAME, task=task)
    for d in _word_dirs(root):
        for f in _audio(d):
            if d.name == SILENCE:
                if not _SILENCE_CLIP.match(f.stem):
                    corpus.skipped_bad_name += 1
                    corpus.problems.append(f"{f.relative_to(root)}: a silence clip's name must be letters, digits, _")
                    continue
                spk = "silence" + f.stem.replace("_", "")
                corpus.utterances.append(Utterance(f, spk, SILENCE, "0", SILENCE))
                continue
            m = _CLIP.match(f.stem)
            word = m.group(1) if m and m.group(1) else d.name
            if not m or (m.group(1) and d.name != UNKNOWN) or word == UNKNOWN:
                corpus.skipped_bad_name += 1
                corpus.problems.append(f"{f.relative_to(root)}: name is not HASH_nohash_N (or WORD_HASH_nohash_N "
                                       f"in {UNKNOWN}/)")
                continue
            corpus.utterances.append(Utterance(f, m.group(2), word, m.group(3), label_of(word)))
    if not corpus.utterances:
        raise GclfError(f"no usable Speech Commands clips under {root}")
    return corpus
