"""Generated C99 inference: compiled with the system compiler, it reproduces the integer reference bit for bit."""
import json
import re
import subprocess

import click
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.approx.schemes import get_approx
from gclf.backends.c.build import CFLAGS, build_harness, c_sizes, compile_object, run_harness
from gclf.checkpoint import load_fixed_point
from gclf.backends.c.generate import (SEGMENT_FN, activation_c, export_c, generate_c,
                                      primitives_c)
from gclf.backends.intref import IntegerReference
from gclf.backends.weights import c_array
from gclf.checkpoint import (build_float_model, chain_of, checkpoint_paths, load_checkpoint, make_checkpoint,
                             save_checkpoint)
from gclf.cli.weights_cmds import export_c as export_c_cmd
from gclf.data.features import FeatureConfig
from gclf.data.pipeline import heldout_windows
from gclf.errors import GclfError
from gclf.graph.spec import QuantConfig
from gclf.quant.formats import activation_fixed
from gclf.quant.primitives import round_shift, saturate
from gclf.quant.qformat import QFormat
from gclf.steps.api import quantize
from gclf.steps.quantize import quantize_one

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
PRELUDE = "#include <inttypes.h>\n#include <stdint.h>\n#include <stdio.h>\n"
STRICT = (*CFLAGS, "-Wpedantic", "-Wconversion")      # the generated model must pass these too



@pytest.fixture(scope="module")
def utts(synth_features):
    return synth_features[0]


def _run_c(src: str, tmp_path, cc, flags=CFLAGS) -> np.ndarray:
    (tmp_path / "t.c").write_text(src)
    r = subprocess.run([cc, *flags, "-o", str(tmp_path / "t"), str(tmp_path / "t.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:2000]
    out = subprocess.run([str(tmp_path / "t")], check=True, capture_output=True, text=True).stdout
    return np.array([int(v) for v in out.split()], dtype=np.int64)


# ---- primitives and activation tables ----------------------------------------------------------------------
@pytest.mark.parametrize("rounding", ["half_up", "half_away", "half_even", "floor"])
def test_shift_and_requantize_match_the_reference(rounding, tmp_path, cc):
    rng = np.random.default_rng(1)
    ties = [(2 * k + 1) << (s - 1) for s in range(1, 24) for k in range(-3, 3)]
    xs = np.array([*rng.integers(INT64_MIN, INT64_MAX, 400, endpoint=True), *rng.integers(-5000, 5000, 400), *ties,
                   INT64_MIN, INT64_MAX, -1, 0, 1], dtype=np.int64)
    ss = np.concatenate([rng.integers(1, 62, len(xs) - len(ties) - 5, endpoint=True),
                         [s for s in range(1, 24) for _ in range(6)], [1, 62, 1, 5, 62]])
    acc = rng.integers(-2 ** 40, 2 ** 40, 600)
    rs = rng.integers(-20, 40, 600, endpoint=True)
    fmts = [QFormat(int(w), 0) for w in rng.integers(2, 32, 600, endpoint=True)]
    lo, hi = np.array([f.min_int for f in fmts]), np.array([f.max_int for f in fmts])
    want = np.concatenate([round_shift(xs, ss, rounding),
                           [saturate(round_shift(a, s, rounding), f)[0] for a, s, f in zip(acc, rs, fmts)]])
    arrays = "\n".join(c_array(t, n, v) for t, n, v in (("int64_t", "xs", xs), ("int8_t", "ss", ss),
                                                        ("int64_t", "acc", acc), ("int8_t", "rs", rs),
                                                        ("int64_t", "lo", lo), ("int64_t", "hi", hi)))
    main = ("int main(void)\n{\n    for (unsigned i = 0; i < sizeof xs / sizeof xs[0]; i++)\n"
            '        printf("%" PRId64 "\\n", gclf_shr_round(xs[i], ss[i]));\n'
            "    for (unsigned i = 0; i < sizeof acc / sizeof acc[0]; i++)\n"
            '        printf("%" PRId64 "\\n", gclf_requant(acc[i], rs[i], lo[i], hi[i]));\n    return 0;\n}\n')
    got = _run_c(PRELUDE + primitives_c(rounding) + arrays + "\n" + main, tmp_path, cc)
    assert np.array_equal(got, want)


SCHEMES = ["exact", "hard", "plan", "pwl16", "pwl20", "lut64", "lut256"]
FORMATS = [(-2, 7), (0, 6), (4, 7), (9, 14)]      # (in_frac, out_frac)


def test_activation_functions_match_fixed(tmp_path, cc):
    q = np.array([*range(-2 ** 11, 2 ** 11 + 1), 2 ** 20, -2 ** 20, 2 ** 30, -2 ** 30, 2 ** 40, -2 ** 40])
    fns, want = [], []
    for i, (name, func, (fin, fout)) in enumerate((n, f, fm) for n in SCHEMES for f in ("sigmoid", "tanh") for fm in FORMATS):
        ap = get_approx(name, func)
        text, _, _ = activation_c(f"f{i}", ap, fin, fout)
        fns.append(text)
        want.append(activation_fixed(ap, q, fin, fout))
    calls = "\n".join(f'        printf("%" PRId64 "\\n", f{i}(q[j]));' for i in range(len(fns)))
    main = (f"int main(void)\n{{\n    (void)gclf_requant;\n"
            f"    for (unsigned j = 0; j < sizeof q / sizeof q[0]; j++) {{\n{calls}\n    }}\n    return 0;\n}}\n")
    src = PRELUDE + primitives_c("half_up") + SEGMENT_FN + "\n".join(fns) + c_array("int64_t", "q", q) + "\n" + main
    got = _run_c(src, tmp_path, cc).reshape(len(q), len(fns)).T
    assert np.array_equal(got, np.array(want))


# ---- whole models --------------------------------------------------------------------------------------------
def _assert_bit_exact(path, utts, tmp_path, cc, flags=STRICT) -> dict:
    """Held-out windows and saturating random windows: every C logit equals the integer reference's."""
    rep = export_c(path, tmp_path / "c", measure=False)
    _, ck, model, spec = load_fixed_point(path, integer=True)
    ref = IntegerReference(model, spec)
    xq = ref.quantize_input(heldout_windows(ck, utts).x)
    f = ref.plan[ref.graph.norm.name].out_fmt
    extreme = np.random.default_rng(0).integers(f.min_int, f.max_int, (6, *xq.shape[1:]), endpoint=True)
    extreme[0], extreme[1] = f.max_int, f.min_int
    ref.overflows.clear()
    xq = np.concatenate([xq, extreme])
    want = ref.run_int(xq)
    got = run_harness(build_harness(tmp_path / "c", tmp_path / "h", cc, flags), xq)
    assert got.shape == want.shape and np.array_equal(got, want), int((got != want).any(axis=1).sum())
    assert sum(ref.overflows.values()) > 0             # the saturation paths ran too
    return rep


@pytest.mark.parametrize("chain", ["q8", "c8aq8"])
def test_fixture_chains_are_bit_exact(chain_runs, chain, utts, tmp_path, cc):
    for i, p in enumerate(checkpoint_paths(chain_runs[chain])):
        rep = _assert_bit_exact(p, utts, tmp_path / str(i), cc)
    assert rep["acc_ctype"] == "int32_t"
    if chain == "c8aq8":
        assert rep["activations"] == {"gclf_lstm_sigmoid_gates": "pwl", "gclf_lstm_tanh_gates": "pwl",
                                      "gclf_lstm_tanh_cell": "pwl"}
        assert rep["circulant_layers"] == ["lstm.ih", "lstm.hh", "fc1", "fc2", "fc3"]
        text = (tmp_path / "0" / "c" / "gclf_model.c").read_text()
        assert "gclf_lstm_hh_weight[128]" in text and "gclf_fc1_weight[640]" in text   # (p, q, k), not dense


@pytest.mark.parametrize("base,cfg", [("float", QuantConfig(bits=16)), ("float", QuantConfig(bits=4, act_bits=8)),
                                      ("float", QuantConfig(bits=6, per_channel=True, rounding="half_even")),
                                      ("c8a", QuantConfig(bits=12, act_bits=10, rounding="floor")),
                                      ("c8a", QuantConfig(bits=3, act_bits=5, rounding="half_away"))])
def test_other_widths_and_roundings_are_bit_exact(chain_runs, base, cfg, utts, tmp_path, cc):
    ck = load_checkpoint(checkpoint_paths(chain_runs[base])[0])
    new, _ = quantize_one(ck, utts, cfg, check_exact=False)
    path = save_checkpoint(tmp_path / "fold1.pt", new)
    rep = _assert_bit_exact(path, utts, tmp_path, cc)
    assert rep["acc_ctype"] == ("int64_t" if cfg.bits == 16 else "int32_t")


def test_no_undefined_behaviour_under_ubsan(chain_runs, utts, tmp_path, cc):
    flags = (*STRICT, "-fsanitize=undefined", "-fno-sanitize-recover=all")
    probe = subprocess.run([cc, *flags, "-x", "c", "-o", str(tmp_path / "p"), "-"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the C compiler has no -fsanitize=undefined")
    _assert_bit_exact(checkpoint_paths(chain_runs["c8aq8"])[0], utts, tmp_path, cc, flags)


def test_generated_c_is_integer_only_and_allocation_free(chain_runs, tmp_path):
    export_c(chain_runs["q8"], tmp_path, measure=False)
    for name in ("gclf_model.c", "gclf_model.h"):
        code = re.sub(r"/\*.*?\*/", "", (tmp_path / name).read_text(), flags=re.S)
        for word in ("float", "double", "malloc", "calloc", "free", "alloca", "math.h", "stdlib.h"):
            assert not re.search(rf"\b{re.escape(word)}\b", code), (name, word)
    assert "void gclf_infer(const gclf_input_t x[GCLF_IN_CH][GCLF_IN_T], int32_t logits[GCLF_N_CLASSES]);" in \
           (tmp_path / "gclf_model.h").read_text()


# ---- sizes, errors, CLI ------------------------------------------------------------------------------------
def test_c_sizes_of_the_object(chain_runs, tmp_path, cc):
    rep = export_c(chain_runs["c8aq8"], tmp_path, measure=False)
    s = c_sizes(compile_object(tmp_path / "gclf_model.c", tmp_path / "m.o", cc))
    assert s["text"] + s["data"] >= s["code"] + s["rodata"] > 0 and s["bss"] >= rep["buffer_bytes"]
    assert s["rodata"] >= sum(rep["array_bytes"].values()) and s["static_ram"] >= s["bss"]
    assert s["stack"] is None or s["stack"] < 4096


def test_float_and_weights_only_checkpoints_are_errors(chain_runs, tmp_path):
    with pytest.raises(GclfError, match="is a float checkpoint: run `gclf quantize` first"):
        export_c(chain_runs["float"], tmp_path)
    ck = load_checkpoint(checkpoint_paths(chain_runs["float"])[0])
    model = build_float_model(ck)
    fixed = quantize(model, QuantConfig(bits=8, weights_only=True))
    with pytest.raises(GclfError, match="weights-only"):
        generate_c(model, fixed.spec)
    wo = save_checkpoint(tmp_path / "wo.pt", make_checkpoint(model, FeatureConfig.from_dict(ck["feature_config"]),
                                                             chain_of(ck) + [fixed.step()], ck["split"], None))
    with pytest.raises(GclfError, match="weights-only"):
        export_c(wo, tmp_path / "wo")


def test_cli_json_sizes_and_verify(chain_runs, tmp_path, cc):
    args = ["--model", str(chain_runs["c8aq8"]), "--out", str(tmp_path), "--json", "--verify"]
    r = CliRunner().invoke(export_c_cmd, args)
    assert r.exit_code == 0, (r.output, r.exception)
    j = json.loads(r.stdout)
    assert j["verify"]["mismatches"] == 0 and j["verify"]["windows"] > 0
    assert {"text", "data", "bss", "stack", "static_ram"} <= set(j["sizes"]) and j["sizes"]["text"] > 0
    r = CliRunner().invoke(export_c_cmd, ["--model", str(chain_runs["q8"]), "--out", str(tmp_path / "q")])
    assert r.exit_code == 0 and "static RAM" in r.output and (tmp_path / "q" / "gclf_model.h").is_file()
    assert all(p.help for p in export_c_cmd.params if isinstance(p, click.Option))


def test_cortex_m4_target_without_its_tools_is_a_one_line_error(chain_runs, tmp_path, monkeypatch, capsys):
    """No arm-none-eabi-gcc / qemu-system-arm: through main(), exit status 2, one line naming the apt-get
    packages, and nothing written."""
    import gclf.backends.c.target as target
    from gclf.cli import main

    monkeypatch.setattr(target.shutil, "which", lambda name: None)
    monkeypatch.setattr("sys.argv", ["gclf", "export-c", "--model", str(chain_runs["q8"]), "--out",
                                     str(tmp_path / "m4"), "--target", "cortex-m4", "--verify"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm" in err
    assert not (tmp_path / "m4").exists()
