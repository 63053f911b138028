"""The library API: the README's example, step by step, on a trained fold of synthetic speech."""
import numpy as np
import pytest
import torch

from gclf.api import (ApproxConfig, CompressConfig, QuantConfig, approx_, build_graph, compress_, load, quantize,
                      windows)
from gclf.circulant import BlockCirculantLinear
from gclf.errors import GclfError
from gclf.graph.chain import Approx, Compress


def test_readme_example(trained_run):
    out, _ = trained_run
    model, ck = load(out / "fold1.pt")
    step, layers = compress_(model, CompressConfig(block=8))
    assert step == Compress(8, ("fc1", "fc2", "fc3", "lstm.ih", "lstm.hh")) and isinstance(model.fc1, BlockCirculantLinear)
    assert approx_(model, ApproxConfig(sigmoid="plan", tanh="pwl16")) == Approx("plan", "pwl16")
    train = windows(ck, "train")
    fixed = quantize(model, QuantConfig(bits=8), train)
    x = windows(ck, "test")
    assert not set(ck["split"]["test_speakers"]) & set(ck["split"]["train_speakers"])
    with torch.no_grad():
        float_pred = model(x).argmax(1).numpy()
    assert (fixed.reference().logits(x).argmax(1) == float_pred).mean() >= 0.9
    with torch.no_grad():
        assert np.array_equal(fixed.fakequant().eval()(x).numpy(), fixed.reference().logits(x))
    assert fixed.step().spec is fixed.spec and fixed.spec.sigmoid == "plan"


def test_api_errors():
    model = build_graph("raw_conv")
    from gclf.backends.torch_float import GraphNet

    net = GraphNet(model)
    assert approx_(net, ApproxConfig()) is None                     # no LSTM: nothing to approximate
    with pytest.raises(GclfError, match="calibration"):
        quantize(net, QuantConfig(bits=8))
    with pytest.raises(GclfError, match="unknown layer"):
        compress_(net, CompressConfig(layers=("conv1",)))
