"""The CNNs with batch norm (cnn2d on the MFCC window as an image, cnn1d on MFCCs over time): batch norm folded
into the convolutions within a stated bound, then bit-exact in every integer path (fake-quant, integer
reference, ONNX in onnxruntime, C on x86) at W8/A8, and carried through the CLI's steps and exports."""
import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gclf.backends.bnfold import fold_batchnorm, fold_conv_bn, has_batchnorm
from gclf.backends.c.build import CFLAGS, build_harness, run_harness
from gclf.backends.c.generate import generate_c
from gclf.backends.intref import IntegerReference
from gclf.backends.onnx.export import ort_logits, ort_session
from gclf.backends.onnx.graph import onnx_model
from gclf.backends.torch_float import GraphNet, n_params
from gclf.checkpoint import chain_of, checkpoint_paths, graph_of, load_checkpoint
from gclf.cli import cli
from gclf.errors import GclfError
from gclf.graph.models import build_graph
from gclf.graph.ops import Conv1d, Conv2d
from gclf.graph.spec import QuantConfig
from gclf.steps.api import CompressConfig, compress_, quantize

ARCHS = ("cnn2d", "cnn1d")
KEYWORDS = tuple(f"k{i}" for i in range(12))
STRICT = (*CFLAGS, "-Wpedantic", "-Wconversion")


def _net(arch: str, classes=KEYWORDS, frames: int = 51, seed: int = 0) -> GraphNet:
    """A network with random weights and random (non-trivial) batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = GraphNet(build_graph(arch, {"n_frames": frames}, classes))
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.2, 3.0)
                mod.weight.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.3, 0.3)
    return net.eval()


def _windows(net: GraphNet, n: int, seed: int = 0, frames: int | None = None) -> torch.Tensor:
    """MFCC-like windows: a per-coefficient level plus noise."""
    c, t = net.graph.input_shape
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, frames or t, generator=g) * 8.0 + torch.linspace(-30.0, 10.0, c)[:, None]


@pytest.mark.parametrize("arch", ARCHS)
def test_size_and_any_class_count(arch):
    for classes in (("M", "F"), tuple("0123456789"), KEYWORDS):
        net = GraphNet(build_graph(arch, {"n_frames": 51}, classes))
        assert n_params(net) <= 30_000
        for frames in (51, 99):                                        # 1-s keyword clips, 2-s windows
            assert net.eval()(torch.randn(2, 40, frames)).shape == (2, len(classes))
    convs = build_graph(arch).of_kind(Conv1d, Conv2d)
    assert len(convs) == 3 and all(op.bn for op in convs)


@pytest.mark.parametrize("arch", ARCHS)
def test_folded_batchnorm_matches_the_unfolded_model(arch):
    """The stated bounds: folded vs unfolded eval-mode logits within 1e-9 in float64, 1e-4 in float32."""
    net = _net(arch)
    x = _windows(net, 16)
    folded = fold_batchnorm(net)
    assert not has_batchnorm(folded.graph) and has_batchnorm(net.graph)          # the model itself is unchanged
    assert all(not op.bn for op in folded.graph.of_kind(Conv1d, Conv2d))
    assert "conv1.bn.running_var" in net.state_dict() and "conv1.bias" in folded.state_dict()
    net64 = copy.deepcopy(net).double()                                 # folded in float64, kept in float64
    with torch.no_grad():
        z, zf = net(x), folded(x)
        z64, zf64 = net64(x.double()), fold_batchnorm(net64)(x.double())
    assert (z - zf).abs().max() <= 1e-4 * max(1.0, float(z.abs().max()))
    assert (z64 - zf64).abs().max() <= 1e-9 * max(1.0, float(z64.abs().max()))
    assert fold_batchnorm(folded) is folded                           # nothing left to fold


def test_fold_conv_bn_is_the_affine_map():
    bn = torch.nn.BatchNorm1d(3).double().eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
        bn.weight.copy_(torch.tensor([2.0, 1.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    w = torch.ones(3, 2, 1, dtype=torch.float64)
    wf, bf = fold_conv_bn(w, None, bn)
    s = torch.tensor([2.0, 1.0, -1.0]) / torch.sqrt(torch.tensor([4.0, 0.25, 1.0]) + bn.eps)
    torch.testing.assert_close(wf[:, 0, 0], s.double())
    torch.testing.assert_close(bf, torch.tensor([0.0, 1.0, 3.0]).double() - s.double() * bn.running_mean)


def test_integer_backends_refuse_an_unfolded_batchnorm():
    from gclf.backends.fixed import make_spec

    net = _net("cnn2d")
    with pytest.raises(GclfError, match="still has its batch norm: fold it"):
        make_spec(net, None, QuantConfig(bits=8, weights_only=True))


def _bit_exact_everywhere(net: GraphNet, cfg: QuantConfig, tmp_path, cc) -> dict:
    x = _windows(net, 24)
    fixed = quantize(net, cfg, x)
    model, spec = fixed.model, fixed.spec
    assert not has_batchnorm(model.graph)
    ref = IntegerReference(model, spec)
    want = ref.logits(x)
    fq = fixed.fakequant().eval()
    with torch.no_grad():
        assert np.array_equal(fq(x).numpy(), want)                                  # fake-quant
    if max(cfg.bits, cfg.a_bits) <= 8:       # ONNX adds in float32: exact below 2^24 LSB (8-bit specs)
        proto, form = onnx_model(model, spec, 18)
        assert form == "qdq"
        sess = ort_session(proto.SerializeToString(), qdq_fusion=False)
        assert np.array_equal(ort_logits(sess, x), want)                            # ONNX (ORT, as written)
        assert np.array_equal(ort_logits(sess, x[:1]), want[:1])                    # batch 1 too
    files, rep = generate_c(model, spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    xq = ref.quantize_input(x)
    f = ref.plan[model.graph.norm.name].out_fmt
    extreme = np.random.default_rng(0).integers(f.min_int, f.max_int, (4, *xq.shape[1:]), endpoint=True)
    extreme[0], extreme[1] = f.max_int, f.min_int
    xq = np.concatenate([xq, extreme])
    ref.overflows.clear()
    got = run_harness(build_harness(tmp_path, tmp_path / "h", cc, STRICT), xq)       # C (x86, strict warnings)
    assert np.array_equal(got, ref.run_int(xq))
    assert sum(ref.overflows.values()) > 0                                          # saturation paths ran too
    return rep


@pytest.mark.parametrize("arch", ARCHS)
def test_w8a8_bit_exact_in_fakequant_intref_onnx_and_c(arch, tmp_path, cc):
    rep = _bit_exact_everywhere(_net(arch), QuantConfig(bits=8), tmp_path, cc)
    assert rep["acc_ctype"] == "int32_t" and rep["macs"] > 0


@pytest.mark.parametrize("arch,cfg", [("cnn2d", QuantConfig(bits=4, act_bits=8, per_channel=True, rounding="floor")),
                                      ("cnn1d", QuantConfig(bits=12, act_bits=10, rounding="half_even"))])
def test_other_widths_and_roundings_are_bit_exact(arch, cfg, tmp_path, cc):
    _bit_exact_everywhere(_net(arch, classes=("M", "F"), frames=40, seed=1), cfg, tmp_path, cc)


def test_compressed_head_is_bit_exact(tmp_path, cc):
    net = _net("cnn1d", classes=tuple("0123456789"))
    compress_(net, CompressConfig(4, layers=("fc",)))
    rep = _bit_exact_everywhere(net, QuantConfig(bits=8, rounding="half_away"), tmp_path, cc)
    assert rep["circulant_layers"] == ["fc1"]


def test_float_onnx_folds_batchnorm_and_matches_pytorch():
    net = _net("cnn2d")
    x = _windows(net, 7)
    proto, form = onnx_model(fold_batchnorm(net), None, 18)
    with torch.no_grad():
        z = net(x).double().numpy()
    assert form == "float" and np.abs(ort_logits(ort_session(proto.SerializeToString()), x) - z).max() < 1e-3


# ---- through the CLI, on synthetic speech -----------------------------------------------------------------
def run(args):
    r = CliRunner().invoke(cli, args, catch_exceptions=True)
    assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture(scope="module")
def cnn_runs(tmp_path_factory, librosa_warm):
    """On 12 synthetic voices of 2-3 s (small: the steps, not the accuracy, are tested): train --arch cnn2d and
    cnn1d (2 folds, 2 epochs, no augmentation); cnn1d compressed (fc); both quantized W8/A8."""
    from gclf.data.synth import SynthConfig, synthesize_corpus

    base = tmp_path_factory.mktemp("cnn")
    corpus = synthesize_corpus(base / "synth", SynthConfig(speakers=12, min_seconds=2.0, max_seconds=3.0, seed=2))
    cache = str(base / "pkl")
    out = {"base": base, "cache": cache}
    for arch in ARCHS:
        run(["train", "--arch", arch, "--data", str(corpus["root"]), "--cache", cache, "--out", str(base / arch),
             "--folds", "2", "--epochs", "2", "--no-augment", "--json"])
    run(["compress", "--model", str(base / "cnn1d"), "--block", "4", "--finetune-epochs", "1", "--cache", cache,
         "--json"])
    out["q2d"] = json.loads(run(["quantize", "--model", str(base / "cnn2d"), "--cache", cache, "--json"]).stdout)
    out["q1d"] = json.loads(run(["quantize", "--model", str(base / "cnn1d-c4"), "--cache", cache, "--json"]).stdout)
    return out


def test_cli_trains_quantizes_and_folds(cnn_runs):
    base = cnn_runs["base"]
    ck = load_checkpoint(checkpoint_paths(base / "cnn2d")[0])
    assert graph_of(ck).arch == "cnn2d" and has_batchnorm(graph_of(ck))
    assert "conv1.bn.running_mean" in ck["state_dict"]
    for q in (cnn_runs["q2d"], cnn_runs["q1d"]):
        assert q["bit_exact_mismatches"] == 0
    qck = load_checkpoint(base / "cnn2d-q8" / "final.pt")
    assert not has_batchnorm(graph_of(qck)) and "conv1.bias" in qck["state_dict"]
    assert [s.kind for s in chain_of(load_checkpoint(base / "cnn1d-c4-q8" / "fold1.pt"))] == \
           ["train", "compress", "quantize"]


@pytest.mark.parametrize("name", ["cnn2d-q8", "cnn1d-c4-q8"])
def test_cli_exports_are_bit_exact(cnn_runs, name, tmp_path):
    model, cache = str(cnn_runs["base"] / name), cnn_runs["cache"]
    o = json.loads(run(["export-onnx", "--model", model, "--out", str(tmp_path / "onnx"), "--cache", cache,
                        "--fold", "1", "--json"]).stdout)
    assert o["form"] == "qdq" and o["agreement"]["held_out"] and o["agreement"]["max_abs_logit_diff"] == 0
    w = json.loads(run(["export-weights", "--model", model, "--out", str(tmp_path / "w"), "--json"]).stdout)
    assert w["tensors"] == 8                                  # 3 convolutions and fc1: weight and bias each
    c = json.loads(run(["export-c", "--model", model, "--out", str(tmp_path / "c"), "--verify", "--cache", cache,
                        "--json"]).stdout)
    assert c["verify"]["mismatches"] == 0 and c["verify"]["windows"] > 0


def test_cli_float_onnx_of_a_batchnorm_model(cnn_runs, tmp_path):
    f = json.loads(run(["export-onnx", "--model", str(cnn_runs["base"] / "cnn2d"), "--out", str(tmp_path),
                        "--cache", cnn_runs["cache"], "--json"]).stdout)
    assert f["form"] == "float" and max(f["matches_pytorch"].values()) < 1e-4
    assert any("batch norm folded" in n for n in f["notes"])


# ---- on an emulated Cortex-M4 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_w8a8_bit_exact_on_an_emulated_cortex_m4(arch, tmp_path):
    from gclf.backends.c.target import TargetConfig, measure_target, missing_tools

    if missing_tools():
        pytest.skip(f"no Cortex-M4 toolchain/emulator ({', '.join(missing_tools())})")
    net = _net(arch)
    x = _windows(net, 6)
    fixed = quantize(net, QuantConfig(bits=8), _windows(net, 24, seed=1))
    files, rep = generate_c(fixed.model, fixed.spec)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    xq = IntegerReference(fixed.model, fixed.spec).quantize_input(x)
    r = measure_target(fixed.model, fixed.spec, tmp_path, xq, TargetConfig())
    assert r["mismatches"] == 0 and r["windows"] == len(x)
    assert not {c for c in r["library_calls"] if "div" in c}, r["library_calls"]    # shifts only, no division
    assert r["macs"] == rep["macs"] and r["instructions_min"] > r["macs"] / 4
