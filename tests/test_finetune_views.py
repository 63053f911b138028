"""`gclf compress/approx --views`: a step's fine-tuning also trains on the run's augmented views (its
augmentation and seed), read from the run's corpus, which must be the one given with --data."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from gclf.checkpoint import load_checkpoint
from gclf.cli import cli

from tests.test_cli import run_main
from tests.test_layouts_tasks import write_fsdd


def _ok(r):
    assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def augmented_run(tmp_path_factory, librosa_warm):
    """A 2-speaker digit run of the CNN-LSTM (FC and LSTM: compress and approx apply) with one F0 view per clip."""
    tmp = tmp_path_factory.mktemp("views")
    root = write_fsdd(tmp / "fsdd", speakers=("jackson", "theo"), reps=2)
    _ok(CliRunner().invoke(cli, ["train", "--data", str(root), "--cache", str(tmp / "pkl"), "--out", str(tmp / "run"),
                                 "--arch", "cnn_lstm", "--epochs", "1", "--no-augment", "--copies", "1",
                                 "--pitch", "0.9,1.1", "--no-final", "--workers", "1", "--json"]))
    return tmp, root


def _compress(tmp, root, out, *extra):
    return CliRunner().invoke(cli, ["compress", "--model", str(tmp / "run"), "--block", "2", "--finetune-epochs", "2",
                                    "--cache", str(tmp / "pkl"), "--data", str(root), "--out", str(tmp / out),
                                    "--json", *extra])


def test_compress_views_fine_tunes_on_the_runs_views(augmented_run):
    tmp, root = augmented_run
    with_views = json.loads(_ok(_compress(tmp, root, "c-views", "--views")).stdout)
    without = json.loads(_ok(_compress(tmp, root, "c-plain")).stdout)
    assert with_views["views"] is True and without["views"] is False
    a = load_checkpoint(tmp / "c-views" / "fold1.pt")["state_dict"]
    b = load_checkpoint(tmp / "c-plain" / "fold1.pt")["state_dict"]
    assert any(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)   # the views changed the training


def test_approx_views_too(augmented_run):
    tmp, root = augmented_run
    r = json.loads(_ok(CliRunner().invoke(cli, [
        "approx", "--model", str(tmp / "run"), "--finetune-epochs", "1", "--cache", str(tmp / "pkl"), "--data",
        str(root), "--out", str(tmp / "a-views"), "--views", "--json"])).stdout)
    assert r["views"] is True


def test_views_refuse_another_corpus_in_one_line(augmented_run, tmp_path, monkeypatch, capsys):
    tmp, _ = augmented_run
    other = write_fsdd(tmp_path / "other", speakers=("lucas", "nicolas"), reps=1)
    code, out = run_main(["compress", "--model", str(tmp / "run"), "--block", "2", "--cache", str(tmp / "pkl"),
                          "--data", str(other), "--out", str(tmp / "c-wrong"), "--views"], monkeypatch, capsys)
    assert code == 2 and "not the corpus this model was trained on" in out.err
    assert len(out.err.strip().splitlines()) == 1 and not (tmp / "c-wrong").exists()


def test_compress_says_whether_views_were_used(augmented_run, trained_run, tmp_path):
    tmp, root = augmented_run
    r = _ok(CliRunner().invoke(cli, ["compress", "--model", str(tmp / "run"), "--block", "2", "--finetune-epochs",
                                     "1", "--cache", str(tmp / "pkl"), "--data", str(root), "--out",
                                     str(tmp_path / "c"), "--views"]))
    assert "(on the run's views too)" in r.output
    plain_run, _ = trained_run                                   # trained without audio augmentation
    r = _ok(CliRunner().invoke(cli, ["compress", "--model", str(plain_run), "--block", "2", "--finetune-epochs", "1",
                                     "--out", str(tmp_path / "p"), "--views"]))
    assert "had no audio augmentation" in r.output and "views too" not in r.output


def test_quantize_qat_views(augmented_run):
    tmp, root = augmented_run
    args = ["quantize", "--model", str(tmp / "run"), "--bits", "4", "--act-bits", "8", "--qat-epochs", "1",
            "--cache", str(tmp / "pkl"), "--data", str(root), "--json"]
    with_views = json.loads(_ok(CliRunner().invoke(cli, [*args, "--views", "--out", str(tmp / "q-views")])).stdout)
    without = json.loads(_ok(CliRunner().invoke(cli, [*args, "--out", str(tmp / "q-plain")])).stdout)
    assert with_views["views"] is True and without["views"] is False
    assert with_views["bit_exact_mismatches"] == 0
