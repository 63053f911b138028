"""A Dask LocalCluster (two worker processes) gives exactly the local results: the same cache files from
a distributed extraction, the same weights and figures from a distributed cross-validation."""
from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch

from gclf.data.features import FeatureConfig
from gclf.errors import GclfError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c:
        yield c.scheduler_address


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from gclf.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("dist-synth")
    return Path(synthesize_corpus(out, SynthConfig(speakers=12, min_seconds=2.5, max_seconds=4.0, seed=5))["root"])


def _pickles(cache_dir: str) -> dict[str, dict]:
    from gclf.io import safe_load_pickle

    return {p.name: safe_load_pickle(p) for p in sorted(Path(cache_dir, "files").glob("*.pkl"))}


def test_distributed_extraction_equals_local(cluster, small_corpus, tmp_path, librosa_warm):
    from gclf.data.corpus import scan_corpus
    from gclf.data.features import extract_corpus

    corpus = scan_corpus(small_corpus)
    cfg = FeatureConfig(mfcc_impl="numpy")
    local = extract_corpus(corpus, cfg, tmp_path / "local", workers=1)
    dist = extract_corpus(corpus, cfg, tmp_path / "dist", scheduler=cluster)
    assert (dist.done, dist.skipped) == (local.done, local.skipped) == (12, 0)
    a, b = _pickles(local.cache_dir), _pickles(dist.cache_dir)
    assert a.keys() == b.keys() and len(a) == 12
    for name in a:
        assert np.array_equal(a[name]["mfcc"], b[name]["mfcc"]), name
        assert a[name]["uid"] == b[name]["uid"] and a[name]["label"] == b[name]["label"]
    again = extract_corpus(corpus, cfg, tmp_path / "dist", scheduler=cluster)   # resumable: nothing redone
    assert (again.done, again.reused) == (0, 12)


def test_distributed_cv_equals_local(cluster, small_corpus, tmp_path, librosa_warm):
    from gclf.data.pipeline import corpus_features
    from gclf.graph.models import build_graph
    from gclf.train.cv import train_run
    from gclf.train.fit import TrainConfig

    cfg = FeatureConfig(mfcc_impl="numpy")
    utts, info = corpus_features(small_corpus, cfg, tmp_path / "cache", workers=1)
    tcfg = TrainConfig(epochs=2, folds=3, seed=3, min_windows=64, batch_size=32)
    seen: list[int] = []
    local = train_run(utts, tmp_path / "local", build_graph(), cfg, tcfg, info["corpus"])
    dist = train_run(utts, tmp_path / "dist", build_graph(), cfg, tcfg, info["corpus"], scheduler=cluster,
                     on_fold=lambda i, f: seen.append(i))
    assert seen == [1, 2, 3]
    assert [f["accuracy_window"] for f in local["folds"]] == [f["accuracy_window"] for f in dist["folds"]]
    for k in ("accuracy_utterance_mean", "accuracy_window_mean", "utterances"):
        assert local[k] == dist[k], k
    for i in (1, 2, 3):
        a = torch.load(tmp_path / "local" / f"fold{i}.pt", weights_only=True)
        b = torch.load(tmp_path / "dist" / f"fold{i}.pt", weights_only=True)
        assert a["split"] == b["split"]
        for name, t in a["state_dict"].items():
            assert torch.equal(t, b["state_dict"][name]), (i, name)
    assert filecmp.cmp(tmp_path / "local" / "train_log.csv", tmp_path / "dist" / "train_log.csv", shallow=False)


def test_unreachable_scheduler_is_a_one_line_error(small_corpus, tmp_path, monkeypatch):
    import gclf.parallel as P
    from gclf.data.corpus import scan_corpus
    from gclf.data.features import extract_corpus

    monkeypatch.setattr(P, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(GclfError, match="cannot reach a Dask scheduler"):
        extract_corpus(scan_corpus(small_corpus), FeatureConfig(mfcc_impl="numpy"), tmp_path / "c",
                       scheduler="tcp://127.0.0.1:1")
