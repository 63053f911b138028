"""Training on the integer front-end: the "int_mfcc" feature kind, `gclf extract/train --frontend int`, and the
checkpoint carrying the front-end so quantize and predict compute the same features."""
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.cli import cli, main
from gclf.data.corpus import load_audio
from gclf.data.features import FeatureConfig, frames
from gclf.frontend import mfcc_int, pcm16
from gclf.frontend.features import frontend_config, with_frontend

INT = FeatureConfig(kind="int_mfcc")


def test_int_mfcc_frames_are_the_integer_front_end(synth_corpus):
    audio = load_audio(next(synth_corpus.rglob("*.flac")), 16000)
    got = frames(audio, INT)
    q, counts = mfcc_int(pcm16(audio), frontend_config(INT))
    assert got.dtype == np.float32 and got.shape == q.shape
    np.testing.assert_array_equal(got, (q / 256.0).astype(np.float32))
    assert counts == {"fft": 0, "out": 0}


def test_int_mfcc_has_its_own_cache_key():
    assert INT.key() != FeatureConfig().key()
    assert with_frontend(FeatureConfig(), "int") == INT
    assert with_frontend(FeatureConfig(), "librosa") == FeatureConfig()


def test_int_frontend_is_refused_for_raw_audio_models(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["gclf", "train", "--frontend", "int", "--arch", "raw_conv",
                                      "--out", str(tmp_path / "r"), "--data", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_train_and_quantize_on_the_int_front_end(synth_corpus, tmp_path):
    cache, out = str(tmp_path / "pkl"), str(tmp_path / "run")
    r = CliRunner().invoke(cli, ["extract", "--data", str(synth_corpus), "--cache", cache, "--frontend", "int",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["utterances"] == 60
    r = CliRunner().invoke(cli, ["train", "--data", str(synth_corpus), "--cache", cache, "--out", out,
                                 "--frontend", "int", "--folds", "2", "--epochs", "6", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    t = json.loads(r.stdout)
    # synthetic voices, 6 epochs: measured 0.70 with the sex recipe's 16 MFCCs (issue 15; 3 epochs gave 0.60,
    # where 40 MFCCs gave 0.65-0.70: these voices differ by F0 more than real ones), chance is 0.5
    assert t["accuracy_utterance_mean"] > 0.6
    assert t["train_config"]["augment"]["copies"] == 3  # the default recipe applies to the integer front-end too
    import torch

    ck = torch.load(f"{out}/fold1.pt", weights_only=True)
    assert ck["feature_config"]["kind"] == "int_mfcc"
    r = CliRunner().invoke(cli, ["predict", str(next(synth_corpus.rglob("*.flac"))), "--model", out, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["label"] in ("F", "M")


def test_int_mfcc_cache_key_follows_the_front_end_definition(monkeypatch):
    import gclf.frontend.config as fc

    before = INT.key()
    monkeypatch.setattr(fc, "ARITHMETIC_VERSION", fc.ARITHMETIC_VERSION + 1)
    assert INT.key() != before
