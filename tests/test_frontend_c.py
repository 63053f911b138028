"""The front-end's generated C: bit-exact with the numpy integer reference on every frame of synthetic edge
cases and of real LibriSpeech utterances, overflow counts equal, strict warnings, prefixed symbols."""
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from gclf.frontend import FrontendConfig, mfcc_int, pcm16
from gclf.frontend.c import build_frontend_harness, generate_frontend_c, run_frontend_c
from gclf.frontend.signals import lone_lsb

from tests.conftest import REAL_DATA
from tests.test_frontend import _edge_cases, _speech

CFG = FrontendConfig()


@pytest.fixture(scope="module")
def fe_exe(tmp_path_factory):
    from gclf.backends.c.build import find_cc

    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler on this machine (cc, gcc, clang or $CC)")
    return build_frontend_harness(tmp_path_factory.mktemp("fe"), cc, CFG)


def _same(exe, pcm, cfg=CFG):
    got, gc = run_frontend_c(exe, pcm)
    want, wc = mfcc_int(pcm, cfg)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert gc == wc
    return gc


@pytest.mark.parametrize("case", sorted(_edge_cases()))
def test_c_matches_integer_reference_on_edge_cases(fe_exe, case):
    _same(fe_exe, _edge_cases()[case])


def test_c_matches_integer_reference_on_speech_and_noise(fe_exe):
    rng = np.random.default_rng(7)
    _same(fe_exe, _speech("F", 30, 3.0))
    _same(fe_exe, _speech("M", 31, 3.0))
    _same(fe_exe, rng.integers(-32768, 32768, 16000).astype(np.int16))
    _same(fe_exe, np.zeros(0, np.int16))
    _same(fe_exe, lone_lsb())


def test_c_matches_integer_reference_with_the_absolute_floor(cc, tmp_path):
    cfg = replace(CFG, floor_mode="absolute")
    exe = build_frontend_harness(tmp_path, cc, cfg)
    quiet = _speech("F", 32, 2.0) // 64              # quiet enough for bands to sit on -70 dB
    for pcm in (quiet, lone_lsb(), _edge_cases()["pure_tone"]):
        _same(exe, pcm, cfg)
    assert not np.array_equal(run_frontend_c(exe, quiet)[0], mfcc_int(quiet, CFG)[0])   # not the frame floor


def test_c_counts_the_same_overflows(cc, tmp_path):
    cfg = replace(CFG, out_frac=27)
    exe = build_frontend_harness(tmp_path, cc, cfg)
    counts = _same(exe, _edge_cases()["full_scale_square"], cfg)
    assert counts["out"] > 0


def test_two_prefixes_link_into_one_program(cc, tmp_path):
    """Every symbol carries the prefix: two front-ends compile and link side by side."""
    a = build_frontend_harness(tmp_path / "a", cc, CFG, prefix="mic0_")
    b = generate_frontend_c(tmp_path / "a", replace(CFG, floor_mode="absolute", floor_db=-60.0), prefix="mic1_")
    exe = tmp_path / "both"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-O1", "-I", str(tmp_path / "a"), "-o", str(exe),
                    str(tmp_path / "a" / "mic0_frontend.c"), b["c"], str(tmp_path / "a" / "mic0_frontend_main.c")],
                   check=True)
    pcm = _speech("F", 40)
    np.testing.assert_array_equal(run_frontend_c(exe, pcm)[0], run_frontend_c(a, pcm)[0])
    nm = subprocess.run(["nm", "-g", "--defined-only", str(tmp_path / "both")], capture_output=True, text=True)
    if nm.returncode == 0:
        names = [ln.split()[-1] for ln in nm.stdout.splitlines() if "fe_" in ln]
        assert names and all(n.startswith(("mic0_", "mic1_")) for n in names)


def test_bad_prefix_is_refused(tmp_path):
    from gclf.errors import GclfError

    with pytest.raises(GclfError):
        generate_frontend_c(tmp_path, CFG, prefix="1bad-")


@pytest.mark.realdata
def test_c_matches_integer_reference_on_20_real_utterances(fe_exe):
    from gclf.data.corpus import load_audio

    files = sorted(REAL_DATA.rglob("*.flac"))[::12][:20]
    assert len(files) == 20
    frames = 0
    for f in files:
        pcm = pcm16(load_audio(f, 16000))
        _same(fe_exe, pcm)
        frames += CFG.n_frames(pcm.size)
    assert frames > 20 * 100


@pytest.fixture(scope="module")
def stream_exe(tmp_path_factory):
    from gclf.backends.c.build import find_cc
    from gclf.frontend.c import build_stream_harness

    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler on this machine (cc, gcc, clang or $CC)")
    return build_stream_harness(tmp_path_factory.mktemp("fes"), cc, CFG)


@pytest.mark.parametrize("seed,chunking", list(enumerate(["one_sample", "random_small", "random_large", "hop", "whole"])))
def test_streaming_equals_whole_clip_under_any_chunking(stream_exe, seed, chunking):
    from gclf.frontend.c import run_stream_c

    rng = np.random.default_rng(seed)
    pcm = np.concatenate([_speech("M", 60, 1.3), _edge_cases()["clipped_speech"][:2345]])
    chunks = {"one_sample": [1], "random_small": rng.integers(1, 40, 500),
              "random_large": rng.integers(1, 3000, 50), "hop": [CFG.hop], "whole": [pcm.size]}[chunking]
    want, wc = mfcc_int(pcm, CFG)
    got, gc = run_stream_c(stream_exe, pcm, chunks)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert gc == wc


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 319, 320, 321, 511, 512, 513, 576, 577, 1000])
def test_streaming_frame_count_at_clip_boundaries(stream_exe, n):
    from gclf.frontend.c import run_stream_c

    pcm = (np.random.default_rng(n).integers(-3000, 3000, n)).astype(np.int16)
    got, _ = run_stream_c(stream_exe, pcm, [7, 1, 300])
    want, _ = mfcc_int(pcm, CFG)
    assert got.shape[1] == want.shape[1] == 1 + n // CFG.hop
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("floor", ["frame", "running"])
def test_export_frontend_cli_writes_prefixed_verified_c(cc, tmp_path, floor):
    import json

    from click.testing import CliRunner

    from gclf.cli import cli

    r = CliRunner().invoke(cli, ["export-frontend", "--out", str(tmp_path / "fe"), "--prefix", "x_", "--verify",
                                 "--floor", floor, "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["verify"]["mismatches"] == 0 and j["verify"]["frames"] > 500 and j["config"]["floor_mode"] == floor
    h = (tmp_path / "fe" / "x_frontend.h").read_text()
    assert "X_FE_N_MFCC" in h and "x_fe_stream_push" in h and "gclf_" not in h
    assert ("running peak" in h) == (floor == "running")


def test_export_frontend_bad_prefix_is_one_line(monkeypatch, capsys, tmp_path):
    import sys

    from gclf.cli import main

    monkeypatch.setattr(sys, "argv", ["gclf", "export-frontend", "--out", str(tmp_path / "fe"), "--prefix", "no-"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "fe").exists()
