"""The integer MFCC front-end: integer path vs its float64 mirror (stated bound), the mirror vs librosa where
the definitions coincide, edge cases, and the overflow counters."""
from dataclasses import replace

import numpy as np
import pytest

from gclf.frontend import FrontendConfig, float_of_int, mfcc_float, mfcc_int, pcm16, tables
from gclf.frontend.intref import fft_int, log2_q16
from gclf.frontend.signals import edge_cases, speech

CFG = FrontendConfig()
INT_VS_FLOAT_DB = 0.05      # max |integer - float mirror| per coefficient, dB (measured: ~0.01)
MIRROR_VS_LIBROSA_DB = 0.01  # max |mirror - librosa| per coefficient, dB (librosa computes in float32)


def _speech(sex: str, seed: int, seconds: float = 2.0) -> np.ndarray:
    return speech(sex, seed, seconds)


def _edge_cases() -> dict[str, np.ndarray]:
    return edge_cases()


@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_integer_path_tracks_float_mirror_on_edge_cases(case):
    pcm = _edge_cases()[case]
    q, counts = mfcc_int(pcm, CFG)
    f = mfcc_float(pcm, CFG)
    assert q.shape == f.shape == (CFG.n_mfcc, CFG.n_frames(pcm.size))
    assert counts == {"fft": 0, "out": 0}
    assert np.abs(float_of_int(q, CFG) - f).max() <= INT_VS_FLOAT_DB


@pytest.mark.parametrize("sex,seed", [("F", 10), ("M", 11), ("F", 12), ("M", 13)])
def test_integer_path_tracks_float_mirror_on_speech(sex, seed):
    pcm = _speech(sex, seed)
    q, counts = mfcc_int(pcm, CFG)
    err = np.abs(float_of_int(q, CFG) - mfcc_float(pcm, CFG))
    assert counts["fft"] == counts["out"] == 0
    assert err.max() <= INT_VS_FLOAT_DB


@pytest.mark.parametrize("mode,low_db", [("frame", CFG.min_db), ("absolute", CFG.floor_db)])
def test_silence_is_the_floor_everywhere(mode, low_db):
    cfg = replace(CFG, floor_mode=mode)
    q, _ = mfcc_int(np.zeros(3200, np.int16), cfg)
    assert np.all(q[1:] == q[1:, :1]) and np.all(q[0] == q[0, 0])
    assert abs(q[0, 0] / 256 - low_db * np.sqrt(CFG.n_mels)) < 0.05


def _mel_db_int(pcm, cfg):
    """The integer path's floored band logs (frames, n_mels) in dB, read back through the DCT's inverse."""
    from gclf.frontend.config import dct_matrix

    q, _ = mfcc_int(pcm, replace(cfg, n_mfcc=cfg.n_mels))
    return (float_of_int(q, cfg).T @ dct_matrix(replace(cfg, n_mfcc=cfg.n_mels)))


def test_frame_floor_sits_top_db_below_each_frames_loudest_band():
    t = np.arange(16000) / CFG.sample_rate      # a pure tone: its far bands lie > 80 dB below it
    pcm = pcm16(0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 4))
    db = _mel_db_int(pcm, CFG)
    floor = db.max(axis=1) - CFG.top_db
    assert np.all(db >= floor[:, None] - 0.01)
    assert np.mean(np.abs(db - floor[:, None]) < 0.01) > 0.01     # some bands do sit on it


def test_frame_floor_guard_holds_frames_quieter_than_min_db_plus_top_db():
    """A frame whose only sample has window weight 1 peaks below min_db + top_db: its floor is min_db."""
    from gclf.frontend.signals import lone_lsb

    db = _mel_db_int(lone_lsb(hop=CFG.hop, n_fft=CFG.n_fft), CFG)
    for f in (3, 9):
        assert db[f].max() < CFG.min_db + CFG.top_db and abs(db[f].min() - CFG.min_db) < 0.01
    assert np.all(db >= CFG.min_db - 0.01)
    assert np.all(db[0] > db[0].max() - CFG.top_db - 0.01) and db[0].max() > CFG.min_db + CFG.top_db


@pytest.mark.parametrize("mode", ["frame", "absolute"])
def test_frames_are_independent_of_the_rest_of_the_clip(mode):
    """Nothing depends on the whole clip: a frame's MFCCs do not change when loud audio is appended."""
    cfg = replace(CFG, floor_mode=mode)
    quiet = _speech("M", 5, 1.0) // 64
    loud = np.concatenate([quiet, np.full(16000, 30000, np.int16)])
    qa, _ = mfcc_int(quiet, cfg)
    qb, _ = mfcc_int(loud, cfg)
    k = quiet.size // CFG.hop - 1     # frames whose window lies inside the quiet part
    np.testing.assert_array_equal(qa[:, :k], qb[:, :k])


def test_frame_floor_is_level_invariant():
    """PCM x 8 (exact in int16) shifts every band of every frame by 20 log10 8 dB, the frame floor with them:
    c1.. do not move (1 LSB from the DCT table's rounding), c0 moves by that shift x sqrt(n_mels). PCM / 8
    (rounded: loses 3 bits) keeps c1.. within a fraction of a dB on average. The absolute floor fails both."""
    pcm = _speech("F", 15) // 8
    shift = 20 * np.log10(8) * np.sqrt(CFG.n_mels)
    for mode, same in (("frame", True), ("absolute", False)):
        cfg = replace(CFG, floor_mode=mode)
        a = float_of_int(mfcc_int(pcm, cfg)[0], cfg)
        up = float_of_int(mfcc_int(pcm * 8, cfg)[0], cfg)
        down = float_of_int(mfcc_int((pcm // 8).astype(np.int16), cfg)[0], cfg)
        exact = np.abs(up[1:] - a[1:]).max() <= 2 / 256 and np.abs(up[0] - a[0] - shift).max() <= 0.05
        close = np.abs(down[1:] - a[1:]).mean() <= 0.5
        assert exact == same and close == same, (mode, np.abs(up[1:] - a[1:]).max(), np.abs(down[1:] - a[1:]).mean())


def test_float_mirror_matches_librosa_where_definitions_coincide(librosa_warm):
    import librosa
    from scipy.fft import dct

    pcm = _speech("F", 21)
    y = pcm.astype(np.float32) / 32768.0
    mel = librosa.feature.melspectrogram(y=y, sr=CFG.sample_rate, n_fft=CFG.n_fft, hop_length=CFG.hop,
                                         n_mels=CFG.n_mels, fmin=CFG.fmin, fmax=CFG.fmax, power=2.0)
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-30, top_db=None)
    floors = {"absolute": np.full(db.shape[1], CFG.floor_db), "frame": db.max(axis=0) - CFG.top_db}
    for mode, floor in floors.items():
        want = dct(np.maximum(db, floor[None, :]), axis=0, type=2, norm="ortho")[:CFG.n_mfcc]
        got = mfcc_float(pcm, replace(CFG, floor_mode=mode))
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= MIRROR_VS_LIBROSA_DB, mode


def test_float_mirror_differs_from_librosa_mfcc_only_by_the_floor(librosa_warm):
    """librosa's own mfcc (top_db=80 relative to the clip's loudest frame) equals the mirror with that
    floor as an absolute one: the one definitional difference is the floor."""
    import librosa

    pcm = _speech("M", 22)
    y = pcm.astype(np.float32) / 32768.0
    want = librosa.feature.mfcc(y=y, sr=CFG.sample_rate, n_mfcc=CFG.n_mfcc, n_fft=CFG.n_fft,
                                hop_length=CFG.hop, n_mels=CFG.n_mels, fmin=CFG.fmin, fmax=CFG.fmax)
    mel = librosa.feature.melspectrogram(y=y, sr=CFG.sample_rate, n_fft=CFG.n_fft, hop_length=CFG.hop,
                                         n_mels=CFG.n_mels, fmin=CFG.fmin, fmax=CFG.fmax)
    clip_floor = 10 * np.log10(mel.max()) - 80.0
    got = mfcc_float(pcm, replace(CFG, floor_mode="absolute", floor_db=float(clip_floor)))
    assert np.abs(got - want).max() <= MIRROR_VS_LIBROSA_DB


def test_log2_table_error_is_within_its_stated_bound():
    e = np.unique(np.concatenate([np.arange(1, 5000), (np.random.default_rng(0).integers(1, 2 ** 62, 20000))]))
    got = log2_q16(e, CFG) / 2 ** CFG.log_frac
    want = np.log2(e.astype(np.float64))
    bound = (1 / 64) ** 2 / (8 * np.log(2)) + 2 ** -16 / np.log(2) + 2 ** -16   # interpolation, truncation, rounding
    assert np.abs(got - want).max() <= bound


def test_output_overflow_saturates_and_counts():
    """A too-fine output format (Q27 dB) cannot hold loud MFCCs in int32: they saturate and are counted."""
    cfg = replace(CFG, out_frac=27)
    q, counts = mfcc_int(_edge_cases()["full_scale_square"], cfg)
    assert counts["out"] > 0
    assert q.max() == 2 ** 31 - 1 or q.min() == -2 ** 31
    assert counts["fft"] == 0


def test_fft_overflow_saturates_and_counts():
    """Frames beyond the block-floating-point range (2^22 instead of < 2^20) overflow the DC bin of 2X."""
    counts = {}
    re, _ = fft_int(np.full((2, CFG.n_fft), 2 ** 22, np.int64), CFG, counts)
    assert counts["fft"] > 0 and re[:, 0].tolist() == [2 ** 31 - 1] * 2
    counts = {}
    re, _ = fft_int(np.full((2, CFG.n_fft), 2 ** 21 - 1, np.int64), CFG, counts)
    assert counts["fft"] == 0 and re[:, 0].tolist() == [2 * (2 ** 21 - 1) * CFG.n_fft] * 2


def test_integer_path_rejects_float_input():
    with pytest.raises(TypeError):
        mfcc_int(np.zeros(1000, np.float32), CFG)


def test_trivial_twiddles_are_exact_in_the_tables():
    """The C skips the products for w = 1 and w = -i: valid only because the tables hold them exactly and
    a rounded shift of an exact multiple of 2^30 returns it unchanged."""
    t = tables(CFG)
    one = 1 << CFG.twiddle_frac
    assert (t.tw_re[0], t.tw_im[0]) == (one, 0)
    assert (t.tw_re[CFG.n_fft // 4], t.tw_im[CFG.n_fft // 4]) == (0, -one)



# Real speech, per coefficient (20 LibriSpeech utterances, 526,760 values, measured: max 0.48 dB, 99.9th
# percentile 0.065, mean 0.002). The tail is frames whose quiet bins sit > 80 dB under the frame's loudest:
# after `power >> power_shift` such a bin keeps a few integer units, so its log is coarse.
REAL_INT_VS_FLOAT_DB = {"max": 0.75, "p99.9": 0.1, "mean": 0.01}


@pytest.mark.realdata
def test_integer_path_tracks_float_mirror_on_real_speech():
    """The stated bound on real audio: every frame and coefficient of 20 LibriSpeech utterances (synthetic
    speech stays within INT_VS_FLOAT_DB everywhere; real recordings have frames with bins ~80 dB or more under
    the loudest, where the integer power keeps few bits)."""
    import soundfile as sf

    from tests.conftest import REAL_DATA

    errs = []
    for path in sorted(REAL_DATA.rglob("*.flac"))[::12][:20]:
        pcm, sr = sf.read(path, dtype="int16")
        assert sr == CFG.sample_rate
        q, counts = mfcc_int(pcm, CFG)
        assert counts == {"fft": 0, "out": 0}
        errs.append(np.abs(float_of_int(q, CFG) - mfcc_float(pcm, CFG)).ravel())
    e = np.concatenate(errs)
    got = {"max": e.max(), "p99.9": np.percentile(e, 99.9), "mean": e.mean()}
    assert all(got[k] <= REAL_INT_VS_FLOAT_DB[k] for k in got), got
