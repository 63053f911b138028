"""The model graph: builders, shapes, the float backend, serialisation, old checkpoints, and the registry that
every backend walks (every op kind has a handler in every backend)."""
import importlib

import pytest
import torch

from gclf.backends.torch_float import GraphNet, LSTMCell, n_params
from gclf.errors import GclfError
from gclf.graph import registry
from gclf.graph.chain import Approx, Compress, Quantize, Train, label
from gclf.graph.models import build_graph, config_for
from gclf.graph.models.cnn_lstm import CnnLstmConfig
from gclf.graph.ops import OP_KINDS, Conv1d, Flatten, Graph, Linear, MaxPool, Norm
from gclf.graph.serial import graph_from_dict, graph_to_dict, spec_from_dict, spec_to_dict, upgrade_checkpoint
from gclf.graph.spec import QuantConfig

BACKENDS = ("gclf.backends.torch_float", "gclf.backends.fixed", "gclf.backends.fakequant", "gclf.backends.intref",
            "gclf.backends.onnx.graph", "gclf.backends.c.generate", "gclf.explain.rules")


def test_every_op_kind_has_a_handler_in_every_backend():
    for mod in BACKENDS:
        importlib.import_module(mod)
    names = {r.backend for r in registry.ALL}
    assert {"PyTorch float", "fixed-point spec", "fake-quant", "integer reference", "ONNX", "C"} <= names
    for reg in registry.ALL:
        missing = [k.__name__ for k in reg.required() if k not in reg]
        assert not missing, f"the {reg.backend} backend has no handler for {missing}"
    assert set(registry.ALL[0].required()) == set(OP_KINDS.values())


def test_a_missing_handler_is_a_one_line_error():
    reg = registry.Registry("test backend", kinds=(Conv1d,))
    registry.ALL.remove(reg)
    with pytest.raises(GclfError, match="test backend backend has no handler for Conv1d ops"):
        reg[Conv1d("c", 1, 1, 1)]


def test_default_model_has_11834_parameters_and_its_layer_names():
    net = GraphNet(build_graph())
    assert n_params(net) == 11834
    assert [k for k in net.state_dict()][:6] == ["norm.offset", "norm.scale", "conv1.weight", "conv1.bias",
                                                 "conv2.weight", "conv2.bias"]


@pytest.mark.parametrize("frames", [84, 90, 99])
def test_accepts_84_to_99_frames(frames):
    assert GraphNet(build_graph())(torch.randn(3, 40, frames)).shape == (3, 2)


@pytest.mark.parametrize("frames", [83, 100])
def test_rejects_other_window_lengths(frames):
    with pytest.raises(ValueError, match="does not fit"):
        GraphNet(build_graph())(torch.randn(2, 40, frames))


def test_raw_conv_is_small_and_takes_raw_audio():
    g = build_graph("raw_conv")
    net = GraphNet(g)
    assert g.input_kind == "audio" and g.input_shape == (1, 8000)
    assert n_params(net) <= 50_000
    assert net(torch.randn(2, 1, 8000)).shape == (2, 2)
    assert [op.stride for op in g.of_kind(Conv1d)][0] > 1


def test_shapes_are_checked_when_a_graph_is_built():
    ok = [Norm("n", 3), Conv1d("c", 3, 4, 3, stride=2), MaxPool("p", 2), Flatten("f"), Linear("l", 8, 2)]
    g = Graph("custom", (3, 11), tuple(ok))
    assert g.shapes() == [(3, 11), (4, 5), (4, 2), (8,), (2,)]
    with pytest.raises(GclfError, match="expects 3 input channels"):
        Graph("bad", (2, 11), tuple(ok))
    with pytest.raises(GclfError, match="one logit per class"):
        Graph("bad", (3, 11), tuple(ok), classes=("a", "b", "c"))
    with pytest.raises(GclfError, match="unique"):
        Graph("bad", (3, 11), (Norm("n", 3), Conv1d("n", 3, 4, 3)))


def test_n_classes_comes_from_the_classes():
    g = build_graph("cnn_lstm", classes=("yes", "no", "up"))
    assert GraphNet(g)(torch.randn(2, 40, 99)).shape == (2, 3) and g.n_classes == 3


def test_lstm_matches_torch_lstm_exactly_with_exact_activations():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(8, 16, batch_first=True).double()
    mine = LSTMCell(8, 16).double()
    mine.load_torch_lstm(ref)
    x = torch.randn(7, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(mine(x), ref(x)[0], rtol=0, atol=1e-12)


def test_config_and_graph_round_trip():
    cfg = CnnLstmConfig(fc_hidden=(32, 16), dropout=0.0)
    assert CnnLstmConfig.from_dict(cfg.to_dict()) == cfg
    for arch in ("cnn_lstm", "raw_conv"):
        g = build_graph(arch)
        assert graph_from_dict(graph_to_dict(g)) == g
        assert config_for(arch, g.config) == config_for(arch)
    with pytest.raises(GclfError, match="unknown architecture"):
        build_graph("transformer")


def test_input_norm_removes_window_mean():
    m = GraphNet(build_graph()).eval()
    x = torch.randn(2, 40, 99)
    shift = torch.randn(1, 40, 1) * 5  # a constant per-coefficient offset (gain / channel colouring)
    torch.testing.assert_close(m(x), m(x + shift), rtol=1e-4, atol=1e-4)


def _v1_spec() -> dict:
    q = {"width": 8, "integer": 2, "signed": True, "rounding": "half_up", "saturation": "saturate"}
    return {"bits": 8, "act_bits": 8, "bias_bits": 16, "weights_only": False, "per_channel": False,
            "rounding": "half_up", "acc_bits": 23, "sigmoid": "plan", "tanh": "pwl16",
            "acts": {s: q for s in ("input", "conv1", "conv2", "gates", "cell", "hidden", "fc1", "fc2", "fc3")},
            "weights": {n: {"width": 8, "integer": [0]} for n in ("conv1", "conv2", "lstm.ih", "lstm.hh", "fc1", "fc2", "fc3")},
            "biases": {n: {"width": 16, "integer": [1]} for n in ("conv1", "conv2", "lstm", "fc1", "fc2", "fc3")}}


def test_format_1_spec_and_checkpoint_are_upgraded():
    spec = spec_from_dict(_v1_spec())
    assert spec.config == QuantConfig(bits=8, act_bits=8, bias_bits=16, acc_bits=23)
    assert spec.act("norm").width == 8 and set(spec.ops["lstm"].acts) == {"gates", "cell", "hidden"}
    assert set(spec.ops["lstm"].weights) == {"ih", "hh"} and spec.ops["lstm"].bias.width == 16
    assert spec_from_dict(spec_to_dict(spec)) == spec
    net = GraphNet(build_graph())
    old = {"gclf": 1, "model_config": CnnLstmConfig().to_dict(), "state_dict": net.state_dict(),
           "chain": [{"step": "train", "epochs": 3, "epochs_run": 2}, {"step": "compress", "block": 8, "targets": ["fc1"]},
                     {"step": "approx", "sigmoid": "plan", "tanh": "pwl16"},
                     {"step": "quantize", "bits": 8, "act_bits": 8, "weights_only": False, "spec": _v1_spec()}]}
    new = upgrade_checkpoint(old)
    assert new["gclf"] == 2 and graph_from_dict(new["graph"]) == build_graph()
    with pytest.raises(GclfError, match="rerun `gclf train`"):
        upgrade_checkpoint({**old, "model_config": {"pool": "x"}})
    with pytest.raises(GclfError, match="known format"):
        upgrade_checkpoint({"gclf": 7})


def test_one_label_for_a_chain():
    spec = spec_from_dict(_v1_spec())
    chain = [Train(), Compress(8, ("fc1",)), Approx("plan", "pwl16"), Quantize(spec.config, spec, 0)]
    assert label(chain) == "circulant k=8 > PWL plan/pwl16 > W8/A8"
    assert label([Train()]) == "float"
    q4 = QuantConfig(bits=4, act_bits=8, per_channel=True)
    assert label([Train(), Quantize(q4, spec, 10)]) == "W4/A8 per-channel QAT 10"
