"""MFCC features: the config, per-utterance extraction, windowing, and the resumable pkl_data/ cache.

The cache folder is keyed by the corpus root and every field of :class:`FeatureConfig`, so changing any
parameter never reuses stale features. One pickle per audio file, written atomically: an interrupted
extract resumes by skipping the files already done (and redoing any whose size or mtime changed).

Short clips: a clip of at least ``min_seconds`` but shorter than one window is padded to one window by
repeating its frames (wrap); shorter ones are skipped and counted.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from gclf.data.corpus import Corpus, Utterance, load_audio
from gclf.errors import GclfError
from gclf.io import atomic_json, atomic_pickle, safe_load_pickle

CACHE_VERSION = 1


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000   # Hz; audio at other rates is resampled
    n_mfcc: int = 40           # MFCCs per frame
    n_mels: int = 64           # mel bands feeding the DCT
    n_fft: int = 512           # 32 ms analysis window
    hop_length: int = 320      # 20 ms frame hop
    fmin: float = 20.0
    fmax: float = 8000.0
    window_frames: int = 99    # frames per model window (1.98 s); the model accepts 84..99
    window_hop: int = 50       # frames between window starts (~50 % overlap)
    min_seconds: float = 0.5   # clips shorter than this are skipped; shorter than a window: padded
    kind: str = "mfcc"         # "mfcc": MFCC frames; "audio": the raw samples, (1, samples), a frame per sample
                               # "int_mfcc": MFCC frames of the integer front-end (gclf.frontend), in dB
                               # (window_frames and window_hop then count samples; the MFCC fields are unused)

    def key(self) -> str:
        d = asdict(self)
        if d["kind"] == "mfcc":            # MFCC caches keep the keys they had before `kind` existed
            d.pop("kind")
        elif d["kind"] == "int_mfcc":      # the integer front-end's definition is part of its identity
            from gclf.frontend.features import frontend_config

            d["frontend"] = frontend_config(self).key()
        blob = json.dumps({"v": CACHE_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def mfcc(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """40 librosa MFCCs, shape (n_mfcc, frames), float32."""
    import librosa

    m = librosa.feature.mfcc(y=audio, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                             hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return m.astype(np.float32)


def frames(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """What a model window is cut from: MFCCs (n_mfcc, frames), or the raw samples as (1, samples) float32."""
    if cfg.kind == "audio":
        return np.asarray(audio, dtype=np.float32)[None, :]
    if cfg.kind == "int_mfcc":
        from gclf.frontend.features import int_mfcc_frames

        return int_mfcc_frames(audio, cfg)
    if cfg.kind != "mfcc":
        raise GclfError(f"unknown feature kind {cfg.kind!r}: mfcc, int_mfcc or audio")
    return mfcc(audio, cfg)


def window_starts(n_frames: int, cfg: FeatureConfig) -> list[int]:
    """Start frames of the windows of an utterance; the tail gets an end-aligned window."""
    w, h = cfg.window_frames, cfg.window_hop
    if n_frames <= w:
        return [0]
    starts = list(range(0, n_frames - w + 1, h))
    if n_frames - (starts[-1] + w) > h // 2:
        starts.append(n_frames - w)
    return starts


def pad_frames(m: np.ndarray, n: int) -> np.ndarray:
    """Repeat the frames of ``m`` (wrap) until it has at least ``n`` frames."""
    if m.shape[1] >= n:
        return m
    reps = -(-n // m.shape[1])
    return np.tile(m, (1, reps))[:, :n]


def cut_windows(m: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(n_mfcc, T) -> (n_windows, n_mfcc, window_frames)."""
    m = pad_frames(m, cfg.window_frames)
    return np.stack([m[:, s:s + cfg.window_frames] for s in window_starts(m.shape[1], cfg)])


def extract_utterance(utt: Utterance, cfg: FeatureConfig) -> dict:
    """Load, check and featurise one file; raises GclfError for bad or too-short audio."""
    audio = load_audio(utt.path, cfg.sample_rate)
    seconds = audio.size / cfg.sample_rate
    if seconds < cfg.min_seconds:
        raise GclfError(f"{utt.path}: {seconds:.2f} s is shorter than min_seconds={cfg.min_seconds}")
    if float(np.max(np.abs(audio))) == 0.0:
        raise GclfError(f"{utt.path}: digital silence")
    st = os.stat(utt.path)
    return {"uid": utt.uid, "speaker": utt.speaker, "chapter": utt.chapter, "utt": utt.utt, "sex": utt.sex,
            "seconds": float(seconds), "mfcc": frames(audio, cfg),
            "source": str(utt.path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@dataclass
class ExtractSummary:
    cache_dir: str
    done: int = 0
    reused: int = 0
    skipped: int = 0
    skipped_unknown_speaker: int = 0
    errors: list[str] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cache_dir_for(corpus_root: Path, cfg: FeatureConfig, cache_root: str | Path) -> Path:
    """pkl_data/<corpus name>-<hash of corpus path and feature config>/"""
    h = hashlib.sha256(f"{corpus_root}|{cfg.key()}".encode()).hexdigest()[:12]
    return Path(cache_root) / f"{corpus_root.parent.name or 'corpus'}-{corpus_root.name}-{h}"


def _is_fresh(pkl: Path, utt: Utterance) -> bool:
    if not pkl.is_file():
        return False
    try:
        rec = safe_load_pickle(pkl)
        st = os.stat(utt.path)
        return rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
    except (GclfError, OSError, AttributeError):
        return False


def _work(args: tuple[Utterance, FeatureConfig, str]) -> tuple[str, str | None]:
    utt, cfg, out = args
    try:
        atomic_pickle(out, extract_utterance(utt, cfg))
        return utt.uid, None
    except GclfError as exc:
        return utt.uid, str(exc)


def extract_corpus(corpus: Corpus, cfg: FeatureConfig, cache_root: str | Path = "pkl_data",
                   workers: int | None = None, progress: Callable[[int], None] | None = None,
                   on_error: Callable[[str], None] | None = None) -> ExtractSummary:
    """Extract every utterance into the cache, in parallel, skipping files already done."""
    out = cache_dir_for(corpus.root, cfg, cache_root)
    (out / "files").mkdir(parents=True, exist_ok=True)
    atomic_json(out / "meta.json", {"corpus": str(corpus.root), "feature_config": asdict(cfg),
                                    "cache_version": CACHE_VERSION})
    summary = ExtractSummary(str(out), skipped_unknown_speaker=corpus.skipped_unknown_speaker, errors=[])
    todo = []
    for u in corpus.utterances:
        pkl = out / "files" / f"{u.uid}.pkl"
        if _is_fresh(pkl, u):
            summary.reused += 1
            if progress:
                progress(1)
        else:
            todo.append((u, cfg, str(pkl)))
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(todo) < 2:
        _collect(map(_work, todo), summary, progress, on_error)
    else:
        with ProcessPoolExecutor(min(workers, len(todo))) as pool:   # workers end with the extraction
            _collect(pool.map(_work, todo, chunksize=1), summary, progress, on_error)
    return summary


def _collect(results: Iterable, summary: ExtractSummary, progress, on_error) -> None:
    """Count each worker result into the summary as it arrives."""
    for uid, err in results:
        if err is None:
            summary.done += 1
        else:
            summary.skipped += 1
            summary.errors.append(err)
            if on_error:
                on_error(err)
        if progress:
            progress(1)


@dataclass
class UtteranceFeatures:
    uid: str
    speaker: str
    sex: str
    seconds: float
    mfcc: np.ndarray  # (n_mfcc, T) float32 (kind "audio": (1, samples))

    @property
    def label(self) -> int:
        return 1 if self.sex == "F" else 0  # class 1 = female


def load_cache(cache_dir: str | Path) -> tuple[FeatureConfig, list[UtteranceFeatures]]:
    """Read a cache folder (no audio is touched). Unsafe pickles raise UnsafePickleError."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        raise GclfError(f"{cache_dir} is not a gclf feature cache (no meta.json)")
    cfg = FeatureConfig.from_dict(json.loads(meta_path.read_text())["feature_config"])
    utts = []
    for pkl in sorted((cache_dir / "files").glob("*.pkl")):
        r = safe_load_pickle(pkl)
        utts.append(UtteranceFeatures(r["uid"], r["speaker"], r["sex"], r["seconds"], np.asarray(r["mfcc"])))
    if not utts:
        raise GclfError(f"{cache_dir} holds no extracted files: run `gclf extract --store` first")
    return cfg, utts


def find_caches(cache_root: str | Path) -> list[Path]:
    """All cache folders under ``cache_root``, newest first."""
    root = Path(cache_root)
    dirs = [p.parent for p in root.glob("*/meta.json")]
    return sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True)


def summarize(utts: list[UtteranceFeatures], cfg: FeatureConfig) -> dict:
    """Counts for `gclf extract --from pkl`."""
    speakers = {u.speaker: u.sex for u in utts}
    windows = sum(len(window_starts(max(u.mfcc.shape[1], cfg.window_frames), cfg)) for u in utts)
    return {"utterances": len(utts), "windows": windows, "speakers": len(speakers),
            "female": sum(1 for s in speakers.values() if s == "F"),
            "male": sum(1 for s in speakers.values() if s == "M"),
            "hours": round(sum(u.seconds for u in utts) / 3600, 4)}
