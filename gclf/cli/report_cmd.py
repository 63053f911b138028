"""`gclf report`: the table (and plot) of accuracy, bytes and latency of every step of a chain."""
from __future__ import annotations

from pathlib import Path

import click

from gclf.cli.common import CONTEXT, cache_option, default_data, emit_json, json_option, step_data_option


@click.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--bench-json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Latency from a pytest-benchmark JSON (`pytest benchmarks --benchmark-only "
                   "--benchmark-json FILE`) instead of timing here; its peers (ONNX Runtime, C, int8) become rows.")
@click.option("--evaluate", is_flag=True,
              help="Re-measure accuracy on each fold's held-out speakers instead of reading step.json/summary.json.")
@click.option("--no-latency", is_flag=True, help="Do not time anything (no latency column figures).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/report", show_default=True,
              help="Folder for report.md, report.png (accuracy against weight bytes) and report.json.")
@cache_option
@step_data_option
@json_option
def report(runs, bench_json, evaluate, no_latency, out, cache, data, as_json):
    """Markdown table and plot: utterance accuracy ± std, window accuracy, weight bytes, µs per window.

    RUNS: one run folder (default runs/model, if it exists) reports it and the chain folders derived from
    it (its siblings RUN-*, as `gclf compress/approx/quantize` name them); several report exactly those.
    Latency: one window at batch 1 on one thread, median of a small timeit loop (or of --bench-json).
    """
    from gclf.errors import GclfError
    from gclf.report.table import build_report, write_report

    runs = list(runs)
    if not runs and not bench_json:
        if not Path("runs/model").is_dir():
            raise GclfError("no run folder given and runs/model does not exist: pass RUNS or --bench-json")
        runs = ["runs/model"]
    r = build_report(runs, bench_json, latency=not no_latency, evaluate=evaluate, cache_root=cache,
                     data=data or default_data())
    r["files"] = write_report(r, out)
    if as_json:
        emit_json(r)
        return
    click.echo(r["markdown"])
    click.echo(f"\nwritten: {r['files']['markdown']}, {r['files']['png']}, {r['files']['json']}")


COMMANDS = [report]
