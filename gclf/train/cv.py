"""A cross-validated training run over speakers, and evaluating any checkpoint (or run folder) on held-out
speakers, with the engine its chain defines."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from gclf.backends.engines import prob_fn_for
from gclf.backends.torch_float import GraphNet
from gclf.frontend.features import input_frac_of
from gclf.checkpoint import checkpoint_paths, graph_of, load_checkpoint, make_checkpoint, save_checkpoint
from gclf.data.dataset import eval_windows
from gclf.data.features import FeatureConfig, UtteranceFeatures
from gclf.data.pipeline import corpus_features, features_for_checkpoint, heldout_windows
from gclf.errors import GclfError
from gclf.graph.chain import Train
from gclf.graph.ops import Graph
from gclf.io import atomic_json
from gclf.manifest import new_run_id, prepare_run_dir, write_manifest
from gclf.train.evaluate import evaluate, summarize_folds
from gclf.train.fit import TrainConfig, fold_splits, speaker_strata, plot_curves, train_fold, write_log_csv
from gclf.train.resume import Checkpointing


def _fold_task(job: tuple) -> dict:
    """One fold, runnable in any process (a Dask worker): its weights, metrics, split and log rows."""
    utts, train_spk, test_spk, graph, fcfg, tcfg, seed, ckpt = job
    _check_one_thread_per_worker()
    rows: list[dict] = []
    model, metrics, info = train_fold(utts, train_spk, test_spk, graph, fcfg, tcfg, seed, rows.append, ckpt)
    return {"state_dict": model.state_dict(), "metrics": metrics, "info": info, "rows": rows}


def _check_one_thread_per_worker() -> None:
    """Folds seed torch's global generator: two folds in threads of one process would share it."""
    try:
        from distributed import get_worker

        n = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return                                                  # not on a Dask worker
    if n > 1:
        raise GclfError(f"a Dask worker runs {n} threads; gclf's folds need `dask worker --nthreads 1` "
                        "(use --nworkers for more processes)")


def _fold_results(jobs: list[tuple], scheduler: str | None, log_factory: Callable[[str], Callable]):
    """(model, metrics, info) of each fold in order: here, one after the other, or on the Dask cluster."""
    if not scheduler:
        for job in jobs:
            utts, train_spk, test_spk, graph, fcfg, tcfg, seed, ckpt = job
            yield train_fold(utts, train_spk, test_spk, graph, fcfg, tcfg, seed, log_factory(job), ckpt)
        return
    from gclf.parallel import executor

    with executor(scheduler) as pool:
        futures = [pool.submit(_fold_task, job) for job in jobs]
        for job, fut in zip(jobs, futures):
            r = fut.result()
            model = GraphNet(job[3])
            model.int_input_frac = input_frac_of(job[4])
            model.load_state_dict(r["state_dict"])
            model.eval()
            log = log_factory(job)
            for row in r["rows"]:
                log(row)
            yield model, r["metrics"], r["info"]


def train_run(utts: list[UtteranceFeatures], out: str | Path, graph: Graph, fcfg: FeatureConfig,
              tcfg: TrainConfig, corpus: dict | str | None, final: bool = False,
              on_fold: Callable[[int, dict], None] | None = None,
              on_epoch: Callable[[dict], None] | None = None, force: bool = False,
              command: str | None = None, scheduler: str | None = None, audio: str | Path | None = None,
              cache_root: str | Path | None = "pkl_data", workers: int | None = None,
              progress_factory: Callable | None = None, resume: bool = False, checkpoint_every: int = 1) -> dict:
    """k-fold speaker CV: one checkpoint per fold (knowing its test speakers), log, curves, summary, and the
    run's manifest (:mod:`gclf.manifest`). ``out`` must be empty or missing; ``force`` clears a previous run
    there. ``corpus``: the corpus identity recorded in every checkpoint.

    ``scheduler`` (a Dask scheduler address) trains the folds as tasks on that cluster, all at once; the
    results are those of a local run (each fold is seeded on its own).

    Each fold saves its training state (``resume-<fold>.pt``, :mod:`gclf.train.resume`) every
    ``checkpoint_every`` epochs; ``resume`` continues the interrupted run in ``out`` (same settings) from
    those states, to the result of an uninterrupted run. The states are deleted once the run is complete.

    Audio augmentation (``tcfg.augment``) reads the corpus audio (the folder ``audio``) once for the whole
    run (views cached under ``cache_root``); each fold trains only on its own training speakers' views."""
    from gclf.train.augment import add_views

    check_two_classes(utts)
    ident = corpus if isinstance(corpus, dict) else {}
    if tcfg.augment.audio_active and audio is None:
        raise GclfError("audio augmentation reads the corpus audio: pass its folder (train_run(audio=...))")
    utts = add_views(utts, audio, fcfg, tcfg.augment, tcfg.seed, cache_root, workers, progress_factory,
                     ident.get("task"), ident.get("layout"))
    splits = fold_splits(utts, tcfg.folds, tcfg.seed)
    n_folds = len(splits)                          # fewer than asked: leave-one-speaker-out
    man = dict(folds=n_folds, final=final, arch=graph.arch, seed=tcfg.seed,
               config={"train": asdict(tcfg), "features": asdict(fcfg)}, chain=["train"], corpus=corpus,
               command=command or f"gclf train --out {out}" + (" --final" if final else ""))
    run_id = resumable_run(out, man) if resume else None
    if run_id is None:
        out, run_id = prepare_run_dir(out, force), new_run_id()
    out = Path(out)
    man["run_id"] = run_id
    write_manifest(out, complete=False, **man)
    rows, folds, t0 = [], [], time.time()
    if final:
        splits.append((speaker_strata(utts), []))
    states = [out / f"resume-{f'fold{i}' if test_spk else 'final'}.pt" for i, (_, test_spk) in enumerate(splits, 1)]
    jobs = [(utts, train_spk, test_spk, graph, fcfg, tcfg, tcfg.seed + i, Checkpointing(str(st), checkpoint_every))
            for i, ((train_spk, test_spk), st) in enumerate(zip(splits, states), start=1)]

    def log_factory(job):
        name = f"fold{job[6] - tcfg.seed}" if job[2] else "final"

        def log(row):
            rows.append({"fold": name, **row})
            if on_epoch:
                on_epoch({"fold": name, "epochs": tcfg.epochs, **row})
        return log

    for i, ((train_spk, test_spk), (model, metrics, info)) in enumerate(
            zip(splits, _fold_results(jobs, scheduler, log_factory)), start=1):
        name = f"fold{i}" if test_spk else "final"
        split = {**info["split"], "fold": i if test_spk else None, "folds": n_folds, "seed": tcfg.seed}
        ck = make_checkpoint(model, fcfg, [Train(asdict(tcfg), info["epochs_run"])], split, corpus, metrics,
                             extra={"run_id": run_id})
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
    write_manifest(out, complete=True, **man)
    for st in states:
        st.unlink(missing_ok=True)
    return result


def _plain(x):
    import json

    return json.loads(json.dumps(x, default=str))


def resumable_run(out: str | Path, man: dict) -> str | None:
    """The run id of the interrupted run in ``out`` that ``man`` (a new run's manifest fields, given the old
    command) continues; None when ``out`` holds no run yet (a fresh run starts). A complete run, or one
    started with other settings, is a one-line error."""
    from gclf.manifest import MANIFEST, read_manifest

    out = Path(out)
    if not (out / MANIFEST).is_file():
        return None
    old = read_manifest(out)
    if old.get("complete"):
        raise GclfError(f"{out} holds a complete run: nothing to resume (pass --force to replace it)")
    for key in ("folds", "final", "arch", "seed", "config", "corpus"):
        if _plain(old.get(key)) != _plain(man[key]):
            raise GclfError(f"{out} was started with another {key} than this command's: resume it with the same "
                            f"options (it was: {old.get('command')}), or pass --force to start again")
    man["command"] = old.get("command") or man["command"]     # the run's command stays the one that started it
    return old["run_id"]


def check_two_classes(utts: list[UtteranceFeatures]) -> None:
    """A corpus with one class only would train a constant and report 100 %: refused."""
    labels = {u.target for u in utts}
    if len(labels) < 2:
        n = len({u.speaker for u in utts})
        if labels <= {"F", "M"}:
            only = {"F": "female", "M": "male"}.get(next(iter(labels), ""), "unlabelled")
            raise GclfError(f"the corpus has {only} speakers only ({n} speakers): a classifier needs both sexes "
                            "(check SPEAKERS.TXT)")
        raise GclfError(f"the corpus has one class only ({next(iter(labels))!r}, {n} speakers): a classifier "
                        "needs two or more")


def evaluate_run(model_path: str | Path, cache_root: str | Path = "pkl_data", data: str | Path | None = None) -> dict:
    """Accuracy of each fold checkpoint on its own held-out speakers, and the mean over folds (``data``: where
    the run's corpus now lies, read only when its features are not in the cache)."""
    results, utts, evaluated, windows = [], None, set(), 0
    for p in checkpoint_paths(model_path):
        ck = load_checkpoint(p)
        utts = utts if utts is not None else features_for_checkpoint(ck, cache_root, data)
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
            task = (ck.get("corpus") or {}).get("task") if isinstance(ck.get("corpus"), dict) else None
            feats[fcfg] = corpus_features(data, fcfg, cache_root, workers, task=task)[0]
        utts = feats[fcfg]
        split = ck.get("split", {})
        seen = set(split.get("train_speakers", [])) | set(split.get("val_speakers", []))
        if not _same_corpus(ck.get("corpus"), data):
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


def _same_corpus(recorded, data) -> bool:
    """Whether ``data`` is the corpus a checkpoint recorded: the same identity (or, for checkpoints that
    recorded a path, the same folder)."""
    from gclf.data.layouts import find_any_root, scan_any

    if isinstance(recorded, dict):
        try:
            return scan_any(data, recorded.get("task"), recorded.get("layout")).identity()["id"] == recorded.get("id")
        except GclfError:        # not readable as the run's layout and task: not the run's corpus
            return False
    return Path(recorded or "").resolve() == find_any_root(data)
