"""The built-in demo: a synthetic corpus through extract, train and evaluate, then the device chain: train on
the integer front-end, quantize W8/A8, export the C from PCM and stream held-out clips through it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gclf.data.features import FeatureConfig
from gclf.data.pipeline import corpus_features
from gclf.data.synth import SynthConfig, synthesize_corpus
from gclf.graph.models import build_graph
from gclf.train.cv import evaluate_run, train_run
from gclf.train.fit import TrainConfig


def run_demo(out: Path, speakers: int = 120, folds: int = 4, epochs: int = 30, seed: int = 0,
             say: Callable[[str], None] = print, device: bool = True, clips: int = 4) -> dict:
    """Run the whole pipeline under ``out`` (corpus/, pkl_data/, model/, and with ``device`` model-int/,
    export/); returns every step's figures."""
    n = 7 if device else 4
    say(f"[1/{n}] synthesising {speakers} voices")
    syn = synthesize_corpus(out / "corpus", SynthConfig(speakers=speakers, seed=seed))
    say(f"[2/{n}] extracting MFCCs")
    fcfg = FeatureConfig()
    utts, info = corpus_features(syn["root"], fcfg, out / "pkl_data")
    say(f"[3/{n}] training, {folds}-fold speaker CV")
    tcfg = TrainConfig(epochs=epochs, folds=folds, seed=seed, patience=8)
    tr = train_run(utts, out / "model", build_graph(), fcfg, tcfg, info["corpus"], force=True,  # the demo's own folder
                   on_fold=lambda i, f: say(f"      fold {i}: utterance {100 * f['accuracy_utterance']:.1f} %"))
    say(f"[4/{n}] evaluating on held-out speakers")
    ev = evaluate_run(out / "model", out / "pkl_data")
    r = {"synth": syn, "extract": {k: info[k] for k in ("done", "reused", "skipped")}, "train": tr, "evaluate": ev}
    if device:
        r["device"] = device_chain(out, syn["root"], tcfg, info["corpus"], clips, say, n)
    return r


def device_chain(out: Path, root, tcfg: TrainConfig, corpus, clips: int, say, n: int) -> dict:
    """Integer front-end -> W8/A8 -> C from PCM, streamed; one row per step (accuracy on held-out voices,
    bytes, agreement with the integer reference)."""
    from gclf.backends.c.build import find_cc
    from gclf.backends.intref import IntegerReference
    from gclf.checkpoint import build_float_model, load_checkpoint
    from gclf.data.corpus import load_audio
    from gclf.frontend.intref import pcm16
    from gclf.frontend.pipeline import build_classifier_harness, clip_logits_int, run_classifier_c
    from gclf.graph.spec import QuantConfig
    from gclf.steps.quantize import quantize_one

    fint = FeatureConfig(kind="int_mfcc")
    say(f"[5/{n}] training on the integer front-end (what the device computes from PCM)")
    utts, _ = corpus_features(root, fint, out / "pkl_data")
    tr = train_run(utts, out / "model-int", build_graph(), fint, tcfg, corpus, force=True)
    say(f"[6/{n}] quantizing W8/A8 (integer Norm, integer reference)")
    q_acc, q1, rep = [], None, {}
    for i in range(1, tcfg.folds + 1):
        ck, rep = quantize_one(load_checkpoint(out / "model-int" / f"fold{i}.pt"), utts, QuantConfig(bits=8))
        q_acc.append(rep["accuracy_quantized"])
        q1 = q1 or ck
    q_bytes = rep["weight_bytes_quantized"]
    rows = [{"step": "float, integer front-end", "utterance": tr["accuracy_utterance_mean"],
             "bytes": rep["weight_bytes_float"]},
            {"step": "W8/A8 (integer reference)", "utterance": float(np.mean(q_acc)), "bytes": q_bytes}]
    cc = find_cc()
    if cc is None:
        say("      no C compiler: the C step is skipped")
        return {"rows": rows, "c": None}
    say(f"[7/{n}] C from PCM: {clips} held-out clips streamed through the compiled classifier")
    from gclf.checkpoint import quant_of

    model, spec = build_float_model(q1), quant_of(q1).spec
    exe = build_classifier_harness(out / "export", cc, model, spec, fint)
    held = set(q1["split"]["test_speakers"])
    files = [f for f in sorted(Path(root).rglob("*.flac")) if f.name.split("-")[0] in held][:clips]
    rng = np.random.default_rng(0)
    same = windows = 0
    for f in files:
        pcm = pcm16(load_audio(f, fint.sample_rate))
        got, _ = run_classifier_c(exe, pcm, rng.integers(1, 2000, 64))
        want = clip_logits_int(pcm, IntegerReference(model, spec), fint)
        windows += len(want)
        if got.shape == want.shape:
            same += int((got == want).all(axis=1).sum())
    rows.append({"step": "C from PCM, streamed (fold 1)", "utterance": None, "bytes": q_bytes,
                 "agreement": f"{same}/{windows} windows bit-exact"})
    return {"rows": rows, "c": {"clips": len(files), "windows": windows, "bit_exact_windows": same,
                                "export": str(out / "export")}}
