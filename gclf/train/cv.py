"""A cross-validated training run over speakers, and evaluating any checkpoint (or run folder) on held-out
speakers, with the engine its chain defines."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from gclf.backends.engines import prob_fn_for
from gclf.checkpoint import checkpoint_paths, graph_of, load_checkpoint, make_checkpoint, save_checkpoint
from gclf.data.dataset import eval_windows
from gclf.data.features import FeatureConfig, UtteranceFeatures
from gclf.data.pipeline import corpus_features, features_for_checkpoint, heldout_windows
from gclf.errors import GclfError
from gclf.graph.chain import Train
from gclf.graph.ops import Graph
from gclf.io import atomic_json
from gclf.train.evaluate import evaluate, summarize_folds
from gclf.train.fit import TrainConfig, fold_splits, plot_curves, train_fold, write_log_csv


def train_run(utts: list[UtteranceFeatures], out: str | Path, graph: Graph, fcfg: FeatureConfig,
              tcfg: TrainConfig, corpus: str, final: bool = False,
              on_fold: Callable[[int, dict], None] | None = None,
              on_epoch: Callable[[dict], None] | None = None, cache_root: str | Path | None = "pkl_data",
              workers: int | None = None, progress_factory: Callable | None = None) -> dict:
    """k-fold speaker CV: one checkpoint per fold (knowing its test speakers), log, curves, summary.

    Audio augmentation (``tcfg.augment``) reads the corpus audio once for the whole run (views cached under
    ``cache_root``); each fold trains only on its own training speakers' views."""
    from gclf.train.augment import add_views

    utts = add_views(utts, corpus, fcfg, tcfg.augment, tcfg.seed, cache_root, workers, progress_factory)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, folds, t0 = [], [], time.time()
    splits = fold_splits(utts, tcfg.folds, tcfg.seed)
    if final:
        splits.append(({u.speaker: u.sex for u in utts}, []))
    for i, (train_spk, test_spk) in enumerate(splits, start=1):
        name = f"fold{i}" if test_spk else "final"

        def log(row, name=name):
            rows.append({"fold": name, **row})
            if on_epoch:
                on_epoch({"fold": name, **row})

        model, metrics, info = train_fold(utts, train_spk, test_spk, graph, fcfg, tcfg, tcfg.seed + i, log)
        split = {**info["split"], "fold": i if test_spk else None, "folds": tcfg.folds, "seed": tcfg.seed}
        ck = make_checkpoint(model, fcfg, [Train(asdict(tcfg), info["epochs_run"])], split, corpus, metrics)
        save_checkpoint(out / f"{name}.pt", ck)
        if test_spk:
            folds.append({"fold": i, **{k: metrics[k] for k in ("accuracy_utterance", "accuracy_window",
                                                                 "utterances", "windows", "speakers")},
                          "epochs_run": info["epochs_run"]})
            if on_fold:
                on_fold(i, folds[-1])
    write_log_csv(out / "train_log.csv", rows)
    plot_curves(out / "curves.png", rows)
    result = {**summarize_folds(folds), "folds": folds, "model": str(out), "seconds": round(time.time() - t0, 1),
              "train_config": asdict(tcfg), "arch": graph.arch, "final": str(out / "final.pt") if final else None}
    atomic_json(out / "summary.json", result)
    return result


def evaluate_run(model_path: str | Path, cache_root: str | Path = "pkl_data") -> dict:
    """Accuracy of each fold checkpoint on its own held-out speakers, and the mean over folds."""
    results, utts, evaluated, windows = [], None, set(), 0
    for p in checkpoint_paths(model_path):
        ck = load_checkpoint(p)
        utts = utts if utts is not None else features_for_checkpoint(ck, cache_root)
        ws = heldout_windows(ck, utts)
        m = evaluate(prob_fn_for(ck), ws, graph_of(ck).classes)
        results.append({"checkpoint": str(p), **m})
        evaluated.update(u.uid for u in ws.utts)
        windows += len(ws.y)
    return _evaluation_summary(results, evaluated, windows)


def evaluate_on_corpus(model_path: str | Path, data: str | Path, cache_root: str | Path = "pkl_data",
                       workers: int | None = None) -> dict:
    """Each checkpoint on a corpus, leaving out any speaker it was trained or validated on (counted)."""
    results, excluded, feats, evaluated, windows = [], 0, {}, set(), {}
    for p in checkpoint_paths(model_path, include_final=False):
        ck = load_checkpoint(p)
        fcfg = FeatureConfig.from_dict(ck["feature_config"])
        if fcfg not in feats:                    # folds of a run share one feature config: load once
            feats[fcfg] = corpus_features(data, fcfg, cache_root, workers)[0]
        utts = feats[fcfg]
        split = ck.get("split", {})
        seen = set(split.get("train_speakers", [])) | set(split.get("val_speakers", []))
        if Path(ck.get("corpus") or "").resolve() != Path(_root(data)).resolve():
            seen = set()  # speaker ids of another corpus are other people
        unseen = [u for u in utts if u.speaker not in seen]
        excluded = len(utts) - len(unseen)
        if not unseen:
            raise GclfError(f"{p}: every speaker of {data} was seen in training")
        ws = eval_windows(unseen, fcfg)
        m = evaluate(prob_fn_for(ck), ws, graph_of(ck).classes)
        results.append({"checkpoint": str(p), "excluded_seen_utterances": excluded, **m})
        evaluated.update(u.uid for u in unseen)
        windows.update({u.uid: int((ws.utt_index == i).sum()) for i, u in enumerate(unseen)})
    return _evaluation_summary(results, evaluated, sum(windows.values()))


def _evaluation_summary(results: list[dict], uids: set[str], windows: int) -> dict:
    """Mean/std over models, plus distinct counts of what was evaluated and the confusion matrix summed
    over the models (rows true M/F, columns predicted M/F)."""
    import numpy as np

    out = {**summarize_folds(results), "folds": results}
    out.update({"accuracy_utterance": out["accuracy_utterance_mean"], "accuracy_window": out["accuracy_window_mean"],
                "utterances": len(uids), "windows": windows,
                "speakers": len({uid.split("-")[0] for uid in uids}),
                "confusion": {**{k: v for k, v in results[0]["confusion"].items() if k != "matrix"},
                              "matrix": np.sum([r["confusion"]["matrix"] for r in results], axis=0).tolist()}})
    return out


def _root(data) -> Path:
    from gclf.data.layouts import find_any_root

    return find_any_root(data)
