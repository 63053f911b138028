"""`gclf report`: one row per step of a chain, figures from step.json / summary.json, the PNG, the JSON,
run-folder discovery, and latency from a pytest-benchmark JSON (timings are never asserted)."""
import json

import pytest
from click.testing import CliRunner

from gclf.cli.report_cmd import report
from gclf.errors import GclfError
from gclf.report.table import build_report, discover_runs, step_label, write_report

STEPS = ("float", "q8", "c8", "c8a", "c8aq8")
LABELS = {"float": "float", "q8": "W8/A8", "c8": "circulant k=8", "c8a": "circulant k=8 > PWL plan/pwl16",
          "c8aq8": "circulant k=8 > PWL plan/pwl16 > W8/A8"}


@pytest.fixture(scope="module")
def chain_report(chain_runs):
    return build_report([chain_runs[s] for s in STEPS], latency=False)


def test_one_row_per_step_with_the_step_figures(chain_report, chain_runs):
    rows = chain_report["rows"]
    assert [r["step"] for r in rows] == [LABELS[s] for s in STEPS]
    q8 = json.loads((chain_runs["q8"] / "step.json").read_text())
    assert rows[1]["accuracy_utterance"] == q8["accuracy_quantized"]
    assert rows[1]["accuracy_utterance_std"] == q8["accuracy_quantized_std"]
    assert rows[1]["weight_bytes"] == q8["weight_bytes_quantized"]
    summary = json.loads((chain_runs["float"] / "summary.json").read_text())
    assert rows[0]["accuracy_utterance"] == summary["accuracy_utterance_mean"]
    assert rows[0]["weight_bytes"] == 4 * 11834
    bytes_ = {s: r["weight_bytes"] for s, r in zip(STEPS, rows)}
    assert bytes_["float"] > bytes_["c8"] == bytes_["c8a"] > bytes_["c8aq8"] and bytes_["q8"] < bytes_["float"]
    assert all(r["folds"] == 3 and r["latency_us"] is None for r in rows)
    assert rows[1]["runtime"] == "numpy integer reference" and rows[0]["runtime"] == "PyTorch (float)"


def test_markdown_table_has_a_line_per_step(chain_report):
    lines = chain_report["markdown"].splitlines()
    assert len(lines) == 2 + len(STEPS)
    assert lines[0].startswith("| step | runs on | utterance accuracy | window accuracy | weight bytes |")
    assert "µs / window, batch 1" in lines[0] and " ± " in lines[2]


def test_cli_writes_png_markdown_and_json(chain_runs, tmp_path):
    out = tmp_path / "report"
    args = [str(chain_runs[s]) for s in STEPS] + ["--no-latency", "--out", str(out), "--json"]
    res = CliRunner().invoke(report, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data) >= {"rows", "markdown", "files", "latency"}
    assert set(data["rows"][0]) >= {"step", "chain", "runtime", "accuracy_utterance", "accuracy_utterance_std",
                                    "accuracy_window", "weight_bytes", "latency_us", "folds", "source"}
    assert len(data["rows"]) == len(STEPS)
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "report.md").read_text().startswith("| step |")
    assert json.loads((out / "report.json").read_text())["rows"] == data["rows"]


def test_latency_by_timeit_and_reevaluation(chain_runs):
    r = build_report([chain_runs["float"], chain_runs["q8"]], latency=True, evaluate=True)
    step = json.loads((chain_runs["q8"] / "step.json").read_text())
    assert r["rows"][1]["accuracy_utterance"] == pytest.approx(step["accuracy_quantized"])
    assert all(isinstance(row["latency_us"], float) for row in r["rows"])    # measured, value not asserted
    assert r["latency"] == "timeit"


def test_discovers_the_chain_folders_of_a_run(chain_runs, tmp_path):
    names = {"float": "model", "c8": "model-c8", "c8a": "model-c8-a", "c8aq8": "model-c8-a-q8", "q8": "model-q8"}
    for step, name in names.items():
        (tmp_path / name).symlink_to(chain_runs[step], target_is_directory=True)
    (tmp_path / "model-report").mkdir()                  # not a run folder: ignored
    found = [p.name for p in discover_runs(tmp_path / "model")]
    assert found == ["model", "model-c8", "model-q8", "model-c8-a", "model-c8-a-q8"]
    r = build_report([tmp_path / "model"], latency=False)
    assert [row["step"] for row in r["rows"]][-1] == LABELS["c8aq8"]
    with pytest.raises(GclfError, match="not a run folder"):
        discover_runs(tmp_path / "model-report")


def _bench(name, chain, source, measure, median, windows=1, **info):
    extra = {"step": name, "label": name, "chain": chain, "runtime": "rt", "source": source, "measure": measure,
             "windows_timed": windows, "accuracy_utterance": 0.9, "accuracy_utterance_std": 0.01,
             "accuracy_window": 0.8, "weight_bytes": 100, "folds": 3, **info}
    return {"name": f"test_{measure}[{name}]", "stats": {"median": median, "min": median}, "extra_info": extra}


def test_latency_and_peers_from_a_benchmark_json(chain_runs, tmp_path):
    data = {"benchmarks": [_bench("w8a8", "W8/A8", "chain", "batch1", 2e-3),
                           _bench("w8a8", "W8/A8", "chain", "evaluation", 0.5, windows=100),
                           _bench("onnxruntime", "float", "peer", "batch1", 3e-5),
                           {"name": "test_extract", "stats": {"median": 1.0},
                            "extra_info": {"step": "x", "measure": "extraction"}}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    r = build_report([chain_runs["float"], chain_runs["q8"]], bench_json=path)
    rows = {row["step"]: row for row in r["rows"]}
    assert rows["W8/A8"]["latency_us"] == pytest.approx(2000.0)
    assert rows["W8/A8"]["evaluation_us_per_window"] == pytest.approx(5000.0)
    assert rows["float"]["latency_us"] is None                      # no benchmark of that chain in the file
    assert rows["onnxruntime"]["kind"] == "peer" and rows["onnxruntime"]["latency_us"] == pytest.approx(30.0)
    assert len(r["rows"]) == 3 and "whole evaluation" in r["markdown"]
    alone = build_report([], bench_json=path)
    assert [row["step"] for row in alone["rows"]] == ["w8a8", "onnxruntime"]
    write_report(alone, tmp_path / "out")
    assert (tmp_path / "out" / "report.png").is_file()


def test_errors_are_one_line(tmp_path):
    bad = tmp_path / "bench.json"
    bad.write_text("{}")
    with pytest.raises(GclfError, match="pytest-benchmark JSON"):
        build_report([], bench_json=bad)
    with pytest.raises(GclfError, match="nothing to report"):
        build_report([])
    res = CliRunner().invoke(report, [str(tmp_path), "--no-latency", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "fold*.pt" in str(res.exception)


def test_step_labels(chain_runs):
    """The report labels a chain with gclf.graph.chain.label, from typed steps or their stored dicts."""
    from gclf.checkpoint import chain_of, checkpoint_paths, load_checkpoint
    from gclf.graph.chain import Quantize, Train
    from gclf.graph.spec import QuantConfig

    ck = load_checkpoint(checkpoint_paths(chain_runs["c8aq8"])[0])
    assert step_label(ck["chain"]) == step_label(chain_of(ck)) == LABELS["c8aq8"]
    spec = chain_of(ck)[-1].spec
    assert step_label([Train()]) == "float"
    assert step_label([Train(), Quantize(QuantConfig(bits=4, act_bits=8), spec)]) == "W4/A8"
    assert step_label([Train(), Quantize(QuantConfig(bits=8, weights_only=True), spec)]) == "W8 weights-only"


def test_cortex_m4_and_side_by_side_tables_from_a_benchmark_json(tmp_path):
    m4 = {"instructions_per_inference": 504400, "instructions_error": 40, "instructions_per_mac": 1.77,
          "macs": 284992, "flash": 17256, "code": 1888, "rodata": 15368, "ram": 14570, "bss": 14494, "stack": 76,
          "windows": 64, "mismatches": 0, "cflags": "-mcpu=cortex-m4 -O2", "machine": "mps2-an386"}
    side = {"side_by_side_us": {"C -O2 (W8/A8)": 13.0, "ONNX Runtime, float model": 52.0},
            "side_by_side_ratio_to_onnxruntime_float": {"C -O2 (W8/A8)": 0.25, "ONNX Runtime, float model": 1.0},
            "side_by_side_note": "one run", "side_by_side_c_chains": {"W8/A8": 12.5}}
    dev = _bench("m4-w8a8", "W8/A8", "chain", "cortex-m4", 1.0)
    dev["extra_info"].update(m4)
    data = {"benchmarks": [dev,
                           _bench("c-w8a8", "W8/A8", "peer", "batch1", 1.3e-5, runtime="C via ctypes"),
                           _bench("side-by-side", "W8/A8", "peer", "side-by-side", 1.3e-5, **side)]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    r = build_report([], bench_json=path)
    assert [row["step"] for row in r["rows"]] == ["c-w8a8"]           # the device and side-by-side rows are tables
    (d,) = r["device"]
    assert d["instructions_per_inference"] == 504400 and d["x86_c_us"] == pytest.approx(12.5)   # same run first
    assert "| W8/A8 | 504,400 ± 40 | 1.77 | 17,256 | 14,570 (14,494 + 0 + 76) | 12.5 | 64 of 64 windows |" in r["markdown"]
    assert "| C -O2 (W8/A8) | 13.0 | 0.25 |" in r["markdown"] and r["side_by_side"]["note"] == "one run"


def test_front_end_benchmarks_are_a_table_of_their_own(tmp_path):
    fe = {"name": "test_frontend_python[numpy-int]", "stats": {"median": 0.02, "min": 0.02},
          "extra_info": {"step": "frontend-numpy-int", "measure": "frontend", "audio_seconds": 10.0}}
    data = {"benchmarks": [fe, _bench("c-w8a8", "W8/A8", "peer", "batch1", 1.3e-5, runtime="C via ctypes")]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    r = build_report([], bench_json=path)
    assert [row["step"] for row in r["rows"]] == ["c-w8a8"]           # not a per-window row
    assert "| numpy-int | 2.00 |  |" in r["markdown"]                 # 20 ms over 10 s of audio
