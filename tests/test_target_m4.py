"""The generated C on an emulated Cortex-M4 (arm-none-eabi-gcc, qemu-system-arm -M mps2-an386): every logit
bit-exact with the integer reference, for W8/A8, W4/A8 and the full chain, with the DSP (SMLAD) kernels and
the portable C99 ones; sizes and instruction counts are reported (their values are benchmarks, not asserted)."""
import json
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gclf.backends.c.generate import generate_c
from gclf.backends.c.target import APT_PACKAGES, TargetConfig, measure_target, missing_tools
from gclf.backends.intref import IntegerReference
from gclf.backends.torch_float import GraphNet
from gclf.checkpoint import checkpoint_paths, load_fixed_point, load_checkpoint, save_checkpoint
from gclf.cli.weights_cmds import export_c as export_c_cmd
from gclf.data.pipeline import heldout_windows
from gclf.graph.ops import Conv1d, Flatten, Graph, Linear, MaxPool, Norm
from gclf.graph.spec import QuantConfig
from gclf.steps.api import quantize
from gclf.steps.quantize import quantize_one

MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"no Cortex-M4 toolchain/emulator ({', '.join(MISSING)}): "
                                                      f"apt-get install -y {' '.join(APT_PACKAGES)}")
DIVISION = ("__aeabi_ldivmod", "__aeabi_uldivmod", "__aeabi_idiv", "__aeabi_idivmod", "__aeabi_uidiv",
            "__divdi3", "__moddi3")


@pytest.fixture(scope="module")
def utts(synth_features):
    return synth_features[0]


def _windows(ref, x) -> np.ndarray:
    """The quantized held-out windows plus saturating extremes (every saturation path runs)."""
    xq = ref.quantize_input(x)
    f = ref.plan[ref.graph.norm.name].out_fmt
    extreme = np.random.default_rng(0).integers(f.min_int, f.max_int, (3, *xq.shape[1:]), endpoint=True)
    extreme[0], extreme[1] = f.max_int, f.min_int
    return np.concatenate([xq, extreme])


def _check(model, spec, x, tmp_path, dsp=True) -> dict:
    files, rep = generate_c(model, spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    ref = IntegerReference(model, spec)
    r = measure_target(model, spec, tmp_path, _windows(ref, x), TargetConfig(dsp=dsp))
    assert r["mismatches"] == 0 and r["windows"] == len(x) + 3
    assert not set(r["library_calls"]) & set(DIVISION), r["library_calls"]
    assert r["flash"] >= sum(rep["array_bytes"].values()) and r["bss"] >= rep["buffer_bytes"]
    assert 0 < r["stack"] < 1024 and r["ram"] == r["bss"] + r["rw_data"] + r["stack"]
    assert r["macs"] == rep["macs"] and r["instructions_min"] > r["macs"] / 4
    assert r["instructions_per_tick"] > 0 and r["instructions_max"] - r["instructions_min"] < r["instructions_min"]
    return r


def _fold1(run, utts):
    _, ck, model, spec = load_fixed_point(checkpoint_paths(run)[0], integer=True)
    return model, spec, heldout_windows(ck, utts).x[:24]


@pytest.mark.parametrize("chain", ["q8", "c8aq8"])
def test_w8a8_and_the_full_chain_are_bit_exact_on_the_m4(chain_runs, chain, utts, tmp_path):
    model, spec, x = _fold1(chain_runs[chain], utts)
    r = _check(model, spec, x, tmp_path)
    assert r["dsp"] and "-mcpu=cortex-m4" in r["cflags"]


def test_w4a8_is_bit_exact_on_the_m4(chain_runs, utts, tmp_path):
    ck = load_checkpoint(checkpoint_paths(chain_runs["float"])[0])
    new, _ = quantize_one(ck, utts, QuantConfig(bits=4, act_bits=8), check_exact=False)
    path = save_checkpoint(tmp_path / "fold1.pt", new)
    _, ck, model, spec = load_fixed_point(path, integer=True)
    (tmp_path / "c").mkdir()
    _check(model, spec, heldout_windows(ck, utts).x[:24], tmp_path / "c")


def test_portable_kernels_agree_with_the_dsp_ones(chain_runs, utts, tmp_path):
    """-DGCLF_NO_DSP on the same CPU: the same logits (both equal the reference), through other instructions."""
    model, spec, x = _fold1(chain_runs["q8"], utts)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    dsp, portable = _check(model, spec, x[:6], tmp_path / "a"), _check(model, spec, x[:6], tmp_path / "b", dsp=False)
    assert not portable["dsp"] and "-DGCLF_NO_DSP" in portable["cflags"]
    assert dsp["instructions_min"] != portable["instructions_min"]


@pytest.mark.parametrize("opt", ["-O0", "-Os"])
def test_other_optimisation_levels_and_cpus(chain_runs, utts, tmp_path, opt):
    """Unoptimised builds take the SMLAD intrinsics instead of the inline-assembly loop (too few registers):
    bit-exact too; the C also compiles for a Cortex-M0 (no DSP) and a Cortex-M7 with the hard-float ABI."""
    from dataclasses import replace

    model, spec, x = _fold1(chain_runs["q8"], utts)
    files, _ = generate_c(model, spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cfg = replace(TargetConfig(), cflags=(*TargetConfig().cflags[:-1], opt))
    r = measure_target(model, spec, tmp_path, IntegerReference(model, spec).quantize_input(x[:4]), cfg)
    assert r["mismatches"] == 0 and opt in r["cflags"]
    for cpu in (["-mcpu=cortex-m0", "-mthumb"], ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"]):
        p = subprocess.run([cfg.cc, *cpu, *cfg.cflags[:-1], opt, "-c", str(tmp_path / "gclf_model.c"), "-o",
                            str(tmp_path / "m.o")], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[:1000]


def test_odd_shapes_and_wide_accumulators_on_the_m4(tmp_path):
    """Odd patch length, odd channel and step counts (every tail of the 2 x 2 blocks), a strided conv; and a
    W16/A16 spec whose accumulators are int64_t (the generic kernels, 64-bit shifts on a 32-bit CPU)."""
    ops = (Norm("norm", 5), Conv1d("c1", 5, 7, 3, stride=1), Conv1d("c2", 7, 5, 3, stride=2, relu=False),
           MaxPool("p", 2), Flatten("f"), Linear("out", 5 * 5, 3))
    graph = Graph("odd", (5, 25), ops, ("a", "b", "c"))
    torch.manual_seed(3)
    net = GraphNet(graph).eval()
    x = torch.randn(12, 5, 25, generator=torch.Generator().manual_seed(3))
    for i, cfg in enumerate((QuantConfig(bits=8, rounding="half_even"), QuantConfig(bits=16))):
        (tmp_path / str(i)).mkdir()
        spec = quantize(net, cfg, x).spec
        r = _check(net, spec, x, tmp_path / str(i))
        assert generate_c(net, spec)[1]["paired_products"] == (i == 0)
        assert r["instructions_per_inference"] > 0


def test_arithmetic_shift_check_fails_where_shifts_would_not_floor(tmp_path):
    """The generated C states its one assumption (>> of a negative value floors) as a compile-time check; the
    same check written for the opposite answer must stop the compilation on this compiler."""
    cfg = TargetConfig()
    src = "#include <stdint.h>\ntypedef char check[((int32_t)-5 >> 1) == %s ? 1 : -1];\n"
    for want, ok in (("-3", True), ("-2", False)):
        (tmp_path / "s.c").write_text(src % want)
        r = subprocess.run([cfg.cc, *cfg.cpu_flags, "-c", str(tmp_path / "s.c"), "-o", str(tmp_path / "s.o")],
                           capture_output=True, text=True)
        assert (r.returncode == 0) == ok, r.stderr


def test_cli_target_cortex_m4(chain_runs, tmp_path):
    args = ["--model", str(chain_runs["c8aq8"]), "--out", str(tmp_path / "m4"), "--target", "cortex-m4",
            "--verify", "--json"]
    r = CliRunner().invoke(export_c_cmd, args)
    assert r.exit_code == 0, (r.output, r.exception)
    t = json.loads(r.stdout)["target"]
    assert t["mismatches"] == 0 and t["windows"] > 0 and t["instructions_per_mac"] > 0
    assert {"flash", "ram", "stack", "instructions_per_inference", "instructions_error"} <= set(t)
    r = CliRunner().invoke(export_c_cmd, ["--model", str(chain_runs["q8"]), "--out", str(tmp_path / "b"),
                                          "--target", "cortex-m4"])
    assert r.exit_code == 0 and "cortex-m4" in r.output and "flash" in r.output
