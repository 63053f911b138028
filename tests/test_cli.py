"""The command line through click's CliRunner: help, one-line errors, JSON output of each command."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gclf.cli import cli, main


def run(args, expect=0):
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    if expect is not None:
        assert r.exit_code == expect, (r.output, r.exception)
    return r


def run_main(args, monkeypatch, capsys):
    """Through main(), which turns GclfError into one line and exit status 2."""
    monkeypatch.setattr(sys, "argv", ["gclf", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr()


def test_help_does_not_import_torch_or_librosa():
    code = "import sys; from gclf.cli import cli; cli(['--help'], standalone_mode=False); " \
           "print(sorted(m for m in ('torch', 'librosa', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[]")
    assert "extract" in out and "train" in out


@pytest.mark.parametrize("cmd", ["extract", "train", "evaluate", "predict", "synth", "demo"])
def test_every_command_has_help(cmd):
    r = run([cmd, "--help"])
    assert "Usage:" in r.output and "--json" in r.output


def test_missing_data_path_is_one_line_error(monkeypatch, capsys, tmp_path):
    code, cap = run_main(["extract", "--data", str(tmp_path / "missing"), "--cache", str(tmp_path / "c")],
                         monkeypatch, capsys)
    assert code == 2
    assert cap.err.strip().startswith("error: data path does not exist") and len(cap.err.strip().splitlines()) == 1
    assert "Traceback" not in cap.err


def test_folder_without_speakers_txt(monkeypatch, capsys, tmp_path):
    code, cap = run_main(["extract", "--data", str(tmp_path), "--cache", str(tmp_path / "c")], monkeypatch, capsys)
    assert code == 2 and "no SPEAKERS.TXT" in cap.err


def test_bad_option_value_is_rejected_at_the_boundary():
    r = run(["train", "--folds", "1"], expect=2)
    assert "--folds" in r.output


def test_extract_json_then_from_pkl(tiny_corpus, tmp_path, librosa_warm):
    cache = str(tmp_path / "pkl")
    (tiny_corpus / "train-test" / "11" / "100" / "11-100-0009.flac").write_bytes(b"junk")
    r = run(["extract", "--data", str(tiny_corpus), "--cache", cache, "--workers", "1", "--json"])
    s = json.loads(r.stdout)
    assert (s["done"], s["skipped"], s["utterances"], s["female"], s["male"]) == (4, 1, 4, 2, 2)
    r = run(["extract", "--from", "pkl", "--data", str(tiny_corpus), "--cache", cache, "--json"])
    s2 = json.loads(r.stdout)
    assert s2["utterances"] == 4 and s2["windows"] == s["windows"]


def test_extract_no_store_leaves_no_cache(tiny_corpus, tmp_path, librosa_warm):
    r = run(["extract", "--data", str(tiny_corpus), "--cache", str(tmp_path / "pkl"), "--workers", "1",
             "--no-store", "--json"])
    assert json.loads(r.stdout)["utterances"] == 4 and not (tmp_path / "pkl").exists()


def test_train_evaluate_predict_json(synth_corpus, synth_features, tmp_path):
    cache = str(tmp_path / "pkl")
    out = str(tmp_path / "run")
    r = run(["train", "--data", str(synth_corpus), "--cache", cache, "--out", out, "--folds", "2",
             "--epochs", "2", "--json"])
    t = json.loads(r.stdout)
    for key in ("accuracy_utterance_mean", "accuracy_utterance_std", "accuracy_window_mean", "folds", "model"):
        assert key in t
    assert t["model"] == out and len(t["folds"]) == 2
    from gclf.checkpoint import load_checkpoint
    ck = load_checkpoint(f"{out}/fold1.pt")       # the sex task's recipe (issue 15): 16 MFCCs, weight average
    assert ck["feature_config"]["n_mfcc"] == 16 and t["train_config"]["ema"] == 0.995
    r = run(["evaluate", "--model", out, "--cache", cache, "--json"])
    e = json.loads(r.stdout)
    for key in ("accuracy_utterance", "accuracy_window", "utterances", "windows", "speakers"):
        assert key in e
    assert e["utterances"] == 60 and e["speakers"] == 60
    assert sum(map(sum, e["confusion"]["matrix"])) == 60          # folds are disjoint: each utterance once
    assert e["windows"] == sum(f["windows"] for f in e["folds"])
    assert abs(e["accuracy_utterance"] - t["accuracy_utterance_mean"]) < 1e-12
    flac = next(synth_corpus.rglob("*.flac"))
    r = run(["predict", str(flac), "--model", out, "--json"])
    p = json.loads(r.stdout)[0]
    assert p["label"] in ("F", "M") and set(p["probabilities"]) == {"M", "F"}
    assert abs(sum(p["probabilities"].values()) - 1) < 1e-3


def test_predict_runs_the_chains_own_arithmetic(chain_runs, synth_corpus):
    """After `gclf quantize`, predict runs the integer reference (not the float weights); every engine of a
    fixed-point model agrees with it, and the float engine reads the float weights."""
    flac = next(synth_corpus.rglob("*.flac"))
    q8 = str(chain_runs["q8"] / "fold1.pt")
    got = {e: json.loads(run(["predict", str(flac), "--model", q8, "--engine", e, "--json"]).stdout)[0]["probabilities"]
           for e in ("auto", "int", "onnx", "c", "float")}
    from gclf.backends.engines import prob_fn_for
    from gclf.checkpoint import load_checkpoint
    from gclf.data.features import FeatureConfig, cut_windows, frames
    from gclf.data.corpus import load_audio
    import numpy as np
    import torch

    ck = load_checkpoint(q8)
    x = torch.from_numpy(cut_windows(frames(load_audio(flac, 16000), FeatureConfig()), FeatureConfig()))
    ref = prob_fn_for(ck, "int")(x).mean(axis=0)
    for e in ("auto", "int", "onnx", "c"):
        assert abs(got[e]["F"] - ref[1]) < 1e-4, e
    assert abs(got["float"]["F"] - prob_fn_for(ck, "float")(x).mean(axis=0)[1]) < 1e-4
    assert np.isfinite(ref).all()


def test_evaluate_on_another_corpus_leaves_out_seen_speakers(synth_corpus, synth_features, trained_run, tmp_path):
    out, _ = trained_run
    r = run(["evaluate", "--model", str(out / "fold1.pt"), "--data", str(synth_corpus),
             "--cache", str(tmp_path / "pkl"), "--json"])
    e = json.loads(r.stdout)
    assert e["folds"][0]["excluded_seen_utterances"] == 40 and e["utterances"] == 20
    r = run(["evaluate", "--model", str(out), "--data", str(synth_corpus), "--cache", str(tmp_path / "pkl"), "--json"])
    e = json.loads(r.stdout)   # three models, each on the 20 speakers it never saw: 60 distinct utterances
    assert e["utterances"] == 60 and sum(map(sum, e["confusion"]["matrix"])) == 60


def test_predict_unreadable_file_is_an_error(trained_run, monkeypatch, capsys, tmp_path):
    out, _ = trained_run
    bad = tmp_path / "x.flac"
    bad.write_bytes(b"nope")
    code, cap = run_main(["predict", str(bad), "--model", str(out)], monkeypatch, capsys)
    assert code == 2 and "1 of 1 file(s) could not be classified" in cap.err


def test_evaluate_missing_model(monkeypatch, capsys, tmp_path):
    code, cap = run_main(["evaluate", "--model", str(tmp_path / "none")], monkeypatch, capsys)
    assert code == 2 and "no model at" in cap.err


def test_train_ema_and_n_mfcc_options_override_the_recipe(synth_corpus, synth_features, tmp_path):
    """`--n-mfcc 40 --ema 0` is the sex task's default before issue 15."""
    from gclf.checkpoint import load_checkpoint

    out = str(tmp_path / "run")
    r = run(["train", "--data", str(synth_corpus), "--cache", str(tmp_path / "pkl"), "--out", out, "--folds", "2",
             "--epochs", "1", "--no-final", "--no-augment", "--ema", "0", "--n-mfcc", "40", "--json"])
    assert json.loads(r.stdout)["train_config"]["ema"] == 0.0
    ck = load_checkpoint(f"{out}/fold1.pt")
    assert ck["feature_config"]["n_mfcc"] == 40 and ck["graph"]["input_shape"][0] == 40
    r = run(["train", "--data", str(synth_corpus), "--out", str(tmp_path / "raw"), "--arch", "raw_conv",
             "--n-mfcc", "20"], expect=None)
    assert r.exit_code != 0 and "reads no MFCCs" in str(r.exception)
    run(["train", "--data", str(synth_corpus), "--out", str(tmp_path / "x"), "--ema", "1"], expect=2)
