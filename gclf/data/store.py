"""The frame store: every utterance of a feature cache in one flat float32 file, read window by window.

Training and evaluation read windows from here instead of holding every utterance in memory, so peak
memory does not grow with the corpus. The pickles in ``files/`` stay the cache's source of truth (one per
audio file, resumable); the store is derived from them and rebuilt whenever they change:

    <cache>/frames-<token>.f32   utterance after utterance, each (frames, channels) C-order, float32
    <cache>/frames.json          {"file", "channels", "utterances": [{uid, speaker, label, seconds,
                                  offset, frames, pkl_size, pkl_mtime_ns}, ...]}

Both are written atomically (temp file + rename; the data file first, under a fresh name, then the index
that points to it), so several processes or machines sharing the folder never see a half-written store.
A window of one utterance is contiguous in the file: one ``pread`` per window, nothing memory-mapped (the
page cache holds what is hot without counting toward the process's memory).
"""
from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gclf.errors import GclfError
from gclf.io import atomic_json, atomic_write

INDEX = "frames.json"
STORE_VERSION = 2   # 2: entries carry "label" (1: "sex")
STALE_SECONDS = 3600   # unreferenced data files older than this are removed (younger ones may be in use elsewhere)


@dataclass(frozen=True)
class FrameRef:
    """Where one utterance's frames are: ``frames`` rows of ``channels`` float32 from row ``offset``."""

    path: str
    offset: int
    frames: int
    channels: int

    def read(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Rows ``start .. start+count`` as a (count, channels) float32 array."""
        count = self.frames - start if count is None else count
        if start < 0 or count < 0 or start + count > self.frames:
            raise IndexError(f"frames {start}..{start + count} of an utterance of {self.frames}")
        nbytes = count * self.channels * 4
        buf = os.pread(_fd(self.path), nbytes, (self.offset + start) * self.channels * 4)
        if len(buf) != nbytes:
            raise GclfError(f"{self.path}: truncated frame store (rebuild it: delete {INDEX})")
        return np.frombuffer(buf, dtype="<f4").reshape(count, self.channels)


@lru_cache(maxsize=None)
def _fd(path: str) -> int:
    """One read-only descriptor per store file per process (a store file is never modified once named)."""
    return os.open(path, os.O_RDONLY)


def _pkl_stats(cache_dir: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in (cache_dir / "files").glob("*.pkl"):
        st = p.stat()
        out[p.stem] = (int(st.st_size), int(st.st_mtime_ns))
    return out


def _read_index(cache_dir: Path) -> dict | None:
    try:
        idx = json.loads((cache_dir / INDEX).read_text())
    except (OSError, ValueError):
        return None
    data = cache_dir / idx.get("file", "-")
    if idx.get("version") != STORE_VERSION or not data.is_file():
        return None
    if data.stat().st_size != 4 * idx["channels"] * sum(u["frames"] for u in idx["utterances"]):
        return None                                   # torn or foreign: rebuild
    return idx


def _is_current(idx: dict | None, stats: dict[str, tuple[int, int]]) -> bool:
    if idx is None or len(idx["utterances"]) != len(stats):
        return False
    return all(stats.get(u["uid"]) == (u["pkl_size"], u["pkl_mtime_ns"]) for u in idx["utterances"])


def build_store(cache_dir: str | Path) -> dict:
    """(Re)write the store from the pickles, one utterance in memory at a time; returns the index."""
    from gclf.data.features import load_record

    cache_dir = Path(cache_dir)
    name = f"frames-{secrets.token_hex(6)}.f32"
    entries: list[dict] = []
    channels = None

    def write(fh) -> None:
        nonlocal channels
        offset = 0
        for pkl in sorted((cache_dir / "files").glob("*.pkl")):
            st = pkl.stat()
            r = load_record(pkl)
            m = np.asarray(r["mfcc"], dtype=np.float32)              # (channels, frames)
            if channels is None:
                channels = int(m.shape[0])
            elif m.shape[0] != channels:
                raise GclfError(f"{pkl}: {m.shape[0]} channels, the cache's others have {channels}")
            fh.write(np.ascontiguousarray(m.T).astype("<f4", copy=False).tobytes())
            entries.append({"uid": r["uid"], "speaker": r["speaker"], "label": r["label"], "seconds": r["seconds"],
                            "offset": offset, "frames": int(m.shape[1]),
                            "pkl_size": int(st.st_size), "pkl_mtime_ns": int(st.st_mtime_ns),
                            "src_size": r.get("size"), "src_mtime_ns": r.get("mtime_ns")})
            offset += int(m.shape[1])

    atomic_write(cache_dir / name, write, durable=False)   # derived: a torn file fails its size check and is rebuilt
    idx = {"version": STORE_VERSION, "file": name, "channels": channels or 0, "utterances": entries}
    atomic_json(cache_dir / INDEX, idx)
    _remove_stale(cache_dir, keep=name)
    return idx


def _remove_stale(cache_dir: Path, keep: str) -> None:
    now = time.time()
    for p in cache_dir.glob("frames-*.f32"):
        try:
            if p.name != keep and now - p.stat().st_mtime > STALE_SECONDS:
                p.unlink()
        except OSError:
            pass   # another process removed it first


def known_sources(cache_dir: str | Path) -> dict[str, tuple]:
    """uid -> (pickle size, pickle mtime, audio size, audio mtime) as the store's index recorded them: lets
    a resumed extraction tell a pickle is current without unpickling it (empty without an index)."""
    idx = _read_index(Path(cache_dir))
    if idx is None:
        return {}
    return {u["uid"]: (u["pkl_size"], u["pkl_mtime_ns"], u.get("src_size"), u.get("src_mtime_ns"))
            for u in idx["utterances"]}


def open_store(cache_dir: str | Path) -> tuple[Path, dict]:
    """(data file, index) of the cache's store, rebuilt first if any pickle was added, removed or changed."""
    cache_dir = Path(cache_dir)
    idx = _read_index(cache_dir)
    if not _is_current(idx, _pkl_stats(cache_dir)):
        idx = build_store(cache_dir)
    return cache_dir / idx["file"], idx
