"""MFCC features: the config, per-utterance extraction, windowing, and the resumable pkl_data/ cache.

The cache folder is keyed by the corpus identity (its utterance ids and sexes, not its path: see
:meth:`gclf.data.corpus.Corpus.identity`) and every field of :class:`FeatureConfig`, so changing any
parameter never reuses stale features, and a checkpoint finds its features after the audio has moved. One pickle per audio file, written atomically: an interrupted
extract resumes by skipping the files already done (and redoing any whose size or mtime changed).

Short clips: a clip of at least ``min_seconds`` but shorter than one window is padded to one window
(:func:`pad_index`: its frames repeated, ``pad="wrap"``, or the clip centred between copies of its first and
last frames, ``pad="edge"``); shorter ones are skipped and counted.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from gclf.data.corpus import Corpus, Utterance, load_audio
from gclf.errors import BadAudio, GclfError
from gclf.io import atomic_json, atomic_pickle, safe_load_pickle

if TYPE_CHECKING:
    from gclf.data.store import FrameRef

CACHE_VERSION = 2   # 2: records carry the task's "label" (1: "sex")
RECORD_KEYS = {"uid", "speaker", "label", "seconds", "mfcc"}   # what every cached file holds (extract_utterance)


PADS = ("wrap", "edge")    # how a clip shorter than a window is padded (pad_index)


def check_pad(pad: str) -> str:
    """``pad`` if it names a padding of PADS, else a one-line error."""
    if pad not in PADS:
        raise GclfError(f"unknown padding {pad!r}: one of {', '.join(PADS)}")
    return pad


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
    mfcc_impl: str = "librosa"  # "librosa": librosa.feature.mfcc (the figures' features); "numpy": the same
                                # definition vectorised (gclf.data.fastmfcc), faster, within its ATOL
    fe_floor: str = "frame"    # int_mfcc: the integer front-end's log floor, a name of gclf.frontend.config.FLOORS
    pad: str = "wrap"          # a clip shorter than a window (PADS, pad_index): "wrap" repeats its frames; "edge"
                               # centres it between copies of its first and last frame (trimmed digit clips)

    def key(self) -> str:
        d = asdict(self)
        if d["kind"] == "mfcc":            # MFCC caches keep the keys they had before `kind` existed
            d.pop("kind")
        if d["mfcc_impl"] == "librosa":    # ... and before `mfcc_impl` existed
            d.pop("mfcc_impl")
        d.pop("fe_floor")                  # part of the front-end's key below (int_mfcc); unused otherwise
        d.pop("pad")                       # applied when windows are cut, not to the cached frames
        if self.kind == "int_mfcc":        # the integer front-end's definition is part of its identity
            from gclf.frontend.features import frontend_config

            d["frontend"] = frontend_config(self).key()
        blob = json.dumps({"v": CACHE_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = {f.name for f in fields(cls)}
        d = {"fe_floor": "frame", **d}     # configs written before fe_floor existed used the per-frame floor
        return cls(**{k: v for k, v in d.items() if k in names})     # ... and before pad, "wrap"

    def __post_init__(self) -> None:
        check_pad(self.pad)


@lru_cache(maxsize=1)
def _blas() -> "object":
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """Context: BLAS on one thread (feature arithmetic must not depend on where it runs, see :func:`mfcc`)."""
    return _blas().limit(limits=1, user_api="blas")


def mfcc(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """40 MFCCs, shape (n_mfcc, frames), float32: librosa's, or the vectorised path (``mfcc_impl``).

    Computed with one BLAS thread whatever the process's setting: a threaded matrix product rounds
    differently (by ~1e-5), and the features must not depend on where they were computed (a local pool,
    this process, or a Dask worker)."""
    with one_blas_thread():
        return _mfcc(audio, cfg)


def _mfcc(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    if cfg.mfcc_impl == "numpy":
        from gclf.data.fastmfcc import mfcc_fast

        return mfcc_fast(audio, cfg.sample_rate, cfg.n_mfcc, cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmin, cfg.fmax)
    if cfg.mfcc_impl != "librosa":
        raise GclfError(f"unknown mfcc_impl {cfg.mfcc_impl!r}: librosa or numpy")
    import librosa

    m = librosa.feature.mfcc(y=audio, sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                             hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return m.astype(np.float32)


def frames(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """What a model window is cut from: MFCCs (n_mfcc, frames), or the raw samples as (1, samples) float32.

    MFCCs are computed with the BLAS on one thread, whatever OMP_NUM_THREADS says: with 2 threads every file's
    MFCCs differ by up to 1e-4 (summation order), and a run trained on them lands 1.2 points away (98.0 %
    instead of 96.8 % utterance on librispeech-251), so the figures would depend on the caller's environment.
    """
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


def pad_index(n_frames: int, width: int, pad: str = "wrap") -> np.ndarray:
    """Which frame of a clip of ``n_frames`` (< ``width``) each of a padded window's ``width`` frames is: the
    one definition of padding (the generated C computes the same index, gclf.frontend). "wrap": t % n;
    "edge": the clip centred, ``(width - n) // 2`` copies of frame 0 before it and copies of its last after."""
    t = np.arange(width)
    if check_pad(pad) == "wrap":
        return t % n_frames
    return np.clip(t - (width - n_frames) // 2, 0, n_frames - 1)


def pad_frames(m: np.ndarray, n: int, pad: str = "wrap") -> np.ndarray:
    """``m`` padded to ``n`` frames as :func:`pad_index` says (unchanged when it has at least ``n``)."""
    if m.shape[1] >= n:
        return m
    return m[:, pad_index(m.shape[1], n, pad)]


def cut_windows(m: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(n_mfcc, T) -> (n_windows, n_mfcc, window_frames)."""
    m = pad_frames(m, cfg.window_frames, cfg.pad)
    return np.stack([m[:, s:s + cfg.window_frames] for s in window_starts(m.shape[1], cfg)])


def extract_utterance(utt: Utterance, cfg: FeatureConfig) -> dict:
    """Load, check and featurise one file; raises GclfError for bad or too-short audio."""
    audio = load_audio(utt.path, cfg.sample_rate)
    seconds = audio.size / cfg.sample_rate
    if seconds < cfg.min_seconds:
        raise BadAudio(f"{utt.path}: {seconds:.2f} s is shorter than min_seconds={cfg.min_seconds}", "too short")
    if float(np.max(np.abs(audio))) == 0.0:
        raise BadAudio(f"{utt.path}: digital silence", "silent")
    st = os.stat(utt.path)
    return {"uid": utt.uid, "speaker": utt.speaker, "chapter": utt.chapter, "utt": utt.utt, "label": utt.label,
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
    skipped_by_reason: dict[str, int] = field(default_factory=dict)   # "unreadable", "too short", "silent", ...

    def as_dict(self) -> dict:
        return asdict(self)


def cache_dir_for(corpus: dict, cfg: FeatureConfig, cache_root: str | Path) -> Path:
    """pkl_data/<corpus name>-<hash of the corpus identity and the feature config>/ (``corpus``: an identity)."""
    h = hashlib.sha256(f"{corpus['id']}|{cfg.key()}".encode()).hexdigest()[:12]
    return Path(cache_root) / f"{corpus['name']}-{h}"


def _is_fresh(pkl: Path, utt: Utterance, known: dict[str, tuple] | None = None) -> bool:
    """The pickle exists and was made from the audio file as it is now (size, mtime). ``known`` (from the
    frame store's index: uid -> (pkl size, pkl mtime, audio size, audio mtime)) answers without unpickling
    when the pickle is the one the store was built from."""
    if not pkl.is_file():
        return False
    if known and utt.uid in known:
        try:
            p, a = pkl.stat(), os.stat(utt.path)
            if known[utt.uid] == (p.st_size, p.st_mtime_ns, a.st_size, a.st_mtime_ns):
                return True
        except OSError:
            return False
    try:
        rec = safe_load_pickle(pkl)
        st = os.stat(utt.path)
        return rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
    except (GclfError, OSError, AttributeError):
        return False


def _work(args: tuple[Utterance, FeatureConfig, str]) -> tuple[str, str | None, str | None]:
    """(uid, None, None) when done, or (uid, one-line error, reason)."""
    utt, cfg, out = args
    try:
        atomic_pickle(out, extract_utterance(utt, cfg), durable=False)   # checked when read, redone if torn
        return utt.uid, None, None
    except GclfError as exc:
        return utt.uid, str(exc), getattr(exc, "reason", "unreadable")


def extract_corpus(corpus: Corpus, cfg: FeatureConfig, cache_root: str | Path = "pkl_data",
                   workers: int | None = None, progress: Callable[[int], None] | None = None,
                   on_error: Callable[[str], None] | None = None, scheduler: str | None = None) -> ExtractSummary:
    """Extract every utterance into the cache, in parallel, skipping files already done.

    ``scheduler`` (a Dask scheduler address) runs the files on that cluster instead of a local pool: the
    cache folder must then be one every worker sees at the same path (a shared file system)."""
    out = cache_dir_for(corpus.identity(), cfg, cache_root)
    (out / "files").mkdir(parents=True, exist_ok=True)
    from gclf.data.tasks import get_task

    atomic_json(out / "meta.json", {"corpus": str(corpus.root), "corpus_identity": corpus.identity(),
                                    "feature_config": asdict(cfg), "cache_version": CACHE_VERSION,
                                    "task": corpus.task, "classes": list(get_task(corpus.task).classes)})
    summary = ExtractSummary(str(out), skipped_unknown_speaker=corpus.skipped_unknown_speaker, errors=[])
    todo = []
    from gclf.data.store import known_sources

    known = known_sources(out)
    for u in corpus.utterances:
        pkl = out / "files" / f"{u.uid}.pkl"
        if _is_fresh(pkl, u, known):
            summary.reused += 1
            if progress:
                progress(1)
        else:
            todo.append((u, cfg, str(pkl)))
    workers = max(1, workers or os.cpu_count() or 1)
    if not scheduler and (workers == 1 or len(todo) < 2):
        _collect(map(_work, todo), summary, progress, on_error)
    elif todo:
        from gclf.parallel import executor

        with executor(scheduler, min(workers, len(todo))) as pool:   # workers end with the extraction
            _collect(pool.map(_work, todo, chunksize=1), summary, progress, on_error)
    return summary


def _collect(results: Iterable, summary: ExtractSummary, progress, on_error) -> None:
    """Count each worker result into the summary as it arrives."""
    for uid, err, reason in results:
        if err is None:
            summary.done += 1
        else:
            summary.skipped += 1
            summary.skipped_by_reason[reason] = summary.skipped_by_reason.get(reason, 0) + 1
            summary.errors.append(err)
            if on_error:
                on_error(err)
        if progress:
            progress(1)


@dataclass
class UtteranceFeatures:
    """One utterance's frames, in memory or (from a cache) in its frame store, read when needed, and its class."""

    uid: str
    speaker: str
    target: str                    # class name (sex: "M"/"F"; keyword: "yes", ...)
    seconds: float
    data: "np.ndarray | FrameRef"  # (n_mfcc, T) float32 (kind "audio": (1, samples)), or where the store has it
    classes: tuple[str, ...] = ("M", "F")   # the task's classes (gclf.data.tasks): label k is classes[k]

    @property
    def label(self) -> int:
        """Class number of ``target`` (sex: 1 = female)."""
        return self.classes.index(self.target)

    @property
    def mfcc(self) -> np.ndarray:
        """All frames, (n_mfcc, T) (read from the store each time when stored)."""
        return self.data if isinstance(self.data, np.ndarray) else self.data.read().T

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[1]) if isinstance(self.data, np.ndarray) else self.data.frames

    def window(self, start: int, width: int, pad: str = "wrap") -> np.ndarray:
        """Frames ``start .. start+width`` of the utterance padded as :func:`pad_frames` pads it, (n_mfcc, width)."""
        if self.n_frames < width or isinstance(self.data, np.ndarray):
            return pad_frames(self.mfcc, width, pad)[:, start:start + width]
        return self.data.read(start, width).T


def load_record(pkl: Path) -> dict:
    """One cached file, checked to be a gclf feature record (what :func:`extract_utterance` writes)."""
    r = safe_load_pickle(pkl)
    if not isinstance(r, dict) or not RECORD_KEYS <= r.keys():
        raise GclfError(f"{pkl}: not a gclf feature record ({type(r).__name__}): delete it and rerun "
                        "`gclf extract` (it re-extracts that file only)")
    return r


def load_cache(cache_dir: str | Path) -> tuple[FeatureConfig, list[UtteranceFeatures]]:
    """Read a cache folder (no audio is touched): utterances whose frames stay in the cache's frame store
    (built or refreshed from the pickles first, see :mod:`gclf.data.store`). Unsafe pickles raise
    UnsafePickleError."""
    from gclf.data.store import FrameRef, open_store

    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "meta.json"
    if not meta_path.is_file():
        raise GclfError(f"{cache_dir} is not a gclf feature cache (no meta.json)")
    try:
        cfg = FeatureConfig.from_dict(json.loads(meta_path.read_text())["feature_config"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise GclfError(f"{meta_path} is corrupt ({exc.__class__.__name__}): delete {cache_dir} and rerun "
                        "`gclf extract`") from None
    if not any((cache_dir / "files").glob("*.pkl")):
        raise GclfError(f"{cache_dir} holds no extracted files: run `gclf extract --store` first")
    path, idx = open_store(cache_dir)
    classes = tuple(json.loads(meta_path.read_text()).get("classes") or ("M", "F"))
    utts = [UtteranceFeatures(e["uid"], e["speaker"], e["label"], e["seconds"],
                              FrameRef(str(path), e["offset"], e["frames"], idx["channels"]), classes)
            for e in idx["utterances"]]
    return cfg, utts


def find_caches(cache_root: str | Path) -> list[Path]:
    """All cache folders under ``cache_root``, newest first."""
    root = Path(cache_root)
    dirs = [p.parent for p in root.glob("*/meta.json")]
    return sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True)


def summarize(utts: list[UtteranceFeatures], cfg: FeatureConfig) -> dict:
    """Counts for `gclf extract --from pkl`."""
    speakers = {u.speaker: u.target for u in utts}
    windows = sum(len(window_starts(max(u.n_frames, cfg.window_frames), cfg)) for u in utts)
    classes = utts[0].classes if utts else ()
    out = {"utterances": len(utts), "windows": windows, "speakers": len(speakers),
           "hours": round(sum(u.seconds for u in utts) / 3600, 4),
           "per_class": {c: sum(1 for u in utts if u.target == c) for c in classes}}   # utterances
    if set(classes) == {"M", "F"}:                                                   # speakers by sex
        out.update(female=sum(1 for s in speakers.values() if s == "F"),
                   male=sum(1 for s in speakers.values() if s == "M"))
    return out
