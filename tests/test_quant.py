"""Fixed-point model: bit-exact agreement with the integer reference, saturation, bytes, the CLI."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gclf.backends.fakequant import FakeQuantNet
from gclf.backends.fixed import integer_weights, make_spec
from gclf.backends.intref import IntegerReference
from gclf.checkpoint import build_float_model, chain_of, checkpoint_paths, load_checkpoint, quant_of
from gclf.cli import cli
from gclf.data.dataset import eval_windows
from gclf.data.features import FeatureConfig
from gclf.data.pipeline import features_for_checkpoint, heldout_windows
from gclf.errors import GclfError
from gclf.graph.spec import QuantConfig
from gclf.steps.api import FixedPointModel, observe_ranges
from gclf.steps.quantize import bit_exact_mismatches, quantize_one


@pytest.fixture(scope="module")
def fold(trained_run):
    out, _ = trained_run
    ck = load_checkpoint(out / "fold1.pt")
    utts = features_for_checkpoint(ck)
    return ck, utts


def _spec(ck, utts, cfg):
    model = build_float_model(ck)
    x = eval_windows(utts, FeatureConfig()).x
    return model, make_spec(model, observe_ranges(model, x), cfg), x


@pytest.mark.parametrize("cfg", [QuantConfig(bits=8), QuantConfig(bits=16), QuantConfig(bits=4, act_bits=8),
                                 QuantConfig(bits=6, act_bits=6, per_channel=True),
                                 QuantConfig(bits=8, rounding="half_even"), QuantConfig(bits=3, act_bits=4)])
def test_fake_quant_agrees_bit_for_bit_with_integer_reference(fold, cfg):
    ck, utts = fold
    model, spec, x = _spec(ck, utts, cfg)
    assert bit_exact_mismatches(FixedPointModel(model, spec), x) == 0


def test_integer_reference_is_integer_and_within_formats(fold):
    ck, utts = fold
    model, spec, x = _spec(ck, utts, QuantConfig(bits=8))
    ref = IntegerReference(model, spec)
    q = ref.run_int(ref.quantize_input(x[:50]))
    assert q.dtype == np.int64
    last = ref.logit_format
    assert q.min() >= last.min_int and q.max() <= last.max_int
    for name, w in ref.q.items():
        assert w.ints.dtype == np.int64
        assert np.abs(w.ints).max() <= 2 ** (w.width - 1)


def test_quantization_error_shrinks_with_bits(fold):
    """Against the float model, logits error falls as bits grow (the float reference of this step)."""
    ck, utts = fold
    errs = []
    for bits in (4, 8, 12, 16):
        model, spec, x = _spec(ck, utts, QuantConfig(bits=bits))
        with torch.no_grad():
            ref = model(x).double().numpy()
        errs.append(np.abs(IntegerReference(model, spec).logits(x) - ref).max())
    assert errs[0] > errs[1] > errs[2] > errs[3]
    assert errs[3] < 1e-2   # 16-bit: stated bound on the logits


def test_saturation_is_counted_never_wrapped(fold):
    ck, utts = fold
    model, spec, x = _spec(ck, utts, QuantConfig(bits=8))
    ref = IntegerReference(model, spec)
    q = ref.quantize_input(x * 50)                    # far outside the calibrated input range
    f = spec.act("norm")
    assert q.max() == f.max_int and q.min() == f.min_int  # clipped to the rails, not wrapped
    ref.run_int(q)
    assert ref.overflows["norm"] > 0
    fq = FakeQuantNet(model, spec, "full")
    with torch.no_grad():
        fq(x * 50)
    for site, n in ref.overflows.items():              # both paths count the same saturations everywhere
        assert fq.overflows.get(site, 0) == n, site


def test_weight_bytes_and_weights_only(fold):
    ck, utts = fold
    model, spec, _ = _spec(ck, utts, QuantConfig(bits=8))
    q, sat = integer_weights(model, spec)
    n_w = sum(w.ints.size for k, w in q.items() if k.endswith(".weight"))
    assert n_w == 11834 - 186 - 64   # weights without biases (LSTM biases folded: 64 instead of 128)
    spec_w = make_spec(model, None, QuantConfig(bits=8, weights_only=True))
    with pytest.raises(ValueError):
        IntegerReference(model, spec_w)


def test_quantize_one_records_the_chain_and_reports(fold):
    ck, utts = fold
    new, rep = quantize_one(ck, utts, QuantConfig(bits=8))
    assert [s.kind for s in chain_of(new)] == ["train", "quantize"]
    assert rep["bit_exact_mismatches"] == 0 and rep["weight_bytes_quantized"] < rep["weight_bytes_float"] / 3
    assert abs(rep["accuracy_quantized"] - rep["accuracy_float"]) <= 0.1
    with pytest.raises(GclfError, match="order"):
        quantize_one(new, utts, QuantConfig(bits=8))


def test_qat_runs_and_stays_exact(fold):
    ck, utts = fold
    new, rep = quantize_one(ck, utts, QuantConfig(bits=4, act_bits=8), qat_epochs=2)
    assert rep["bit_exact_mismatches"] == 0
    assert rep["accuracy_quantized"] >= 0.6
    assert not all(torch.equal(new["state_dict"][k], ck["state_dict"][k]) for k in ck["state_dict"])


def test_full_chain_is_exact(chain_runs):
    for p in checkpoint_paths(chain_runs["c8aq8"]):
        ck = load_checkpoint(p)
        assert [s.kind for s in chain_of(ck)] == ["train", "compress", "approx", "quantize"]
        spec = quant_of(ck).spec
        assert (spec.sigmoid, spec.tanh) == ("plan", "pwl16")
        model = build_float_model(ck)
        ws = heldout_windows(ck, features_for_checkpoint(ck))
        assert bit_exact_mismatches(FixedPointModel(model, spec), ws.x) == 0


def test_quantize_cli_json(trained_run, tmp_path):
    out, _ = trained_run
    r = CliRunner().invoke(cli, ["quantize", "--model", str(out), "--bits", "8", "--out", str(tmp_path / "q"), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    for key in ("bits", "accuracy_float", "accuracy_quantized", "weight_bytes_float", "weight_bytes_quantized"):
        assert key in j
    assert j["bits"] == 8 and j["bit_exact_mismatches"] == 0 and len(list((tmp_path / "q").glob("fold*.pt"))) == 3
    r = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "q"), "--json"])
    assert abs(json.loads(r.stdout)["accuracy_utterance"] - j["accuracy_quantized"]) < 1e-12


def test_accumulator_bound_holds_on_extreme_inputs(fold, monkeypatch):
    """Every accumulator the integer reference forms fits in spec['acc_bits'] (signed), even for inputs
    driven to the rails of the input format."""
    import gclf.backends.intref as intref

    ck, utts = fold
    model, spec, x = _spec(ck, utts, QuantConfig(bits=8))
    seen = []
    real = intref.requantize

    def spy(acc, frac, fmt):
        seen.append(int(np.abs(acc).max()))
        return real(acc, frac, fmt)

    monkeypatch.setattr(intref, "requantize", spy)
    ref = IntegerReference(model, spec)
    f = spec.act("norm")
    rng = np.random.default_rng(0)
    rails = rng.choice([f.min_int, f.max_int], size=(64, 40, 99))
    ref.run_int(np.concatenate([ref.quantize_input(x[:64]), rails]))
    assert max(seen) < 2 ** (spec.acc_bits - 1)


@pytest.mark.parametrize("bits", [8, 16])
def test_fake_quant_tensors_equal_the_integer_weights(fold, bits):
    """Structural check behind bit-exactness: every weight and bias the fake-quant model multiplies by is
    exactly the integer reference's integer times 2**-frac (at 16 bits the biases are 32 bits wide, where
    a float32 fold of the LSTM's two biases used to differ)."""
    ck, utts = fold
    model, spec, _ = _spec(ck, utts, QuantConfig(bits=bits))
    ref = IntegerReference(model, spec)
    net = FakeQuantNet(model, spec, "full")
    checked = 0
    for op in model.graph.weighted:
        for local in spec.ops[op.name].weights:
            path = f"{op.name}.{local}" if local != "weight" else op.name
            np.testing.assert_array_equal(net.weight(op, local).detach().numpy(), ref.q[path + ".weight"].values())
            checked += 1
        np.testing.assert_array_equal(net.bias(op).detach().numpy(), ref.q[op.name + ".bias"].values())
    assert checked == 7                                  # conv1, conv2, lstm.ih, lstm.hh, fc1..fc3
