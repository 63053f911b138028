"""LibriSpeech-layout corpora: SPEAKERS.TXT, SPK/CHAP/SPK-CHAP-UTT.{flac,wav}, and speaker-disjoint folds.

A corpus root is the ``LibriSpeech`` folder (the one holding SPEAKERS.TXT); its parent is accepted too.
Any subset folders below it are walked; transcripts are not needed. Audio of a speaker missing from
SPEAKERS.TXT is skipped and counted.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gclf.errors import BadAudio, GclfError

AUDIO_SUFFIXES = (".flac", ".wav")   # what every layout reads (Common Voice: .mp3)
_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True)
class Utterance:
    """One audio file of the corpus."""

    path: Path
    speaker: str
    chapter: str
    utt: str
    label: str  # the class name of the corpus's task (sex: "F" or "M"; keyword: "yes", ...)

    @property
    def uid(self) -> str:
        return f"{self.speaker}-{self.chapter}-{self.utt}"


@dataclass
class Corpus:
    """What a scan found: the utterances with a known label for ``task``, and what was skipped."""

    root: Path
    utterances: list[Utterance]
    skipped_unknown_speaker: int = 0      # (or, where labels are per file, files without a usable label)
    skipped_bad_name: int = 0
    problems: list[str] = field(default_factory=list)
    layout: str = "librispeech"           # the adapter that read it (gclf.data.layouts)
    task: str = "sex"                     # the label its utterances carry (gclf.data.tasks)

    @property
    def speakers(self) -> dict[str, str]:
        """{speaker: label} (the label of a speaker's last utterance where labels vary within a speaker)."""
        return {u.speaker: u.label for u in self.utterances}

    def identity(self) -> dict:
        """What names this corpus wherever it lies: its folder name, layout and task, and a hash of its
        utterance ids and labels. A checkpoint and the feature cache record this, never the absolute path."""
        return corpus_identity(self.root, self.utterances, self.layout, self.task)


def corpus_identity(root: Path, utterances: list[Utterance], layout: str = "librispeech", task: str = "sex") -> dict:
    """The sex task hashes what it always hashed (uid:sex lines), so runs made before tasks existed still
    recognise their corpus (and never count its speakers as unseen); any other task hashes its name too."""
    blob = "\n".join(f"{u.uid}:{u.label}" for u in sorted(utterances, key=lambda u: u.uid))
    if task != "sex":
        blob = f"task={task}\n{blob}"
    return {"name": root.name or "corpus", "id": hashlib.sha256(blob.encode()).hexdigest()[:16],
            "utterances": len(utterances), "layout": layout, "task": task}


def find_root(path: str | Path) -> Path:
    """Return the folder holding SPEAKERS.TXT: ``path`` itself or ``path/LibriSpeech``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise GclfError(f"data path does not exist: {path}")
    if not path.is_dir():
        raise GclfError(f"data path is not a folder: {path}")
    for cand in (path, path / "LibriSpeech"):
        if (cand / "SPEAKERS.TXT").is_file():
            return cand.resolve()
    raise GclfError(f"no SPEAKERS.TXT in {path} (nor in {path / 'LibriSpeech'}): not a LibriSpeech-layout corpus")


def read_speakers(path: str | Path) -> dict[str, str]:
    """Parse SPEAKERS.TXT into {speaker id: "F" | "M"}; comment lines start with ';'."""
    sexes: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise GclfError(f"cannot read {path}: {exc.strerror}") from None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].upper() in ("F", "M"):
            sexes[parts[0]] = parts[1].upper()
    if not sexes:
        raise GclfError(f"{path}: no speaker lines of the form 'ID | F/M | ...'")
    return sexes


def scan_corpus(path: str | Path) -> Corpus:
    """Walk a LibriSpeech-layout corpus; sorted, so every run sees the same order."""
    root = find_root(path)
    sexes = read_speakers(root / "SPEAKERS.TXT")
    corpus = Corpus(root=root, utterances=[])
    for f in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        m = _NAME.match(f.stem)
        if not m:
            corpus.skipped_bad_name += 1
            corpus.problems.append(f"{f.relative_to(root)}: name is not SPK-CHAP-UTT")
            continue
        spk, chap, utt = m.groups()
        if spk not in sexes:
            corpus.skipped_unknown_speaker += 1
            continue
        corpus.utterances.append(Utterance(f, spk, chap, utt, sexes[spk]))
    if not corpus.utterances:
        raise GclfError(f"no usable .flac/.wav files under {root}")
    return corpus


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Read FLAC/WAV with soundfile as float32 mono at ``sample_rate`` (stereo mixed down, resampled).

    Raises GclfError with a one-line reason for unreadable, corrupt or empty files.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise BadAudio(f"{path}: no such file", "missing")
    if p.is_dir():
        raise BadAudio(f"{path}: a folder, not an audio file", "unreadable")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / OSError
        msg = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
        raise BadAudio(f"{path}: unreadable audio ({msg})", "unreadable") from None
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise BadAudio(f"{path}: empty audio", "empty")
    if not np.all(np.isfinite(audio)):
        raise BadAudio(f"{path}: audio holds NaN or infinite samples", "unreadable")
    if sr != sample_rate:
        from scipy.signal import resample_poly
        from math import gcd

        g = gcd(int(sr), int(sample_rate))
        audio = resample_poly(audio, sample_rate // g, int(sr) // g).astype(np.float32)
    return audio


def speaker_folds(speakers: dict[str, str], k: int, seed: int = 0) -> list[list[str]]:
    """Split speakers into ``k`` disjoint folds, stratified by their value in ``speakers`` (sex, or any
    stratum: strata in sorted order, so "F" before "M" as always), deterministic for a seed."""
    if k < 2:
        raise GclfError(f"need at least 2 folds, got {k}")
    if len(speakers) < k:
        raise GclfError(f"{len(speakers)} speakers cannot make {k} speaker-disjoint folds")
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for stratum in sorted(set(speakers.values())):
        ids = sorted(s for s, x in speakers.items() if x == stratum)
        rng.shuffle(ids)
        for i, spk in enumerate(ids):
            folds[(i + offset) % k].append(spk)
        offset += len(ids)
    return [sorted(f) for f in folds]


def split_validation(speakers: dict[str, str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out about ``fraction`` of the given speakers (stratified as :func:`speaker_folds`) for early
    stopping; ``fraction`` 0 holds out none (training then stops on its own loss)."""
    rng = np.random.default_rng(seed + 7919)
    train, val = [], []
    for stratum in sorted(set(speakers.values())):
        ids = sorted(s for s, x in speakers.items() if x == stratum)
        rng.shuffle(ids)
        n_val = max(1, int(round(fraction * len(ids)))) if len(ids) > 1 and fraction > 0 else 0
        val += ids[:n_val]
        train += ids[n_val:]
    return sorted(train), sorted(val)
