"""An int_mfcc model end to end on the CLI: export-c writes the classifier C, `gclf predict --engine c` runs it
from PCM and agrees with `--engine int` on every file, and `gclf predict -` reads a WAV from standard input."""
import io
import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from gclf.cli import cli
from gclf.errors import GclfError


@pytest.fixture(scope="module")
def int_q8(synth_corpus, tmp_path_factory, cc):
    tmp = tmp_path_factory.mktemp("intq8")
    cache, run = str(tmp / "pkl"), str(tmp / "run")
    r = CliRunner().invoke(cli, ["train", "--data", str(synth_corpus), "--cache", cache, "--out", run,
                                 "--frontend", "int", "--folds", "2", "--epochs", "2", "--no-final", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    r = CliRunner().invoke(cli, ["quantize", "--model", run, "--bits", "8", "--cache", cache, "--out", run + "-q8",
                                 "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads(r.stdout)["bit_exact_mismatches"] == 0
    return run + "-q8", tmp


def test_predict_engine_c_from_pcm_agrees_with_the_integer_reference(int_q8, synth_corpus):
    model, _ = int_q8
    files = [str(f) for f in sorted(synth_corpus.rglob("*.flac"))[:6]]
    out = {}
    for engine in ("int", "c"):
        r = CliRunner().invoke(cli, ["predict", *files, "--model", model, "--engine", engine, "--json"])
        assert r.exit_code == 0, (r.output, r.exception)
        out[engine] = json.loads(r.stdout)
    for a, b in zip(out["int"], out["c"]):
        assert a["label"] == b["label"] and a["windows"] == b["windows"]
        assert a["probabilities"] == b["probabilities"]


def test_predict_reads_a_wav_from_stdin(int_q8, synth_corpus):
    model, _ = int_q8
    f = sorted(synth_corpus.rglob("*.flac"))[0]
    audio, sr = sf.read(str(f), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="WAV", subtype="PCM_16")
    r = CliRunner().invoke(cli, ["predict", "-", "--model", model, "--json"], input=buf.getvalue())
    assert r.exit_code == 0, (r.output, r.exception)
    r2 = CliRunner().invoke(cli, ["predict", str(f), "--model", model, "--json"])
    got, want = json.loads(r.stdout)[0], json.loads(r2.stdout)[0]
    assert got["file"] == "-" and got["label"] == want["label"] and got["probabilities"] == want["probabilities"]


def test_export_c_of_an_int_model_holds_the_classifier(int_q8, cc):
    model, tmp = int_q8
    out = tmp / "export"
    r = CliRunner().invoke(cli, ["export-c", "--model", model, "--out", str(out), "--prefix", "spk_", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    names = sorted(p.name for p in out.glob("*.[ch]"))
    assert names == sorted(f"spk_{n}" for n in ("model.c", "model.h", "frontend.c", "frontend.h",
                                                 "classifier.c", "classifier.h"))
    text = "".join((out / n).read_text() for n in names)
    assert "gclf_infer" not in text and "spk_cl_push" in text
    state = json.loads(r.stdout)["classifier"]["stream_state_bytes"]
    main = tmp / "sizeof.c"
    main.write_text('#include <stdio.h>\n#include "spk_classifier.h"\n'
                    'int main(void) { printf("%u\\n", (unsigned)sizeof(spk_cl_stream_t)); return 0; }\n')
    import subprocess

    subprocess.run([cc, "-std=c99", "-I", str(out), "-o", str(tmp / "sizeof"), str(main)], check=True)
    assert int(subprocess.run([str(tmp / "sizeof")], capture_output=True, text=True).stdout) == state
    assert f"RAM: {state} bytes per spk_cl_stream_t" in (out / "spk_classifier.h").read_text()
    bad = CliRunner().invoke(cli, ["export-c", "--model", model, "--out", str(tmp / "e2"), "--prefix", "9x"])
    assert isinstance(bad.exception, GclfError) and "prefix" in str(bad.exception)
    assert not (tmp / "e2").exists() or not any((tmp / "e2").glob("*.c"))


def test_export_weights_of_an_int_model_holds_the_front_end_and_norm(int_q8):
    from gclf.backends.intref import IntegerReference
    from gclf.backends.weights import load_export
    from gclf.checkpoint import load_fixed_point
    from gclf.frontend import FrontendConfig, tables
    from gclf.frontend.norm import model_norm_params

    model_dir, tmp = int_q8
    out = tmp / "weights"
    r = CliRunner().invoke(cli, ["export-weights", "--model", model_dir, "--out", str(out), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    man = json.loads((out / "manifest.json").read_text())
    entries = {e["name"]: e for e in man["tensors"]}
    assert entries["frontend.window"]["q_format"] == ["Q0.15"] and entries["frontend.dct"]["frac"] == [20]
    assert entries["norm.multiplier"]["frac"] == [31] and man["frontend"]["norm"]["input_frac"] == 8
    got = load_export(out)
    t = tables(FrontendConfig())
    np.testing.assert_array_equal(got["frontend.mel"], t.mel)
    np.testing.assert_array_equal(got["frontend.log2_table"], t.log_table)
    _, _, model, spec = load_fixed_point(model_dir, integer=True)
    p = model_norm_params(model, IntegerReference(model, spec).plan[model.graph.norm.name].out_fmt)
    np.testing.assert_array_equal(got["norm.multiplier"], p.mult)
    np.testing.assert_array_equal(got["norm.bias"], p.bias)


def test_onnx_export_says_it_does_not_cover_the_front_end(int_q8):
    model_dir, tmp = int_q8
    r = CliRunner().invoke(cli, ["export-onnx", "--model", model_dir, "--out", str(tmp / "onnx"), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "not covered: the front-end" in r.output


@pytest.mark.parametrize("frontend", ["int-running"])
def test_a_model_on_another_floor_runs_the_same_in_c(synth_corpus, tmp_path, cc, frontend):
    """The checkpoint carries its floor: quantize, the integer reference and the generated C from PCM all
    compute the running floor (predict --engine c agrees with --engine int), and the export says which."""
    cache, run = str(tmp_path / "pkl"), str(tmp_path / "run")
    r = CliRunner().invoke(cli, ["train", "--data", str(synth_corpus), "--cache", cache, "--out", run,
                                 "--frontend", frontend, "--folds", "2", "--epochs", "1", "--no-final", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    r = CliRunner().invoke(cli, ["quantize", "--model", run, "--bits", "8", "--cache", cache, "--out", run + "-q8",
                                 "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert json.loads(r.stdout)["bit_exact_mismatches"] == 0
    files = [str(f) for f in sorted(synth_corpus.rglob("*.flac"))[:4]]
    out = {}
    for engine in ("int", "c"):
        r = CliRunner().invoke(cli, ["predict", *files, "--model", run + "-q8", "--engine", engine, "--json"])
        assert r.exit_code == 0, (r.output, r.exception)
        out[engine] = json.loads(r.stdout)
    assert [a["probabilities"] for a in out["int"]] == [b["probabilities"] for b in out["c"]]
    r = CliRunner().invoke(cli, ["export-c", "--model", run + "-q8", "--out", str(tmp_path / "e"), "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "running peak" in (tmp_path / "e" / "gclf_frontend.h").read_text()
