"""`gclf train --resume`: a run interrupted mid-fold continues to the result of an uninterrupted one, bit for
bit (weights, metrics, log), from training states saved atomically and read with weights_only=True."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gclf.checkpoint import load_checkpoint
from gclf.data.augment import AugmentConfig
from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.graph.models import build_graph
from gclf.train.cv import train_run
from gclf.train.fit import TrainConfig
from gclf.train.resume import load_state

ROOT = Path(__file__).resolve().parents[1]


class Stop(Exception):
    pass


def _same_weights(a: Path, b: Path, names: list[str]) -> None:
    for n in names:
        wa, wb = load_checkpoint(a / n)["state_dict"], load_checkpoint(b / n)["state_dict"]
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (n, k)


def test_resume_after_an_interruption_equals_the_uninterrupted_run(synth_features, tmp_path):
    utts, info = synth_features
    utts = utts[:16]
    # masks and feature noise draw from the data-order generator, dropout from torch's: all must be restored
    tcfg = TrainConfig(epochs=5, folds=2, seed=3, patience=100, min_windows=64,
                       augment=AugmentConfig(time_masks=1, coef_masks=1))
    graph, fcfg = build_graph(), FeatureConfig()
    ref = train_run(utts, tmp_path / "ref", graph, fcfg, tcfg, info["corpus"], final=True)

    def killer(row):          # the "kill": an exception in the middle of fold 2, after its epoch-2 state
        if row["fold"] == "fold2" and row["epoch"] == 3:
            raise Stop
    with pytest.raises(Stop):
        train_run(utts, tmp_path / "b", graph, fcfg, tcfg, info["corpus"], final=True, on_epoch=killer)
    assert load_state(tmp_path / "b" / "resume-fold2.pt")["epoch"] == 2
    assert load_state(tmp_path / "b" / "resume-fold1.pt")["done"]
    assert not (tmp_path / "b" / "fold2.pt").exists()
    with pytest.raises(GclfError, match="another config"):     # other settings: refused, nothing changed
        train_run(utts, tmp_path / "b", graph, fcfg, replace(tcfg, lr=1e-3), info["corpus"], final=True, resume=True)
    seen = []
    r = train_run(utts, tmp_path / "b", graph, fcfg, tcfg, info["corpus"], final=True, resume=True,
                  on_epoch=seen.append)
    assert [f["accuracy_window"] for f in r["folds"]] == [f["accuracy_window"] for f in ref["folds"]]
    _same_weights(tmp_path / "ref", tmp_path / "b", ["fold1.pt", "fold2.pt", "final.pt"])
    assert (tmp_path / "b" / "train_log.csv").read_text() == (tmp_path / "ref" / "train_log.csv").read_text()
    assert not list((tmp_path / "b").glob("resume-*.pt"))        # states go once the run is complete
    assert len(seen) == 15                                      # the log replays the saved epochs too
    with pytest.raises(GclfError, match="complete run"):
        train_run(utts, tmp_path / "b", graph, fcfg, tcfg, info["corpus"], final=True, resume=True)


def test_resume_state_is_plain_data(synth_features, tmp_path):
    """The state file loads with weights_only=True and holds every generator training draws from."""
    utts, info = synth_features
    tcfg = TrainConfig(epochs=3, folds=2, seed=1, min_windows=64)

    def stop(row):
        if row["epoch"] == 2:
            raise Stop
    with pytest.raises(Stop):
        train_run(utts[:10], tmp_path, build_graph(), FeatureConfig(), tcfg, info["corpus"], on_epoch=stop)
    st = torch.load(tmp_path / "resume-fold1.pt", weights_only=True)
    assert set(st["rng"]) == {"torch", "data_order", "accelerator", "numpy_generator", "numpy_global", "python"}
    assert st["epoch"] == 1 and st["optimizer"]["state"]
    (tmp_path / "resume-fold1.pt").write_bytes(b"not a state")
    with pytest.raises(GclfError, match="unreadable training state"):
        load_state(tmp_path / "resume-fold1.pt")


def _gclf(*args: str, **kw) -> list[str]:
    return [sys.executable, "-c", "from gclf.cli import main; main()", *args]


def test_train_killed_mid_run_resumes_bit_for_bit(tmp_path):
    """A real SIGKILL of `gclf train` (default recipe: audio views, masks, noise, dropout) once a fold's
    epoch checkpoint is on disk; `--resume` then ends with the weights, metrics and log of an uninterrupted
    run."""
    from gclf.data.synth import SynthConfig, synthesize_corpus

    data = synthesize_corpus(tmp_path / "syn", SynthConfig(speakers=8, min_seconds=2.5, max_seconds=3.0, seed=4))["root"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    common = ["--data", str(data), "--cache", str(tmp_path / "cache"), "--folds", "2", "--epochs", "5",
              "--patience", "100", "--seed", "2", "--no-final", "--json", "--workers", "1"]
    ref = subprocess.run(_gclf("train", "--out", str(tmp_path / "ref"), *common), env=env, capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_gclf("train", "--out", str(out), *common), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state, t0 = out / "resume-fold1.pt", time.time()
    while not state.exists() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_state(state)["epoch"] < 5                      # killed inside fold 1
    assert not (out / "fold1.pt").exists()
    res = subprocess.run(_gclf("train", "--out", str(out), "--resume", *common), env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    _same_weights(tmp_path / "ref", out, ["fold1.pt", "fold2.pt"])
    import json
    a, b = json.loads(ref.stdout), json.loads(res.stdout)
    assert [f["accuracy_utterance"] for f in a["folds"]] == [f["accuracy_utterance"] for f in b["folds"]]
    assert [f["accuracy_window"] for f in a["folds"]] == [f["accuracy_window"] for f in b["folds"]]
    assert (out / "train_log.csv").read_text() == (tmp_path / "ref" / "train_log.csv").read_text()
