"""Weight averaging in training (TrainConfig.ema, `gclf train --ema`): an exponential moving average of the
weights that validation, early stopping and the saved model use, while training itself is unchanged."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gclf.backends.torch_float import GraphNet
from gclf.checkpoint import load_checkpoint
from gclf.data.dataset import eval_windows, select
from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.graph.models import build_graph
from gclf.train.cv import train_run
from gclf.train.fit import TrainConfig, WeightEMA, _val_loss, fit, fit_normalizer, set_seed
from gclf.train.resume import load_state


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.register_buffer("b", torch.tensor([0.1, 0.2, 0.3]))


def test_weight_ema_is_the_ramped_moving_average_and_copies_buffers():
    live = Tiny()
    ema = WeightEMA(live, 0.9)
    expect = torch.zeros(3, dtype=torch.float64)
    for n in range(1, 31):
        with torch.no_grad():
            live.w.copy_(torch.full((3,), float(n)))
            live.b.add_(1.0)
        ema.update(live)
        d = min(0.9, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * float(n)
        assert torch.allclose(ema.model.w.double(), expect, rtol=1e-6), n
        assert torch.equal(ema.model.b, live.b)                 # buffers: copied, not averaged
    assert ema.updates == 30 and float(ema.model.w[0]) < 30.0 - 2      # lags the live weights
    assert not ema.model.w.requires_grad
    other = WeightEMA(Tiny(), 0.9)
    other.load(ema.state())
    assert torch.equal(other.model.w, ema.model.w) and other.updates == 30
    with pytest.raises(ValueError):
        WeightEMA(live, 1.0)


def _fit(utts, ema: float, seed: int = 2):
    tr_spk = sorted({u.speaker for u in utts})
    train, val = select(utts, tr_spk[:14]), select(utts, tr_spk[14:])
    fcfg = FeatureConfig()
    set_seed(seed)
    model = GraphNet(build_graph())
    fit_normalizer(model, train, fcfg)
    tcfg = TrainConfig(epochs=4, patience=100, min_windows=64, ema=ema)
    hist = fit(model, train, val, fcfg, tcfg, seed=seed)
    return model, hist, eval_windows(val, fcfg)


def test_fit_with_ema_validates_and_keeps_the_average(synth_features):
    utts, _ = synth_features
    utts = utts[:18]
    m0, h0, val_ws = _fit(utts, 0.0)
    m1, h1, _ = _fit(utts, 0.8)
    # the average draws no random numbers and does not touch the live weights: training is the same
    assert [r["train_loss"] for r in h1["history"]] == [r["train_loss"] for r in h0["history"]]
    # validation measured the average, not the live model
    assert [r["val_loss"] for r in h1["history"]] != [r["val_loss"] for r in h0["history"]]
    # the kept weights are the ones whose validation loss was the best (the average's at that epoch)
    assert _val_loss(m1, val_ws) == pytest.approx(h1["best_val_loss"], rel=1e-6)
    assert _val_loss(m0, val_ws) == pytest.approx(h0["best_val_loss"], rel=1e-6)
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)
    norm0, norm1 = m0.input_norm(), m1.input_norm()
    assert torch.equal(norm0.offset, norm1.offset) and torch.equal(norm0.scale, norm1.scale)


def test_ema_refused_with_a_forward_view(synth_features):
    utts, _ = synth_features
    model = GraphNet(build_graph())
    with pytest.raises(GclfError, match="weight averaging"):
        fit(model, utts[:4], [], FeatureConfig(), TrainConfig(epochs=1, ema=0.9), forward=model)


class Stop(Exception):
    pass


def test_resume_with_ema_equals_the_uninterrupted_run(synth_features, tmp_path):
    utts, info = synth_features
    utts = utts[:16]
    tcfg = TrainConfig(epochs=4, folds=2, seed=3, patience=100, min_windows=64, ema=0.9)
    graph, fcfg = build_graph(), FeatureConfig()
    train_run(utts, tmp_path / "ref", graph, fcfg, tcfg, info["corpus"])

    def killer(row):
        if row["fold"] == "fold2" and row["epoch"] == 3:
            raise Stop
    with pytest.raises(Stop):
        train_run(utts, tmp_path / "b", graph, fcfg, tcfg, info["corpus"], on_epoch=killer)
    assert load_state(tmp_path / "b" / "resume-fold2.pt")["ema"]["updates"] > 0
    train_run(utts, tmp_path / "b", graph, fcfg, tcfg, info["corpus"], resume=True)
    for n in ("fold1.pt", "fold2.pt"):
        wa, wb = load_checkpoint(tmp_path / "ref" / n)["state_dict"], load_checkpoint(tmp_path / "b" / n)["state_dict"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), n
    # and the run with averaging is not the run without it
    train_run(utts, tmp_path / "off", graph, fcfg, replace(tcfg, ema=0.0), info["corpus"])
    wa, wo = (load_checkpoint(tmp_path / d / "fold1.pt")["state_dict"] for d in ("ref", "off"))
    assert any(not torch.equal(wa[k], wo[k]) for k in wa)
