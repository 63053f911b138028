"""The second architecture, built from the same ops: a strided 1-D CNN on raw 16 kHz audio, carried through
every step and export of the CLI on synthetic speech, bit-exact wherever an integer path exists."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.checkpoint import chain_of, checkpoint_paths, graph_of, load_checkpoint
from gclf.cli import cli


def run(args):
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def raw_runs(synth_corpus, tmp_path_factory):
    """train --arch raw_conv (2 folds, short), then compress (fc) and quantize W8/A8 of the compressed run."""
    base = tmp_path_factory.mktemp("raw")
    cache = str(base / "pkl")
    out = base / "raw"
    t = json.loads(run(["train", "--arch", "raw_conv", "--data", str(synth_corpus), "--cache", cache, "--out", str(out),
                        "--folds", "2", "--epochs", "4", "--json"]).stdout)
    c = json.loads(run(["compress", "--model", str(out), "--block", "4", "--finetune-epochs", "1", "--cache", cache,
                        "--json"]).stdout)
    q = json.loads(run(["quantize", "--model", str(base / "raw-c4"), "--bits", "8", "--cache", cache,
                        "--json"]).stdout)
    return {"base": base, "cache": cache, "float": out, "c4": base / "raw-c4", "c4q8": base / "raw-c4-q8",
            "train": t, "compress": c, "quantize": q}


def test_trains_on_raw_audio_with_speaker_disjoint_folds(raw_runs):
    t = raw_runs["train"]
    assert t["arch"] == "raw_conv" and len(t["folds"]) == 2
    assert t["accuracy_utterance_mean"] >= 0.5            # synthetic voices, 4 epochs: above chance only
    ck = load_checkpoint(checkpoint_paths(raw_runs["float"])[0])
    assert graph_of(ck).input_kind == "audio" and ck["feature_config"]["kind"] == "audio"
    split = ck["split"]
    assert not set(split["test_speakers"]) & set(split["train_speakers"] + split["val_speakers"])


def test_compress_takes_its_fc_layers_and_quantize_is_bit_exact(raw_runs):
    c, q = raw_runs["compress"], raw_runs["quantize"]
    assert [l["name"] for l in c["folds"][0]["layers"]] == ["fc1", "fc2"]
    assert c["params_after"] < c["params_before"]
    assert q["bit_exact_mismatches"] == 0 and q["weight_bytes_quantized"] < q["weight_bytes_float"] / 3
    assert [s.kind for s in chain_of(load_checkpoint(checkpoint_paths(raw_runs["c4q8"])[0]))] == \
           ["train", "compress", "quantize"]


def test_approx_is_a_no_op_and_says_so(raw_runs):
    r = run(["approx", "--model", str(raw_runs["float"]), "--cache", raw_runs["cache"], "--json"])
    j = json.loads(r.stdout)
    assert j["applied"] is False and "no LSTM" in j["note"]
    assert not (raw_runs["base"] / "raw-a").exists()


def test_exports_onnx_weights_and_bit_exact_c(raw_runs, tmp_path):
    model, cache = str(raw_runs["c4q8"]), raw_runs["cache"]
    o = json.loads(run(["export-onnx", "--model", model, "--out", str(tmp_path / "onnx"), "--cache", cache,
                        "--fold", "1", "--json"]).stdout)
    assert o["form"] == "qdq" and o["agreement"]["held_out"] and o["agreement"]["max_abs_logit_diff"] == 0
    d = json.loads(run(["export-onnx", "--model", model, "--out", str(tmp_path / "onnx"), "--cache", cache,
                        "--json"]).stdout)                                  # default: the run's final.pt
    assert d["path"].endswith("raw-c4-q8-final.onnx") and d["agreement"]["max_abs_logit_diff"] == 0
    w = json.loads(run(["export-weights", "--model", model, "--out", str(tmp_path / "w"), "--json"]).stdout)
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert w["tensors"] == 10 and man["graph"]["arch"] == "raw_conv"
    assert [e["kind"] for e in man["tensors"] if e["name"].startswith("fc")] == ["circulant", "bias"] * 2
    c = json.loads(run(["export-c", "--model", model, "--out", str(tmp_path / "c"), "--verify", "--cache", cache,
                        "--json"]).stdout)
    assert c["verify"]["mismatches"] == 0 and c["verify"]["windows"] > 0
    f = json.loads(run(["export-onnx", "--model", str(raw_runs["float"]), "--out", str(tmp_path / "onnx"),
                        "--cache", cache, "--json"]).stdout)
    assert f["form"] == "float" and max(f["matches_pytorch"].values()) < 1e-4


def test_predict_every_engine_agrees_on_a_raw_model(raw_runs, synth_corpus):
    flac = str(next(synth_corpus.rglob("*.flac")))
    model = str(raw_runs["c4q8"] / "fold1.pt")
    p = {e: json.loads(run(["predict", flac, "--model", model, "--engine", e, "--json"]).stdout)[0]["probabilities"]
         for e in ("int", "c", "onnx")}
    assert np.allclose([p["int"]["F"], p["c"]["F"]], p["onnx"]["F"], atol=1e-4)
