"""The integer front-end's running-peak floor (``floor_mode="running"``, ``--frontend int-running``): the numpy
integer reference against its recursion and its float mirror, what the floor does (holds a loud part, decays by
``decay_db`` a frame to the guard, causal, level-invariant), the feature config that selects it, and the
generated C bit-exact with the reference (whole clip, streaming under any chunking, real utterances)."""
from dataclasses import replace

import numpy as np
import pytest

from gclf.frontend import FrontendConfig, float_of_int, mfcc_float, mfcc_int, pcm16, tables
from gclf.frontend.config import FLOORS
from gclf.frontend.intref import running_peak
from gclf.frontend.signals import lone_lsb

from tests.conftest import REAL_DATA
from tests.test_frontend import INT_VS_FLOAT_DB, _edge_cases, _speech

RUN = FrontendConfig(**FLOORS["running"])          # the named floor: decay 0.05 dB / frame, guard -100 dB
RAVDESS = REAL_DATA.parents[1] / "ravdess"


def _burst_then_silence(quiet: int = 0, amp: float = 0.5) -> np.ndarray:
    """0.5 s of a tone of amplitude ``amp``, then 6 s of zeros (or of quiet speech / ``quiet``)."""
    t = np.arange(8000) / 16000
    tail = np.zeros(96000, np.int16) if not quiet else (_speech("M", 8, 6.0) // quiet).astype(np.int16)
    return np.concatenate([pcm16(amp * np.sin(2 * np.pi * 300 * t)), tail])


def test_running_peak_is_its_recursion():
    """The closed form equals peak[t] = max(loud[t], peak[t-1] - decay, guard) stepped frame by frame,
    including loud values below the guard and a peak carried in from an earlier chunk."""
    t = tables(RUN)
    rng = np.random.default_rng(0)
    loud = np.concatenate([rng.integers(t.floor_q - 10**6, t.floor_q + 4 * 10**6, 300),
                           np.full(50, t.floor_q - 7), rng.integers(t.floor_q, t.floor_q + 10**5, 100)])
    for peak0 in (t.floor_q, t.floor_q + 3 * 10**6):
        p, want = peak0, []
        for v in loud:
            p = max(int(v), p - t.decay_q, t.floor_q)
            want.append(p)
        np.testing.assert_array_equal(running_peak(loud, RUN, peak0), want)
    assert running_peak(np.zeros(0, np.int64), RUN).size == 0


@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_integer_path_tracks_float_mirror_on_edge_cases(case):
    pcm = _edge_cases()[case]
    q, counts = mfcc_int(pcm, RUN)
    f = mfcc_float(pcm, RUN)
    assert q.shape == f.shape and counts == {"fft": 0, "out": 0}
    assert np.abs(float_of_int(q, RUN) - f).max() <= INT_VS_FLOAT_DB


@pytest.mark.parametrize("quiet", [0, 64])
def test_integer_path_tracks_float_mirror_on_speech_after_a_loud_part(quiet):
    pcm = np.concatenate([_speech("F", 12), _burst_then_silence(quiet)])
    q, _ = mfcc_int(pcm, RUN)
    assert np.abs(float_of_int(q, RUN) - mfcc_float(pcm, RUN)).max() <= INT_VS_FLOAT_DB


def test_silence_after_a_loud_part_sits_on_the_decaying_floor_then_on_the_guard():
    """Zero frames after a loud tone: every band on the floor, which starts top_db below the tone's loudest
    band and falls by decay_db a frame until it reaches min_db (c0 = floor x sqrt(n_mels), the rest 0).
    The frame floor would put them all on min_db at once."""
    pcm = _burst_then_silence(amp=0.02)                      # its floor reaches the guard within the 6 s
    c0 = float_of_int(mfcc_int(pcm, RUN)[0], RUN)[0] / np.sqrt(RUN.n_mels)
    first = 8000 // RUN.hop + 2                              # first frame wholly in the zeros
    from gclf.frontend.config import mel_weights
    from gclf.frontend.floatref import power_frames

    loud = 10 * np.log10(np.maximum((power_frames(pcm, RUN) @ mel_weights(RUN).T)[:first].max(axis=1), 1e-30))
    floor = c0[first:]
    steps = np.diff(floor)
    falling = floor > RUN.min_db + 0.01
    assert falling[:100].all() and not falling[-20:].any()   # ~(top - 80 + 100) / 0.05 frames to the guard
    assert np.allclose(steps[falling[1:]], -RUN.decay_db, atol=0.002)
    assert abs(floor[-1] - RUN.min_db) < 0.01
    decay = tables(RUN).decay_q / 2 ** 16 * 10 * np.log10(2)
    want = (loud + decay * np.arange(first)).max() - decay * first - RUN.top_db      # the floor at `first`
    assert abs(floor[0] - want) < 0.01 and floor[0] > RUN.min_db + 5
    frame = float_of_int(mfcc_int(pcm, replace(RUN, floor_mode="frame"))[0], RUN)[0] / np.sqrt(RUN.n_mels)
    assert abs(frame[first] - RUN.min_db) < 0.01 and frame[first] < floor[0] - 5


def test_running_floor_is_causal():
    """A frame depends on the clip up to its own samples only: appending audio leaves earlier frames alone,
    and a loud part before changes the quiet frames after it (the floor is not the frame's)."""
    quiet = (_speech("M", 5, 2.0) // 64).astype(np.int16)
    qa, _ = mfcc_int(quiet, RUN)
    qb, _ = mfcc_int(np.concatenate([quiet, np.full(16000, 30000, np.int16)]), RUN)
    k = quiet.size // RUN.hop - 1
    np.testing.assert_array_equal(qa[:, :k], qb[:, :k])
    loud_first = np.concatenate([pcm16(np.full(3200, 0.9) * np.sin(np.arange(3200))), quiet])
    qc, _ = mfcc_int(loud_first, RUN)
    assert not np.array_equal(qc[:, -k // 2:], qa[:, -k // 2:])


def test_running_floor_is_level_invariant_above_its_guard():
    """PCM x 8 moves every band and the running peak by the same 18.06 dB: c1.. unchanged (2 LSB), c0 by the
    shift x sqrt(n_mels). Checked with the -190 dB guard, which speech never reaches."""
    cfg = replace(RUN, min_db=-190.0)
    pcm = np.concatenate([_speech("F", 15), _burst_then_silence(64)]) // 8
    a = float_of_int(mfcc_int(pcm, cfg)[0], cfg)
    up = float_of_int(mfcc_int(pcm * 8, cfg)[0], cfg)
    assert np.abs(up[1:] - a[1:]).max() <= 2 / 256
    assert np.abs(up[0] - a[0] - 20 * np.log10(8) * np.sqrt(cfg.n_mels)).max() <= 0.05


def test_running_floor_config():
    from gclf.data.features import FeatureConfig
    from gclf.errors import GclfError
    from gclf.frontend.features import frontend_config, with_frontend

    with pytest.raises(ValueError):
        replace(RUN, decay_db=0.0).check()
    base = FrontendConfig()
    assert base.key() == replace(base, decay_db=0.3).key()          # decay_db is no part of other floors' keys
    assert RUN.key() != replace(RUN, decay_db=0.3).key() != base.key()
    f = with_frontend(FeatureConfig(), "int-running")
    assert f.kind == "int_mfcc" and f.fe_floor == "running" and frontend_config(f) == replace(base, **FLOORS["running"])
    assert with_frontend(f, "int").fe_floor == "running" and with_frontend(f, "int-frame").fe_floor == "frame"
    assert f.key() != with_frontend(FeatureConfig(), "int").key()
    assert FeatureConfig().key() == replace(FeatureConfig(), fe_floor="running").key()   # librosa: unused
    old = {k: v for k, v in f.__dict__.items() if k != "fe_floor"}   # a checkpoint from before fe_floor
    assert FeatureConfig.from_dict(old).fe_floor == "frame"
    assert FeatureConfig.from_dict(f.__dict__) == f
    with pytest.raises(GclfError):
        frontend_config(replace(f, fe_floor="nope"))


# -- the generated C ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_exes(tmp_path_factory):
    from gclf.backends.c.build import find_cc
    from gclf.frontend.c import build_frontend_harness, build_stream_harness

    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler on this machine (cc, gcc, clang or $CC)")
    d = tmp_path_factory.mktemp("fe-run")
    return build_frontend_harness(d / "clip", cc, RUN), build_stream_harness(d / "stream", cc, RUN)


def _same(exe, pcm):
    from gclf.frontend.c import run_frontend_c

    got, gc = run_frontend_c(exe, pcm)
    want, wc = mfcc_int(pcm, RUN)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert gc == wc


@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_c_matches_integer_reference_on_edge_cases(run_exes, case):
    _same(run_exes[0], _edge_cases()[case])


def test_c_matches_integer_reference_on_speech_and_loud_parts(run_exes):
    _same(run_exes[0], np.concatenate([_speech("F", 30, 3.0), _burst_then_silence(), _burst_then_silence(64)]))
    _same(run_exes[0], lone_lsb())
    _same(run_exes[0], np.zeros(0, np.int16))
    _same(run_exes[0], np.random.default_rng(7).integers(-32768, 32768, 16000).astype(np.int16))


@pytest.mark.parametrize("seed,chunking", list(enumerate(["one_sample", "random_small", "random_large", "hop"])))
def test_streaming_equals_whole_clip_under_any_chunking(run_exes, seed, chunking):
    """The peak lives in the stream struct: any chunking, down to one sample, gives the whole clip's frames."""
    from gclf.frontend.c import run_stream_c

    rng = np.random.default_rng(seed)
    pcm = np.concatenate([_burst_then_silence(64)[:40000], _speech("M", 60, 1.3)])
    chunks = {"one_sample": [1], "random_small": rng.integers(1, 40, 500),
              "random_large": rng.integers(1, 3000, 50), "hop": [RUN.hop]}[chunking]
    want, wc = mfcc_int(pcm, RUN)
    got, gc = run_stream_c(run_exes[1], pcm, chunks)
    np.testing.assert_array_equal(got, want)
    assert gc == wc


def test_frame_call_carries_the_peak_only_through_its_argument(cc, tmp_path):
    """fe_frame from FE_PEAK_INIT on one frame is the reference's first frame of a clip (the state is the
    argument, nothing static: a second call from FE_PEAK_INIT gives the same), and fe_clip starts every clip
    from FE_PEAK_INIT (two calls after a loud clip give the same frames)."""
    import subprocess

    from gclf.frontend.c import generate_frontend_c
    from gclf.frontend.intref import mfcc_frames_int

    frame = _speech("F", 33, 0.1)[:RUN.n_fft] // 16
    loud = _edge_cases()["full_scale_square"][:3200]
    gen = generate_frontend_c(tmp_path, RUN, prefix="r_")
    main = tmp_path / "m.c"
    main.write_text("#include <stdio.h>\n#include \"r_frontend.h\"\n"
                    f"static const int16_t fr[{RUN.n_fft}] = {{{', '.join(map(str, frame))}}};\n"
                    f"static const int16_t loud[{loud.size}] = {{{', '.join(map(str, loud))}}};\n"
                    "static int32_t a[16 * R_FE_N_MFCC], b[16 * R_FE_N_MFCC];\n"
                    "int main(void) {\n  int32_t o[R_FE_N_MFCC], o2[R_FE_N_MFCC], p = R_FE_PEAK_INIT;\n"
                    "  r_fe_frame(loud, &p, o);\n  p = R_FE_PEAK_INIT;\n  r_fe_frame(fr, &p, o);\n"
                    "  p = R_FE_PEAK_INIT;\n  r_fe_frame(fr, &p, o2);\n"
                    "  for (int c = 0; c < R_FE_N_MFCC; c++) { if (o[c] != o2[c]) return 1; printf(\"%d \", (int)o[c]); }\n"
                    f"  r_fe_clip(loud, {loud.size}, a, 16);\n  r_fe_clip(fr, {RUN.n_fft}, a, 16);\n"
                    f"  r_fe_clip(fr, {RUN.n_fft}, b, 16);\n"
                    "  for (int i = 0; i < 2 * R_FE_N_MFCC; i++) if (a[i] != b[i]) return 2;\n  return 0;\n}\n")
    exe = tmp_path / "m"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-O1", "-I", str(tmp_path), "-o", str(exe), gen["c"],
                    str(main)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0
    want, _ = mfcc_frames_int(frame[None, :].astype(np.int64), RUN)
    np.testing.assert_array_equal(np.array(r.stdout.split(), dtype=np.int64), want[0])


@pytest.mark.realdata
def test_c_matches_integer_reference_on_20_real_utterances(run_exes):
    """20 LibriSpeech utterances and, when present, 20 RAVDESS clips (digital silence before speech)."""
    from gclf.data.corpus import load_audio

    files = sorted(REAL_DATA.rglob("*.flac"))[::12][:20]
    assert len(files) == 20
    files += sorted(RAVDESS.rglob("*.flac"))[::37][:20] if RAVDESS.is_dir() else []
    for f in files:
        _same(run_exes[0], pcm16(load_audio(f, 16000)))
