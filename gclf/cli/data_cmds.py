"""`gclf synth` and `gclf extract`."""
from __future__ import annotations

import shutil
import tempfile

import click

from gclf.errors import GclfError
from gclf.graph.models import ARCHS
from gclf.cli.common import (CONTEXT, cache_option, corpus_option, data_option, emit_json, json_option,
                             frontend_option, progress, resolve_data, scheduler_option, task_option, warn,
                             workers_option)


@click.command(context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write LibriSpeech/ into.")
@click.option("--speakers", type=click.IntRange(2, 10000), default=40, show_default=True, help="Number of voices (half F, half M).")
@click.option("--utterances", type=click.IntRange(1, 100), default=1, show_default=True, help="Utterances per speaker.")
@click.option("--min-seconds", type=click.FloatRange(0.5, 60), default=3.0, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(0.5, 60), default=8.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def synth(out, speakers, utterances, min_seconds, max_seconds, seed, as_json):
    """Write a synthetic LibriSpeech-layout corpus of FLAC voices (source-filter speech)."""
    from gclf.data.synth import SynthConfig, synthesize_corpus

    if min_seconds > max_seconds:
        raise GclfError("--min-seconds is larger than --max-seconds")
    cfg = SynthConfig(speakers=speakers, utterances_per_speaker=utterances, min_seconds=min_seconds,
                      max_seconds=max_seconds, seed=seed)
    bar = progress(speakers * utterances, "synth", quiet=as_json)
    summary = synthesize_corpus(out, cfg, progress=bar.update)
    bar.close()
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"wrote {summary['utterances']} utterances of {summary['speakers']} speakers "
                   f"({summary['female']} F, {summary['male']} M, {summary['seconds'] / 60:.1f} min) to {summary['root']}")


def _print_summary(s: dict) -> None:
    who = f"{s['female']} F / {s['male']} M" if "female" in s else f"{len(s['per_class'])} classes"
    click.echo(f"{s['utterances']} utterances, {s['windows']} windows, {s['speakers']} speakers "
               f"({who}), {s['hours']:.2f} h of audio")


@click.command(context_settings=CONTEXT)
@data_option
@click.option("--from", "source", type=click.Choice(["flac", "pkl"]), default="flac", show_default=True,
              help="flac: read audio and extract; pkl: summarise the cache only (no audio is read).")
@click.option("--store/--no-store", default=True, show_default=True,
              help="Keep the features in the cache (--no-store: extract to a temporary folder, report, delete).")
@cache_option
@workers_option
@scheduler_option
@frontend_option
@task_option
@corpus_option
@click.option("--arch", type=click.Choice(list(ARCHS)), default=None,
              help="Extract the features this architecture reads for the task (its window; raw_conv: samples). "
                   "Default: the task's default architecture, as `gclf train` uses.")
@json_option
def extract(data, source, store, cache, workers, scheduler, frontend, task, layout, arch, as_json):
    """Corpus audio (FLAC/WAV/MP3, any rate) -> MFCCs per frame (the task's recipe: 16 for sex), cut into
    windows, cached in pkl_data/.

    Resumable: files already extracted with the same corpus, task and feature config are not redone.
    """
    from gclf.data.features import cache_dir_for, find_caches, load_cache, summarize
    from gclf.data.layouts import detect_layout, scan_any, task_of
    from gclf.frontend.features import with_frontend
    from gclf.train.recipes import task_graph

    if data or source == "flac":
        task = task_of(detect_layout(resolve_data(data), layout)[0], task)
    cfg = with_frontend(task_graph(task or "sex", arch)[1], frontend)
    if source == "pkl":
        if data or not find_caches(cache):
            cdir = cache_dir_for(scan_any(resolve_data(data), task, layout).identity(), cfg, cache)
        else:
            cdir = find_caches(cache)[0]
        fcfg, utts = load_cache(cdir)
        s = {**summarize(utts, fcfg), "cache_dir": str(cdir)}
        emit_json(s) if as_json else _print_summary(s)
        return
    from gclf.data.pipeline import corpus_features

    tmp = None if store else tempfile.mkdtemp(prefix="gclf-extract-")
    try:
        utts, info = corpus_features(resolve_data(data), cfg, tmp or cache, workers,
                                     progress_factory=lambda n: progress(n, "extract", quiet=as_json),
                                     on_error=warn, scheduler=scheduler, task=task, layout=layout)
        s = {**summarize(utts, cfg), **{k: info[k] for k in ("done", "reused", "skipped", "skipped_by_reason",
                                                             "skipped_unknown_speaker", "skipped_bad_name")},
             "cache_dir": info["cache_dir"] if store else None}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if as_json:
        emit_json(s)
        return
    _print_summary(s)
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(s["skipped_by_reason"].items()))
    click.echo(f"extracted {s['done']}, reused {s['reused']}, skipped {s['skipped']}"
               + (f" ({reasons})" if reasons else "")
               + f", {s['skipped_unknown_speaker']} without a label (of speakers missing from SPEAKERS.TXT), "
               f"{s['skipped_bad_name']} not named as the layout names files (SPK-CHAP-UTT)" + (f"; cache: {s['cache_dir']}" if store else ""))


COMMANDS = [synth, extract]
