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


@dataclass
class AugmentedUtterance(UtteranceFeatures):
    """An utterance with augmented versions of its features, each (n_mfcc, frames')."""

    views: list[np.ndarray] = field(default_factory=list)


def view_rng(seed: int, copy: int, uid: str) -> np.random.Generator:
    return np.random.default_rng([seed, copy, zlib.crc32(uid.encode())])


@lru_cache(maxsize=2)
def _noises(noise_dir: str | None, sample_rate: int) -> tuple[np.ndarray, ...]:
    return tuple(load_noises(noise_dir, sample_rate))


def utterance_views(path: str | Path, uid: str, fcfg: FeatureConfig, acfg: AugmentConfig,
                    seed: int) -> list[np.ndarray]:
    """The ``acfg.copies`` augmented MFCC versions of one audio file."""
    from gclf.data.corpus import load_audio

    audio = load_audio(path, fcfg.sample_rate)
    noises = list(_noises(acfg.noise_dir, fcfg.sample_rate))
    return [augmented_mfcc(audio, fcfg, acfg, view_rng(seed, c, uid), noises) for c in range(acfg.copies)]


def _work(args) -> tuple[str, list[np.ndarray]]:
    path, uid, fcfg, acfg, seed = args
    return uid, utterance_views(path, uid, fcfg, acfg, seed)


def _cache_file(root: Path, fcfg: FeatureConfig, acfg: AugmentConfig, seed: int, cache_root: Path) -> Path:
    blob = json.dumps({"corpus": str(root), "features": fcfg.key(), "augment": asdict(acfg), "seed": seed},
                      sort_keys=True, default=list)
    return cache_root / "augment" / f"{root.name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.pkl"


def add_views(utts: list[UtteranceFeatures], corpus: str | Path, fcfg: FeatureConfig, acfg: AugmentConfig,
              seed: int, cache_root: str | Path | None = "pkl_data", workers: int | None = None,
              progress_factory=None) -> list[UtteranceFeatures]:
    """``utts`` as AugmentedUtterances with their views (the input unchanged when no audio augmentation)."""
    if not acfg.audio_active:
        return utts
    from gclf.data.layouts import scan_any
    from gclf.io import atomic_pickle, safe_load_pickle

    scanned = scan_any(corpus)
    paths = {u.uid: str(u.path) for u in scanned.utterances}
    cache = _cache_file(scanned.root, fcfg, acfg, seed, Path(cache_root)) if cache_root else None
    views: dict[str, list[np.ndarray]] = {}
    if cache is not None and cache.is_file():
        views = safe_load_pickle(cache)
    todo = [(paths[u.uid], u.uid, fcfg, acfg, seed) for u in utts if u.uid not in views and u.uid in paths]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if todo:
        bar = progress_factory(len(todo)) if progress_factory else None
        with ExitStack() as stack:                    # the worker processes end with the views
            pool = stack.enter_context(ProcessPoolExecutor(workers)) if workers > 1 else None
            for uid, v in (pool.map(_work, todo, chunksize=4) if pool else map(_work, todo)):
                views[uid] = v
                if bar:
                    bar.update(1)
        if bar:
            bar.close()
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_pickle(cache, views)
    return [AugmentedUtterance(u.uid, u.speaker, u.sex, u.seconds, u.data, views.get(u.uid, [])) for u in utts]


def epoch_utterances(utts: list[UtteranceFeatures], acfg: AugmentConfig,
                     rng: np.random.Generator) -> list[UtteranceFeatures]:
    """What one epoch trains on: per utterance, with chance ``p_augmented`` one of its views at random,
    else the original. Draws nothing (the run is bit-identical to one without views) when no utterance
    has views."""
    if not any(getattr(u, "views", None) for u in utts):
        return utts
    out = []
    for u in utts:
        views = getattr(u, "views", None) or []
        pick = rng.random() < acfg.p_augmented
        k = int(rng.integers(len(views))) if views else 0
        out.append(replace(u, data=views[k]) if views and pick else u)
    return out


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
