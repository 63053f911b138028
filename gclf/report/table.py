"""`gclf report`: what each step of the chain costs, as one Markdown table and one plot.

Rows come from run folders: a trained run (``summary.json``) and the folders the post-processing steps
derived from it (``step.json``, written by :func:`gclf.steps.runner.apply_step`; the CLI names them
``runs/model-c8``, ``runs/model-c8-a``, ``runs/model-c8-a-q8``, ...). Every figure is measured on each
fold's held-out speakers: utterance accuracy is the mean ± std (population) over folds.

- **accuracy**: read from ``summary.json`` / ``step.json``, or re-measured with
  :func:`gclf.train.cv.evaluate_run` (``evaluate=True``; needs the features of the run's corpus);
- **weight bytes**: of fold 1's checkpoint: float32 parameters (4 bytes each; a block-circulant layer
  stores its defining vectors only), or the packed integer widths after a quantize step;
- **latency**: one window at batch 1 on one thread, µs, median of a small ``timeit`` loop over the
  checkpoint's own computation (:func:`gclf.backends.engines.prob_fn_for`: PyTorch, or the numpy integer
  reference) on a synthetic MFCC-shaped window, or the median of a pytest-benchmark JSON written by
  ``pytest benchmarks --benchmark-json FILE``. A benchmark JSON also adds its peer rows (ONNX Runtime,
  the generated C, ONNX Runtime's and PyTorch's own int8 quantization), which have no run folder.
"""
from __future__ import annotations

import contextlib
import json
import statistics
import timeit
from dataclasses import asdict, dataclass
from pathlib import Path

from gclf.errors import GclfError

ACCURACY_KEYS = {  # last step of a folder -> (utterance mean, its std, window mean) in its json
    "train": ("accuracy_utterance_mean", "accuracy_utterance_std", "accuracy_window_mean"),
    "compress": ("accuracy_after", "accuracy_after_std", "accuracy_after_window"),
    "approx": ("accuracy_after", "accuracy_after_std", "accuracy_after_window"),
    "quantize": ("accuracy_quantized", "accuracy_quantized_std", "accuracy_quantized_window"),
}


@dataclass
class Row:
    """One line of the report: a step of the chain (a run folder) or a benchmark peer."""

    step: str                                   # short label, e.g. "circulant k=8 > PWL plan/pwl16 > W8/A8"
    chain: str                                  # gclf.graph.chain.label of the checkpoint
    runtime: str                                # what computes it: PyTorch, numpy integer reference, ...
    accuracy_utterance: float | None = None     # mean over folds (held-out speakers)
    accuracy_utterance_std: float | None = None
    accuracy_window: float | None = None
    weight_bytes: int | None = None
    latency_us: float | None = None             # one window, batch 1, one thread (median)
    latency_source: str | None = None
    evaluation_us_per_window: float | None = None  # whole held-out evaluation / windows (benchmark only)
    folds: int | None = None
    source: str = ""                            # run folder, or "benchmark: <name>"
    kind: str = "step"                          # "step" of gclf's chain, or "peer" (another runtime)
    task: str = "sex"                           # the run's task (gclf.data.tasks) and, below, its network
    arch: str = ""


# ---- what a checkpoint is ---------------------------------------------------------------------------
def step_label(chain) -> str:
    """The label of a chain (typed steps or their dicts): :func:`gclf.graph.chain.label`."""
    from gclf.graph.chain import label
    from gclf.graph.serial import chain_from_dicts

    return label(chain_from_dicts(chain) if chain and isinstance(chain[0], dict) else chain)


def runtime_of(ck: dict) -> str:
    """What computes this checkpoint in gclf (see :func:`gclf.backends.engines.prob_fn_for`)."""
    from gclf.checkpoint import quant_of

    q = quant_of(ck)
    if q is None:
        return "PyTorch (float)"
    return "PyTorch (fake-quant weights)" if q.spec.weights_only else "numpy integer reference"


def weight_bytes(ck: dict) -> int:
    """Stored weight and bias bytes of a checkpoint: float32, or packed at the quantize step's widths."""
    from gclf.backends.fixed import integer_weights, weight_bytes_float
    from gclf.checkpoint import build_float_model, quant_of
    from gclf.quant.formats import packed_bytes

    model = build_float_model(ck)
    q = quant_of(ck)
    if q is None:
        return weight_bytes_float(model)
    ints, _ = integer_weights(model, q.spec)
    return sum(packed_bytes(w.ints.size, w.width) for w in ints.values())


# ---- run folders ------------------------------------------------------------------------------------
def _has_folds(p: Path) -> bool:
    return p.is_dir() and any(p.glob("fold*.pt"))


def discover_runs(model: str | Path) -> list[Path]:
    """A run folder and the chain folders derived from it (siblings named ``<run>-*`` holding fold*.pt),
    shortest chains first (``model``, ``model-a``, ``model-c8``, ``model-q8``, ``model-c8-a``, ...)."""
    model = Path(model)
    if not _has_folds(model):
        raise GclfError(f"{model} is not a run folder (no fold*.pt): give the folder `gclf train` wrote")
    derived = [p for p in model.parent.glob(model.name + "-*") if _has_folds(p)]
    return [model] + sorted(derived, key=lambda p: (p.name.count("-") - model.name.count("-"), p.name))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def folder_accuracy(folder: Path, last_step: str, evaluate: bool = False,
                    cache_root: str | Path = "pkl_data", data: str | Path | None = None) -> dict:
    """{accuracy_utterance, accuracy_utterance_std, accuracy_window, folds} of a run folder: from its
    summary.json (a trained run) or step.json (a derived one), else re-evaluated on held-out speakers."""
    keys = ACCURACY_KEYS.get(last_step, ACCURACY_KEYS["train"])
    saved = None if evaluate else _read_json(folder / ("summary.json" if last_step == "train" else "step.json"))
    if saved is None or keys[0] not in saved:
        from gclf.train.cv import evaluate_run

        saved, keys = evaluate_run(folder, cache_root, data), ACCURACY_KEYS["train"]
    return {"accuracy_utterance": saved[keys[0]], "accuracy_utterance_std": saved.get(keys[1]),
            "accuracy_window": saved.get(keys[2]), "folds": len(saved.get("folds", [])) or None}


@contextlib.contextmanager
def one_thread():
    """torch on one intra-op thread (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def example_window(ck: dict):
    """A seeded window of the graph's input shape (1, channels, length): latency does not depend on the values."""
    import torch

    from gclf.checkpoint import graph_of

    c, t = graph_of(ck).input_shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, t, generator=g) * 8.0
    return x + torch.linspace(-30, 10, c)[:, None]


def measure_latency(ck: dict, repeat: int = 7, target_s: float = 0.1) -> float:
    """µs per window at batch 1 on one thread: median over ``repeat`` timeit loops of ~``target_s`` each."""
    from gclf.backends.engines import prob_fn_for

    fn, x = prob_fn_for(ck), example_window(ck)
    with one_thread():
        fn(x)                                                   # warm-up (first-call allocations)
        timer = timeit.Timer(lambda: fn(x))
        once = max(timer.timeit(1), 1e-7)
        number = max(1, int(target_s / once))
        times = timer.repeat(repeat=repeat, number=number)
    return 1e6 * statistics.median(times) / number


def row_for_run(folder: str | Path, latency: bool = True, evaluate: bool = False,
                cache_root: str | Path = "pkl_data", data: str | Path | None = None) -> Row:
    """The report row of one run folder (figures over its folds; bytes and latency of fold 1)."""
    from gclf.checkpoint import chain_of, checkpoint_paths, load_checkpoint

    folder = Path(folder)
    ck = load_checkpoint(checkpoint_paths(folder)[0])
    chain = chain_of(ck)
    acc = folder_accuracy(folder, chain[-1].kind, evaluate, cache_root, data)
    from gclf.checkpoint import graph_of

    corpus = ck.get("corpus") if isinstance(ck.get("corpus"), dict) else {}
    row = Row(step=step_label(chain), chain=step_label(chain), runtime=runtime_of(ck),
              weight_bytes=weight_bytes(ck), source=str(folder), task=corpus.get("task", "sex"),
              arch=graph_of(ck).arch, **acc)
    if latency:
        row.latency_us, row.latency_source = measure_latency(ck), "timeit, median"
    return row


# ---- pytest-benchmark JSON --------------------------------------------------------------------------
def load_bench(path: str | Path) -> list[dict]:
    """The benchmarks of a pytest-benchmark JSON that carry gclf's ``extra_info`` (a ``step`` key)."""
    data = _read_json(Path(path))
    if data is None or "benchmarks" not in data:
        raise GclfError(f"{path} is not a pytest-benchmark JSON (write one with --benchmark-json FILE)")
    return [b for b in data["benchmarks"] if "step" in (b.get("extra_info") or {})]


def _per_window_us(b: dict) -> float:
    info = b["extra_info"]
    return 1e6 * b["stats"]["median"] / max(int(info.get("windows_timed", 1)), 1)


def bench_row(b: dict) -> Row:
    info = b["extra_info"]
    return Row(step=info.get("label", info["step"]), chain=info.get("chain", ""), runtime=info.get("runtime", ""),
               accuracy_utterance=info.get("accuracy_utterance"),
               accuracy_utterance_std=info.get("accuracy_utterance_std"),
               accuracy_window=info.get("accuracy_window"), weight_bytes=info.get("weight_bytes"),
               folds=info.get("folds"), source=f"benchmark: {info['step']}",
               kind="peer" if info.get("source") == "peer" else "step")


def merge_bench(rows: list[Row], bench: list[dict]) -> list[Row]:
    """Latency of each row from the benchmark of the same chain; peers of the benchmark become rows."""
    by_step: dict[str, dict[str, dict]] = {}
    for b in bench:
        by_step.setdefault(b["extra_info"]["step"], {})[b["extra_info"].get("measure", "batch1")] = b
    rows, used = list(rows), set()
    for row in rows:
        for step, ms in by_step.items():
            info = ms.get("batch1", {}).get("extra_info", {})
            if step not in used and info.get("source") == "chain" and info.get("chain") == row.chain:
                _fill_timing(row, ms)
                used.add(step)
                break
    for step, ms in by_step.items():
        if step not in used and "batch1" in ms:
            rows.append(_fill_timing(bench_row(ms["batch1"]), ms))
    return rows


def _fill_timing(row: Row, ms: dict[str, dict]) -> Row:
    if "batch1" in ms:
        row.latency_us = _per_window_us(ms["batch1"])
        row.latency_source = "pytest-benchmark, median"
        row.runtime = ms["batch1"]["extra_info"].get("runtime", row.runtime)
    if "evaluation" in ms:
        row.evaluation_us_per_window = _per_window_us(ms["evaluation"])
    return row


def device_rows(bench: list[dict]) -> list[dict]:
    """One row per fixed-point chain measured on the emulated Cortex-M4 (``measure == "cortex-m4"``), with the
    x86 batch-1 latency of the same chain's C when the benchmark has it."""
    x86 = {}
    for b in bench:                     # the side-by-side run's C figures, else the C's batch-1 benchmarks
        info = b["extra_info"]
        if info.get("measure") == "side-by-side":
            x86.update(info.get("side_by_side_c_chains") or {})
    for b in bench:
        info = b["extra_info"]
        if info.get("measure") == "batch1" and info.get("runtime") == "C via ctypes":
            x86.setdefault(info.get("chain"), _per_window_us(b))
    keys = ("instructions_per_inference", "instructions_error", "instructions_per_mac", "macs", "flash", "code",
            "rodata", "ram", "bss", "stack", "windows", "mismatches", "cflags", "machine")
    out = []
    for b in bench:
        info = b["extra_info"]
        if info.get("measure") == "cortex-m4":
            out.append({"chain": info.get("chain", ""), **{k: info.get(k) for k in keys},
                        "x86_c_us": x86.get(info.get("chain")), "source": f"benchmark: {info['step']}"})
    return out


def side_by_side(bench: list[dict]) -> dict | None:
    """The one-run comparison at batch 1 (``measure == "side-by-side"``): µs and ratios to ORT float."""
    for b in bench:
        info = b["extra_info"]
        if info.get("measure") == "side-by-side":
            return {"us": info.get("side_by_side_us") or {},
                    "ratio": info.get("side_by_side_ratio_to_onnxruntime_float") or {},
                    "note": info.get("side_by_side_note", "")}
    return None


def frontend_markdown(bench: list[dict]) -> str | None:
    """The front-end benchmarks (``measure == "frontend"``): ms per second of audio, median."""
    rows = [b for b in bench if b["extra_info"].get("measure") == "frontend"]
    if not rows:
        return None
    lines = ["| front-end (PCM -> 40 MFCCs) | ms per second of audio | note |", "|---|---|---|"]
    for b in rows:
        info = b["extra_info"]
        ms = 1e3 * b["stats"]["median"] / max(float(info.get("audio_seconds", 1)), 1e-9)
        lines.append(f"| {info['step'].removeprefix('frontend-')} | {ms:,.2f} | {info.get('note', '')} |")
    return "\n".join(lines)


def device_markdown(rows: list[dict]) -> str:
    head = ["chain", "instructions / inference", "per MAC", "flash B", "RAM B (bss + data + stack)",
            "x86 C µs, batch 1", "logits equal to the reference"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["chain"], f"{_num(r['instructions_per_inference'], ',d')} ± {r['instructions_error']}",
            _num(r["instructions_per_mac"], ".2f"), _num(r["flash"], ",d"),
            f"{_num(r['ram'], ',d')} ({_num(r['bss'], ',d')} + 0 + {_num(r['stack'], ',d')})",
            _num(r["x86_c_us"], ",.1f"), f"{r['windows'] - r['mismatches']} of {r['windows']} windows"]) + " |")
    return "\n".join(lines)


def side_markdown(side: dict) -> str:
    lines = ["| runtime (batch 1, one thread, one run) | µs / window | ratio to ONNX Runtime float |", "|---|---|---|"]
    for k, v in side["us"].items():
        lines.append(f"| {k} | {v:,.1f} | {_num(side['ratio'].get(k), '.2f')} |")
    return "\n".join(lines)


# ---- the report -------------------------------------------------------------------------------------
def build_report(runs: list[str | Path], bench_json: str | Path | None = None, latency: bool = True,
                 evaluate: bool = False, cache_root: str | Path = "pkl_data", data: str | Path | None = None) -> dict:
    """{"rows": [...], "markdown": table} for run folders (one: it and its derived chain folders)."""
    if not runs and not bench_json:
        raise GclfError("nothing to report: give a run folder and/or --bench-json")
    folders = discover_runs(runs[0]) if len(runs) == 1 else [Path(r) for r in runs]
    bench = load_bench(bench_json) if bench_json else []
    rows = [row_for_run(f, latency and not bench, evaluate, cache_root, data) for f in folders]
    if bench:
        rows = merge_bench(rows, bench)
    device, side = device_rows(bench), side_by_side(bench)
    md = markdown_table(rows)
    if side:
        md += "\n\nSide by side, " + side["note"] + ":\n\n" + side_markdown(side)
    fe = frontend_markdown(bench)
    if fe:
        md += "\n\nThe MFCC front-end on the host (median of pytest-benchmark, one thread):\n\n" + fe
    if device:
        md += ("\n\nOn an emulated Cortex-M4 (arm-none-eabi-gcc " + (device[0]["cflags"] or "") + ", qemu "
               + (device[0]["machine"] or "") + ", instructions counted with -icount; flash = code + constants):\n\n"
               + device_markdown(device))
    return {"rows": [asdict(r) for r in rows], "markdown": md, "device": device, "side_by_side": side,
            "latency": "pytest-benchmark JSON" if bench else ("timeit" if latency else None)}


def _pct(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f} %" + (f" ± {100 * std:.1f}" if std is not None else "")


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def markdown_table(rows: list[Row]) -> str:
    """step | runs on | utterance accuracy ± std | window accuracy | weight bytes | µs/window (batch 1)
    [| µs/window over the whole evaluation, from a benchmark] | run folder or benchmark; with a first column
    "task (network)" when the rows are not all of the sex task (a per-task table: keywords, digits, ...)."""
    evals = any(r.evaluation_us_per_window is not None for r in rows)
    tasks = any(r.task != "sex" for r in rows if r.kind == "step")
    head = (["task (network)"] if tasks else []) + ["step", "runs on", "utterance accuracy", "window accuracy", "weight bytes", "µs / window, batch 1"]
    head += ["µs / window, whole evaluation"] if evals else []
    head += ["from"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = ([f"{r.task} ({r.arch})" if r.kind == "step" else ""] if tasks else []) + [r.step, r.runtime, _pct(r.accuracy_utterance, r.accuracy_utterance_std), _pct(r.accuracy_window),
                 _num(r.weight_bytes, ",d"), _num(r.latency_us, ",.1f")]
        cells += [_num(r.evaluation_us_per_window, ",.1f")] if evals else []
        cells += [r.source if r.source.startswith("benchmark") else f"`{Path(r.source).name}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _point_groups(rows: list[dict]) -> list[tuple[float, float, float, list[dict]]]:
    """Rows with the same bytes and accuracy share one point: (bytes, accuracy %, std %, rows)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["weight_bytes"] and r["accuracy_utterance"] is not None:
            std = r["accuracy_utterance_std"] or 0.0
            key = (r["weight_bytes"], round(100 * r["accuracy_utterance"], 3), round(100 * std, 3))
            groups.setdefault(key, []).append(r)
    return [(k[0], k[1], k[2], v) for k, v in sorted(groups.items())]


def plot_report(rows: list[dict], path: str | Path) -> Path:
    """Utterance accuracy (± std over folds) against weight bytes (log x): one numbered point per step (the
    legend names it; steps with identical figures share a point), squares for peers of a benchmark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _point_groups(rows)
    fig, ax = plt.subplots(figsize=(12, 6))
    n = 0
    for i, (x, y, err, group) in enumerate(pts):
        tags = list(range(n + 1, n + 1 + len(group)))
        n += len(group)
        peer = all(r["kind"] == "peer" for r in group)
        label = "\n".join(f"{t}: {r['step']} [{r['runtime']}]" for t, r in zip(tags, group))
        ax.errorbar(x, y, yerr=err, fmt="s" if peer else "o", capsize=3, markersize=6, label=label)
        ax.annotate(",".join(map(str, tags)), (x, y), fontsize=8, xytext=(5, 6 if i % 2 else -12),
                    textcoords="offset points")
    xs = [p[0] for p in pts] or [1]
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
    ax.set_xlabel("weight bytes (log scale)")
    ax.set_ylabel("utterance accuracy, held-out speakers (%)")
    ax.set_title("gclf: accuracy (mean ± std over folds) against stored weight bytes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: dict, out: str | Path) -> dict:
    """report.md, report.png and report.json into ``out``; returns their paths."""
    from gclf.io import atomic_json, atomic_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    note = ("Accuracy on held-out speakers only (mean ± std over folds). Weight bytes: float32 parameters, or "
            "packed fixed-point widths (peers: see benchmarks/README.md). Latency: one window at batch 1 on one "
            f"thread, median ({report.get('latency') or 'not measured'}).")
    paths = {"markdown": str(atomic_text(out / "report.md", report["markdown"] + "\n\n" + note + "\n")),
             "png": str(plot_report(report["rows"], out / "report.png"))}
    paths["json"] = str(atomic_json(out / "report.json", {**report, "files": paths}))
    return paths
