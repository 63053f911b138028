"""MFCC extraction throughput (seconds of audio per wall second): librosa's MFCCs beside the vectorised
path (``mfcc_impl="numpy"``), each with one worker and with all workers, in the same run.

Each round extracts the whole corpus (real LibriSpeech when present, else synthetic voices) into a fresh
cache folder: FLAC decoding, MFCCs and the atomic pickle writes, as `gclf extract --store` does.
``audio_seconds_per_core_second`` divides by the workers used (on a shared machine, by the cores those
workers actually got is unknown: compare the two paths of one run, not runs of different days).
"""
from __future__ import annotations

import itertools
import os

import pytest

WORKERS = {"1-worker": 1, "all-workers": os.cpu_count() or 1}
IMPLS = ["librosa", "numpy"]


@pytest.fixture(scope="module")
def audio_seconds(bench_corpus) -> tuple[object, float]:
    """(the scanned corpus, its total seconds of audio)."""
    import soundfile as sf

    from gclf.data.corpus import scan_corpus

    corpus = scan_corpus(bench_corpus[0])
    return corpus, float(sum(sf.info(str(u.path)).duration for u in corpus.utterances))


@pytest.mark.benchmark(group="MFCC extraction, whole corpus")
@pytest.mark.parametrize("workers", list(WORKERS), ids=list(WORKERS))
@pytest.mark.parametrize("impl", IMPLS, ids=IMPLS)
def test_extract_throughput(benchmark, bench_corpus, audio_seconds, tmp_path, workers, impl):
    from gclf.data.features import FeatureConfig, extract_corpus

    corpus, seconds = audio_seconds
    n = WORKERS[workers]
    fresh = (tmp_path / f"cache{i}" for i in itertools.count())
    cfg = FeatureConfig(mfcc_impl=impl)
    summary = benchmark.pedantic(lambda: extract_corpus(corpus, cfg, next(fresh), workers=n),
                                 rounds=2, iterations=1)
    assert summary.done + summary.skipped == len(corpus.utterances) and summary.reused == 0
    step = f"extract-{workers}" if impl == "librosa" else f"extract-{impl}-{workers}"
    info = {"step": step, "measure": "extraction", "mfcc_impl": impl, "workers": n, "files": len(corpus.utterances),
            "audio_seconds": round(seconds, 1), "data": bench_corpus[1], "corpus": str(corpus.root)}
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:                                   # absent with --benchmark-disable
        info["audio_seconds_per_wall_second"] = round(seconds / stats.median, 1)
        info["audio_seconds_per_core_second"] = round(seconds / stats.median / n, 1)
    benchmark.extra_info.update(info)
