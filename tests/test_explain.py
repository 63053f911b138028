"""`gclf explain`: the LRP rules (conservation where they promise it, each rule against a direct computation),
the deletion check on a model trained on synthetic speech, utterance maps, and the command line."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gclf.backends.torch_float import LSTMCell
from gclf.checkpoint import build_float_model, load_checkpoint
from gclf.data.features import FeatureConfig, cut_windows
from gclf.data.pipeline import heldout_windows
from gclf.errors import GclfError
from gclf.explain.deletion import deletion_curve, delete_frames
from gclf.explain.lrp import explain_windows
from gclf.explain.maps import explain_utterance, window_batch
from gclf.explain.rules import RULES, LrpConfig, captum_epsilon
from gclf.graph.ops import LSTM, OP_KINDS
from tests.test_cli import run

# Conservation bound: with zero biases and epsilon 1e-9 every rule conserves relevance exactly in exact
# arithmetic; in float32 the sum over 3,960 inputs may differ from the score by rounding, well below 1e-4
# of the score (measured: ~1e-7).
CONSERVATION_RTOL = 1e-4


def zero_biases(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


def test_the_lrp_registry_covers_every_op_kind():
    assert all(k in RULES for k in OP_KINDS.values())


@pytest.fixture(scope="module")
def fold1(trained_run):
    out, _ = trained_run
    ck = load_checkpoint(out / "fold1.pt")
    return ck, build_float_model(ck)


@pytest.fixture(scope="module")
def heldout_x(fold1, synth_features):
    ck, _ = fold1
    return heldout_windows(ck, synth_features[0]).x[:64]


@pytest.mark.parametrize("score", ["contrast", "logit"])
def test_relevance_is_conserved_with_zero_biases_and_epsilon_to_zero(fold1, heldout_x, score):
    model = zero_biases(build_float_model(fold1[0]))
    e = explain_windows(model, heldout_x, LrpConfig(epsilon=1e-9, score=score))
    total = e.relevance.reshape(len(e.score), -1).sum(axis=1)
    assert np.all(np.abs(e.score) > 1e-3)                 # something to conserve
    np.testing.assert_allclose(total, e.score, rtol=CONSERVATION_RTOL, atol=1e-6)


def test_biases_take_their_share_when_present(fold1, heldout_x):
    """The trained model's biases absorb relevance: the map then no longer sums to the score (which the
    summary reports as "conserved"), so the test above does see a rule that leaks."""
    e = explain_windows(fold1[1], heldout_x, LrpConfig(epsilon=1e-9))
    total = e.relevance.reshape(len(e.score), -1).sum(axis=1)
    assert np.max(np.abs(total - e.score) / np.abs(e.score)) > 10 * CONSERVATION_RTOL


def test_the_explained_score_is_the_log_odds_for_two_classes(fold1, heldout_x):
    e = explain_windows(fold1[1], heldout_x, LrpConfig())
    p = e.probabilities[np.arange(len(e.target)), e.target]
    np.testing.assert_allclose(e.score, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)
    assert (e.target == e.probabilities.argmax(axis=1)).all()


@pytest.mark.parametrize("layer", [torch.nn.Conv1d(5, 3, 4, stride=2), torch.nn.Linear(12, 7)])
def test_captum_epsilon_rule_matches_the_rule_written_out(layer):
    torch.manual_seed(1)
    x = torch.randn(2, 5, 20) if isinstance(layer, torch.nn.Conv1d) else torch.randn(2, 12)
    z = layer(x).detach()
    r = torch.randn_like(z)
    got = captum_epsilon(layer, x, r, 0.01)
    s = r / (z + 0.01 * torch.where(z >= 0, 1.0, -1.0))  # R_i = x_i sum_j w_ji R_j / (z_j + eps sign z_j)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(layer(xg), xg, s)
    np.testing.assert_allclose(got.numpy(), (x * g).numpy(), rtol=1e-5, atol=1e-6)
    assert not hasattr(layer, "rule")                     # Captum's rule is not left on the model's module


def test_lstm_rule_gives_gates_no_relevance_and_matches_the_rule_written_out():
    """Gates i = o = 1, f = 0 (saturated sigmoids, their weights 0): then c_t = g_t, h_t = tanh(g_t), and
    signal-take-all + epsilon gives R(x_t) = x_t * W_g^T (R(h_t) / z_g): written out and compared."""
    torch.manual_seed(2)
    op, cell = LSTM("lstm", 3, 4), LSTMCell(3, 4)
    with torch.no_grad():
        cell.ih.weight[:4].zero_(), cell.ih.weight[4:8].zero_(), cell.ih.weight[12:].zero_()
        cell.hh.weight.zero_()
        cell.ih.bias.zero_(), cell.hh.bias.zero_()
        cell.ih.bias[:4] = 40.0
        cell.ih.bias[4:8] = -40.0
        cell.ih.bias[12:] = 40.0
    x = torch.randn(2, 3, 6)                              # (B, C, T)
    r = torch.randn(2, 4, 6)                              # relevance of h_t
    got = RULES[op](op, cell, x, r, LrpConfig(epsilon=1e-9))
    w_g = cell.ih.weight[8:12].detach()                   # (H, C)
    z_g = torch.einsum("hc,bct->bht", w_g, x)
    want = x * torch.einsum("hc,bht->bct", w_g, r / z_g)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum().item(), r.sum().item(), rtol=1e-4)


def test_lstm_rule_conserves_relevance_through_time_with_zero_biases():
    torch.manual_seed(3)
    op, cell = LSTM("lstm", 8, 16), LSTMCell(8, 16)
    zero_biases(cell)
    x, r = torch.randn(3, 8, 5), torch.randn(3, 16, 5)
    got = RULES[op](op, cell, x, r, LrpConfig(epsilon=1e-9))
    np.testing.assert_allclose(got.sum(dim=(1, 2)).numpy(), r.sum(dim=(1, 2)).numpy(), rtol=1e-4)
    assert got[:, :, -1].abs().sum() > 0 and got[:, :, 0].abs().sum() > 0   # the first step hears the last's


def test_deleting_the_most_relevant_frames_lowers_the_score_more_than_random_ones(fold1, heldout_x):
    model = fold1[1]
    e = explain_windows(model, heldout_x, LrpConfig())
    curve = deletion_curve(model, heldout_x.numpy(), e, [10, 20], random_draws=5, seed=0)
    # measured (seed 0, 64 held-out windows, log-odds 2.67): 10 frames drop it by 2.41 (random 0.23, loudest
    # 0.62), 20 frames by 3.36 (0.45, 1.37); the floors keep a wide margin
    for d in curve:
        assert d["drop_relevant"] > 2 * max(d["drop_random"], 0.0) + 0.1
        assert d["drop_relevant"] > d["drop_loudest"]        # more than "where the speech is"
        assert d["windows_relevant_lower"] > 0.8


def test_deleted_frames_become_the_window_mean_frame():
    x = np.random.default_rng(0).standard_normal((2, 3, 10)).astype(np.float32)
    y = delete_frames(x, np.array([[1, 4], [0, 9]]))
    np.testing.assert_allclose(y[0, :, 4], x[0].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(y[1, :, 9], x[1].mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(y[0, :, 2], x[0, :, 2])
    np.testing.assert_array_equal(np.delete(y[1], [0, 9], axis=1), np.delete(x[1], [0, 9], axis=1))


def test_an_utterance_map_is_the_mean_of_its_windows_placed_on_its_frames(fold1):
    model, fcfg = fold1[1], FeatureConfig()
    m = np.random.default_rng(4).standard_normal((40, 260)).astype(np.float32)
    u = explain_utterance(model, m, fcfg)
    x, starts, _ = window_batch(m, fcfg)
    assert u.relevance.shape == m.shape and len(starts) == len(x) > 1
    np.testing.assert_allclose(u.relevance.sum(), u.windows.relevance.sum() / len(x), rtol=1e-6)
    assert len(set(u.windows.target)) == 1                 # every window explains the utterance's label
    short = explain_utterance(model, m[:, :60], fcfg)     # shorter than a window: wrapped, still (C, 60)
    assert short.relevance.shape == (40, 60)
    edge = replace(fcfg, pad="edge")                      # centred: the map puts each window frame on its frame
    x, _, index = window_batch(m[:, :60], edge)
    np.testing.assert_array_equal(x[0], cut_windows(m[:, :60], edge)[0])
    assert index[0, 0] == 0 and index[0, -1] == 59 and index[0, 19 + 30] == 30
    edged = explain_utterance(model, m[:, :60], edge)
    assert edged.relevance.shape == (40, 60) and not np.allclose(edged.relevance, short.relevance)


def _audio(synth_corpus):
    return sorted(str(p) for p in synth_corpus.rglob("*.flac"))[:2]


def test_cli_explains_files_with_png_npz_and_json(trained_run, synth_corpus, tmp_path):
    run_dir, _ = trained_run
    files = _audio(synth_corpus)
    r = run(["explain", *files, "--model", str(run_dir / "fold1.pt"), "--out", str(tmp_path), "--npz", "--json"])
    out = json.loads(r.stdout)
    assert [u["name"] for u in out["utterances"]] == files and out["notes"] == []
    for u in out["utterances"]:
        assert u["label"] in ("M", "F") and u["explained"] == u["label"]
        assert len(u["coefficient_relevance"]) == 40 and len(u["top_frames"]) == 5
        with open(u["png"], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        z = np.load(u["npz"])
        assert z["relevance"].shape == z["mfcc"].shape and z["relevance"].shape[0] == 40
        np.testing.assert_allclose(z["relevance"].sum(), u["relevance_sum"], rtol=1e-3, atol=1e-4)


def test_cli_explains_heldout_utterances_with_the_deletion_check(trained_run, synth_features, tmp_path):
    run_dir, _ = trained_run
    r = run(["explain", "--model", str(run_dir), "--heldout", "3", "--deletion", "--no-png", "--json",
             "--out", str(tmp_path)])
    out = json.loads(r.stdout)
    assert out["model"].endswith("fold1.pt")
    rows = out["utterances"]
    assert len(rows) == 3 and {u["true_label"] for u in rows} == {"M", "F"}
    assert not list(tmp_path.glob("*.png"))
    assert [d["frames"] for d in out["deletion"]] == [5, 10, 20, 40]


def test_cli_explains_the_float_twin_of_a_fixed_point_model_and_says_so(chain_runs, synth_corpus, tmp_path):
    f = _audio(synth_corpus)[:1]
    for chain in ("q8", "c8aq8"):                         # c8aq8: block-circulant maps and PWL activations too
        r = run(["explain", *f, "--model", str(chain_runs[chain] / "fold1.pt"), "--json", "--no-png",
                 "--out", str(tmp_path)])
        out = json.loads(r.stdout)
        assert any("float twin" in n for n in out["notes"])
        assert np.isfinite(out["utterances"][0]["relevance_sum"])


@pytest.mark.parametrize("chain", ["q8", "c8aq8"])
def test_the_float_twin_holds_the_rounded_weights_of_the_fake_quant_model(chain_runs, synth_features, chain):
    """The twin explained for a fixed-point checkpoint computes what the fake-quant model with float activations
    computes (its weights and biases on the spec's grid), and differs from the float weights it came from."""
    from gclf.backends.fakequant import FakeQuantNet
    from gclf.checkpoint import quant_of
    from gclf.explain.twin import rounded_twin

    ck = load_checkpoint(chain_runs[chain] / "fold1.pt")
    model, spec = build_float_model(ck), quant_of(ck).spec
    twin = rounded_twin(model, spec)
    x = heldout_windows(ck, synth_features[0]).x[:32]
    with torch.no_grad():
        want = FakeQuantNet(model, spec, "weights").eval()(x).numpy()
        got = twin(x).double().numpy()
        before = model(x).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(before - want).max() > 10 * np.abs(got - want).max()
    assert not torch.equal(model.fc1.weight, twin.fc1.weight)


def test_cli_bad_input_is_one_line(trained_run, synth_corpus, tmp_path):
    run_dir, _ = trained_run
    f = _audio(synth_corpus)[:1]
    r = run(["explain", "--model", str(run_dir)], expect=None)
    assert r.exit_code != 0 and "FILES or --heldout" in str(r.exception)
    r = run(["explain", *f, "--model", str(run_dir / "fold1.pt"), "--target", "X"], expect=None)
    assert "--target 'X' is not a class" in str(r.exception)
    r = run(["explain", *f, "--model", str(run_dir / "fold1.pt"), "--fold", "2"], expect=None)
    assert "--fold needs a run folder" in str(r.exception)
    r = run(["explain", *f, "--model", str(run_dir / "fold1.pt"), "--epsilon", "0"], expect=2)
    assert "--epsilon" in r.output
    with pytest.raises(GclfError, match="epsilon must be > 0"):
        LrpConfig(epsilon=0.0)


@pytest.mark.parametrize("arch", ["cnn2d", "cnn1d"])
def test_cnn_rules_conserve_relevance_with_zero_biases(arch):
    """The CNNs' ops (Image, Conv2d, MaxPool2d, GlobalMaxPool; batch norm folded first) conserve relevance
    like the others: with zero biases and epsilon -> 0 the map sums to the score."""
    from gclf.backends.bnfold import fold_batchnorm
    from gclf.backends.torch_float import GraphNet
    from gclf.graph.models import build_graph

    torch.manual_seed(0)
    net = GraphNet(build_graph(arch, {"n_frames": 51}, classes=("a", "b", "c")))
    with torch.no_grad():                                  # a batch norm that is not the identity
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model = zero_biases(fold_batchnorm(net.eval()))
    x = torch.randn(4, 40, 51)
    e = explain_windows(model, x, LrpConfig(epsilon=1e-9, score="logit"))
    total = e.relevance.reshape(len(e.score), -1).sum(axis=1)
    assert np.all(np.abs(e.score) > 1e-4)
    np.testing.assert_allclose(total, e.score, rtol=CONSERVATION_RTOL, atol=1e-6)
