"""The float post-processing steps (compress, approx): chain records, reports, order, the CLI."""
import json

import pytest
import torch
from click.testing import CliRunner

from gclf.checkpoint import build_float_model, load_checkpoint
from gclf.circulant.layer import BlockCirculantLinear
from gclf.cli import cli
from gclf.errors import GclfError
from gclf.backends.torch_float import GraphNet, n_params
from gclf.data.pipeline import features_for_checkpoint
from gclf.graph.chain import Compress
from gclf.graph.models import build_graph
from gclf.graph.serial import step_from_dict
from gclf.steps.api import expand_layers
from gclf.steps.float_steps import approx_one, compress_one


def invoke(args):
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def fold(trained_run):
    ck = load_checkpoint(trained_run[0] / "fold1.pt")
    return ck, features_for_checkpoint(ck)


def test_expand_layers():
    net = GraphNet(build_graph())
    assert expand_layers(net, "fc,lstm") == ["fc1", "fc2", "fc3", "lstm.ih", "lstm.hh"]
    assert expand_layers(net, "fc2, lstm.hh") == ["fc2", "lstm.hh"]
    raw = GraphNet(build_graph("raw_conv"))
    assert expand_layers(raw, "fc,lstm") == ["fc1", "fc2"]           # a group the network lacks is skipped
    with pytest.raises(GclfError, match="nothing to compress"):
        expand_layers(raw, "lstm")
    with pytest.raises(GclfError, match="convolutions stay dense"):
        expand_layers(net, "conv1")


def test_compress_one_rebuilds_from_the_file_alone(fold):
    ck, utts = fold
    new, rep = compress_one(ck, utts, 8, "fc,lstm", epochs=1)
    assert step_from_dict(new["chain"][-1]) == Compress(8, ("fc1", "fc2", "fc3", "lstm.ih", "lstm.hh"), 1)
    model = build_float_model(new)
    assert isinstance(model.fc1, BlockCirculantLinear) and isinstance(model.lstm.hh, BlockCirculantLinear)
    assert n_params(model) == rep["params_after"] == 4186 and rep["params_before"] == 11834
    for key in ("accuracy_before", "accuracy_projected", "accuracy_after"):
        assert 0 <= rep[key] <= 1


def test_approx_one_sets_activations_and_keeps_weights_loadable(fold):
    ck, utts = fold
    new, rep = approx_one(ck, utts, "plan", "pwl16", epochs=0)
    model = build_float_model(new)
    assert (model.lstm.sigmoid_name, model.lstm.tanh_name) == ("plan", "pwl16")
    # with no fine-tuning the weights are unchanged: only the activations differ
    assert all(torch.equal(new["state_dict"][k], ck["state_dict"][k]) for k in ck["state_dict"])
    assert rep["accuracy_swapped"] == rep["accuracy_after"]
    # PLAN/pwl16 have max error < 0.02: the swap alone barely moves accuracy on this fold
    assert abs(rep["accuracy_swapped"] - rep["accuracy_before"]) <= 0.1


def test_steps_refuse_wrong_order(chain_runs):
    ck = load_checkpoint(chain_runs["c8a"] / "fold1.pt")
    utts = features_for_checkpoint(ck)
    with pytest.raises(GclfError, match="order is compress, approx, quantize"):
        compress_one(ck, utts, 4, ["fc1"], epochs=0)
    with pytest.raises(GclfError, match="order"):
        approx_one(ck, utts, "hard", "hard", epochs=0)


def test_approx_cli_json_and_errors(trained_run, tmp_path):
    out = trained_run[0]
    r = invoke(["approx", "--model", str(out), "--sigmoid", "plan", "--tanh", "pwl16", "--finetune-epochs", "0",
                "--out", str(tmp_path / "a"), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    for key in ("accuracy_before", "accuracy_after", "sigmoid", "tanh"):
        assert key in j
    assert (j["sigmoid"], j["tanh"]) == ("plan", "pwl16")
    r = invoke(["approx", "--model", str(out), "--sigmoid", "nope"])
    assert r.exit_code != 0 and "nope" in str(r.exception)
    r = invoke(["approx", "--errors", "--json"])
    rows = json.loads(r.stdout)
    plan = next(e for e in rows if (e["func"], e["name"]) == ("sigmoid", "plan"))
    assert 0.018 < plan["max_abs_error"] < 0.02


def test_compress_cli_json(trained_run, tmp_path):
    r = invoke(["compress", "--model", str(trained_run[0]), "--block", "4", "--layers", "fc", "--finetune-epochs", "1",
                "--out", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    for key in ("block", "params_before", "params_after", "accuracy_before", "accuracy_after"):
        assert key in j
    assert j["block"] == 4 and j["params_after"] < j["params_before"]
    assert len(list((tmp_path / "c").glob("fold*.pt"))) == 3
