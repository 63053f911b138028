"""MFCC extraction throughput (seconds of audio per wall second): librosa's MFCCs beside the vectorised
path (``mfcc_impl="numpy"``), each with one worker and with all workers, in the same run.

Each round extracts the whole corpus (real LibriSpeech when present, else synthetic voices) into a fresh
cache folder: FLAC decoding, MFCCs and the atomic pickle writes, as `gclf extract --store` does.
``audio_seconds_per_core_second`` divides by the workers used; ``audio_seconds_per_cpu_second`` divides by
the CPU time the extraction used (this process and its workers): on a busy machine, where a worker gets a
fraction of a core, that is the per-core figure.
"""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

WORKERS = {"1-worker": 1, "all-workers": os.cpu_count() or 1}
IMPLS = ["librosa", "numpy"]


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children: what the work cost in core
    time, whatever share of the cores a busy machine gave it."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


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
    cpu: list[float] = []

    def run():
        before = _cpu_seconds()
        s = extract_corpus(corpus, cfg, next(fresh), workers=n)
        cpu.append(_cpu_seconds() - before)        # this process + the pool's (reaped) workers
        return s

    summary = benchmark.pedantic(run, rounds=3, iterations=1)
    assert summary.done + summary.skipped == len(corpus.utterances) and summary.reused == 0
    step = f"extract-{workers}" if impl == "librosa" else f"extract-{impl}-{workers}"
    info = {"step": step, "measure": "extraction", "mfcc_impl": impl, "workers": n, "files": len(corpus.utterances),
            "audio_seconds": round(seconds, 1), "data": bench_corpus[1], "corpus": str(corpus.root)}
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:                                   # absent with --benchmark-disable
        info["audio_seconds_per_wall_second"] = round(seconds / stats.median, 1)
        info["audio_seconds_per_core_second"] = round(seconds / stats.median / n, 1)
    info["cpu_seconds"] = round(float(np.median(cpu)), 2)
    info["audio_seconds_per_cpu_second"] = round(seconds / float(np.median(cpu)), 1)
    benchmark.extra_info.update(info)


@pytest.fixture(scope="module")
def decoded(audio_seconds) -> list:
    """Every 12th file of the corpus, decoded once (the MFCC-only benchmark times no I/O)."""
    from gclf.data.corpus import load_audio

    corpus, _ = audio_seconds
    return [load_audio(u.path, 16000) for u in corpus.utterances[::12]]


@pytest.fixture(scope="module")
def interleaved(decoded) -> dict[str, float]:
    """Best of 7 rounds of each path, the rounds alternating (librosa, numpy, librosa, ...): on a shared
    machine, load changes between two sequential benchmarks; alternation gives both the same conditions."""
    import time

    from gclf.data.features import FeatureConfig, mfcc

    best = dict.fromkeys(IMPLS, float("inf"))
    for _ in range(7):
        for impl in IMPLS:
            cfg = FeatureConfig(mfcc_impl=impl)
            t0 = time.perf_counter()
            for y in decoded:
                mfcc(y, cfg)
            best[impl] = min(best[impl], time.perf_counter() - t0)
    return best


@pytest.mark.benchmark(group="MFCC only, decoded audio")
@pytest.mark.parametrize("impl", IMPLS, ids=IMPLS)
def test_mfcc_only(benchmark, decoded, interleaved, bench_corpus, impl):
    """The MFCC step alone (no decoding, no cache writes), librosa beside the vectorised path."""
    from gclf.data.features import FeatureConfig, mfcc

    cfg = FeatureConfig(mfcc_impl=impl)
    out = benchmark.pedantic(lambda: [mfcc(y, cfg) for y in decoded], rounds=7, iterations=1, warmup_rounds=1)
    assert len(out) == len(decoded) and all(m.shape[0] == cfg.n_mfcc for m in out)
    seconds = sum(len(y) for y in decoded) / 16000
    info = {"step": f"mfcc-{impl}", "measure": "mfcc", "mfcc_impl": impl, "files": len(decoded),
            "audio_seconds": round(seconds, 1), "data": bench_corpus[1],
            "interleaved_audio_seconds_per_second": round(seconds / interleaved[impl], 1),
            "interleaved_speedup_numpy_over_librosa": round(interleaved["librosa"] / interleaved["numpy"], 2)}
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:
        info["audio_seconds_per_second"] = round(seconds / stats.min, 1)   # best round: least disturbed
    benchmark.extra_info.update(info)
