"""Session fixtures of the benchmarks: one thread, the corpus, the chain of run folders (built once or
reused through ``GCLF_BENCH_RUN``), and the engines, each built on first use."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")      # before torch / numpy start their thread pools

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from benchmarks.chain import REAL_DATA, Chain, build_chain, real_data_present  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """torch on one intra-op thread for every benchmark (ONNX Runtime sessions set their own)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def librosa_warm() -> bool:
    """librosa's first MFCC call compiles with numba: pay it before anything is timed."""
    import numpy as np

    from gclf.data.features import FeatureConfig, mfcc

    mfcc(np.zeros(16000, dtype=np.float32) + 1e-3, FeatureConfig())
    return True


@pytest.fixture(scope="session")
def bench_corpus(tmp_path_factory, librosa_warm) -> tuple[Path, str]:
    """(LibriSpeech root, "real" | "synthetic") for the extraction benchmark."""
    if real_data_present():
        from gclf.data.corpus import find_root

        return find_root(REAL_DATA), "real"
    from gclf.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("bench-synth")
    return Path(synthesize_corpus(out, SynthConfig(speakers=40, seed=3))["root"]), "synthetic"


@pytest.fixture(scope="session")
def chain(tmp_path_factory, bench_corpus) -> Chain:
    """The run folders of every step (see benchmarks/chain.py), built once per session."""
    root, kind = bench_corpus
    c = build_chain(tmp_path_factory.mktemp("bench-chain"), root if kind == "synthetic" else None)
    print(f"\n[gclf bench] chain on {c.data} data ({c.corpus}); reused {len(c.reused)} folder(s); "
          f"ready in {c.built_seconds} s")
    return c


@pytest.fixture(scope="session")
def engines(chain, tmp_path_factory):
    """``get(name)``: the engine of that step or peer, built on first use (skips when a module is missing)."""
    from benchmarks.engines import build_engine

    built: dict[str, object] = {}
    tmp = tmp_path_factory.mktemp("bench-engines")

    def get(name: str):
        if name not in built:
            _check_available(name)
            built[name] = build_engine(name, chain.runs, chain.cache_root, tmp)
            built[name].notes.update({"data": chain.data, "corpus": chain.corpus})
        return built[name]

    return get


def _check_available(name: str) -> None:
    """Skip (with the reason) an engine whose module or tool is missing."""
    import importlib

    from benchmarks.engines import ENGINES

    kinds = {k: v[1] for k, v in ENGINES.items()}

    needs = {"onnxruntime": ["gclf.backends.onnx.export", "onnxruntime"],
             "ort-int8": ["gclf.backends.onnx.export", "onnxruntime.quantization"],
             "ort-qdq": ["gclf.backends.onnx.export", "onnxruntime"]}
    for mod in needs.get(name, []):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            pytest.skip(f"{name}: {mod} is not available ({exc})")
    if kinds.get(name) == "c":
        from gclf.backends.c.build import find_cc

        if find_cc() is None:
            pytest.skip(f"{name}: no C compiler (cc, gcc, clang or $CC) on this machine")
