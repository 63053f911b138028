"""The C generator walks any graph of ops: raw-audio and custom graphs with random weights are bit-exact with the
integer reference, compiled with -Wpedantic -Wconversion on top of the build flags."""
import re
import subprocess

import numpy as np
import pytest
import torch

from gclf.backends.c.build import CFLAGS, build_harness, run_harness
from gclf.backends.c.generate import HANDLERS, generate_c
from gclf.backends.intref import IntegerReference
from gclf.backends.torch_float import GraphNet
from gclf.graph.models import build_graph
from gclf.graph.ops import LSTM, OP_KINDS, Conv1d, Flatten, Graph, Linear, MaxPool, Norm
from gclf.graph.spec import QuantConfig
from gclf.steps.api import ApproxConfig, CompressConfig, approx_, compress_, quantize

STRICT = (*CFLAGS, "-Wpedantic", "-Wconversion")



def _net(graph: Graph, seed: int = 0) -> GraphNet:
    torch.manual_seed(seed)
    return GraphNet(graph).eval()


def _windows(graph: Graph, n: int, scale: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *graph.input_shape, generator=g) * scale


def _assert_bit_exact(net, spec, x, tmp_path, cc, saturates: bool = True, flags=STRICT) -> dict:
    """Calibration-like windows and saturating extreme windows: every C logit equals the reference's."""
    files, rep = generate_c(net, spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    ref = IntegerReference(net, spec)
    xq = ref.quantize_input(x)
    f = ref.plan[net.graph.norm.name].out_fmt
    extreme = np.random.default_rng(0).integers(f.min_int, f.max_int, (5, *xq.shape[1:]), endpoint=True)
    extreme[0], extreme[1] = f.max_int, f.min_int
    extreme[2, :, ::2], extreme[2, :, 1::2] = f.max_int, f.min_int
    xq = np.concatenate([xq, extreme])
    ref.overflows.clear()
    want = ref.run_int(xq)
    got = run_harness(build_harness(tmp_path, tmp_path / "h", cc, flags), xq)
    assert got.shape == want.shape and np.array_equal(got, want), int((got != want).any(axis=1).sum())
    if saturates:
        assert sum(ref.overflows.values()) > 0             # the saturation paths ran too
    return rep


def test_every_op_kind_has_a_c_handler():
    assert all(kind in HANDLERS for kind in OP_KINDS.values())


RAW_SPECS = {"w8a8": (QuantConfig(bits=8), None),
             "w4a8_pc_floor": (QuantConfig(bits=4, act_bits=8, per_channel=True, rounding="floor"), None),
             "w12a10_half_even": (QuantConfig(bits=12, act_bits=10, rounding="half_even"), None),
             "w16a16": (QuantConfig(bits=16), None),
             "circ4_w8a8_half_away": (QuantConfig(bits=8, rounding="half_away"), 4)}


@pytest.mark.parametrize("name", list(RAW_SPECS))
def test_raw_conv_graph_is_bit_exact(name, tmp_path, cc):
    cfg, block = RAW_SPECS[name]
    graph = build_graph("raw_conv")
    net = _net(graph)
    if block:
        compress_(net, CompressConfig(block, layers=("fc",)))
    x = _windows(graph, 12, 0.3)
    fixed = quantize(net, cfg, x)
    rep = _assert_bit_exact(net, fixed.spec, x, tmp_path, cc)
    assert rep["activations"] == {}
    assert rep["circulant_layers"] == (["fc1", "fc2"] if block else [])
    assert rep["acc_ctype"] == ("int64_t" if cfg.bits == 16 else "int32_t")
    text = (tmp_path / "gclf_model.c").read_text()
    assert "gclf_lstm" not in text and "gclf_segment" not in text      # only the kernels of the kinds used
    # the global pool's (16, 1) output is already the flat vector: no copy, no buffer of its own
    assert rep["ops"]["flatten"]["buffer"] == rep["ops"]["pool3"]["buffer"] and "gclf_flatten" not in text
    if block:
        assert "gclf_fc2_weight[32]" in text                            # (1, 8, 4) vectors, not the 2x32 matrix


def _mixed_graph() -> Graph:
    """Ops in another order: strided conv without ReLU, overlapping pool, LSTM straight on it, two Linear."""
    ops = (Norm("norm", 6), Conv1d("c", 6, 8, 3, stride=2, relu=False), MaxPool("p", 3, 2), LSTM("rnn", 8, 12),
           Flatten("f"), Linear("h", 9 * 12, 10, relu=True), Linear("out", 10, 2))
    return Graph("mixed", (6, 41), ops, ("M", "F"))


MIXED = {"exact_w8a8": (QuantConfig(bits=8), None, None),
         "circ_pwl_w6a8_pc_half_away": (QuantConfig(bits=6, act_bits=8, per_channel=True, rounding="half_away"),
                                        ("plan", "pwl16"), 4),
         "lut_w12a12_floor": (QuantConfig(bits=12, act_bits=12, rounding="floor"), ("lut64", "lut256"), None),
         "hard_w3a5_half_even": (QuantConfig(bits=3, act_bits=5, rounding="half_even"), ("hard", "hard"), None)}


@pytest.mark.parametrize("name", list(MIXED))
def test_mixed_graph_is_bit_exact(name, tmp_path, cc):
    cfg, acts, block = MIXED[name]
    graph = _mixed_graph()
    net = _net(graph, 1)
    if block:
        compress_(net, CompressConfig(block, layers=("fc", "lstm")))
    if acts:
        approx_(net, ApproxConfig(*acts))
    x = _windows(graph, 16, 1.0, 1)
    rep = _assert_bit_exact(net, quantize(net, cfg, x).spec, x, tmp_path, cc)
    assert set(rep["activations"]) == {"gclf_rnn_sigmoid_gates", "gclf_rnn_tanh_gates", "gclf_rnn_tanh_cell"}
    if block:
        assert rep["circulant_layers"] == ["rnn.ih", "rnn.hh", "h", "out"]
    text = (tmp_path / "gclf_model.c").read_text()
    # one function per op with its shapes as literals, on time-major buffers (the conv transposes the input
    # as it widens it: no copy of its own)
    assert "gclf_c(&x[0][0], gclf_buf_c);" in text and "gclf_buf_input" not in text and "gclf_p(gclf_buf_c, gclf_buf_p);" in text
    assert "for (int s = 0; s < 9; s++)" in text and "y[s * 8 + c] = m;" in text
    code = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', re.sub(r"/\*.*?\*/", "", text, flags=re.S))   # no comments, strings
    assert not re.search(r"[^/*\n]/[^/*\n]|%", code), "a division or modulo on the inference path"


def test_two_lstms_a_global_pool_and_three_classes(tmp_path, cc):
    ops = (Norm("norm", 4), LSTM("l1", 4, 6), LSTM("l2", 6, 8), MaxPool("gp", 7), Flatten("flat"),
           Linear("fc", 8, 3))
    graph = Graph("two_lstm", (4, 7), ops, ("a", "b", "c"))
    net = _net(graph, 2)
    x = _windows(graph, 16, 1.0, 2)
    rep = _assert_bit_exact(net, quantize(net, QuantConfig(bits=8, rounding="half_up"), x).spec, x, tmp_path, cc)
    assert len(rep["activations"]) == 6 and rep["ops"]["flat"]["buffer"] == "gclf_buf_gp"
    assert "#define GCLF_N_CLASSES 3" in (tmp_path / "gclf_model.h").read_text()


def test_a_graph_without_weights(tmp_path, cc):
    """Norm -> global MaxPool -> Flatten: the logits are the pooled input; no accumulator, no primitives."""
    graph = Graph("pool_only", (2, 5), (Norm("norm", 2), MaxPool("gp", 5), Flatten("flat")))
    net = _net(graph)
    x = _windows(graph, 8, 1.0)
    rep = _assert_bit_exact(net, quantize(net, QuantConfig(bits=8), x).spec, x, tmp_path, cc, saturates=False)
    assert "gclf_requant" not in (tmp_path / "gclf_model.c").read_text() and rep["array_bytes"]["weights"] == 0


def _raw_and_mixed_under(flags, tmp_path, cc, raw_bits: int, per_channel: bool) -> None:
    """raw_conv at ``raw_bits`` and a circulant PWL mixed graph at 8 bits, compiled with ``flags``, bit-exact."""
    graph = build_graph("raw_conv")
    net = _net(graph)
    x = _windows(graph, 4, 0.3)
    (tmp_path / "raw").mkdir()
    _assert_bit_exact(net, quantize(net, QuantConfig(bits=raw_bits), x).spec, x, tmp_path / "raw", cc, flags=flags)
    graph = _mixed_graph()
    net = _net(graph, 1)
    compress_(net, CompressConfig(4, layers=("fc", "lstm")))
    approx_(net, ApproxConfig("plan", "pwl16"))
    x = _windows(graph, 8, 1.0, 1)
    (tmp_path / "mixed").mkdir()
    _assert_bit_exact(net, quantize(net, QuantConfig(bits=8, per_channel=per_channel), x).spec, x, tmp_path / "mixed",
                      cc, flags=flags)


def test_no_undefined_behaviour_under_ubsan(tmp_path, cc):
    """int64 accumulators (W16/A16, raw audio) and a circulant PWL LSTM, run with saturating inputs under UBSan."""
    flags = (*STRICT, "-fsanitize=undefined", "-fno-sanitize-recover=all")
    probe = subprocess.run([cc, *flags, "-x", "c", "-o", str(tmp_path / "p"), "-"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the C compiler has no -fsanitize=undefined")
    _raw_and_mixed_under(flags, tmp_path, cc, raw_bits=16, per_channel=True)


@pytest.mark.parametrize("rounding", ["floor", "half_up", "half_away", "half_even"])
def test_odd_shapes_take_every_tail_of_the_paired_kernels(rounding, tmp_path, cc):
    """Odd patch length (zero-padded pair), odd channel and step counts (the 2 x 2 blocks' tails), a strided
    conv without ReLU, per-channel shifts: bit-exact in every rounding mode."""
    ops = (Norm("norm", 5), Conv1d("c1", 5, 7, 3), Conv1d("c2", 7, 5, 3, stride=2, relu=False), MaxPool("p", 2),
           Flatten("f"), Linear("out", 25, 3))
    graph = Graph("odd", (5, 25), ops, ("a", "b", "c"))
    net = _net(graph, 3)
    x = _windows(graph, 12, 1.0, 3)
    rep = _assert_bit_exact(net, quantize(net, QuantConfig(bits=8, per_channel=True, rounding=rounding), x).spec,
                            x, tmp_path, cc)
    assert rep["paired_products"] and "zero-padded to 16" in (tmp_path / "gclf_model.c").read_text()
    assert rep["macs"] == 7 * 15 * 23 + 5 * 21 * 11 + 25 * 3


def test_no_out_of_bounds_access_under_asan(tmp_path, cc):
    """The paired kernels read whole padded patches from a chunked scratch and the circulant rows read reversed
    vectors in two segments: AddressSanitizer (with UBSan) on odd shapes, a strided conv with many chunks and a
    circulant PWL LSTM, with saturating inputs."""
    flags = (*STRICT, "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
    probe = subprocess.run([cc, *flags, "-x", "c", "-o", str(tmp_path / "p"), "-"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0 or subprocess.run([str(tmp_path / "p")], capture_output=True).returncode != 0:
        pytest.skip("the C compiler has no working -fsanitize=address")
    _raw_and_mixed_under(flags, tmp_path, cc, raw_bits=8, per_channel=False)
    ops = (Norm("norm", 5), Conv1d("c1", 5, 7, 3), Conv1d("c2", 7, 5, 3, stride=2, relu=False), MaxPool("p", 2),
           Flatten("f"), Linear("out", 25, 3))
    graph = Graph("odd", (5, 25), ops, ("a", "b", "c"))
    net = _net(graph, 3)
    x = _windows(graph, 8, 1.0, 3)
    (tmp_path / "odd").mkdir()
    _assert_bit_exact(net, quantize(net, QuantConfig(bits=8), x).spec, x, tmp_path / "odd", cc, flags=flags)
