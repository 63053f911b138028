"""Shared fixtures: small corpora written in tmp folders, and a librosa warm-up once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REAL_DATA = Path(os.environ.get("GCLF_DATA") or Path(__file__).resolve().parents[1].parent / "shared/data/librispeech-251/LibriSpeech")

SPEAKERS_HEADER = """; LibriSpeech-style speaker table written by the tests
;ID  |SEX| SUBSET           |MINUTES| NAME
"""


def write_speakers(root: Path, speakers: dict[str, str]) -> None:
    lines = [f"{spk:<5}| {sex} | train-test       |  0.10 | Test {spk}" for spk, sex in speakers.items()]
    (root / "SPEAKERS.TXT").write_text(SPEAKERS_HEADER + "\n".join(lines) + "\n")


def tone(seconds: float, f0: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: cheap stand-in for a voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * y / np.max(np.abs(y)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_utt(root: Path, spk: str, chap: str, utt: int, audio: np.ndarray, sr: int = 16000,
              subset: str = "train-test", fmt: str = "flac") -> Path:
    d = root / subset / spk / chap
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{spk}-{chap}-{utt:04d}.{fmt}"
    sf.write(p, audio, sr, subtype="PCM_16", format=fmt.upper())
    return p


@pytest.fixture(scope="session", autouse=True)
def _work_in_tmp(tmp_path_factory):
    """Run from a temporary folder: library defaults such as pkl_data/ and runs/ must never land in the
    checkout during tests."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """4 speakers (2 F, 2 M), 2 s tones, LibriSpeech layout."""
    root = tmp_path / "LibriSpeech"
    root.mkdir()
    speakers = {"11": "F", "12": "F", "21": "M", "22": "M"}
    write_speakers(root, speakers)
    for i, (spk, sex) in enumerate(speakers.items()):
        write_utt(root, spk, "100", 0, tone(2.5, 220 if sex == "F" else 110, seed=i))
    return root


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A synthetic corpus of 60 voices (the plain suite's stand-in for LibriSpeech)."""
    from gclf.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("synth")
    return Path(synthesize_corpus(out, SynthConfig(speakers=60, min_seconds=5.0, max_seconds=10.0, seed=1))["root"])


@pytest.fixture(scope="session")
def synth_features(_work_in_tmp, synth_corpus, librosa_warm):
    """Features of ``synth_corpus`` in the session's default cache (./pkl_data of the session's folder), where
    the steps find them by corpus identity, as they would after `gclf extract`."""
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import corpus_features

    utts, info = corpus_features(synth_corpus, FeatureConfig(), Path.cwd() / "pkl_data", workers=2)
    return utts, info


@pytest.fixture(scope="session")
def cc():
    """The system C compiler (the C tests skip, and say why, on a machine without one)."""
    from gclf.backends.c.build import find_cc

    found = find_cc()
    if found is None:
        pytest.skip("no C compiler on this machine (cc, gcc, clang or $CC)")
    return found


@pytest.fixture(scope="session")
def librosa_warm():
    """librosa's first MFCC call compiles with numba: pay it once per session."""
    from gclf.data.features import FeatureConfig, mfcc

    mfcc(np.zeros(16000, dtype=np.float32) + 1e-3, FeatureConfig())
    return True


@pytest.fixture(scope="session")
def trained_run(synth_features, tmp_path_factory):
    """A small 3-fold run on synthetic speech, shared by the tests of later steps."""
    from gclf.data.features import FeatureConfig
    from gclf.graph.models import build_graph
    from gclf.train.cv import train_run
    from gclf.train.fit import TrainConfig

    utts, info = synth_features
    out = tmp_path_factory.mktemp("run")
    result = train_run(utts, out, build_graph(), FeatureConfig(), TrainConfig(epochs=15, folds=3, seed=0, patience=6),
                       info["corpus"])
    return out, result


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (e.g. the README's headline figure on real data)")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason=f"real LibriSpeech not found at {REAL_DATA} (set GCLF_DATA)")
    skip_slow = pytest.mark.skip(reason="slow: run with --slow (make reproduce)")
    for item in items:
        if "realdata" in item.keywords and not (REAL_DATA / "SPEAKERS.TXT").is_file():
            item.add_marker(skip)
        if "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def chain_runs(trained_run, tmp_path_factory):
    """Run folders for every kind of chain, built from ``trained_run`` with short fine-tuning:
    float, q8 (W8/A8), c8 (block-circulant 8), c8a (+ PLAN sigmoid / pwl16 tanh), c8aq8 (the full chain)."""
    from gclf.graph.spec import QuantConfig
    from gclf.steps.float_steps import approx_one, compress_one
    from gclf.steps.quantize import quantize_one
    from gclf.steps.runner import apply_step

    out, _ = trained_run
    base = tmp_path_factory.mktemp("chains")
    q8 = QuantConfig(bits=8)
    runs = {"float": out}
    runs["q8"] = base / "q8"
    apply_step(out, runs["q8"], lambda ck, u: quantize_one(ck, u, q8))
    runs["c8"] = base / "c8"
    apply_step(out, runs["c8"], lambda ck, u: compress_one(ck, u, 8, "fc,lstm", epochs=2))
    runs["c8a"] = base / "c8a"
    apply_step(runs["c8"], runs["c8a"], lambda ck, u: approx_one(ck, u, "plan", "pwl16", epochs=2))
    runs["c8aq8"] = base / "c8aq8"
    apply_step(runs["c8a"], runs["c8aq8"], lambda ck, u: quantize_one(ck, u, q8))
    return runs
