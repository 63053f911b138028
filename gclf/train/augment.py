"""Augmentation in training: augmented versions ("views") of each training utterance, which one an epoch
sees, and SpecAugment-style masks on a batch of windows.

Views are computed once per run from the corpus audio (:func:`add_views`), each from its own generator
seeded by (run seed, copy, utterance id): a run's views do not depend on the order or number of workers.
They are cached in the feature cache folder, keyed by corpus, feature and augmentation config and seed.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gclf.data.augment import AugmentConfig, augmented_mfcc, load_noises
from gclf.data.features import FeatureConfig, UtteranceFeatures
from gclf.data.store import FrameRef


@dataclass
class AugmentedUtterance(UtteranceFeatures):
    """An utterance with augmented versions of its features, each (n_mfcc, frames')."""

    views: list = field(default_factory=list)   # (n_mfcc, frames') arrays, or FrameRefs into the views' file


def view_rng(seed: int, copy: int, uid: str) -> np.random.Generator:
    return np.random.default_rng([seed, copy, zlib.crc32(uid.encode())])


@lru_cache(maxsize=2)
def _noises(noise_dir: str | None, sample_rate: int) -> tuple[np.ndarray, ...]:
    return tuple(load_noises(noise_dir, sample_rate))


def utterance_views(path: str | Path, uid: str, fcfg: FeatureConfig, acfg: AugmentConfig,
                    seed: int, target: str | None = None) -> list[np.ndarray]:
    """The ``acfg.copies`` augmented MFCC versions of one audio file (of class ``target``)."""
    from gclf.data.corpus import load_audio

    audio = load_audio(path, fcfg.sample_rate)
    noises = list(_noises(acfg.noise_dir, fcfg.sample_rate))
    return [augmented_mfcc(audio, fcfg, acfg, view_rng(seed, c, uid), noises, target) for c in range(acfg.copies)]


def _work(args) -> tuple[str, list[np.ndarray]]:
    path, uid, fcfg, acfg, seed, target = args
    return uid, utterance_views(path, uid, fcfg, acfg, seed, target)


def _cache_file(root: Path, fcfg: FeatureConfig, acfg: AugmentConfig, seed: int, cache_root: Path) -> Path:
    """The index (``.json``) of a run's views; their frames are in the float32 file it names, beside it."""
    aug = {k: v for k, v in asdict(acfg).items() if k != "with_original"}   # an epoch's choice, not the views'
    if not aug["pitch_class"]:
        del aug["pitch_class"]              # added later: the keys of the caches written before still hold
    blob = json.dumps({"corpus": str(root), "features": fcfg.key(), "augment": aug, "seed": seed},
                      sort_keys=True, default=list)
    return cache_root / "augment" / f"{root.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.json"


def view_array(v: "np.ndarray | FrameRef") -> np.ndarray:
    """A view's frames (n_mfcc, frames), whether in memory or in the views' frame file."""
    return v if isinstance(v, np.ndarray) else v.read().T


def _refs(index: Path, idx: dict) -> dict[str, list[FrameRef]]:
    path = str(index.parent / idx["file"])
    return {uid: [FrameRef(path, off, n, idx["channels"]) for off, n in views] for uid, views in idx["views"].items()}


def _read_index(index: Path, uids: set[str]) -> dict | None:
    """The views' index if it is whole (every uid, its frame file of the right size), else None (recompute)."""
    try:
        idx = json.loads(index.read_text())
        data = index.parent / idx["file"]
        rows = sum(n for views in idx["views"].values() for _, n in views)
        if uids <= idx["views"].keys() and data.stat().st_size == rows * idx["channels"] * 4:
            return idx
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def add_views(utts: list[UtteranceFeatures], corpus: str | Path, fcfg: FeatureConfig, acfg: AugmentConfig,
              seed: int, cache_root: str | Path | None = "pkl_data", workers: int | None = None,
              progress_factory=None, task: str | None = None, layout: str | None = None) -> list[UtteranceFeatures]:
    """``utts`` as AugmentedUtterances with their views (the input unchanged when no audio augmentation).

    With a ``cache_root`` the views are streamed into one float32 frame file (one utterance's views in memory
    at a time) and read back window by window like the feature cache's frame store, so memory does not grow
    with the views; the file and its JSON index are written atomically and reused by the next run of the
    same corpus, features, augmentation and seed. Without one they are kept in memory. ``task``/``layout``:
    how to read ``corpus`` (default: detected, the layout's default task)."""
    if not acfg.audio_active:
        return utts
    from gclf.data.layouts import scan_any
    from gclf.io import atomic_json, atomic_write

    scanned = scan_any(corpus, task, layout)
    paths = {u.uid: str(u.path) for u in scanned.utterances}
    todo = [(paths[u.uid], u.uid, fcfg, acfg, seed, u.target) for u in utts if u.uid in paths]
    index = _cache_file(scanned.root, fcfg, acfg, seed, Path(cache_root)) if cache_root else None
    idx = _read_index(index, {t[1] for t in todo}) if index is not None else None
    views: dict[str, list] = _refs(index, idx) if idx else {}
    if todo and idx is None:
        bar = progress_factory(len(todo)) if progress_factory else None
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        with ExitStack() as stack:                    # the worker processes end with the views
            pool = stack.enter_context(ProcessPoolExecutor(workers)) if workers > 1 else None
            results = pool.map(_work, todo, chunksize=4) if pool else map(_work, todo)
            if index is None:
                for uid, v in results:
                    views[uid] = v
                    if bar:
                        bar.update(1)
            else:
                index.parent.mkdir(parents=True, exist_ok=True)
                name, table, channels = f"{index.stem}-{secrets.token_hex(4)}.f32", {}, 0

                def write(fh) -> None:
                    nonlocal channels
                    offset = 0
                    for uid, v in results:
                        table[uid] = []
                        for m in v:
                            channels = int(m.shape[0])
                            fh.write(np.ascontiguousarray(m.T).astype("<f4", copy=False).tobytes())
                            table[uid].append((offset, int(m.shape[1])))
                            offset += int(m.shape[1])
                        if bar:
                            bar.update(1)

                atomic_write(index.parent / name, write, durable=False)   # checked by size when read
                idx = {"file": name, "channels": channels, "views": table}
                atomic_json(index, idx)
                views = _refs(index, idx)
        if bar:
            bar.close()
    return [AugmentedUtterance(u.uid, u.speaker, u.target, u.seconds, u.data, u.classes, views.get(u.uid, []))
            for u in utts]


def epoch_utterances(utts: list[UtteranceFeatures], acfg: AugmentConfig,
                     rng: np.random.Generator) -> list[UtteranceFeatures]:
    """What one epoch trains on: per utterance, with chance ``p_augmented`` one of its views at random,
    else the original; with ``with_original``, every original and, besides, the views picked (the epoch is
    then up to twice as long). Draws nothing (the run is bit-identical to one without views) when no
    utterance has views."""
    if not any(getattr(u, "views", None) for u in utts):
        return utts
    out, extra = [], []
    for u in utts:
        views = getattr(u, "views", None) or []
        pick = rng.random() < acfg.p_augmented
        k = int(rng.integers(len(views))) if views else 0
        if acfg.with_original:
            out.append(u)
            if views and pick:
                extra.append(replace(u, data=views[k]))
        else:
            out.append(replace(u, data=views[k]) if views and pick else u)
    return out + extra


def mask_batch(x: torch.Tensor, acfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masks on windows (B, C, T): spans of frames and of coefficients set to the window's
    mean of each coefficient (so they carry nothing after per-window mean normalisation). A new tensor."""
    if acfg.time_masks <= 0 and acfg.coef_masks <= 0:
        return x
    b, c, t = x.shape
    mean = x.mean(dim=2, keepdim=True).expand(b, c, t)
    keep = torch.ones(b, c, t, dtype=torch.bool)
    ar_t, ar_c = torch.arange(t), torch.arange(c)
    for _ in range(acfg.time_masks):
        w = torch.randint(0, acfg.time_mask_frames + 1, (b, 1), generator=gen)
        s = (torch.rand(b, 1, generator=gen) * (t - w + 1)).long()
        keep &= ~((ar_t >= s) & (ar_t < s + w))[:, None, :]
    for _ in range(acfg.coef_masks):
        w = torch.randint(0, acfg.coef_mask_width + 1, (b, 1), generator=gen)
        s = (torch.rand(b, 1, generator=gen) * (c - w + 1)).long()
        keep &= ~((ar_c >= s) & (ar_c < s + w))[:, :, None]
    return torch.where(keep, x, mean)


def mix_batch(x: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup on a batch of windows: ``lam x + (1 - lam) x[perm]`` with ``lam ~ Beta(alpha, alpha)`` (one per
    batch) and ``perm`` a random pairing; returns (mixed windows, perm, lam). The loss is then
    ``lam CE(y) + (1 - lam) CE(y[perm])``. Draws only from ``gen``."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1.0 - lam) * x[perm], perm, lam


def _run_train(ck: dict) -> dict:
    """The TrainConfig (as saved) of the run a checkpoint comes from: its chain's train step; {} without one."""
    from gclf.checkpoint import chain_of

    chain = chain_of(ck)
    return chain[0].config if chain else {}


def run_augment(ck: dict) -> AugmentConfig:
    """The augmentation of the run a checkpoint comes from (its chain's train step)."""
    return AugmentConfig.from_dict(_run_train(ck).get("augment"))


def run_views(ck: dict, utts: list[UtteranceFeatures], data: str | Path | None,
              cache_root: str | Path | None) -> list[UtteranceFeatures]:
    """``utts`` with the augmented views the checkpoint's run trained on (its augmentation and seed: the run's
    cached views when they are there), for fine-tuning a step as the network was trained. Reads ``data``, which
    must be the run's corpus; the input unchanged when the run had no audio augmentation."""
    from gclf.data.layouts import scan_any
    from gclf.errors import GclfError

    train = _run_train(ck)
    acfg = AugmentConfig.from_dict(train.get("augment"))
    if not acfg.audio_active:
        return utts
    ident = ck.get("corpus") if isinstance(ck.get("corpus"), dict) else {}
    if not data:
        raise GclfError("the run's views are made from its corpus audio: pass --data with that corpus")
    corpus = scan_any(data, ident.get("task"), ident.get("layout"))
    if ident and corpus.identity()["id"] != ident.get("id"):
        raise GclfError(f"{corpus.root} is not the corpus this model was trained on (its views are made from "
                        f"that corpus's audio): pass --data with it ({ident.get('name')}, {ident.get('utterances')} "
                        "utterances)")
    return add_views(utts, corpus.root, FeatureConfig.from_dict(ck["feature_config"]), acfg, train.get("seed", 0),
                     cache_root, None, None, corpus.task, corpus.layout)
