"""The frame store: windows read from it equal the windows cut from the pickles, it is rebuilt when the
pickles change (and only then), a torn store is rebuilt, and the streamed normaliser agrees with the
one-pass one."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from gclf.data.corpus import scan_corpus
from gclf.data.dataset import eval_windows, random_windows
from gclf.data.features import FeatureConfig, UtteranceFeatures, cut_windows, extract_corpus, load_cache
from gclf.data.store import INDEX, FrameRef
from gclf.errors import GclfError
from gclf.io import safe_load_pickle

from tests.conftest import tone, write_speakers, write_utt

CFG = FeatureConfig()


@pytest.fixture
def cache(tmp_path, librosa_warm):
    """Six utterances, one shorter than a window (padded by repetition), extracted."""
    root = tmp_path / "LibriSpeech"
    root.mkdir()
    write_speakers(root, {"11": "F", "12": "F", "21": "M", "22": "M"})
    for i, (spk, sec) in enumerate([("11", 3.3), ("11", 1.2), ("12", 2.6), ("21", 4.1), ("22", 2.2), ("22", 0.8)]):
        write_utt(root, spk, "100", i, tone(sec, 200 + 30 * i, seed=i))
    s = extract_corpus(scan_corpus(root), CFG, tmp_path / "pkl", workers=1)
    assert s.done == 6
    return s.cache_dir


def _in_memory(cache_dir) -> list[UtteranceFeatures]:
    from pathlib import Path

    out = []
    for p in sorted(Path(cache_dir, "files").glob("*.pkl")):
        r = safe_load_pickle(p)
        out.append(UtteranceFeatures(r["uid"], r["speaker"], r["label"], r["seconds"], r["mfcc"]))
    return out


def test_stored_windows_equal_the_pickled_ones(cache):
    _, stored = load_cache(cache)
    mem = _in_memory(cache)
    assert [u.uid for u in stored] == [u.uid for u in mem]
    assert any(u.n_frames < CFG.window_frames for u in stored)        # the padding path is exercised
    for a, b in zip(stored, mem):
        assert np.array_equal(a.mfcc, b.mfcc) and a.n_frames == b.n_frames
    ws_s, ws_m = eval_windows(stored, CFG), eval_windows(mem, CFG)
    ref = torch.from_numpy(np.concatenate([cut_windows(u.mfcc, CFG) for u in mem]))
    assert ws_s.x.is_contiguous() and torch.equal(ws_s.x, ref) and torch.equal(ws_m.x, ref)
    assert torch.equal(torch.cat([x for x, _ in ws_s.batches(4)]), ref)
    xs, ys = random_windows(stored, CFG, np.random.default_rng(3), min_windows=40)
    xm, ym = random_windows(mem, CFG, np.random.default_rng(3), min_windows=40)
    idx = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))[:17]
    assert len(xs) >= 40 and torch.equal(ys, ym) and torch.equal(xs[idx], xm[idx]) and xs[idx].is_contiguous()


def test_store_is_rebuilt_only_when_the_pickles_change(cache, tmp_path):
    from pathlib import Path

    cache = Path(cache)
    load_cache(cache)
    first = json.loads((cache / INDEX).read_text())["file"]
    load_cache(cache)
    assert json.loads((cache / INDEX).read_text())["file"] == first              # unchanged: reused
    victim = sorted((cache / "files").glob("*.pkl"))[0]
    rec = safe_load_pickle(victim)
    rec["mfcc"] = rec["mfcc"] + 1.0
    victim.write_bytes(pickle.dumps(rec))
    _, utts = load_cache(cache)
    assert json.loads((cache / INDEX).read_text())["file"] != first              # changed: rebuilt
    assert np.array_equal(utts[0].mfcc, rec["mfcc"])
    (sorted((cache / "files").glob("*.pkl"))[-1]).unlink()
    assert len(load_cache(cache)[1]) == 5                                        # removed: rebuilt


def test_torn_store_is_rebuilt(cache):
    from pathlib import Path

    cache = Path(cache)
    before = [u.mfcc for u in load_cache(cache)[1]]
    data = cache / json.loads((cache / INDEX).read_text())["file"]
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(GclfError, match="truncated frame store"):
        FrameRef(str(data), 0, 1000, 40).read()          # a reader of the torn file gets a clear error
    after = load_cache(cache)[1]                          # and load_cache rebuilds the store
    assert after[0].data.path != str(data)
    for a, b in zip(before, after):
        assert np.array_equal(a, b.mfcc)


def test_streamed_normaliser_agrees_with_one_pass(cache, monkeypatch):
    import gclf.train.fit as fit
    from gclf.backends.torch_float import GraphNet
    from gclf.graph.models import build_graph

    _, utts = load_cache(cache)
    one, streamed = GraphNet(build_graph()), GraphNet(build_graph())
    fit.fit_normalizer(one, utts, CFG)
    monkeypatch.setattr(fit, "NORM_ONE_PASS", 0)
    monkeypatch.setattr(fit, "NORM_CHUNK", 3)
    fit.fit_normalizer(streamed, utts, CFG)
    a, b = one.input_norm(), streamed.input_norm()
    assert torch.allclose(a.offset, b.offset, rtol=1e-5, atol=1e-4)
    assert torch.allclose(a.scale, b.scale, rtol=1e-5)
    assert not torch.equal(a.offset, torch.zeros_like(a.offset))


def test_resumed_extraction_trusts_the_index_without_unpickling(cache, monkeypatch):
    import os
    from pathlib import Path

    import gclf.data.features as F
    from gclf.data.store import known_sources

    load_cache(cache)                                                  # the store (and its index) exists
    corpus_root = Path(json.loads((Path(cache) / "meta.json").read_text())["corpus"])
    corpus = scan_corpus(corpus_root)
    assert len(known_sources(cache)) == 6
    calls = []
    real = F.safe_load_pickle
    monkeypatch.setattr(F, "safe_load_pickle", lambda p: (calls.append(p), real(p))[1])
    s = extract_corpus(corpus, CFG, Path(cache).parent, workers=1)
    assert (s.done, s.reused) == (0, 6) and calls == []                # nothing unpickled, nothing redone
    touched = corpus.utterances[0].path
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # the audio changed since
    s = extract_corpus(scan_corpus(corpus_root), CFG, Path(cache).parent, workers=1)
    assert (s.done, s.reused) == (1, 5)
