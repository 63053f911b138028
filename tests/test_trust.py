"""Trustworthy runs (issue 14): the deployed model goes down the chain, a run folder is checked as a whole,
the corpus is found by identity, and every bad input gets one line and exit status 2 through ``main()``."""
import json
import os
import pickle
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from gclf.cli import main
from gclf.data.features import FeatureConfig
from gclf.graph.models import build_graph
from gclf.train.cv import train_run
from gclf.train.fit import TrainConfig

from tests.conftest import tone, write_speakers, write_utt

FAST = TrainConfig(epochs=2, folds=2, patience=2, seed=0)


def gclf(args, monkeypatch, capsys, env=None):
    """(exit status, stdout, stderr) of `gclf ARGS` through main()."""
    monkeypatch.setattr(sys, "argv", ["gclf", *map(str, args)])
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(code, err, *fragments):
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def final_run(synth_features, tmp_path_factory):
    """A 2-fold run with final.pt, 2 epochs: features in the session's default cache."""
    utts, info = synth_features
    out = tmp_path_factory.mktemp("final") / "m"
    train_run(utts, out, build_graph(), FeatureConfig(), FAST, info["corpus"], final=True)
    return out


# ---- 1. final.pt goes down the whole chain; exports take it -----------------------------------------
def test_steps_apply_to_final_and_exports_take_it(final_run, monkeypatch, capsys, tmp_path):
    from gclf.checkpoint import chain_of, load_checkpoint

    q = tmp_path / "m-c2-q8"
    code, out, err = gclf(["compress", "--model", final_run, "--block", "2", "--finetune-epochs", "1",
                           "--out", tmp_path / "m-c2", "--json"], monkeypatch, capsys)
    assert code == 0, err
    r = json.loads(out)
    assert len(r["folds"]) == 2 and r["final"]["checkpoint"] == "final.pt"   # figures: the folds only
    before, after = load_checkpoint(final_run / "final.pt"), load_checkpoint(tmp_path / "m-c2" / "final.pt")
    assert [s.__class__.__name__ for s in chain_of(after)] == ["Train", "Compress"]
    man, src = (json.loads((d / "manifest.json").read_text()) for d in (tmp_path / "m-c2", final_run))
    assert man["parent"] == src["run_id"] != man["run_id"] == after["run_id"] and man["complete"]
    assert man["checkpoints"] == ["fold1.pt", "fold2.pt", "final.pt"] and man["chain"] == ["train", "compress"]
    assert after["split"]["test_speakers"] == [] and after["split"] == before["split"]
    code, out, err = gclf(["quantize", "--model", tmp_path / "m-c2", "--bits", "8", "--out", q, "--json"],
                          monkeypatch, capsys)
    assert code == 0, err
    fin = load_checkpoint(q / "final.pt")
    assert [s.__class__.__name__ for s in chain_of(fin)] == ["Train", "Compress", "Quantize"]
    assert json.loads(out)["final"]["bit_exact_mismatches"] == 0          # checked on its training windows
    code, out, err = gclf(["export-weights", "--model", q, "--out", tmp_path / "w"], monkeypatch, capsys)
    assert code == 0, err
    assert f"{q / 'final.pt'}" in out and "warning" not in err                # says which checkpoint
    code, out, err = gclf(["export-onnx", "--model", q, "--out", tmp_path / "onnx", "--json"], monkeypatch, capsys)
    a = json.loads(out)["agreement"]
    assert code == 0 and json.loads(out)["path"].endswith("m-c2-q8-final.onnx")
    assert a["held_out"] is False and a["windows_kind"].startswith("training") and a["argmax_agreement"] == 1.0
    code, out, err = gclf(["export-c", "--model", q, "--no-measure", "--json"], monkeypatch, capsys)
    assert code == 0 and json.loads(out)["source"] == str(q / "final.pt")
    assert json.loads(out)["out"].endswith("m-c2-q8-final")


def test_a_final_checkpoint_file_can_be_quantized(final_run, monkeypatch, capsys, tmp_path):
    code, out, err = gclf(["quantize", "--model", final_run / "final.pt", "--out", tmp_path / "fq", "--json"],
                          monkeypatch, capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["folds"] == [] and "no held-out speakers" in r["note"] and (tmp_path / "fq" / "final.pt").is_file()


def test_exports_of_a_run_without_final_say_they_use_fold1(trained_run, monkeypatch, capsys, tmp_path):
    out, _ = trained_run
    code, stdout, err = gclf(["export-onnx", "--model", out, "--out", tmp_path, "--json"], monkeypatch, capsys)
    assert code == 0 and "has no final.pt" in err and "fold1.pt" in err
    assert json.loads(stdout)["path"].endswith("-fold1.onnx")


# ---- 2. run folders checked as a whole --------------------------------------------------------------
def test_train_refuses_a_non_empty_folder_then_force_replaces_it(synth_corpus, monkeypatch, capsys, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", synth_corpus, "--out", out, "--epochs", "1", "--json"]
    code, stdout, _ = gclf(args + ["--folds", "3"], monkeypatch, capsys)
    assert code == 0 and json.loads(stdout)["data"]["skipped_by_reason"] == {}
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] and man["folds"] == 3 and man["final"]           # `gclf train` trains final.pt
    assert man["checkpoints"] == ["fold1.pt", "fold2.pt", "fold3.pt", "final.pt"]
    assert man["chain"] == ["train"] and man["seed"] == 0 and man["config"]["train"]["epochs"] == 1
    assert man["versions"]["torch"].startswith("2.13.0") and man["versions"]["numpy"] and man["parent"] is None
    assert man["corpus"]["utterances"] == 60 and man["command"].startswith("gclf train --data")
    before = (out / "fold3.pt").read_bytes()
    code, _, err = gclf(args + ["--folds", "2"], monkeypatch, capsys)
    one_line_error(code, err, "already holds a run", "--force")
    assert (out / "fold3.pt").read_bytes() == before                       # nothing lost
    assert gclf(args + ["--folds", "2", "--force"], monkeypatch, capsys)[0] == 0
    assert sorted(p.name for p in out.glob("*.pt")) == ["final.pt", "fold1.pt", "fold2.pt"]   # old fold3 gone
    code, out_json, _ = gclf(["evaluate", "--model", out, "--json"], monkeypatch, capsys)
    assert code == 0 and len(json.loads(out_json)["folds"]) == 2


def test_force_never_clears_a_folder_of_other_files(synth_corpus, monkeypatch, capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = gclf(["train", "--data", synth_corpus, "--out", tmp_path, "--force", "--epochs", "1"],
                        monkeypatch, capsys)
    one_line_error(code, err, "not a gclf run")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_mixed_runs_are_refused(final_run, trained_run, monkeypatch, capsys, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(final_run, mixed)
    shutil.copy(trained_run[0] / "fold3.pt", mixed / "fold3.pt")         # left over from a 3-fold run
    code, _, err = gclf(["evaluate", "--model", mixed], monkeypatch, capsys)
    one_line_error(code, err, "mixes runs", "fold3.pt", "rerun")
    (mixed / "fold3.pt").unlink()
    shutil.copy(trained_run[0] / "fold2.pt", mixed / "fold2.pt")         # same name, another run
    for cmd in (["evaluate", "--model", mixed], ["quantize", "--model", mixed, "--out", tmp_path / "q"],
                ["report", mixed, "--no-latency", "--out", tmp_path / "rep"]):
        code, _, err = gclf(cmd, monkeypatch, capsys)
        one_line_error(code, err, "belongs to another run")
    (mixed / "manifest.json").unlink()
    code, _, err = gclf(["evaluate", "--model", mixed], monkeypatch, capsys)
    one_line_error(code, err, "no manifest.json")


def test_an_interrupted_run_is_refused_until_rerun(synth_features, synth_corpus, monkeypatch, capsys, tmp_path):
    import gclf.train.cv as cv

    utts, info = synth_features
    real, calls = cv.train_fold, []

    def dies_in_fold2(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(cv, "train_fold", dies_in_fold2)
    with pytest.raises(KeyboardInterrupt):
        train_run(utts, tmp_path / "r", build_graph(), FeatureConfig(), FAST, info["corpus"], command="gclf train X")
    monkeypatch.setattr(cv, "train_fold", real)
    for cmd in (["evaluate", "--model", tmp_path / "r"], ["quantize", "--model", tmp_path / "r"],
                ["export-onnx", "--model", tmp_path / "r"]):
        code, _, err = gclf(cmd, monkeypatch, capsys)
        one_line_error(code, err, "incomplete run (1 of 2", "rerun `gclf train X --force`")


# ---- 3. the corpus found by identity, wherever it lies -----------------------------------------------
@pytest.fixture
def moved_run(synth_corpus, tmp_path, monkeypatch, capsys):
    """A run trained on a 12-speaker copy of the synthetic corpus, whose audio then moved elsewhere."""
    src = tmp_path / "a" / "LibriSpeech"
    src.mkdir(parents=True)
    keep = sorted({p.name.split("-")[0] for p in synth_corpus.rglob("*.flac")})
    keep = keep[:6] + keep[-6:]
    lines = [ln for ln in (synth_corpus / "SPEAKERS.TXT").read_text().splitlines()
             if ln.startswith(";") or ln.split("|")[0].strip() in keep]
    (src / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    for f in synth_corpus.rglob("*.flac"):
        if f.name.split("-")[0] in keep:
            dest = src / f.relative_to(synth_corpus)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
    cache, run = tmp_path / "c", tmp_path / "run"
    code, _, err = gclf(["train", "--data", src, "--cache", cache, "--out", run, "--folds", "2", "--epochs", "1",
                         "--json"], monkeypatch, capsys)
    assert code == 0, err
    moved = tmp_path / "elsewhere"
    shutil.move(str(src.parent), str(moved))
    return run, cache, moved / "LibriSpeech"


def test_checkpoint_records_the_corpus_identity_not_a_path(moved_run):
    from gclf.checkpoint import load_checkpoint

    run, _, _ = moved_run
    ck = load_checkpoint(run / "fold1.pt")
    assert set(ck["corpus"]) == {"name", "id", "utterances", "layout", "task"} and ck["corpus"]["utterances"] == 12
    assert (ck["corpus"]["layout"], ck["corpus"]["task"]) == ("librispeech", "sex")
    assert str(run.parent) not in json.dumps(ck["corpus"])
    assert len(ck["split"]["train_speakers"] + ck["split"]["val_speakers"] + ck["split"]["test_speakers"]) == 12


def test_steps_find_moved_data_through_the_cache_or_data(moved_run, synth_corpus, monkeypatch, capsys, tmp_path):
    run, cache, moved = moved_run
    monkeypatch.delenv("GCLF_DATA", raising=False)
    q = ["quantize", "--model", run, "--cache", cache, "--json"]
    code, _, err = gclf(q + ["--out", tmp_path / "q1"], monkeypatch, capsys)
    assert code == 0, err                                                  # the cache, found by identity
    shutil.rmtree(cache)
    code, _, err = gclf(q + ["--out", tmp_path / "q2"], monkeypatch, capsys)
    one_line_error(code, err, "not in", "pass --data")
    code, _, err = gclf(q + ["--out", tmp_path / "q3", "--data", synth_corpus], monkeypatch, capsys)
    one_line_error(code, err, "is not the corpus this model was trained on")
    code, _, err = gclf(q + ["--out", tmp_path / "q4", "--data", moved], monkeypatch, capsys)
    assert code == 0, err
    shutil.rmtree(cache)
    for cmd in (["compress", "--model", run, "--block", "2", "--finetune-epochs", "1", "--out", tmp_path / "cmp"],
                ["approx", "--model", run, "--finetune-epochs", "1", "--out", tmp_path / "apx"],
                ["evaluate", "--model", run],
                ["report", run, "--evaluate", "--no-latency", "--out", tmp_path / "rep"]):
        code, _, err = gclf(cmd + ["--cache", cache, "--json"], monkeypatch, capsys, env={"GCLF_DATA": str(moved)})
        assert code == 0, (cmd, err)
    code, _, err = gclf(["export-c", "--model", tmp_path / "q4", "--verify", "--no-measure", "--cache",
                         tmp_path / "none", "--out", tmp_path / "cc"], monkeypatch, capsys, env={"GCLF_DATA": str(moved)})
    assert code == 0 and "verified: 0 of" in _, err


# ---- 5. every bad input: one line, exit status 2 ----------------------------------------------------
class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("case,fragment", [
    ("empty", "empty file (0 bytes)"),
    ("missing_keys", "damaged gclf checkpoint ('graph'"),
    ("wrong_shapes", "do not fit its graph (size mismatch for "),
    ("bad_graph", "graph or chain is damaged"),
    ("malicious", "refused, the file asks to load"),
    ("text", "not a torch checkpoint file"),
])
def test_bad_checkpoints_get_one_line(case, fragment, trained_run, monkeypatch, capsys, tmp_path):
    from gclf.checkpoint import load_checkpoint

    p = tmp_path / "x.pt"
    ck = load_checkpoint(trained_run[0] / "fold1.pt")
    ck.pop("run_id", None)
    if case == "empty":
        p.write_bytes(b"")
    elif case == "missing_keys":
        torch.save({"gclf": 2, "feature_config": ck["feature_config"]}, p)
    elif case == "wrong_shapes":
        sd = dict(ck["state_dict"])
        key = next(k for k, v in sd.items() if v.ndim == 2)
        sd[key] = torch.zeros(3, 3)
        torch.save({**ck, "state_dict": sd}, p)
    elif case == "bad_graph":
        torch.save({**ck, "graph": {"arch": "cnn_lstm"}}, p)
    elif case == "malicious":
        torch.save({"gclf": 2, "x": Boom()}, p)
    else:
        p.write_text("hello")
    code, _, err = gclf(["evaluate", "--model", p], monkeypatch, capsys)
    line = one_line_error(code, err, fragment)
    assert "weights_only=False" not in err and "pwned" not in err
    if case == "malicious":
        assert "os.system" in line or "posix.system" in line


def test_bad_cache_files_get_one_line(trained_run, synth_features, monkeypatch, capsys, tmp_path):
    cache, name = tmp_path / "c", os.path.basename(synth_features[1]["cache_dir"])
    shutil.copytree(synth_features[1]["cache_dir"], cache / name)
    model = trained_run[0]
    (cache / name / "files" / "zz-foreign.pkl").write_bytes(pickle.dumps([1, 2, 3]))   # harmless, not ours
    code, _, err = gclf(["evaluate", "--model", model, "--cache", cache], monkeypatch, capsys)
    one_line_error(code, err, "zz-foreign.pkl", "not a gclf feature record")
    (cache / name / "files" / "zz-foreign.pkl").unlink()
    (cache / name / "meta.json").write_text("{ not json")
    code, _, err = gclf(["evaluate", "--model", model, "--cache", cache], monkeypatch, capsys)
    one_line_error(code, err, "meta.json is corrupt")


def test_predict_says_no_speech_and_fails_for_unreadable_files(trained_run, monkeypatch, capsys, tmp_path):
    model = trained_run[0]
    sr = 16000
    rng = np.random.default_rng(0)
    files = {"silence.wav": np.zeros(3 * sr), "noise.wav": 0.3 * rng.standard_normal(3 * sr),
             "quiet.wav": 1e-4 * rng.standard_normal(3 * sr), "voice.wav": tone(3.0, 150)}
    for name, y in files.items():
        sf.write(tmp_path / name, np.asarray(y, dtype=np.float32), sr)
    code, out, err = gclf(["predict", *(tmp_path / n for n in files), "--model", model, "--json"],
                          monkeypatch, capsys)
    assert code == 0, err
    labels = {os.path.basename(r["file"]): r["label"] for r in json.loads(out)}
    assert labels["silence.wav"] == labels["noise.wav"] == labels["quiet.wav"] == "no speech"
    assert labels["voice.wav"] in ("M", "F")
    code, out, err = gclf(["predict", tmp_path / "voice.wav", tmp_path / "gone.flac", "--model", model],
                          monkeypatch, capsys)
    assert code == 2 and "voice.wav" in out                              # the good file is still labelled
    assert "gone.flac: no such file" in err and "System error" not in err
    assert "error: 1 of 2 file(s) could not be classified" in err


def test_one_class_corpus_is_refused(tmp_path, monkeypatch, capsys, librosa_warm):
    root = tmp_path / "LibriSpeech"
    root.mkdir()
    write_speakers(root, {"11": "F", "12": "F", "13": "F"})
    for i, spk in enumerate(("11", "12", "13")):
        write_utt(root, spk, "1", 0, tone(2.0, 220, seed=i))
    code, _, err = gclf(["train", "--data", root, "--cache", tmp_path / "c", "--out", tmp_path / "r",
                         "--folds", "2"], monkeypatch, capsys)
    one_line_error(code, err, "female speakers only", "both sexes")
    assert not (tmp_path / "r").exists()


def test_skipped_files_are_counted_by_reason(tiny_corpus, tmp_path, monkeypatch, capsys, librosa_warm):
    d = tiny_corpus / "train-test" / "11" / "100"
    sf.write(d / "notes-take1.flac", tone(2.0, 200), 16000)                # not SPK-CHAP-UTT
    write_utt(tiny_corpus, "11", "100", 1, tone(0.2, 200))                 # too short
    write_utt(tiny_corpus, "12", "100", 1, np.zeros(32000, dtype=np.float32))   # digital silence
    (d / "11-100-0002.flac").write_bytes(b"fLaC garbage")                   # unreadable
    code, out, err = gclf(["extract", "--data", tiny_corpus, "--cache", tmp_path / "c", "--workers", "1", "--json"],
                          monkeypatch, capsys)
    assert code == 0, err
    s = json.loads(out)
    assert s["skipped_by_reason"] == {"too short": 1, "silent": 1, "unreadable": 1}
    assert s["skipped_bad_name"] == 1 and s["done"] == 4
    code, out, err = gclf(["extract", "--data", tiny_corpus, "--cache", tmp_path / "c"], monkeypatch, capsys)
    assert "1 silent, 1 too short, 1 unreadable" in out and "1 not named as the layout names files (SPK-CHAP-UTT)" in out


def test_training_reports_progress_every_epoch(synth_corpus, monkeypatch, capsys, tmp_path):
    code, _, err = gclf(["train", "--data", synth_corpus, "--out", tmp_path / "r", "--folds", "2", "--epochs", "2",
                         "--final"], monkeypatch, capsys)
    assert code == 0, err
    for fold in ("fold1", "fold2", "final"):
        for epoch in (1, 2):
            assert f"{fold} epoch {epoch}/2: train loss" in err
    assert "val loss" in err


def test_the_demo_runs_twice_in_the_same_folder(tmp_path, librosa_warm):
    """`make demo` twice: the demo replaces its own run (train_run with force) instead of refusing."""
    from gclf.demo import run_demo

    for k in range(2):
        r = run_demo(tmp_path, speakers=8, folds=2, epochs=1, say=lambda m: None, device=k == 1)
        assert len(r["train"]["folds"]) == 2
    c = r["device"]["c"]                       # the device chain: C from PCM streamed, bit-exact with numpy
    assert len(r["device"]["rows"]) == (3 if c else 2)
    assert c is None or c["bit_exact_windows"] == c["windows"] > 0


@pytest.mark.parametrize("level", [1e-3, 1e-2, 0.5])
def test_speech_rule_keeps_quiet_voices_and_drops_noise_at_any_level(level):
    """The documented rule (gclf.data.vad): a harmonic voice-like tone is speech even peaking at -60 dBFS;
    white noise is not, however loud; silence is not."""
    from gclf.data.vad import SpeechConfig, has_speech, speech_seconds

    sr, rng = 16000, np.random.default_rng(1)
    voice = tone(2.0, 140)
    voice = level * voice / np.abs(voice).max()
    assert has_speech(voice, sr) and speech_seconds(voice, sr) > 1.5
    assert not has_speech(level * rng.standard_normal(2 * sr), sr)
    assert not has_speech(np.zeros(2 * sr), sr)
    assert not has_speech(voice, sr, SpeechConfig(min_dbfs=20 * np.log10(level) + 1))   # below the floor: silent
