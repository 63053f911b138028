"""Augmentations: each deterministic from its seed, with the shape/energy/frequency property it claims."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from gclf.data.augment import (AugmentConfig, add_noise, augmented_mfcc, band_limit, mfcc_from_power,
                               power_spectrum, reverberate, room_impulse, source_filter_shift, speed,
                               synthetic_noise)
from gclf.data.features import FeatureConfig, UtteranceFeatures, mfcc
from gclf.data.store import FrameRef
from gclf.train.augment import AugmentedUtterance, add_views, epoch_utterances, mask_batch, mix_batch, view_array

from .conftest import tone

FC = FeatureConfig()
SR = 16000


def harmonic(f0: float, seconds: float = 1.0, formant: float = 800.0) -> np.ndarray:
    """Harmonics of ``f0`` shaped by one resonance at ``formant`` Hz (a vowel-like source-filter signal)."""
    t = np.arange(int(seconds * SR)) / SR
    ks = np.arange(1, int(7000 / f0))
    amp = 1.0 / (1.0 + ((ks * f0 - formant) / 150.0) ** 2)
    return (np.sin(2 * np.pi * f0 * np.outer(t, ks)) @ amp).astype(np.float32) * 0.1


def _f0_and_envelope(power: np.ndarray, lifter: int = 30) -> tuple[float, np.ndarray]:
    """(F0 in Hz from the cepstral peak, smooth log envelope) of the mean spectrum."""
    log_p = np.log(power.mean(axis=1) + 1e-12)
    cep = np.fft.irfft(log_p)
    q = np.arange(SR // 400, SR // 60)                         # quefrencies of F0 60..400 Hz
    f0 = SR / q[np.argmax(cep[q])]
    cep[lifter:-lifter + 1] = 0
    return float(f0), np.fft.rfft(cep).real


def test_mfcc_from_power_is_the_feature_mfcc(librosa_warm):
    a = tone(1.5, 140)
    assert np.array_equal(mfcc_from_power(power_spectrum(a, FC), FC), mfcc(a, FC))


def test_pitch_moves_f0_and_keeps_formants(librosa_warm):
    from gclf.data.augment import _stretch

    p = power_spectrum(harmonic(125.0), FC)
    f0, env = _f0_and_envelope(p)
    f0_up, env_up = _f0_and_envelope(source_filter_shift(p, pitch=1.4))
    f0_f, env_f = _f0_and_envelope(source_filter_shift(p, formant=1.3))
    assert abs(f0 - 125) < 10 and abs(f0_up - 175) < 15 and abs(f0_f - f0) < 10
    stretched = _stretch(env, 1.3)
    dist = lambda a, b: float(np.mean((a - b) ** 2))          # noqa: E731
    assert dist(env_up, env) < dist(env_up, stretched)        # pitch: the envelope stays where it was
    assert dist(env_f, stretched) < dist(env_f, env)          # formant: the envelope moves by the factor
    assert source_filter_shift(p, 1.0, 1.0) is p


def test_noise_reaches_the_snr_and_is_seeded():
    a = tone(1.0, 150).astype(np.float64)
    n1, n2 = synthetic_noise(a.size, np.random.default_rng(3)), synthetic_noise(a.size, np.random.default_rng(3))
    assert np.array_equal(n1, n2) and np.sqrt(np.mean(n1 ** 2)) == pytest.approx(1.0)
    y = add_noise(a, n1, 10.0)
    snr = 10 * np.log10(np.mean(a ** 2) / np.mean((y - a) ** 2))
    assert snr == pytest.approx(10.0, abs=1e-6)
    short = add_noise(a, n1[:1000], 0.0)                       # a short noise clip is looped
    assert short.shape == a.shape and np.mean((short - a) ** 2) == pytest.approx(np.mean(a ** 2))


def test_room_band_limit_and_speed_properties():
    rng = np.random.default_rng(0)
    h = room_impulse(SR, rng)
    assert np.sum(h ** 2) == pytest.approx(1.0) and 0.2 * SR <= h.size <= 0.8 * SR
    a = tone(1.0, 200).astype(np.float64)
    assert reverberate(a, h).shape == a.shape
    low, high = np.sin(2 * np.pi * 60 * np.arange(SR) / SR), np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)
    out_low, out_high = band_limit(low, SR, 300, 3400), band_limit(high, SR, 300, 3400)
    assert np.std(out_low) < 0.05 * np.std(low) and np.std(out_high) > 0.9 * np.std(high)
    assert speed(a, 1.25).size == pytest.approx(a.size / 1.25, abs=2)


def test_augmented_mfcc_is_deterministic_from_seed(librosa_warm):
    a = tone(2.0, 130)
    cfg = AugmentConfig(copies=1, pitch=(0.9, 1.4), formant=(0.95, 1.1), noise_snr=(10, 30), reverb=0.5,
                        bandlimit=0.5, speed=(0.9, 1.1))
    m1 = augmented_mfcc(a, FC, cfg, np.random.default_rng(7))
    m2 = augmented_mfcc(a, FC, cfg, np.random.default_rng(7))
    m3 = augmented_mfcc(a, FC, cfg, np.random.default_rng(8))
    assert np.array_equal(m1, m2) and m1.shape[0] == 40 and not np.array_equal(m1[:, :50], m3[:, :50])
    assert np.isfinite(m1).all()


def test_mask_batch_masks_with_window_mean_and_is_seeded():
    x = torch.randn(8, 40, 99)
    off = AugmentConfig()
    assert mask_batch(x, off, torch.Generator().manual_seed(0)) is x
    cfg = AugmentConfig(time_masks=2, time_mask_frames=10, coef_masks=1, coef_mask_width=4)
    y1 = mask_batch(x, cfg, torch.Generator().manual_seed(1))
    y2 = mask_batch(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and y1.shape == x.shape
    changed = y1 != x
    mean = x.mean(dim=2, keepdim=True).expand_as(x)
    assert torch.equal(y1[changed], mean[changed])            # masked cells hold the window's mean
    assert 0 < changed.float().mean() < 0.5                   # at most 20 frames + 4 coefficients of each window


def test_epoch_utterances_picks_views_only_when_present():
    base = [UtteranceFeatures("1-1-1", "1", "F", 1.0, np.zeros((2, 5), np.float32))]
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert epoch_utterances(base, AugmentConfig(copies=2, pitch=(1, 2)), rng) is base
    assert rng.bit_generator.state == state                   # no draw: runs without views are unchanged
    views = [np.full((2, 5), 1.0, np.float32), np.full((2, 5), 2.0, np.float32)]
    aug = [AugmentedUtterance(*[getattr(base[0], k) for k in ("uid", "speaker", "target", "seconds", "mfcc")], views=views)]
    always = epoch_utterances(aug, AugmentConfig(p_augmented=1.0), np.random.default_rng(0))
    never = epoch_utterances(aug, AugmentConfig(p_augmented=0.0), np.random.default_rng(0))
    assert always[0].mfcc[0, 0] in (1.0, 2.0) and never[0].mfcc[0, 0] == 0.0
    both = epoch_utterances(aug, AugmentConfig(p_augmented=1.0, with_original=True), np.random.default_rng(0))
    assert len(both) == 2 and both[0].mfcc[0, 0] == 0.0 and both[1].mfcc[0, 0] == always[0].mfcc[0, 0]
    assert epoch_utterances(aug, AugmentConfig(p_augmented=0.0, with_original=True), np.random.default_rng(0)) == aug


def test_add_views_from_corpus_audio_seeded_and_cached(tiny_corpus, tmp_path, librosa_warm):
    from gclf.data.pipeline import corpus_features

    utts, info = corpus_features(tiny_corpus, FC, tmp_path / "pkl", workers=1)
    cfg = AugmentConfig(copies=2, pitch=(0.9, 1.4), noise_snr=(10, 20))
    assert add_views(utts, info["root"], FC, AugmentConfig(), 0, tmp_path / "pkl") is utts
    a = add_views(utts, info["root"], FC, cfg, 0, tmp_path / "pkl", workers=1)
    b = add_views(utts, info["root"], FC, cfg, 0, None, workers=2)           # recomputed, in 2 processes
    c = add_views(utts, info["root"], FC, replace(cfg, copies=2), 1, None, workers=1)
    assert all(len(u.views) == 2 and view_array(u.views[0]).shape == u.mfcc.shape for u in a)
    assert all(isinstance(x, FrameRef) for u in a for x in u.views)              # cached: read from the views' file
    assert all(np.array_equal(view_array(x), y) for u, v in zip(a, b) for x, y in zip(u.views, v.views))
    assert not np.array_equal(view_array(a[0].views[0]), c[0].views[0])          # another seed, other views
    assert len(list((tmp_path / "pkl" / "augment").glob("*.json"))) == 1
    again = add_views(utts, info["root"], FC, cfg, 0, tmp_path / "pkl", workers=1)   # reused, not recomputed
    assert [x for u in again for x in u.views] == [x for u in a for x in u.views]
    on_disk, in_memory = replace(a[0], data=a[0].views[0]), replace(a[0], data=b[0].views[0])   # what an epoch sees
    assert np.array_equal(on_disk.window(0, FC.window_frames), in_memory.window(0, FC.window_frames))


def test_raw_audio_features_take_audio_augmentation_only():
    from gclf.errors import GclfError

    raw = FeatureConfig(kind="audio", window_frames=8000, window_hop=4000)
    a = tone(1.0, 150)
    out = augmented_mfcc(a, raw, AugmentConfig(copies=1, noise_snr=(20, 20)), np.random.default_rng(0))
    assert out.shape == (1, a.size) and out.dtype == np.float32
    snr = 10 * np.log10(np.mean(a.astype(np.float64) ** 2) / np.mean((out[0] - a) ** 2))
    assert snr == pytest.approx(20.0, abs=0.01)
    with pytest.raises(GclfError, match="MFCC"):
        augmented_mfcc(a, raw, AugmentConfig(copies=1, pitch=(1.1, 1.2)), np.random.default_rng(0))


def test_int_frontend_views_are_its_float_mirror_not_librosa(librosa_warm):
    """An ``int_mfcc`` corpus gets augmented views in its own front-end's features: with no perturbation they
    are the integer front-end's frames within the float mirror's bound, far from librosa's MFCCs (whose floor
    and scale differ), and a pitch shift still moves them."""
    from gclf.frontend.features import int_mfcc_frames

    fc = replace(FC, kind="int_mfcc")
    a = harmonic(125.0, seconds=1.5)
    same = mfcc_from_power(power_spectrum(a, fc), fc)
    frames = int_mfcc_frames(a, fc)
    assert same.shape == frames.shape and same.dtype == np.float32
    assert np.abs(same - frames).max() < 0.05                 # the mirror's tested bound, in dB
    assert np.abs(mfcc(a, FC) - frames).max() > 1.0           # what the views were before: librosa's features
    shifted = augmented_mfcc(a, fc, AugmentConfig(copies=1, pitch=(1.4, 1.4)), np.random.default_rng(0))
    assert shifted.shape == frames.shape and np.abs(shifted - frames).mean() > 0.5


def test_views_cache_key_ignores_with_original(tmp_path):
    """Training on the originals besides the views is an epoch's choice: the same views, the same cache file;
    and the fields added later leave the keys of caches written before them as they were."""
    import hashlib
    import json
    from dataclasses import asdict

    from gclf.train.augment import _cache_file

    cfg = AugmentConfig(copies=2, pitch=(0.9, 1.4))
    key = _cache_file(tmp_path / "c", FC, cfg, 0, tmp_path)
    assert _cache_file(tmp_path / "c", FC, replace(cfg, with_original=True), 0, tmp_path) == key
    assert _cache_file(tmp_path / "c", FC, replace(cfg, pitch=(0.9, 1.5)), 0, tmp_path) != key
    assert _cache_file(tmp_path / "c", FC, replace(cfg, pitch_class=(("M", 1.0, 1.6),)), 0, tmp_path) != key
    before = {k: v for k, v in asdict(cfg).items() if k not in ("with_original", "pitch_class")}
    blob = json.dumps({"corpus": str(tmp_path / "c"), "features": FC.key(), "augment": before, "seed": 0},
                      sort_keys=True, default=list)
    assert key.name == f"c-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.json"


def test_pitch_class_moves_each_class_by_its_own_range():
    from gclf.data.augment import pitch_range

    cfg = AugmentConfig(copies=1, pitch=(0.85, 1.6), pitch_class=(("M", 1.4, 1.4), ("F", 0.8, 0.8)))
    assert pitch_range(cfg, "M") == (1.4, 1.4) and pitch_range(cfg, "F") == (0.8, 0.8)
    assert pitch_range(cfg, "X") == (0.85, 1.6) and pitch_range(cfg, None) == (0.85, 1.6)
    assert AugmentConfig(copies=1, pitch_class=(("M", 1.0, 1.2),)).audio_active
    a = harmonic(125.0, seconds=1.5)
    male = augmented_mfcc(a, FC, cfg, np.random.default_rng(3), target="M")
    female = augmented_mfcc(a, FC, cfg, np.random.default_rng(3), target="F")
    up = augmented_mfcc(a, FC, AugmentConfig(copies=1, pitch=(1.4, 1.4)), np.random.default_rng(3))
    down = augmented_mfcc(a, FC, AugmentConfig(copies=1, pitch=(0.8, 0.8)), np.random.default_rng(3))
    assert np.array_equal(male, up) and np.array_equal(female, down) and not np.array_equal(up, down)
    assert AugmentConfig.from_dict({"copies": 1, "pitch_class": [["M", 1, 1.6]]}).pitch_class == (("M", 1.0, 1.6),)


def test_mix_batch_is_a_seeded_convex_pairing():
    x = torch.randn(16, 40, 51)
    y1, p1, lam1 = mix_batch(x, 0.4, torch.Generator().manual_seed(3))
    y2, p2, lam2 = mix_batch(x, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2) and torch.equal(p1, p2) and lam1 == lam2 and 0.0 <= lam1 <= 1.0
    assert sorted(p1.tolist()) == list(range(16))             # a pairing: every window is used once
    torch.testing.assert_close(y1, lam1 * x + (1 - lam1) * x[p1])
    _, _, lam3 = mix_batch(x, 0.4, torch.Generator().manual_seed(4))
    assert lam3 != lam1                                       # lam is drawn, not fixed


def test_mixup_changes_training_only_when_on():
    from gclf.graph.models import build_graph
    from gclf.backends.torch_float import GraphNet
    from gclf.train.fit import TrainConfig, _epoch

    g = build_graph("cnn1d", {"n_frames": 20}, classes=tuple("abc"))
    x, y = torch.randn(160, 40, 20), torch.randint(0, 3, (160,))    # several batches of 64

    def one_epoch(cfg: TrainConfig) -> tuple[torch.Tensor, float]:
        torch.manual_seed(0)
        m = GraphNet(g)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
        loss, _ = _epoch(m, x, y, opt, cfg, torch.Generator().manual_seed(0))
        return torch.cat([p.detach().flatten() for p in m.parameters()]), loss

    (off, l_off), (off2, _), (on, l_on) = (one_epoch(TrainConfig()), one_epoch(TrainConfig()),
                                           one_epoch(TrainConfig(mixup=0.4)))
    assert torch.equal(off, off2) and not torch.equal(off, on)
    assert np.isfinite(l_on) and torch.isfinite(on).all()     # every batch trained (none empty), no NaN
    assert abs(l_on - l_off) < 1.0                            # a mixed loss of the same order, not a blow-up
