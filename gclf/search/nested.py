"""Nested speaker-disjoint cross-validation of a set of candidate configurations.

Outer folds (those of ``gclf train`` with the same seed: same test speakers) hold speakers out of the
choice. Within each outer fold, an inner k-fold CV over the outer-training speakers scores every candidate
(mean utterance accuracy on the inner held-out speakers); the best candidate is then trained on all the
outer-training speakers and tested on the outer test speakers, which took no part in choosing it. The mean
over outer folds is the *nested* figure of the search procedure; the default configuration is trained on the
same outer folds for comparison. The configuration written as the search's result is the candidate with the
best mean inner score over all outer folds (a choice, not a figure: its figure is the nested one).

Every trial is one row of ``trials.csv`` (rewritten atomically after each): a search that is interrupted
and started again reruns none of the rows already there. Trials run through :func:`gclf.parallel.executor`
(local processes, or a Dask cluster), each seeded on its own, so the table does not depend on the order.
"""
from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from gclf.errors import GclfError
from gclf.io import atomic_json, atomic_text
from gclf.search.space import apply, base_values, canonical, config_key, write_config

TRIALS, SETTINGS, BEST = "trials.csv", "search.json", "best_config.json"
COLUMNS = ["phase", "outer", "inner", "config", "accuracy_utterance", "accuracy_window", "utterances", "speakers",
           "epochs_run", "seconds"]
INNER_SEED, OUTER_SEED = 1000, 0     # trial seeds: base + 1000 * outer + inner (inner), base + outer (outer)


@dataclass(frozen=True)
class SearchConfig:
    outer: int = 5               # outer folds: the speakers that score the chosen configuration
    inner: int = 3               # inner folds over each outer fold's training speakers: they choose it
    n_iter: int | None = None    # random search: this many candidates sampled from the grid; None = all
    seed: int = 0


@dataclass(frozen=True)
class Trial:
    phase: str                   # "inner" (scores a candidate) or "outer" (tests a chosen one / the default)
    outer: int
    inner: int                   # 0 for outer trials
    config: str                  # config_key of the parameters

    @property
    def key(self) -> tuple:
        return self.phase, self.outer, self.inner, self.config


def _run_trial(job: tuple) -> dict:
    """One trial, runnable in any process: train on the split's training speakers, test on its held-out ones."""
    from gclf.train.cv import _check_one_thread_per_worker
    from gclf.train.fit import train_fold

    trial, utts, train_spk, test_spk, arch, model_base, fcfg, tcfg, seed = job
    _check_one_thread_per_worker()
    t0 = time.time()
    t, graph = apply(json.loads(trial.config), arch, tcfg, model_base)
    _, m, info = train_fold(utts, train_spk, test_spk, graph, fcfg, t, seed)
    return {"phase": trial.phase, "outer": trial.outer, "inner": trial.inner, "config": trial.config,
            "accuracy_utterance": m["accuracy_utterance"], "accuracy_window": m["accuracy_window"],
            "utterances": m["utterances"], "speakers": m["speakers"], "epochs_run": info["epochs_run"],
            "seconds": round(time.time() - t0, 1)}


def read_trials(path: Path) -> dict[tuple, dict]:
    """Rows already in a trial table, by trial key."""
    if not path.is_file():
        return {}
    out = {}
    for r in csv.DictReader(io.StringIO(path.read_text())):
        r = {**r, "outer": int(r["outer"]), "inner": int(r["inner"]),
             **{k: float(r[k]) for k in ("accuracy_utterance", "accuracy_window", "seconds")},
             **{k: int(r[k]) for k in ("utterances", "speakers", "epochs_run")}}
        out[(r["phase"], r["outer"], r["inner"], r["config"])] = r
    return out


def write_trials(path: Path, rows: dict[tuple, dict], params: list[str], base: dict) -> None:
    """The table, with a column per searched parameter (its value in the trial's configuration), in trial
    order."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS + params, lineterminator="\n")
    w.writeheader()
    for key in sorted(rows):
        r = rows[key]
        cfg = json.loads(r["config"])
        w.writerow({**{k: r[k] for k in COLUMNS}, **{p: json.dumps(cfg.get(p, base.get(p))) for p in params}})
    atomic_text(path, buf.getvalue())


def _check_settings(out: Path, settings: dict, force: bool) -> None:
    """A search folder holds one search: the same settings continue it, others are refused (or --force)."""
    path = out / SETTINGS
    if path.is_file() and not force:
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(settings)):
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != json.loads(json.dumps(settings)).get(k))
            raise GclfError(f"{out} holds a search with other settings ({', '.join(diff)}): pass --force to "
                            "start again there, or choose another --out")
    elif force:
        for name in (TRIALS, SETTINGS, BEST, "summary.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_json(path, settings)


def _choose(rows: dict[tuple, dict], outer: int | None, keys: list[str]) -> tuple[str, dict]:
    """The candidate with the best mean inner utterance accuracy (then window accuracy, then grid order) in
    outer fold ``outer`` (None: over all outer folds), and each candidate's mean scores."""
    scores = {}
    for k in keys:
        rs = [r for r in rows.values() if r["phase"] == "inner" and r["config"] == k
              and (outer is None or r["outer"] == outer)]
        scores[k] = {"accuracy_utterance": float(np.mean([r["accuracy_utterance"] for r in rs])),
                     "accuracy_window": float(np.mean([r["accuracy_window"] for r in rs])), "trials": len(rs)}
    best = max(keys, key=lambda k: (scores[k]["accuracy_utterance"], scores[k]["accuracy_window"], -keys.index(k)))
    return best, scores


def inner_splits(utts, outer_splits: list, scfg: SearchConfig):
    """(outer fold, inner fold, the outer fold's training utterances, inner training speakers with sex, inner
    test speakers, seed) of every inner split: only outer-training speakers, never an outer test speaker."""
    from gclf.data.dataset import select
    from gclf.train.fit import fold_splits

    for i, (tr_spk, _) in enumerate(outer_splits, start=1):
        tr_utts = select(utts, tr_spk)
        for j, (itr, its) in enumerate(fold_splits(tr_utts, scfg.inner, scfg.seed + i), start=1):
            yield i, j, tr_utts, itr, its, scfg.seed + INNER_SEED * i + j


def nested_search(utts, out: str | Path, arch: str, space: dict[str, list], cands: list[dict], fcfg, tcfg,
                  scfg: SearchConfig, model_base: dict | None = None, corpus=None, scheduler: str | None = None,
                  workers: int | None = 1, force: bool = False,
                  on_trial: Callable[[dict, int, int], None] | None = None, base_params: dict | None = None) -> dict:
    """Score ``cands`` (configurations over the base ``tcfg`` and ``model_base``) by nested CV; writes
    trials.csv, best_config.json, summary.json and search.json in ``out``. Returns the summary.
    ``base_params``: the base's own settings (of a --config file), written into best_config.json too."""
    from gclf.parallel import executor
    from gclf.train.fit import fold_splits

    out = Path(out)
    base = base_values(arch, tcfg, model_base)
    keys = list(dict.fromkeys(config_key(canonical(c, base)) for c in cands))
    default = config_key({})
    settings = {"arch": arch, "space": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                                        for k, vs in space.items()},
                "candidates": keys, "search": asdict(scfg), "train": asdict(tcfg), "model": model_base or {},
                "features": asdict(fcfg), "corpus": corpus}
    settings["train"].pop("device", None)        # a device changes speed, not the trials: resume anywhere
    _check_settings(out, settings, force)
    rows = read_trials(out / TRIALS)
    params = list(space)
    outer_splits = fold_splits(utts, scfg.outer, scfg.seed)
    inner_jobs = [(Trial("inner", i, j, k), tr_utts, itr, its, arch, model_base, fcfg, tcfg, seed)
                  for i, j, tr_utts, itr, its, seed in inner_splits(utts, outer_splits, scfg) for k in keys]
    total = len(inner_jobs) + scfg.outer * 2
    done = [len(rows)]

    def run(jobs):
        todo = [j for j in jobs if j[0].key not in rows]
        with executor(scheduler, workers) as pool:
            results = (map(_run_trial, todo) if pool is None else
                       (f.result() for f in as_completed([pool.submit(_run_trial, j) for j in todo])))
            for r in results:
                rows[(r["phase"], r["outer"], r["inner"], r["config"])] = r
                write_trials(out / TRIALS, rows, params, base)
                done[0] += 1
                if on_trial:
                    on_trial(r, done[0], total)

    run(inner_jobs)
    chosen = {i: _choose(rows, i, keys)[0] for i in range(1, scfg.outer + 1)}
    outer_jobs = []
    for i, (tr_spk, te_spk) in enumerate(outer_splits, start=1):
        for k in dict.fromkeys([chosen[i], default]):
            outer_jobs.append((Trial("outer", i, 0, k), utts, tr_spk, te_spk, arch, model_base, fcfg, tcfg,
                               scfg.seed + OUTER_SEED + i))
    total = len(inner_jobs) + len(outer_jobs)
    run(outer_jobs)
    full = {**(base_params or {}), **{p: base[p] for p in params if p in base}}
    return _summary(out, rows, keys, chosen, default, arch, scfg, full)


def _summary(out: Path, rows: dict, keys: list[str], chosen: dict[int, str], default: str, arch: str,
             scfg: SearchConfig, full: dict) -> dict:
    """The figures, and best_config.json: the chosen candidate with every searched value (``full``: the
    base's values) written out, so the file means the same under other defaults."""
    def outer_acc(pick: Callable[[int], str], metric: str) -> list[float]:
        return [rows[("outer", i, 0, pick(i))][metric] for i in sorted(chosen)]

    best, scores = _choose(rows, None, keys)
    nested = outer_acc(lambda i: chosen[i], "accuracy_utterance")
    base = outer_acc(lambda i: default, "accuracy_utterance")
    summary = {
        "nested": {"accuracy_utterance_mean": float(np.mean(nested)), "accuracy_utterance_std": float(np.std(nested)),
                   "accuracy_window_mean": float(np.mean(outer_acc(lambda i: chosen[i], "accuracy_window"))),
                   "per_fold": nested, "chosen": {str(i): json.loads(k) for i, k in chosen.items()}},
        "default": {"accuracy_utterance_mean": float(np.mean(base)), "accuracy_utterance_std": float(np.std(base)),
                    "accuracy_window_mean": float(np.mean(outer_acc(lambda i: default, "accuracy_window"))),
                    "per_fold": base},
        "best_config": {**full, **json.loads(best)}, "candidates": [{"config": json.loads(k), **scores[k]} for k in keys],
        "search": asdict(scfg), "trials": len(rows), "arch": arch,
        "files": {"trials": str(out / TRIALS), "best_config": str(out / BEST)}}
    write_config(out / BEST, arch, summary["best_config"],
                 {"chosen_by": f"gclf search: best mean inner-CV utterance accuracy over {scfg.outer}x{scfg.inner} "
                               f"nested speaker folds; nested figure {100 * summary['nested']['accuracy_utterance_mean']:.1f} %"})
    atomic_json(out / "summary.json", summary)
    return summary
