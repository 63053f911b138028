"""The compression steps as functions on a model and its config, for notebooks and scripts.

    from gclf.api import approx_, compress_, load, quantize
    from gclf.steps.api import ApproxConfig, CompressConfig
    from gclf.graph.spec import QuantConfig

    model, ck = load("runs/model/fold1.pt")               # a float GraphNet and its checkpoint
    compress_(model, CompressConfig(block=8))             # in place: FC + LSTM block-circulant (projected)
    approx_(model, ApproxConfig("plan", "pwl16"))         # in place: LSTM sigmoid/tanh swapped
    fixed = quantize(model, QuantConfig(bits=8), calib)   # calibrated on windows `calib`
    logits = fixed.reference().logits(windows)            # the integer reference

``compress_`` and ``approx_`` change the model in place and return the typed chain step they applied;
:func:`quantize` returns a :class:`FixedPointModel` (the float model and its spec), whose
:meth:`~FixedPointModel.step` is the chain step. Fine-tuning and measuring on held-out speakers per fold is
done by :mod:`gclf.steps.float_steps` and :mod:`gclf.steps.quantize`, which call these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gclf.errors import GclfError
from gclf.graph.chain import Approx, Compress, Quantize
from gclf.graph.ops import LSTM, Linear
from gclf.graph.spec import QuantConfig, QuantSpec

LAYER_GROUPS = {"fc": Linear, "lstm": LSTM}     # --layers group name -> the op kind whose matrices it takes


@dataclass(frozen=True)
class CompressConfig:
    block: int = 8                               # circulant block size k
    layers: tuple[str, ...] = ("fc", "lstm")     # groups (fc, lstm) or matrix names (fc1, lstm.ih, ...)


@dataclass(frozen=True)
class ApproxConfig:
    sigmoid: str = "plan"
    tanh: str = "pwl16"


def compressible(model) -> dict[str, list[str]]:
    """Matrix names by group: every Linear op's matrix (``fc``) and every LSTM's two (``lstm``)."""
    from gclf.backends.fixed import HANDLERS

    out: dict[str, list[str]] = {g: [] for g in LAYER_GROUPS}
    for group, kind in LAYER_GROUPS.items():
        for op in model.graph.of_kind(kind):
            out[group] += [path for path, _ in HANDLERS[op].matrices(op, model).values()]
    return out


def expand_layers(model, layers) -> list[str]:
    """Matrix names of ``layers`` (comma string or names: groups fc/lstm, or single matrices)."""
    items = [layers] if isinstance(layers, str) else list(layers)
    parts = [p.strip() for item in items for p in item.split(",") if p.strip()]
    groups = compressible(model)
    every = [n for g in groups.values() for n in g]
    names = []
    for part in parts:
        if part in groups:
            names += groups[part]
        elif part in every:
            names.append(part)
        else:
            raise GclfError(f"unknown layer {part!r}: use fc, lstm, or any of {', '.join(every)} "
                            "(convolutions stay dense)")
    if not names:
        raise GclfError(f"nothing to compress: {model.graph.arch} has no {' or '.join(parts)} layers")
    return list(dict.fromkeys(names))


def compress_(model, cfg: CompressConfig) -> tuple[Compress, dict]:
    """Project the chosen matrices onto block-circulant ones, in place; returns (step, per-layer report)."""
    from gclf.circulant import compress_model

    targets = expand_layers(model, cfg.layers)
    layers = compress_model(model, cfg.block, targets)
    return Compress(cfg.block, tuple(targets)), layers


def approx_(model, cfg: ApproxConfig) -> Approx | None:
    """Swap every LSTM's sigmoid/tanh for the approximations, in place; None (nothing done) without an LSTM."""
    from gclf.approx import get_approx

    for name, func in ((cfg.sigmoid, "sigmoid"), (cfg.tanh, "tanh")):
        try:
            get_approx(name, func)
        except ValueError as exc:
            raise GclfError(str(exc)) from None
    cells = model.lstm_cells()
    for cell in cells:
        cell.set_activations(cfg.sigmoid, cfg.tanh)
    return Approx(cfg.sigmoid, cfg.tanh) if cells else None


@torch.no_grad()
def observe_ranges(model, x: torch.Tensor, batch: int = 512) -> dict[str, float]:
    """Max |value| at every activation site of the float datapath."""
    from gclf.backends.fakequant import FakeQuantNet

    obs = FakeQuantNet(model, None, "observe").eval()
    for i in range(0, len(x), batch):
        obs(x[i:i + batch])
    return obs.ranges


@dataclass
class FixedPointModel:
    """A float GraphNet and the fixed-point spec it runs under."""

    model: torch.nn.Module
    spec: QuantSpec
    qat_epochs: int = 0
    _ref: object = field(default=None, repr=False)

    def step(self) -> Quantize:
        return Quantize(self.spec.config, self.spec, self.qat_epochs)

    def reference(self):
        """The integer reference (:class:`gclf.backends.intref.IntegerReference`)."""
        from gclf.backends.intref import IntegerReference

        if self._ref is None:
            self._ref = IntegerReference(self.model, self.spec)
        return self._ref

    def fakequant(self):
        """The float64 fake-quant twin (weights only: float activations), the QAT model."""
        from gclf.backends.fakequant import FakeQuantNet

        return FakeQuantNet(self.model, self.spec, "weights" if self.spec.weights_only else "full")

    def integer_weights(self):
        from gclf.backends.fixed import integer_weights

        return integer_weights(self.model, self.spec)


def quantize(model, cfg: QuantConfig, calibration: torch.Tensor | None = None) -> FixedPointModel:
    """Calibrate activation ranges on ``calibration`` windows (not needed for weights only) and choose every
    format: the fixed-point model of ``model`` (which is not changed: batch norm, if any, is folded into its
    convolution in a copy first, :func:`gclf.backends.bnfold.fold_batchnorm`; ``FixedPointModel.model`` is
    that folded copy)."""
    from gclf.backends.bnfold import fold_batchnorm
    from gclf.backends.fixed import make_spec

    model = fold_batchnorm(model)

    if not cfg.weights_only and calibration is None:
        raise GclfError("quantizing activations needs calibration windows")
    ranges = observe_ranges(model, calibration) if not cfg.weights_only else None
    return FixedPointModel(model, make_spec(model, ranges, cfg))
