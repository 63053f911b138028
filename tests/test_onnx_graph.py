"""The ONNX builder on graphs other than the trained CNN-LSTM: raw_conv (strided convolutions, MaxPools incl. a
global one, no LSTM) and an unusual op order, with seeded random weights. Float must match GraphNet within
1e-5; qdq must equal the integer reference exactly; weights-qdq must match FakeQuantNet (weights mode)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gclf.backends.onnx.export import ort_logits, ort_session  # noqa: E402
from gclf.backends.onnx.graph import HANDLERS, OnnxGraph, onnx_model  # noqa: E402
from gclf.backends.torch_float import GraphNet  # noqa: E402
from gclf.graph.models import build_graph  # noqa: E402
from gclf.graph.ops import LSTM, OP_KINDS, Conv1d, Flatten, Graph, Linear, MaxPool, Norm  # noqa: E402
from gclf.graph.spec import QuantConfig  # noqa: E402
from gclf.steps.api import quantize  # noqa: E402

MOVES = {"Transpose", "Reshape", "Unsqueeze", "Squeeze", "MaxPool", "Flatten"}


def random_net(graph: Graph, seed: int = 0) -> GraphNet:
    torch.manual_seed(seed)
    net = GraphNet(graph)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.5 / max(1, p[0].numel()) ** 0.5)
        norm = net.input_norm()
        norm.offset.copy_(torch.randn_like(norm.offset) * 0.01)
        norm.scale.copy_(torch.rand_like(norm.scale) + 0.5)
    return net.eval()


def windows(graph: Graph, n: int, seed: int) -> torch.Tensor:
    c, t = graph.input_shape
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, t, generator=g) * (8.0 if graph.input_kind == "mfcc" else 0.3)


@pytest.fixture(scope="module")
def raw():
    graph = build_graph("raw_conv")
    return random_net(graph), windows(graph, 24, seed=1), windows(graph, 48, seed=2)


def unusual() -> Graph:
    """LSTM first, MaxPool after the LSTM, a Conv1d without ReLU after the pool, two Linear layers."""
    ops = (Norm("n", 6), LSTM("rnn", 6, 8), MaxPool("p", 3, 2), Conv1d("c", 8, 5, 2, relu=False), MaxPool("q", 2),
           Flatten("f"), Linear("a", 10, 7, relu=True), Linear("b", 7, 3))
    return Graph("custom", (6, 12), ops, classes=("x", "y", "z"), input_kind="audio")


def _proto(net, spec, opset):
    proto, form = onnx_model(net, spec, opset)
    onnx.checker.check_model(proto, full_check=True)
    return proto, form


def _no_dequantize_before_data_movement(proto) -> None:
    """onnxruntime's default session breaks DequantizeLinear(int8) -> Transpose/Reshape/MaxPool at opset >= 21."""
    made_by = {o: n.op_type for n in proto.graph.node for o in n.output}
    for n in proto.graph.node:
        if n.op_type in MOVES:
            assert made_by.get(n.input[0]) != "DequantizeLinear", f"{n.name} follows a DequantizeLinear"


def test_every_op_kind_has_an_onnx_handler():
    assert all(kind in HANDLERS for kind in OP_KINDS.values())


@pytest.mark.parametrize("opset", [13, 18])
def test_raw_conv_float_matches_graphnet(raw, opset):
    net, x, _ = raw
    proto, form = _proto(net, None, opset)
    assert form == "float" and proto.graph.input[0].name == "audio" and proto.graph.output[0].name == "logits"
    for v in (proto.graph.input[0], proto.graph.output[0]):
        assert v.type.tensor_type.shape.dim[0].dim_param                  # dynamic batch
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "MaxPool", "MatMul", "ReduceMean"}
    assert [a.ints for n in proto.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "strides"] \
        == [[op.stride] for op in net.graph.of_kind(Conv1d)]
    sess = ort_session(proto.SerializeToString())
    for b in (1, 7):
        with torch.no_grad():
            want = net(x[:b]).double().numpy()
        got = ort_logits(sess, x[:b])
        assert got.shape == (b, 2) and np.abs(got - want).max() < 1e-5


@pytest.mark.parametrize("cfg", [QuantConfig(bits=8),
                                 QuantConfig(bits=4, act_bits=8, per_channel=True, rounding="floor")],
                         ids=["w8a8", "w4a8-pc-floor"])
@pytest.mark.parametrize("opset", [18, 21])
def test_raw_conv_qdq_equals_integer_reference(raw, cfg, opset):
    net, x, calib = raw
    fixed = quantize(net, cfg, calib)
    proto, form = _proto(net, fixed.spec, opset)
    assert form == "qdq"
    _no_dequantize_before_data_movement(proto)
    qs = sum(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    assert qs == 1 + len(net.graph.of_kind(Conv1d, Linear))            # the input, then every Conv1d/Linear
    ref = fixed.reference().logits(x)
    data = proto.SerializeToString()
    got = ort_logits(ort_session(data, qdq_fusion=False), x)           # the graph as written
    assert np.array_equal(got.argmax(1), ref.argmax(1)) and np.abs(got - ref).max() == 0.0
    assert ort_logits(ort_session(data, qdq_fusion=False), x[:1]).shape == (1, 2)
    default = ort_logits(ort_session(data), x)                          # fused integer kernels: loads and runs
    assert np.mean(default.argmax(1) == ref.argmax(1)) >= 0.9


def test_raw_conv_weights_qdq_matches_fakequant(raw):
    net, x, _ = raw
    fixed = quantize(net, QuantConfig(bits=8, weights_only=True))
    proto, form = _proto(net, fixed.spec, 18)
    assert form == "weights-qdq" and not any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    with torch.no_grad():
        want = fixed.fakequant().eval()(x).numpy()
    got = ort_logits(ort_session(proto.SerializeToString(), qdq_fusion=False), x)
    assert np.abs(got - want).max() < 1e-5


def test_any_op_order_in_all_three_forms():
    """An LSTM straight after Norm, pooled after, then a Conv1d: the walker assumes no order. In qdq the
    LSTM's stacked hidden codes are pooled as integers; opset 21 loads in onnxruntime's default session."""
    graph = unusual()
    net, x, calib = random_net(graph), windows(graph, 30, seed=3), windows(graph, 60, seed=4)
    with torch.no_grad():
        want = net(x).double().numpy()
    got = ort_logits(ort_session(_proto(net, None, 18)[0].SerializeToString()), x)
    assert got.shape == (30, 3) and np.abs(got - want).max() < 1e-5
    for cfg, opset in ((QuantConfig(bits=8, rounding="half_even"), 21), (QuantConfig(bits=6, act_bits=6), 18),
                       (QuantConfig(bits=16), 21)):
        fixed = quantize(net, cfg, calib)
        proto, _ = _proto(net, fixed.spec, opset)
        if cfg.bits <= 8:                              # int16 codes are pooled as floats (MaxPool takes no int16)
            _no_dequantize_before_data_movement(proto)
        data = proto.SerializeToString()
        ref = fixed.reference().logits(x)
        assert np.abs(ort_logits(ort_session(data, qdq_fusion=False), x) - ref).max() == 0.0, cfg
        ort_logits(ort_session(data), x[:2])
    fixed = quantize(net, QuantConfig(bits=8, weights_only=True))
    with torch.no_grad():
        want = fixed.fakequant().eval()(x).numpy()
    got = ort_logits(ort_session(_proto(net, fixed.spec, 18)[0].SerializeToString()), x)
    assert np.abs(got - want).max() < 1e-5


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_float_act_equals_approx_float_in_onnxruntime():
    """The elementwise sigmoid/tanh of a scheme gives gclf.approx's float values (one-segment hard, step
    tables, PLAN, pwl), bit for bit in float32."""
    from onnx import TensorProto, helper

    from gclf.approx import get_approx

    x = torch.cat([torch.linspace(-8, 8, 4001), torch.tensor([0.0, -0.0, 2.375, -2.375, 6.0, -6.0, 5.0, -1.0])])
    g = OnnxGraph(random_net(unusual()), None, 18)
    pairs = [(n, f) for n in ("hard", "plan", "pwl16", "lut64", "lut256", "exact") for f in ("sigmoid", "tanh")]
    outs = [g.float_act("v", n, f) for n, f in pairs]
    for i, o in enumerate(outs):
        g.node("Identity", o, out=f"y{i}")
    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"])  # noqa: E731
    graph = helper.make_graph(g.nodes, "acts", [vi("v")], [vi(f"y{i}") for i in range(len(outs))], g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(proto, full_check=True)
    got = ort_session(proto.SerializeToString()).run(None, {"v": x.numpy()})
    for (name, func), y in zip(pairs, got):
        want = get_approx(name, func).float(x).numpy()
        if name == "exact":
            assert np.abs(y - want).max() < 1e-6
        else:
            assert np.array_equal(y, want), (name, func)


def test_export_onnx_of_a_raw_conv_checkpoint(raw, tmp_path):
    """The checkpoint API end to end on an audio graph: synthetic windows of its input shape, the input named
    after its kind, the chain label and form as metadata."""
    from gclf.backends.onnx.export import check_windows, export_onnx
    from gclf.checkpoint import make_checkpoint
    from gclf.data.features import FeatureConfig
    from gclf.graph.chain import Train, label

    net, _, calib = raw
    fixed = quantize(net, QuantConfig(bits=8), calib)
    chain = [Train(), fixed.step()]
    ck = make_checkpoint(net, FeatureConfig(), chain, None, None)
    x, real = check_windows(ck, None)
    assert x.shape[1:] == net.graph.input_shape and not real
    r = export_onnx(ck, tmp_path / "raw.onnx")
    assert r["form"] == "qdq" and r["opset"] == 18 and r["chain"] == label(chain) == "W8/A8"
    assert r["agreement"]["held_out"] is False and r["agreement"]["max_abs_logit_diff"] == 0.0
    assert r["matches_pytorch"]["batch7_max_abs"] == 0.0 and any("synthetic" in n for n in r["notes"])
    m = onnx.load(r["path"])
    assert {p.key: p.value for p in m.metadata_props} == {
        "gclf.chain": "W8/A8", "gclf.form": "qdq",
        "gclf.frontend": "the input is raw audio windows; nothing before the network is left out"}
    assert m.graph.input[0].name == "audio"


def test_opsets(raw):
    """Float and 8-bit fixed point: 13..23 (default 18); wider fixed point: 21..23 (default 21)."""
    from gclf.backends.onnx.export import choose_opset
    from gclf.checkpoint import make_checkpoint
    from gclf.data.features import FeatureConfig
    from gclf.errors import GclfError
    from gclf.graph.chain import Train

    net, _, calib = raw
    ck = lambda cfg: make_checkpoint(net, FeatureConfig(), [Train()] + (  # noqa: E731
        [quantize(net, cfg, calib).step()] if cfg else []), None, None)
    flt, q8, q16 = ck(None), ck(QuantConfig(bits=8)), ck(QuantConfig(bits=8, act_bits=16))
    assert [choose_opset(c, None) for c in (flt, q8, q16)] == [18, 18, 21]
    assert choose_opset(flt, 13) == 13 and choose_opset(q8, 13) == 13 and choose_opset(q16, 23) == 23
    with pytest.raises(GclfError, match="use 21..23"):
        choose_opset(q16, 18)
    with pytest.raises(GclfError, match="use 13..23"):
        choose_opset(flt, 12)
