"""The vectorised MFCC path against librosa's: same shapes, values within the stated bound, on synthetic
speech, edge cases (the clip-relative 80 dB floor, short and odd-length clips) and real LibriSpeech."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gclf.data.fastmfcc import ATOL, MEAN_ATOL
from gclf.data.features import FeatureConfig, mfcc
from gclf.data.synth import synthesize_voice

LIBROSA, FAST = FeatureConfig(), FeatureConfig(mfcc_impl="numpy")


def _clips() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    f, m = synthesize_voice("F", 3.0, rng), synthesize_voice("M", 2.3, rng)
    burst = np.zeros(24000, dtype=np.float32)              # near-silence then a loud burst: the top_db floor
    burst[:12000] = 1e-6 * rng.standard_normal(12000)
    burst[12000:] = 0.9 * np.sin(np.arange(12000) * 0.3)
    return {"female": f, "male": m, "odd-length": f[:16000 + 137], "shorter-than-fft": m[:400],
            "noise": (0.1 * rng.standard_normal(20000)).astype(np.float32), "burst": burst}


@pytest.mark.parametrize("name", list(_clips()))
def test_fast_mfcc_matches_librosa(name, librosa_warm):
    y = _clips()[name]
    a, b = mfcc(y, LIBROSA), mfcc(y, FAST)
    assert a.shape == b.shape and b.dtype == np.float32
    d = np.abs(a.astype(np.float64) - b)
    assert d.max() < ATOL and d.mean() < MEAN_ATOL, (d.max(), d.mean())


def test_floor_is_relative_to_the_clip(librosa_warm):
    """The quiet half sits on the floor 80 dB below the burst, in both paths: the bound is not met by luck."""
    y = _clips()["burst"]
    quiet = mfcc(y, FAST)[:, 5:30]
    assert np.allclose(quiet, quiet[:, :1], atol=1e-3)      # floored frames are identical constants
    assert np.abs(mfcc(y * 0.5, FAST) - mfcc(y, FAST))[1:].max() < 0.05   # cepstral shape ignores gain


def test_bound_can_fail():
    """A different config (fewer mel bands) is far outside the bound: the comparison detects a mismatch."""
    y = _clips()["female"]
    assert np.abs(mfcc(y, LIBROSA) - mfcc(y, replace(FAST, n_mels=48))).max() > 10 * ATOL


def test_impl_is_part_of_the_cache_key():
    assert FAST.key() != LIBROSA.key()
    assert LIBROSA.key() == FeatureConfig.from_dict({k: v for k, v in LIBROSA.__dict__.items()
                                                      if k != "mfcc_impl"}).key()


@pytest.mark.realdata
def test_fast_mfcc_on_librispeech(librosa_warm):
    from gclf.data.corpus import load_audio, scan_corpus
    from tests.conftest import REAL_DATA

    for u in scan_corpus(REAL_DATA).utterances[::25]:
        y = load_audio(u.path, 16000)
        d = np.abs(mfcc(y, LIBROSA).astype(np.float64) - mfcc(y, FAST))
        assert d.max() < ATOL and d.mean() < MEAN_ATOL, (u.uid, d.max(), d.mean())
