"""The generated C beside its peers, and on the device it is meant for.

``test_side_by_side``: in one run, at batch 1 on one thread, the -O2 C of every fixed-point chain, ONNX Runtime
on the float model and on gclf's QDQ export of W8/A8, and PyTorch eager (float): each timed in interleaved
rounds (timeit, the fastest round's µs per call), recorded as µs and as ratios to ONNX Runtime's float model. The timed
benchmark itself is the C of W8/A8.

``test_cortex_m4[NAME]``: the C of each fixed-point chain cross-compiled for a Cortex-M4 and run on QEMU's
mps2-an386 (fold 1's first held-out windows): instructions per inference and per MAC, flash, RAM, and the
logits compared with the integer reference (must all agree). Needs gcc-arm-none-eabi,
libnewlib-arm-none-eabi and qemu-system-arm (skipped, saying so, without them).
"""
from __future__ import annotations

import timeit

import numpy as np
import pytest

SIDE = {"c-w8a8": "C -O2 (W8/A8)", "c-w4a8": "C -O2 (W4/A8)", "c": "C -O2 (full chain)",
        "onnxruntime": "ONNX Runtime, float model", "ort-qdq": "ONNX Runtime, QDQ (W8/A8)",
        "float": "PyTorch eager, float model"}
DEVICE = {"w8a8": "-q8", "w4a8": "-q4a8", "chain": "-c8-a-q8"}
M4_WINDOWS = 64


def _interleaved(fns: dict, rounds: int = 15, target_s: float = 0.02) -> dict[str, float]:
    """µs per call of each function: the fastest of interleaved rounds (the machine's load hits all alike, and
    on a shared machine the fastest round is the one least disturbed; timeit's own advice)."""
    numbers = {}
    for k, fn in fns.items():
        fn()
        t = timeit.timeit(fn, number=3) / 3
        numbers[k] = max(1, int(target_s / max(t, 1e-7)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(1e6 * timeit.timeit(fn, number=numbers[k]) / numbers[k])
    return {k: float(np.min(v)) for k, v in times.items()}


@pytest.mark.benchmark(group="side by side: batch 1, one thread, one run")
def test_side_by_side(benchmark, engines):
    built = {}
    for name in SIDE:
        try:
            built[name] = engines(name)
        except pytest.skip.Exception as exc:
            print(f"[side by side] {name} skipped: {exc}")
    if "c-w8a8" not in built:
        pytest.skip("no C compiler: nothing to compare")
    us = _interleaved({k: e.folds[0].one for k, e in built.items()})
    base = us.get("onnxruntime")
    c = built["c-w8a8"]
    benchmark.extra_info.update(c.info("batch1"))
    benchmark.extra_info.update({
        "step": "side-by-side", "measure": "side-by-side", "source": "peer",
        "side_by_side_us": {SIDE[k]: round(v, 2) for k, v in us.items()},
        "side_by_side_c_chains": {e.chain: round(us[k], 2) for k, e in built.items() if k.startswith("c")},
        "side_by_side_ratio_to_onnxruntime_float": ({SIDE[k]: round(v / base, 3) for k, v in us.items()}
                                                    if base else None),
        "side_by_side_note": "µs per call, fastest of 15 interleaved timeit rounds in this one test; C: one "
                             "gclf_infer on a quantized window; ONNX Runtime / PyTorch: one window incl. softmax"})
    benchmark(c.folds[0].one)


@pytest.mark.benchmark(group="Cortex-M4 (qemu mps2-an386): instructions, flash, RAM")
@pytest.mark.parametrize("name", list(DEVICE))
def test_cortex_m4(benchmark, chain, name, tmp_path):
    from gclf.backends.c.generate import export_c
    from gclf.backends.c.target import APT_PACKAGES, measure_target, missing_tools
    from gclf.backends.intref import IntegerReference
    from gclf.checkpoint import checkpoint_paths, load_fixed_point
    from gclf.data.pipeline import features_for_checkpoint, heldout_windows

    missing = missing_tools()
    if missing:
        pytest.skip(f"no Cortex-M4 toolchain/emulator ({', '.join(missing)}): apt-get install -y "
                    + " ".join(APT_PACKAGES))
    path = checkpoint_paths(chain.runs[DEVICE[name]])[0]
    _, ck, model, spec = load_fixed_point(path, integer=True)
    rep = export_c(path, tmp_path / "c", measure=False)
    xq = IntegerReference(model, spec).quantize_input(
        heldout_windows(ck, features_for_checkpoint(ck, chain.cache_root)).x[:M4_WINDOWS])
    result = {}

    def run():
        result.update(measure_target(model, spec, tmp_path / "c", xq))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert result["mismatches"] == 0
    benchmark.extra_info.update({
        "step": f"m4-{name}", "measure": "cortex-m4", "source": "chain", "chain": rep["chain"],
        "label": f"Cortex-M4 {rep['chain']}", "windows_timed": len(xq),
        "data": chain.data, **{k: v for k, v in result.items() if k != "stack_frames_static"}})
