"""Fixed-point weight export: every file reads back exactly at every width, checkpoints, errors, the CLI."""
import json
import math
import subprocess

import click
import numpy as np
import pytest
from click.testing import CliRunner

from gclf.checkpoint import build_float_model, checkpoint_paths, load_checkpoint
from gclf.cli.weights_cmds import export_weights as export_weights_cmd
from gclf.errors import GclfError
from gclf.backends.c.build import CFLAGS, find_cc
from gclf.backends.weights import export_tensors, export_weights, load_export, read_header, read_npz
from gclf.backends.fixed import integer_weights
from gclf.checkpoint import quant_of
from gclf.quant.formats import WeightQ

WIDTHS = list(range(2, 17)) + [24, 32]


def _tensors(bits: int) -> dict[str, WeightQ]:
    """Random integers over the whole signed range, with both extremes, -1 and 0 in every tensor."""
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def ints(*shape):
        v = rng.integers(lo, hi, size=shape, endpoint=True)
        v.reshape(-1)[:4] = [lo, hi, -1, 0]
        return v.astype(np.int64)

    return {"conv1.weight": WeightQ(ints(3, 2, 4), bits, np.array([1]), "conv"),
            "conv1.bias": WeightQ(ints(4), bits, np.array([0, bits + 2, -3, 5]), "bias"),   # negative frac too
            "lstm.ih.weight": WeightQ(ints(2, 1, 4), bits, np.array([0]), "circulant"),
            "fc1.weight": WeightQ(ints(5, 7), bits, np.array([0, -2, 3, 1, 1]), "dense")}


def _c_values(header, symbols, tmp_path, cc):
    """The arrays as the C compiler itself reads them: a program that prints every value."""
    lines = [f'#include "{header.name}"', "#include <inttypes.h>", "#include <stdio.h>", "int main(void)", "{"]
    for s in symbols:
        lines.append(f'    for (unsigned i = 0; i < sizeof {s} / sizeof {s}[0]; i++) printf("%" PRId64 "\\n", '
                     f"(int64_t){s}[i]);")
    lines += ["    return 0;", "}"]
    (tmp_path / "read.c").write_text("\n".join(lines) + "\n")
    subprocess.run([cc, *CFLAGS, "-pedantic", "-I", str(header.parent), "-o", str(tmp_path / "read"),
                    str(tmp_path / "read.c")], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "read")], check=True, capture_output=True, text=True).stdout
    return np.array([int(v) for v in out.split()], dtype=np.int64)


@pytest.mark.parametrize("bits", WIDTHS)
def test_every_file_reads_back_exactly(bits, tmp_path):
    tensors = _tensors(bits)
    rep = export_tensors(tensors, tmp_path / "w", "m")
    out = tmp_path / "w"
    for source in ("npz", "mem", "header"):
        back = load_export(out, source)
        for name, wq in tensors.items():
            assert back[name].shape == wq.ints.shape and np.array_equal(back[name], wq.ints), (source, name)
    man = json.loads((out / "manifest.json").read_text())
    npz = read_npz(out / "m.npz")
    ctype = f"int{8 if bits <= 8 else 16 if bits <= 16 else 32}_t"
    for e in man["tensors"]:
        wq = tensors[e["name"]]
        assert e["c_type"] == ctype and npz[e["name"]].dtype == np.dtype(ctype[:-2])
        assert e["frac"] == [int(f) for f in wq.frac] == list(npz[e["name"] + ".frac"])
        assert e["scale"] == [2.0 ** -f for f in e["frac"]] and e["shape"] == list(wq.ints.shape)
        assert (e["min"], e["max"]) == (int(wq.ints.min()), int(wq.ints.max()))
        lines = (out / e["mem"]).read_text().splitlines()
        assert len(lines) == wq.ints.size and {len(s) for s in lines} == {math.ceil(bits / 4)}
    assert set(rep["bytes"]) == {"header", "mem", "npz", "manifest"} and all(v > 0 for v in rep["bytes"].values())
    header = (out / "m.h").read_text()
    assert "#ifndef M_WEIGHTS_H" in header and f"#define M_CONV1_WEIGHT_FRAC {bits - 2}" in header
    assert np.array_equal(read_header(out / "m.h")["m_fc1_weight_frac"], tensors["fc1.weight"].frac)
    cc = find_cc()
    if cc:   # what a C compiler reads from the header is what was written
        syms = [e["symbol"] for e in man["tensors"]]
        want = np.concatenate([tensors[e["name"]].ints.ravel() for e in man["tensors"]])
        assert np.array_equal(_c_values(out / "m.h", syms, tmp_path, cc), want)


def test_mem_is_twos_complement_hex():
    from gclf.backends.weights import mem_text

    assert mem_text(np.array([-1, 0, 3, -4]), 3) == "7\n0\n3\n4\n"
    assert mem_text(np.array([-128, 127, -1]), 8) == "80\n7f\nff\n"
    assert mem_text(np.array([-2 ** 31, -1]), 32) == "80000000\nffffffff\n"
    with pytest.raises(ValueError):
        mem_text(np.array([4]), 3)


@pytest.mark.parametrize("chain", ["q8", "c8aq8"])
def test_checkpoint_export_matches_the_integer_reference(chain_runs, chain, tmp_path):
    rep = export_weights(chain_runs[chain], tmp_path)
    ck = load_checkpoint(checkpoint_paths(chain_runs[chain])[0])
    model, spec = build_float_model(ck), quant_of(ck).spec
    want, _ = integer_weights(model, spec)
    man = json.loads((tmp_path / "manifest.json").read_text())
    for source in ("npz", "mem", "header"):
        back = load_export(tmp_path, source)
        assert set(back) == set(want)
        for name, wq in want.items():
            assert np.array_equal(back[name], wq.ints)
    circ = {e["name"]: e for e in man["tensors"] if e["kind"] == "circulant"}
    assert bool(circ) == (chain == "c8aq8")
    for name, e in circ.items():   # the stored (p, q, k) vectors, not the materialised matrix
        out_f, in_f = e["dense_shape"]
        assert len(e["shape"]) == 3 and e["shape"][2] == e["block"] == 8
        assert math.prod(e["shape"]) * 8 >= out_f * in_f > math.prod(e["shape"])
    assert man["chain"] == rep["chain"] and man["quantize"]["bits"] == 8
    assert {k: v["frac"] for k, v in man["activations"].items()} == {k: f.frac for k, f in spec.sites().items()}
    assert man["lstm_sigmoid"] == spec.sigmoid and man["sigmoid_output"]["q_format"].startswith("UQ1.7")
    # graph order, each op's weights before its bias (the LSTM's two matrices, then its folded bias)
    assert [e["name"] for e in man["tensors"]][:6] == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                                       "lstm.ih.weight", "lstm.hh.weight"]
    assert man["graph"]["arch"] == "cnn_lstm"


def test_float_checkpoint_is_a_one_line_error(trained_run, tmp_path):
    out, _ = trained_run
    with pytest.raises(GclfError, match=r"fold1\.pt is a float checkpoint: run `gclf quantize` first") as e:
        export_weights(out, tmp_path)
    assert "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())


def test_cli_json_and_help(chain_runs, tmp_path):
    r = CliRunner().invoke(export_weights_cmd, ["--model", str(chain_runs["c8aq8"]), "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["tensors"] == 13 and (tmp_path / "manifest.json").is_file() and len(j["files"]["mem"]) == 13
    r = CliRunner().invoke(export_weights_cmd, ["--model", str(chain_runs["c8aq8"]), "--out", str(tmp_path / "t")])
    assert r.exit_code == 0 and "exported 13 tensors" in r.output
    r = CliRunner().invoke(export_weights_cmd, ["--model", str(chain_runs["float"]), "--out", str(tmp_path / "f")])
    assert isinstance(r.exception, GclfError)
    assert all(p.help for p in export_weights_cmd.params if isinstance(p, click.Option))


def test_exports_default_to_a_folder_per_run_and_never_overwrite_another(chain_runs, tmp_path, monkeypatch):
    """Two runs exported with the default --out land in two folders; exporting another run into a folder that
    holds one's files is refused (nothing written) unless --force; re-exporting the same run is fine."""
    from gclf.cli.weights_cmds import export_c as export_c_cmd

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for chain in ("q8", "c8aq8"):
        r = runner.invoke(export_weights_cmd, ["--model", str(chain_runs[chain]), "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["out"] == f"weights_data/{chain}-fold1"
    before = (tmp_path / "weights_data/q8-fold1/manifest.json").read_bytes()
    r = runner.invoke(export_weights_cmd, ["--model", str(chain_runs["c8aq8"]), "--out", "weights_data/q8-fold1"])
    assert isinstance(r.exception, GclfError) and "--force" in str(r.exception)
    assert (tmp_path / "weights_data/q8-fold1/manifest.json").read_bytes() == before
    r = runner.invoke(export_weights_cmd, ["--model", str(chain_runs["q8"]), "--out", "weights_data/q8-fold1"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(export_weights_cmd, ["--model", str(chain_runs["c8aq8"]), "--out", "weights_data/q8-fold1",
                                           "--force", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["chain"].startswith("circulant")
    r = runner.invoke(export_c_cmd, ["--model", str(chain_runs["q8"]), "--no-measure", "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "export/q8-fold1/gclf_model.c").is_file()
    r = runner.invoke(export_c_cmd, ["--model", str(chain_runs["c8aq8"]), "--no-measure", "--out", "export/q8-fold1"])
    assert isinstance(r.exception, GclfError) and "--force" in str(r.exception)
