"""Orchestration shared by the CLI commands: features for a corpus, a cross-validated training run, and
evaluating any checkpoint (or run folder) on held-out speakers."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from gclf.checkpoint import checkpoint_paths, load_checkpoint, make_checkpoint, save_checkpoint
from gclf.data.corpus import scan_corpus
from gclf.data.dataset import eval_windows, select
from gclf.errors import GclfError
from gclf.train.evaluate import evaluate, summarize_folds
from gclf.inference import prob_fn_for
from gclf.data.features import (FeatureConfig, UtteranceFeatures, cache_dir_for, extract_corpus, load_cache)
from gclf.io import atomic_json
from gclf.model import ModelConfig
from gclf.train.fit import TrainConfig, fold_splits, plot_curves, train_fold, write_log_csv


def corpus_features(data: str | Path, fcfg: FeatureConfig, cache_root: str | Path = "pkl_data",
                    workers: int | None = None, progress_factory: Callable | None = None,
                    on_error: Callable[[str], None] | None = None) -> tuple[list[UtteranceFeatures], dict]:
    """Features of every usable utterance of a corpus: from the cache, extracting what is missing."""
    corpus = scan_corpus(data)
    bar = progress_factory(len(corpus.utterances)) if progress_factory else None
    summary = extract_corpus(corpus, fcfg, cache_root, workers, progress=bar.update if bar else None,
                             on_error=on_error)
    if bar:
        bar.close()
    _, utts = load_cache(summary.cache_dir)
    wanted = {u.uid for u in corpus.utterances}
    utts = [u for u in utts if u.uid in wanted]
    if not utts:
        raise GclfError(f"no utterance of {corpus.root} could be featurised")
    return utts, {**summary.as_dict(), "corpus": str(corpus.root)}


def train_run(utts: list[UtteranceFeatures], out: str | Path, mcfg: ModelConfig, fcfg: FeatureConfig,
              tcfg: TrainConfig, corpus: str, final: bool = False,
              on_fold: Callable[[int, dict], None] | None = None,
              on_epoch: Callable[[dict], None] | None = None) -> dict:
    """k-fold speaker CV: one checkpoint per fold (knowing its test speakers), log, curves, summary."""
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

        model, metrics, info = train_fold(utts, train_spk, test_spk, mcfg, fcfg, tcfg, tcfg.seed + i, log)
        split = {**info["split"], "fold": i if test_spk else None, "folds": tcfg.folds, "seed": tcfg.seed}
        step = {"step": "train", **asdict(tcfg), "epochs_run": info["epochs_run"]}
        ck = make_checkpoint(model, fcfg, [step], split, corpus, metrics)
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
              "train_config": asdict(tcfg), "final": str(out / "final.pt") if final else None}
    atomic_json(out / "summary.json", result)
    return result


def features_for_checkpoint(ck: dict, cache_root: str | Path = "pkl_data", data: str | Path | None = None,
                            workers: int | None = None) -> list[UtteranceFeatures]:
    """The features a checkpoint was trained with: from the cache, or re-extracted from its corpus."""
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    corpus = data or ck.get("corpus")
    if not corpus:
        raise GclfError("the checkpoint records no corpus: pass --data")
    from gclf.data.corpus import find_root

    root = find_root(corpus)
    cdir = cache_dir_for(root, fcfg, cache_root)
    if (cdir / "meta.json").is_file():
        _, utts = load_cache(cdir)
        return utts
    utts, _ = corpus_features(root, fcfg, cache_root, workers)
    return utts


def heldout_windows(ck: dict, utts: list[UtteranceFeatures]):
    """Evaluation windows of the checkpoint's held-out (test) speakers."""
    test = ck.get("split", {}).get("test_speakers") or []
    if not test:
        raise GclfError("this checkpoint has no held-out speakers (a final model): evaluate a fold checkpoint "
                        "or pass --data with a corpus of unseen speakers")
    sel = select(utts, test)
    if not sel:
        raise GclfError("none of the checkpoint's held-out speakers are in the features found")
    return eval_windows(sel, FeatureConfig.from_dict(ck["feature_config"]))


def evaluate_run(model_path: str | Path, cache_root: str | Path = "pkl_data") -> dict:
    """Accuracy of each fold checkpoint on its own held-out speakers, and the mean over folds."""
    results, utts, evaluated, windows = [], None, set(), 0
    for p in checkpoint_paths(model_path):
        ck = load_checkpoint(p)
        utts = utts if utts is not None else features_for_checkpoint(ck, cache_root)
        ws = heldout_windows(ck, utts)
        m = evaluate(prob_fn_for(ck), ws)
        results.append({"checkpoint": str(p), **m})
        evaluated.update(u.uid for u in ws.utts)
        windows += len(ws.y)
    return _evaluation_summary(results, evaluated, windows)


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)


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
        m = evaluate(prob_fn_for(ck), ws)
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
                "confusion": {"rows_true": ["M", "F"], "cols_pred": ["M", "F"],
                              "matrix": np.sum([r["confusion"]["matrix"] for r in results], axis=0).tolist()}})
    return out


def _root(data) -> Path:
    from gclf.data.corpus import find_root

    return find_root(data)
