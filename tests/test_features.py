"""Features: windows, cache keys, resume after interruption, restricted unpickling, bad inputs."""
import os
import pickle
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from gclf.data.corpus import scan_corpus
from gclf.errors import GclfError
from gclf.data.features import (FeatureConfig, cache_dir_for, cut_windows, extract_corpus, load_cache, pad_frames,
                                pad_index, summarize, window_starts)
from gclf.io import UnsafePickleError, atomic_pickle, safe_load_pickle

from tests.conftest import tone, write_utt

CFG = FeatureConfig()


def test_window_starts_cover_the_utterance():
    assert window_starts(50, CFG) == [0]
    assert window_starts(99, CFG) == [0]
    s = window_starts(300, CFG)  # the 1-frame tail is within hop/2: no extra window
    assert s == [0, 50, 100, 150, 200]
    s = window_starts(340, CFG)  # a 41-frame tail gets an end-aligned window
    assert s[0] == 0 and s[-1] + CFG.window_frames == 340
    assert all(b - a <= CFG.window_hop for a, b in zip(s, s[1:]))


def test_cut_windows_shape_and_padding_by_repetition():
    m = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    w = cut_windows(m, CFG)
    assert w.shape == (1, 40, 99)
    np.testing.assert_array_equal(w[0, :, 30:60], m)  # wrapped copy
    assert pad_frames(m, 10) is m
    np.testing.assert_array_equal(pad_index(30, 99, "wrap"), np.arange(99) % 30)


def test_edge_padding_centres_the_clip_between_its_first_and_last_frames():
    m = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)
    w = cut_windows(m, replace(CFG, pad="edge"))
    assert w.shape == (1, 40, 99)
    left = (99 - 30) // 2                                          # 34 before, 35 after
    np.testing.assert_array_equal(w[0, :, left:left + 30], m)
    assert (w[0, :, :left] == m[:, :1]).all() and (w[0, :, left + 30:] == m[:, -1:]).all()
    assert pad_index(1, 5, "edge").tolist() == [0] * 5 and pad_index(3, 6, "edge").tolist() == [0, 0, 1, 2, 2, 2]
    assert pad_frames(m, 30, "edge") is m
    with pytest.raises(GclfError, match="unknown padding"):
        replace(CFG, pad="zero")


def test_padding_is_not_part_of_the_cache_key(tiny_corpus):
    """Windows are padded when cut, from the same cached frames: one cache for either padding."""
    ident = scan_corpus(tiny_corpus).identity()
    assert cache_dir_for(ident, replace(CFG, pad="edge"), "c") == cache_dir_for(ident, CFG, "c")
    assert FeatureConfig.from_dict({k: v for k, v in asdict(CFG).items() if k != "pad"}).pad == "wrap"


def test_every_config_field_changes_the_cache_key(tiny_corpus):
    ident = scan_corpus(tiny_corpus).identity()
    base = cache_dir_for(ident, CFG, "c")
    for field, value in [("n_mfcc", 20), ("hop_length", 160), ("window_frames", 90), ("n_fft", 1024),
                         ("window_hop", 25), ("fmin", 0.0), ("min_seconds", 1.0)]:
        assert cache_dir_for(ident, replace(CFG, **{field: value}), "c") != base, field
    (tiny_corpus / "train-test" / "11" / "100" / "11-100-0000.flac").unlink()
    assert cache_dir_for(scan_corpus(tiny_corpus).identity(), CFG, "c") != base  # another corpus, another key


def test_cache_key_follows_the_corpus_not_its_path(tiny_corpus, tmp_path):
    """A moved corpus is the same corpus: same identity, same cache folder."""
    import shutil

    before = scan_corpus(tiny_corpus).identity()
    moved = shutil.move(str(tiny_corpus.parent), str(tmp_path.parent / (tmp_path.name + "-moved")))
    after = scan_corpus(Path(moved) / "LibriSpeech").identity()
    assert after == before and cache_dir_for(after, CFG, "c") == cache_dir_for(before, CFG, "c")


def test_extract_writes_cache_and_summary(tiny_corpus, tmp_path, librosa_warm):
    s = extract_corpus(scan_corpus(tiny_corpus), CFG, tmp_path / "pkl", workers=1)
    assert (s.done, s.reused, s.skipped) == (4, 0, 0)
    cfg, utts = load_cache(s.cache_dir)
    assert cfg == CFG
    assert {u.uid for u in utts} == {"11-100-0000", "12-100-0000", "21-100-0000", "22-100-0000"}
    u = utts[0]
    assert u.mfcc.shape[0] == 40 and u.mfcc.dtype == np.float32 and abs(u.mfcc.shape[1] - 2.5 * 50) <= 2
    summ = summarize(utts, cfg)
    assert summ["female"] == 2 and summ["male"] == 2 and summ["utterances"] == 4 and summ["windows"] == 8
    assert abs(summ["hours"] - 4 * 2.5 / 3600) < 1e-3


def test_extract_resumes_after_interruption(tiny_corpus, tmp_path, librosa_warm, monkeypatch):
    import gclf.data.features as F

    corpus = scan_corpus(tiny_corpus)
    calls = []
    real = F.extract_utterance

    def flaky(utt, cfg):
        calls.append(utt.uid)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the run dies in the middle of the third file
        return real(utt, cfg)

    monkeypatch.setattr(F, "extract_utterance", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_corpus(corpus, CFG, tmp_path / "pkl", workers=1)
    cdir = cache_dir_for(corpus.identity(), CFG, tmp_path / "pkl")
    assert len(list((cdir / "files").glob("*.pkl"))) == 2
    assert not list((cdir / "files").glob("*.tmp"))  # no half-written file left
    calls.clear()
    monkeypatch.setattr(F, "extract_utterance", lambda u, c: (calls.append(u.uid), real(u, c))[1])
    s = extract_corpus(corpus, CFG, tmp_path / "pkl", workers=1)
    assert (s.done, s.reused) == (2, 2) and len(calls) == 2
    # a file that changed on disk is redone
    p = corpus.utterances[0].path
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    s = extract_corpus(corpus, CFG, tmp_path / "pkl", workers=1)
    assert (s.done, s.reused) == (1, 3)


def test_bad_inputs_are_skipped_counted_and_the_rest_processed(tiny_corpus, tmp_path, librosa_warm):
    d = tiny_corpus / "train-test" / "11" / "100"
    (d / "11-100-0001.flac").write_bytes(b"")                       # empty
    (d / "11-100-0002.flac").write_bytes(b"not audio at all" * 50)  # corrupt
    write_utt(tiny_corpus, "12", "100", 3, tone(0.2, 200))          # shorter than min_seconds
    write_utt(tiny_corpus, "12", "100", 4, tone(1.2, 200))          # shorter than a window: padded
    write_utt(tiny_corpus, "21", "100", 5, np.zeros(16000, dtype=np.float32))  # digital silence
    errors = []
    s = extract_corpus(scan_corpus(tiny_corpus), CFG, tmp_path / "pkl", workers=2, on_error=errors.append)
    assert s.done == 5 and s.skipped == 4 and len(errors) == 4
    assert all("\n" not in e for e in errors)
    assert any("shorter than min_seconds" in e for e in errors) and any("silence" in e for e in errors)
    _, utts = load_cache(s.cache_dir)
    assert "12-100-0004" in {u.uid for u in utts}


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"mfcc": Evil()}))
    with pytest.raises(UnsafePickleError, match="refused"):
        safe_load_pickle(p)
    assert not (tmp_path / "pwned").exists()


def test_restricted_unpickler_loads_arrays_and_rejects_truncated(tmp_path):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, "x", 2.5], "c": np.float64(3.0)}
    p = atomic_pickle(tmp_path / "ok.pkl", obj)
    back = safe_load_pickle(p)
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["b"] == obj["b"] and back["c"] == 3.0
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(GclfError, match="not a readable"):
        safe_load_pickle(p)


def test_load_cache_of_non_cache_folder(tmp_path):
    with pytest.raises(GclfError, match="not a gclf feature cache"):
        load_cache(tmp_path)


def test_atomic_writes_get_normal_file_modes(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_pickle(tmp_path / "m.pkl", {"a": 1})
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_mfcc_features_do_not_depend_on_blas_threads(librosa_warm):
    """On a multi-threaded BLAS, librosa's MFCCs change in the last bits (summation order), and a run trained
    on them lands a point away: `frames` computes them on one BLAS thread whatever the caller's setting.
    (The first assertion shows the effect exists here; the second that `frames` is immune to it.)"""
    from threadpoolctl import threadpool_limits

    from gclf.data.features import frames, mfcc

    audio = tone(10.0, 150, seed=3)
    with threadpool_limits(limits=1, user_api="blas"):
        ref = mfcc(audio, CFG)
    with threadpool_limits(limits=4, user_api="blas"):
        raw, got = mfcc(audio, CFG), frames(audio, CFG)
    if np.array_equal(raw, ref):
        pytest.skip("this BLAS gives identical MFCCs on 1 and 4 threads (single core?): nothing to show")
    assert np.array_equal(got, ref)
