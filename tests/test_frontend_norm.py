"""The network's Norm in integers (gclf/frontend/norm.py): the front-end's int32 window -> the int8 input."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from gclf.backends.fixed import make_spec
from gclf.backends.intref import IntegerReference, frontend
from gclf.checkpoint import build_float_model, load_checkpoint
from gclf.frontend import FrontendConfig, mfcc_int
from gclf.frontend.norm import int_norm, ints_of_frames, multiplier, norm_params, rdiv
from gclf.frontend.signals import edge_cases, speech
from gclf.graph.spec import QuantConfig
from gclf.quant.primitives import quantize_fixed
from gclf.quant.qformat import QFormat
from gclf.steps.api import FixedPointModel, observe_ranges
from gclf.steps.quantize import bit_exact_mismatches

T = 99


def _windows(n_clips: int = 6) -> np.ndarray:
    """Integer front-end windows (N, 40, 99) of synthetic speech and the edge cases."""
    clips = [speech("FM"[i % 2], i, 4.0) for i in range(n_clips)] + list(edge_cases(40000).values())[:-1]
    out = []
    for pcm in clips:
        q, _ = mfcc_int(pcm, FrontendConfig())
        for s in range(0, q.shape[1] - T + 1, 50):
            out.append(q[:, s:s + T])
    return np.stack(out)


def _stats(q: np.ndarray):
    x = q / 256.0
    c = x - x.mean(axis=2, keepdims=True)
    return c.mean(axis=(0, 2)), 1.0 / (c.std(axis=(0, 2)) + 1e-3)


def _float_path(q, offset, scale, cmn, fmt):
    x = q / 256.0
    if cmn:
        x = x - x.mean(axis=2, keepdims=True)
    return quantize_fixed((x - offset[None, :, None]) * scale[None, :, None], fmt)[0]


@pytest.mark.parametrize("cmn", [True, False])
@pytest.mark.parametrize("frac", [4, 5, 6])
def test_integer_norm_is_within_one_lsb_of_the_float_path(cmn, frac):
    q = _windows()
    offset, scale = _stats(q)
    fmt = QFormat(8, 7 - frac)
    y, counts = int_norm(q, norm_params(offset, scale, cmn, 8, T, fmt))
    ref = _float_path(q, offset, scale, cmn, fmt)
    diff = np.abs(y - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.03                  # only values next to a rounding boundary move
    assert counts["diff"] == 0
    # where they differ, the exact float value lies within the stated bound of a rounding boundary
    x = q / 256.0
    v = ((x - x.mean(axis=2, keepdims=True) if cmn else x) - offset[None, :, None]) * scale[None, :, None]
    v = v * 2.0 ** frac
    bound = (0.5 + 0.5 / (T if cmn else 1)) * np.abs(scale)[None, :, None] * 2.0 ** (frac - 8) + 1e-6
    moved = (diff > 0) & (np.abs(v) < 2 ** 7 - 1)
    assert (np.abs(v - np.floor(v) - 0.5)[moved] <= bound.repeat(len(q), 0).repeat(T, 2)[moved]).all()


def test_rdiv_rounds_half_up_exactly():
    rng = np.random.default_rng(0)
    a = rng.integers(-2 ** 40, 2 ** 40, 2000)
    for n in (1, 2, 7, 99):
        want = [int(np.floor(Fraction(int(v), n) + Fraction(1, 2))) for v in a]
        np.testing.assert_array_equal(rdiv(a, n), want)


@pytest.mark.parametrize("m", [1e-9, 0.0123, 0.5, 1.0, 0.99999999999, -0.3, 3.7, 1000.0])
def test_multiplier_is_q31_within_its_error_bound(m):
    mant, shift = multiplier(m)
    assert 2 ** 30 <= abs(mant) < 2 ** 31 and 1 <= shift <= 62
    assert abs(mant * 2.0 ** -shift - m) <= abs(m) * 2.0 ** -30
    assert multiplier(0.0) == (0, 1)


def test_saturation_is_counted():
    q = _windows(2)
    offset, scale = _stats(q)
    fmt = QFormat(8, 2)
    y, counts = int_norm(q, norm_params(offset, scale * 50, True, 8, T, fmt))
    assert counts["out"] > 0 and y.max() == fmt.max_int and y.min() == fmt.min_int
    big = np.zeros((1, 40, T), np.int64)
    big[0, 0, 0], big[0, 0, 1:] = 2 ** 31 - 1, -2 ** 31
    _, counts = int_norm(big, norm_params(np.zeros(40), np.ones(40) * 1e-4, True, 8, T, fmt))
    assert counts["diff"] > 0


def test_int_norm_rejects_off_grid_input():
    with pytest.raises(ValueError):
        ints_of_frames(np.array([0.5 + 1e-5]), 8)
    np.testing.assert_array_equal(ints_of_frames(np.array([-1.5, 2.25]), 8), [-384, 576])


@pytest.fixture(scope="module")
def int_model(trained_run):
    """A trained model read as an int_mfcc one (int_input_frac set), with integer front-end windows."""
    out, _ = trained_run
    model = build_float_model(load_checkpoint(out / "fold1.pt"))
    model.int_input_frac = 8
    x = torch.from_numpy((_windows(4) / 256.0).astype(np.float32))
    return model, x


def test_integer_reference_uses_the_integer_norm_and_fake_quant_agrees(int_model):
    model, x = int_model
    spec = make_spec(model, observe_ranges(model, x), QuantConfig(bits=8))
    ref = IntegerReference(model, spec)
    xq = ref.quantize_input(x)
    fmt = ref.plan[model.graph.norm.name].out_fmt
    want, _ = int_norm(ints_of_frames(x.numpy(), 8),
                       norm_params(model.input_norm().offset.numpy(), model.input_norm().scale.numpy(),
                                   model.graph.norm.cmn, 8, T, fmt))
    np.testing.assert_array_equal(xq, want)
    flt, _ = quantize_fixed(frontend(model, x), fmt)
    assert np.abs(xq - flt).max() <= 1 and (xq != flt).mean() < 0.01
    assert bit_exact_mismatches(FixedPointModel(model, spec), x) == 0


def test_models_trained_on_the_int_front_end_normalise_in_integers_in_process():
    """The library path (train_fold, no checkpoint round trip) marks int_mfcc models like build_float_model."""
    from gclf.data.features import FeatureConfig
    from gclf.frontend.features import input_frac_of

    assert input_frac_of(FeatureConfig(kind="int_mfcc")) == FrontendConfig().out_frac
    assert input_frac_of(FeatureConfig()) is None
