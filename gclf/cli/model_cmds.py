"""`gclf train`, `gclf evaluate`, `gclf predict`, `gclf demo`."""
from __future__ import annotations

import time
from pathlib import Path

import click

from gclf.data.features import PADS
from gclf.errors import GclfError
from gclf.graph.models import ARCHS
from gclf.cli.augment_opts import AUGMENT_KEYS, augment_config, augment_options
from gclf.cli.common import (CONTEXT, cache_option, command_line, corpus_option, data_option, default_data,
                             device_option, emit_json, json_option, frontend_option, model_option, pct, progress,
                             resolve_data, resolved_device, scheduler_option, task_option, warn, workers_option)


def _fold_line(i: int, f: dict) -> None:
    click.echo(f"fold {i}: utterance {pct(f['accuracy_utterance'])}, window {pct(f['accuracy_window'])} "
               f"on {f['speakers']} unseen speakers ({f['epochs_run']} epochs)", err=True)


def _print_cv(r: dict) -> None:
    click.echo(f"{len(r['folds'])}-fold speaker CV: utterance accuracy {pct(r['accuracy_utterance_mean'])} "
               f"± {100 * r['accuracy_utterance_std']:.1f}, window {pct(r['accuracy_window_mean'])} "
               f"± {100 * r['accuracy_window_std']:.1f} ({r['utterances']} utterances)")
    click.echo(f"model: {r['model']}  (log: train_log.csv, curves: curves.png)")


@click.command(context_settings=CONTEXT)
@data_option
@cache_option
@click.option("--out", type=click.Path(file_okay=False), default="runs/model", show_default=True,
              help="Run folder for fold*.pt, final.pt, train_log.csv, curves.png, summary.json.")
@click.option("--folds", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Speaker-disjoint CV folds (leave-one-speaker-out when the corpus has no more speakers).")
@click.option("--epochs", type=click.IntRange(1, 10000), default=None,
              help="Most epochs per fold (early stopping). Default: the task's recipe (sex: 60).")
@click.option("--patience", type=click.IntRange(1, 10000), default=None,
              help="Early-stopping patience, epochs. Default: the task's recipe (sex: 12).")
@click.option("--lr", type=click.FloatRange(1e-6, 1.0), default=None, help="AdamW learning rate [default: 3e-3].")
@click.option("--batch-size", type=click.IntRange(1, 65536), default=None, help="[default: 64]")
@click.option("--ema", type=click.FloatRange(0.0, 1.0, max_open=True), default=None,
              help="Keep an exponential moving average of the weights, at most this decay per optimiser step "
                   "(e.g. 0.995; it ramps up as (1+n)/(10+n), so a run of a few thousand steps averages mostly its "
                   "last quarter): validation, early stopping and the saved model are the average's. 0 = off. "
                   "Default: the task's recipe.")
@click.option("--n-mfcc", type=click.IntRange(1, 128), default=None,
              help="MFCCs per frame the network reads (architectures on MFCCs). Default: the task's recipe (sex: "
                   "16; 40 before issue 15, i.e. `--n-mfcc 40 --ema 0` is the earlier default).")
@click.option("--seed", type=int, default=0, show_default=True, help="Folds, initialisation and augmentation.")
@click.option("--final/--no-final", default=True, show_default=True,
              help="Also train final.pt on all speakers, with the folds' recipe: the model the steps carry down "
                   "the chain and the exports take. It has no held-out speakers: the figures are the folds'.")
@click.option("--arch", type=click.Choice(list(ARCHS)), default=None,
              help="Network: cnn_lstm (CNN-LSTM on MFCCs, 16 for sex, 40 otherwise; 1.98-s windows for sex, 1 s "
                   "for keywords and digits), raw_conv (strided 1-D convolutions on raw 16 kHz audio; 0.5-s windows, 1 s for "
                   "keywords and digits), cnn2d (2-D CNN with batch norm on the MFCC window as an image) or "
                   "cnn1d (1-D CNN with batch norm on MFCCs). Default: the task's best measured (README, "
                   "per-task table).")
@task_option
@corpus_option
@click.option("--force", is_flag=True, help="Replace the run already in --out (its files are deleted first).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="A configuration file (best_config.json of `gclf search`): its architecture, training and "
                   "network settings; options given on the command line win over it.")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run in --out (started with the same options) from each fold's last "
                   "saved epoch: the result is that of an uninterrupted run. With no run there, start one.")
@click.option("--checkpoint-every", type=click.IntRange(1, 10000), default=1, show_default=True,
              help="Save each fold's training state (resume-<fold>.pt, atomically) every N epochs; the states "
                   "are deleted when the run completes.")
@device_option
@augment_options
@workers_option
@scheduler_option
@frontend_option
@click.option("--pad", type=click.Choice(PADS), default=None,
              help="A clip shorter than the window: wrap (its frames repeated) or edge (centred between copies of "
                   "its first and last frame). Default: the task's (edge for digits, whose clips are trimmed to "
                   "the word; wrap otherwise).")
@json_option
def train(data, cache, out, folds, epochs, patience, lr, batch_size, ema, n_mfcc, seed, final, arch, task, layout, force,
          config_file, resume, checkpoint_every, device, workers, scheduler, frontend, pad, as_json, **aug):
    """Train a network with k-fold cross-validation over speakers (test speakers never seen).

    --out must be empty or new: a run folder is one run (see manifest.json); --force replaces an old one,
    --resume continues one that was interrupted.
    """
    from gclf.data.pipeline import corpus_features
    from gclf.frontend.features import with_frontend
    from gclf.manifest import check_run_dir
    from gclf.train.cv import train_run
    from gclf.data.augment import AugmentConfig
    from gclf.data.layouts import check_trainable, detect_layout, task_of
    from gclf.train.fit import TrainConfig
    from gclf.train.recipes import recipe_for, task_graph

    from dataclasses import replace

    data = resolve_data(data)
    check_trainable(data, layout)
    device = resolved_device(device)
    given = _given(click.get_current_context())
    t_over, m_over = {}, {}
    if config_file:
        from gclf.search.space import read_config

        file_arch, t_over, m_over = read_config(config_file)
        arch = arch if "arch" in given else file_arch
        t_over = {k: v for k, v in t_over.items() if k not in given}
    task = task_of(detect_layout(data, layout)[0], task)
    if n_mfcc is not None:
        from gclf.graph.models import config_for

        if "n_mfcc" not in config_for(arch or recipe_for(task).arch).to_dict():
            raise GclfError(f"--n-mfcc: the {arch or recipe_for(task).arch} network reads no MFCCs")
        m_over = {**m_over, "n_mfcc": n_mfcc}
    graph, fcfg, recipe = task_graph(task, arch, m_over)
    fcfg = with_frontend(fcfg, frontend)
    if pad is not None:
        fcfg = replace(fcfg, pad=pad)
    if not (resume and (Path(out) / "manifest.json").is_file()):
        check_run_dir(out, force)           # refuse before any work, and before anything is deleted
    base = recipe.augment if fcfg.kind in ("mfcc", "int_mfcc", "audio") else AugmentConfig()
    acfg = augment_config(base, **{k: aug[k] for k in AUGMENT_KEYS})
    utts, info = corpus_features(data, fcfg, cache, workers,
                                 progress_factory=lambda n: progress(n, "features", quiet=as_json), on_error=warn,
                                 scheduler=scheduler, task=task, layout=layout)
    if not as_json:
        _print_skipped(info)
    typed = {k: v for k, v in dict(epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, ema=ema).items()
             if v is not None}
    tcfg = replace(TrainConfig(**{**recipe.train, **typed, "folds": folds, "seed": seed, "augment": acfg,
                                  "device": device}), **t_over)
    bar = EpochProgress(quiet=as_json)
    r = train_run(utts, out, graph, fcfg, tcfg, info["corpus"], final=final,
                  on_fold=None if as_json else _fold_line, on_epoch=bar, force=force, command=command_line(),
                  scheduler=scheduler, audio=data, cache_root=cache, workers=workers,
                  progress_factory=lambda n: progress(n, "augmented views", quiet=as_json), resume=resume,
                  checkpoint_every=checkpoint_every)
    bar.close()
    r["data"] = {k: info[k] for k in SKIP_KEYS + ("skipped_by_reason", "done", "reused")}
    emit_json(r) if as_json else _print_cv(r)


SKIP_KEYS = ("skipped", "skipped_unknown_speaker", "skipped_bad_name")


def _given(ctx) -> set[str]:
    """Options typed on the command line (they win over a --config file)."""
    from click.core import ParameterSource

    return {n for n in ctx.params if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}


def _print_skipped(info: dict) -> None:
    reasons = info.get("skipped_by_reason") or {}
    parts = [f"{n} {why}" for why, n in sorted(reasons.items())]
    if info.get("skipped_unknown_speaker"):
        parts.append(f"{info['skipped_unknown_speaker']} of speakers missing from SPEAKERS.TXT")
    if info.get("skipped_bad_name"):
        parts.append(f"{info['skipped_bad_name']} not named SPK-CHAP-UTT")
    if parts:
        warn("skipped files: " + ", ".join(parts))


class EpochProgress:
    """Per-epoch progress of training on stderr: a bar per fold on a terminal, else one line per epoch."""

    def __init__(self, quiet: bool = False):
        import sys

        self.quiet, self.tty, self.bar, self.fold = quiet, sys.stderr.isatty(), None, None

    def __call__(self, row: dict) -> None:
        if self.quiet:
            return
        val = f", val loss {row['val_loss']:.3f}, val utt {pct(row['val_acc_utterance'])}" if "val_loss" in row else ""
        text = f"train loss {row['train_loss']:.3f}{val}"
        if not self.tty:
            click.echo(f"{row['fold']} epoch {row['epoch']}/{row['epochs']}: {text}", err=True)
            return
        if row["fold"] != self.fold:
            self.close()
            self.bar, self.fold = progress(row["epochs"], str(row["fold"])), row["fold"]
            self.bar.unit = "epoch"
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _print_eval(r: dict) -> None:
    n = len(r["folds"])
    click.echo(f"utterance accuracy {pct(r['accuracy_utterance_mean'])} ± {100 * r['accuracy_utterance_std']:.1f}, "
               f"window {pct(r['accuracy_window_mean'])} over {n} model(s), {r['utterances']} utterances")
    for f in r["folds"]:
        cm = f["confusion"]["matrix"]
        click.echo(f"  {Path(f['checkpoint']).name}: utt {pct(f['accuracy_utterance'])} win {pct(f['accuracy_window'])} "
                   "recall " + " ".join(f"{c} {pct(r)}" for c, r in f["recall"].items()) + "  confusion ["
                   + ", ".join(f"true {c}: {row}" for c, row in zip(f["confusion"]["classes"], cm)) + "]")


@click.command(context_settings=CONTEXT)
@model_option
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Corpus to evaluate on (speakers seen in training are left out). Default: each checkpoint's "
                   "own held-out speakers.")
@cache_option
@workers_option
@json_option
def evaluate(model, data, cache, workers, as_json):
    """Window and utterance accuracy, confusion matrix and recall per class (the task's names), on unseen speakers."""
    from gclf.train.cv import evaluate_on_corpus, evaluate_run

    r = evaluate_on_corpus(model, data, cache, workers) if data else evaluate_run(model, cache, default_data())
    emit_json(r) if as_json else _print_eval(r)


def _predict_stdin(models) -> dict:
    """``-``: a WAV (or FLAC) read from standard input, e.g. piped from a recorder."""
    import sys
    import tempfile
    from pathlib import Path

    from gclf.predict import predict_file

    data = sys.stdin.buffer.read()
    with tempfile.TemporaryDirectory(prefix="gclf-stdin-") as tmp:
        path = Path(tmp) / "stdin.wav"
        path.write_bytes(data)
        row = predict_file(path, models)
    return {**row, "file": "-"}


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path())
@model_option
@click.option("--engine", type=click.Choice(["auto", "float", "int", "onnx", "c"]), default="auto", show_default=True,
              help="What computes the model: auto = the chain's own arithmetic (the float model, or after "
                   "`gclf quantize` the integer reference); float = the float weights; int = the integer "
                   "reference; onnx = its ONNX graph in onnxruntime; c = the generated C, compiled here.")
@json_option
def predict(files, model, engine, as_json):
    """Label and class probabilities for each audio FILE (FLAC or WAV; - reads one from standard input).

    With --engine c, a model trained on the integer front-end (--frontend int) runs the generated C from PCM
    (front-end, integer normalisation, network); other models run the network's C on host features.

    A file without speech (less than 0.15 s of frames at >= -70 dBFS with spectral flatness <= 0.3: silence,
    hiss, white noise; see gclf.data.vad) is labelled "no speech". The exit status is 2 if any file could not
    be read (each is named on stderr); the other files are still labelled.
    """
    from gclf.predict import load_models, predict_file

    models = load_models(model, engine)
    rows = []
    for f in files:
        try:
            rows.append(_predict_stdin(models) if f == "-" else predict_file(f, models))
        except GclfError as exc:
            click.echo(f"error: {exc}", err=True)   # this file's one line; the others are still labelled
            rows.append({"file": f, "error": str(exc)})
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            if "error" in r:
                continue
            if r["probabilities"] is None:
                click.echo(f"{r['label']}  ({r['speech_seconds']:.2f} s voice-like)  {r['file']}")
                continue
            probs = "  ".join(f"p_{c}={v:.3f}" for c, v in r["probabilities"].items())
            click.echo(f"{r['label']}  {probs}  {r['file']}")
    failed = sum("error" in r for r in rows)
    if failed:
        raise GclfError(f"{failed} of {len(rows)} file(s) could not be classified")


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False), default="runs/demo", show_default=True)
@click.option("--speakers", type=click.IntRange(6, 1000), default=120, show_default=True, help="Synthetic voices.")
@click.option("--folds", type=click.IntRange(2, 20), default=4, show_default=True, help="Speaker-disjoint CV folds.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True, help="Most epochs per fold.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device/--no-device", default=True, show_default=True,
              help="Then the device chain: train on the integer front-end, quantize W8/A8, export the C from PCM "
                   "and stream held-out clips through it.")
@json_option
def demo(out, speakers, folds, epochs, seed, device, as_json):
    """synth -> extract -> train -> evaluate on synthetic voices, end to end (no download, ~1-2 min), then the
    device chain (integer front-end, W8/A8, C from PCM streamed; another ~1-2 min)."""
    from gclf.demo import run_demo

    t0 = time.time()
    r = run_demo(Path(out), speakers, folds, epochs, seed, say=(lambda m: None) if as_json else
                 (lambda m: click.echo(m, err=True)), device=device)
    r["wall_seconds"] = round(time.time() - t0, 1)
    if as_json:
        emit_json(r)
        return
    _print_cv(r["train"])
    click.echo(f"evaluate: utterance {pct(r['evaluate']['accuracy_utterance_mean'])} on held-out synthetic speakers; "
               f"demo took {r['wall_seconds']} s")
    if r.get("device"):
        click.echo("\nthe device chain (PCM -> label, no float), held-out synthetic speakers:")
        click.echo(f"  {'step':<34} {'utterance':>10} {'bytes':>8}  agreement with the integer reference")
        for row in r["device"]["rows"]:
            acc = pct(row["utterance"]) if row["utterance"] is not None else "-"
            click.echo(f"  {row['step']:<34} {acc:>10} {row['bytes'] or '-':>8}  {row.get('agreement', '')}")


COMMANDS = [train, evaluate, predict, demo]
