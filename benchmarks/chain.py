"""The chain of run folders the benchmarks measure: built once per session, or reused.

Folders are named as the CLI names them, next to the trained run ``model``::

    model            train (float)                        model-q8      quantize W8/A8
    model-c8         compress block 8 on fc, lstm         model-q4a8    quantize W4/A8 (short QAT)
    model-a          approx sigmoid plan, tanh pwl16      model-c8-a-q8 the full chain
    model-c8-a       compress 8 > approx

Where the data comes from: the real corpus (``$GCLF_DATA`` or ../shared/data/librispeech-251) when
present, else synthetic voices; settings are in :data:`SETTINGS` (short on purpose: the whole benchmark
session must stay within minutes on two cores). See benchmarks/README.md for ``GCLF_BENCH_RUN``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("GCLF_DATA") or REPO.parent / "shared/data/librispeech-251/LibriSpeech")

# folder suffix -> (parent suffix, what the step does); "" is the trained run itself
CHAIN = {
    "-c8": ("", "compress"),
    "-a": ("", "approx"),
    "-c8-a": ("-c8", "approx"),
    "-q8": ("", "quantize8"),
    "-q4a8": ("", "quantize4"),
    "-c8-a-q8": ("-c8-a", "quantize8"),
}

SETTINGS = {  # epochs are upper bounds (early stopping); fine-tuning runs on each fold's training speakers
    "real": {"folds": 5, "epochs": 30, "patience": 8, "compress_epochs": 6, "approx_epochs": 4, "qat_epochs": 4},
    "synthetic": {"folds": 3, "epochs": 10, "patience": 5, "compress_epochs": 2, "approx_epochs": 2,
                  "qat_epochs": 2, "speakers": 40},
}


def real_data_present() -> bool:
    from gclf.data.corpus import find_root

    try:
        return (find_root(REAL_DATA) / "SPEAKERS.TXT").is_file()
    except Exception:
        return False


def real_root() -> Path:
    from gclf.data.corpus import find_root

    return find_root(REAL_DATA)


@dataclass
class Chain:
    """Run folders by suffix ("" = float), where their features are cached, and what was reused."""

    runs: dict[str, Path]
    cache_root: Path
    data: str            # "real" or "synthetic"
    corpus: str
    reused: list[str]
    built_seconds: float


STEP_LABELS = {"compress": "circulant k=8", "approx": "PWL plan/pwl16", "quantize8": "W8/A8", "quantize4": "W4/A8"}


def expected_label(suffix: str) -> str:
    """The chain label (gclf.graph.chain.label, QAT epochs left out) a folder of this suffix must have."""
    out = []
    while suffix:
        parent, kind = CHAIN[suffix]
        out.insert(0, STEP_LABELS[kind])
        suffix = parent
    return " > ".join(out) or "float"


def matches(folder: Path, suffix: str) -> bool:
    """Whether ``folder`` holds fold checkpoints with exactly the chain expected for ``suffix`` (compress on
    every fc and LSTM matrix)."""
    from gclf.checkpoint import chain_of, checkpoint_paths, load_checkpoint
    from gclf.graph.chain import Compress, Quantize, label

    try:
        chain = chain_of(load_checkpoint(checkpoint_paths(folder)[0]))
    except Exception:
        return False
    plain = [s if not isinstance(s, Quantize) else Quantize(s.config, s.spec, 0) for s in chain]
    full = all(set(s.targets) == {"fc1", "fc2", "fc3", "lstm.ih", "lstm.hh"} for s in chain if isinstance(s, Compress))
    return chain[0].kind == "train" and full and label(plain) == expected_label(suffix)


def step_fn(kind: str, settings: dict) -> Callable:
    """The per-fold function that :func:`gclf.steps.runner.apply_step` runs for one kind of step."""
    from gclf.graph.spec import QuantConfig
    from gclf.steps.float_steps import approx_one, compress_one
    from gclf.steps.quantize import quantize_one

    if kind == "compress":
        return lambda ck, u: compress_one(ck, u, 8, "fc,lstm", epochs=settings["compress_epochs"])
    if kind == "approx":
        return lambda ck, u: approx_one(ck, u, "plan", "pwl16", epochs=settings["approx_epochs"])
    if kind == "quantize8":
        return lambda ck, u: quantize_one(ck, u, QuantConfig(bits=8))
    return lambda ck, u: quantize_one(ck, u, QuantConfig(bits=4, act_bits=8), qat_epochs=settings["qat_epochs"])


def train_float(out: Path, work: Path, data: str, settings: dict, cache_root: Path,
                corpus_root: Path | None = None) -> str:
    """Train the float run into ``out`` on the real corpus, on ``corpus_root``, or on synthetic voices
    written under ``work``."""
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import corpus_features
    from gclf.graph.models import build_graph
    from gclf.train.cv import train_run
    from gclf.train.fit import TrainConfig

    if data == "real":
        root = REAL_DATA
    elif corpus_root is not None:
        root = corpus_root
    else:
        from gclf.data.synth import SynthConfig, synthesize_corpus

        root = synthesize_corpus(work / "synth", SynthConfig(speakers=settings["speakers"], seed=3))["root"]
    utts, info = corpus_features(root, FeatureConfig(), cache_root)
    tcfg = TrainConfig(epochs=settings["epochs"], patience=settings["patience"], folds=settings["folds"], seed=0)
    train_run(utts, out, build_graph(), FeatureConfig(), tcfg, info["corpus"])
    return info["root"]


def feature_cache(base: Path, data: str, reuse: bool, persist: bool, tmp: Path) -> Path:
    """Real speech: the project's pkl_data/. A persistent synthetic chain: pkl_data/ next to it (also where
    a reused chain looks first). A throw-away synthetic chain: the session's temporary folder."""
    near = base.parent / "pkl_data"
    if (reuse and near.is_dir()) or (persist and data != "real"):
        return near
    return REPO / "pkl_data" if data == "real" or reuse else tmp / "pkl_data"


def build_chain(tmp: Path, synth_root: Path | None = None) -> Chain:
    """Reuse ``$GCLF_BENCH_RUN`` (and matching derived folders) or build the whole chain (on synthetic
    data: on ``synth_root`` when given, unless the chain is to persist at ``$GCLF_BENCH_RUN``)."""
    import time

    from gclf.checkpoint import checkpoint_paths, load_checkpoint
    from gclf.steps.runner import apply_step

    t0 = time.time()
    given = os.environ.get("GCLF_BENCH_RUN")
    base = Path(given).resolve() if given else tmp / "model"
    reuse = given is not None and any(base.glob("fold*.pt"))
    data = "real" if real_data_present() else "synthetic"
    persist = given is not None and not reuse               # a new persistent chain at $GCLF_BENCH_RUN
    work = base.parent if persist else tmp
    cache_root = feature_cache(base, data, reuse, persist, tmp)
    settings = SETTINGS[data]
    runs, reused = {"": base}, []
    if reuse:
        reused.append(str(base))
    else:
        train_float(base, work, data, settings, cache_root, None if persist else synth_root)
    recorded = load_checkpoint(checkpoint_paths(base)[0]).get("corpus") or {}
    corpus = recorded.get("name", "") if isinstance(recorded, dict) else str(recorded)
    if reuse:
        from gclf.data.corpus import scan_corpus

        real = real_data_present() and isinstance(recorded, dict) and \
            scan_corpus(real_root()).identity()["id"] == recorded.get("id")
        data = "real" if real else "other"
    for suffix, (parent, kind) in CHAIN.items():            # parents come before children
        sibling = base.with_name(base.name + suffix)
        if reuse and matches(sibling, suffix):
            runs[suffix] = sibling
            reused.append(str(sibling))
            continue
        runs[suffix] = sibling if not reuse else tmp / f"model{suffix}"
        apply_step(runs[parent], runs[suffix], step_fn(kind, settings), cache_root)
    return Chain(runs, cache_root, data, corpus, reused, round(time.time() - t0, 1))
