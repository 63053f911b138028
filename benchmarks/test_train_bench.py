"""Training throughput: one epoch of the default network over every window of the corpus (real LibriSpeech
when present, else synthetic voices), read from the frame store a batch at a time, on one thread: the
per-window cost behind the README's training-time projection (Scale)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.benchmark(group="training epoch")
def test_train_epoch_throughput(benchmark, bench_corpus, tmp_path_factory):
    import torch

    from gclf.backends.torch_float import GraphNet
    from gclf.data.dataset import random_windows
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import corpus_features
    from gclf.graph.models import build_graph
    from gclf.train.fit import TrainConfig, _epoch, fit_normalizer

    fcfg, tcfg = FeatureConfig(), TrainConfig()
    utts, info = corpus_features(bench_corpus[0], fcfg, tmp_path_factory.mktemp("train-bench-cache"))
    model = GraphNet(build_graph())
    fit_normalizer(model, utts, fcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    x, y = random_windows(utts, fcfg, np.random.default_rng(0), tcfg.min_windows)
    gen = torch.Generator().manual_seed(0)
    loss, _ = benchmark.pedantic(lambda: _epoch(model, x, y, opt, tcfg, gen), rounds=2, iterations=1)
    assert np.isfinite(loss) and len(x) >= tcfg.min_windows
    audio = sum(u.seconds for u in utts)
    info = {"step": "train-epoch", "measure": "training", "windows": len(x), "audio_seconds": round(audio, 1),
            "batch_size": tcfg.batch_size, "threads": torch.get_num_threads(), "data": bench_corpus[1],
            "corpus": info["corpus"]}
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:                                   # absent with --benchmark-disable
        info["windows_per_second"] = round(len(x) / stats.median, 1)
    benchmark.extra_info.update(info)
