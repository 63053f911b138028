"""The built-in demo: a synthetic corpus through extract, train and evaluate."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from gclf.data.features import FeatureConfig
from gclf.data.pipeline import corpus_features
from gclf.data.synth import SynthConfig, synthesize_corpus
from gclf.graph.models import build_graph
from gclf.train.cv import evaluate_run, train_run
from gclf.train.fit import TrainConfig


def run_demo(out: Path, speakers: int = 120, folds: int = 4, epochs: int = 30, seed: int = 0,
             say: Callable[[str], None] = print) -> dict:
    """Run the whole pipeline under ``out`` (corpus/, pkl_data/, model/); returns every step's figures."""
    say(f"[1/4] synthesising {speakers} voices")
    syn = synthesize_corpus(out / "corpus", SynthConfig(speakers=speakers, seed=seed))
    say("[2/4] extracting MFCCs")
    fcfg = FeatureConfig()
    utts, info = corpus_features(syn["root"], fcfg, out / "pkl_data")
    say(f"[3/4] training, {folds}-fold speaker CV")
    tcfg = TrainConfig(epochs=epochs, folds=folds, seed=seed, patience=8)
    tr = train_run(utts, out / "model", build_graph(), fcfg, tcfg, info["corpus"], force=True,  # the demo's own folder
                   on_fold=lambda i, f: say(f"      fold {i}: utterance {100 * f['accuracy_utterance']:.1f} %"))
    say("[4/4] evaluating on held-out speakers")
    ev = evaluate_run(out / "model", out / "pkl_data")
    return {"synth": syn, "extract": {k: info[k] for k in ("done", "reused", "skipped")}, "train": tr, "evaluate": ev}
