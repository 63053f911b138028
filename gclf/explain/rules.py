"""LRP rules, one handler per op kind: the relevance of an op's input from the relevance of its output.

A handler is ``rule(op, module, x, r, cfg) -> r_in``: ``module`` is the op's module in the float
:class:`gclf.backends.torch_float.GraphNet` (None for ops without one), ``x`` the op's input activation
(batch first) and ``r`` the relevance of its output, same shape as that output. The rules:

``Conv1d``, ``Conv2d``, ``Linear``, ``MaxPool``, ``MaxPool2d``
    Captum's epsilon rule (:class:`captum.attr._utils.lrp_rules.EpsilonRule`, run by ``captum.attr.LRP``):
    ``R_i = x_i * sum_j w_ji R_j / (z_j + eps sign z_j)`` over the pre-activation ``z`` (a ReLU passes
    relevance unchanged; a max-pool gives each window's relevance to its maximum). The bias takes its share
    ``b_j R_j / z_j``, so relevance is conserved when the biases are 0 and ``eps -> 0``. Works for any linear
    module in the op's place (e.g. a block-circulant Linear after ``gclf compress``).
``LSTM``
    Arras et al. (2017, "Explaining recurrent neural network predictions in sentiment analysis"; 2019,
    "Evaluating recurrent neural network explanations"): the epsilon rule for the linear maps and the sum
    ``c_t = f_t c_{t-1} + i_t g_t``, *signal-take-all* for the multiplicative gates (the gates i, f, o get no
    relevance; ``g_t`` gets all of ``i_t g_t``'s, ``c_t`` all of ``h_t``'s), elementwise tanh passes relevance
    unchanged. Captum has no LSTM rule, so this one is implemented here (the linear maps' transposes by
    autograd, so compressed maps work too).
``Norm``
    Identity: the relevance of a raw coefficient is that of its normalised value (the op is an affine
    front-end; the epsilon rule through the per-window mean would spread each frame's relevance over the whole
    window and put large cancelling values on raw coefficients whose mean is removed). Conserves exactly.
``Flatten``, ``Image``
    Identity, reshaped back to the op's input shape ((C, T)).
``GlobalMaxPool``
    Winner-take-all: each channel's relevance goes to the position of its maximum (what the epsilon rule
    gives a max; conserves exactly).

Batch norm is folded into its convolution before explaining (:func:`gclf.backends.bnfold.fold_batchnorm`, exact
up to float rounding), so a convolution's module is always a plain ``nn.Conv1d``/``nn.Conv2d``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from gclf.errors import GclfError
from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Image, Linear, MaxPool, MaxPool2d, Norm
from gclf.graph.registry import Registry

RULES = Registry("LRP")
SCORES = ("contrast", "logit")


@dataclass(frozen=True)
class LrpConfig:
    epsilon: float = 1e-3          # stabiliser of every epsilon rule (Arras et al. use 0.001 for the LSTM)
    score: str = "contrast"        # what is explained: "contrast" z_k - mean_{j!=k} z_j (the log-odds of class
                                   # k for two classes) or "logit" z_k
    target: int | None = None      # the class k explained (None: each window's predicted class)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise GclfError(f"unknown LRP score {self.score!r}: choose one of {', '.join(SCORES)}")
        if not self.epsilon > 0:                  # 0 would divide by the zero pre-activations
            raise GclfError(f"epsilon must be > 0, got {self.epsilon}")


def stabilise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """``z + eps * sign(z)`` with sign(0) = 1 (Captum's convention): never 0 when eps > 0."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def safe_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b == 0, torch.zeros_like(a), a / torch.where(b == 0, torch.ones_like(b), b))


class _Readout(nn.Module):
    """``sum_j w_j z_j`` per example with ``w = R / z``: the last layer of a one-layer model handed to Captum, it
    starts the propagation from a given relevance ``R`` at the layer's output instead of from a class score
    (its own epsilon rule, with a negligible epsilon, passes ``R`` down unchanged)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w
        from captum.attr._utils.lrp_rules import EpsilonRule

        self.rule = EpsilonRule(epsilon=1e-30)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.w).flatten(1).sum(1)


def captum_epsilon(layer: nn.Module, x: torch.Tensor, r: torch.Tensor, eps: float) -> torch.Tensor:
    """Relevance of ``layer``'s input ``x`` from relevance ``r`` of its (pre-activation) output, by Captum's
    LRP with the epsilon rule on ``layer``."""
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    with torch.no_grad():
        z = layer(x)
    net = nn.Sequential(layer, _Readout(safe_div(r, z).detach()))
    had_rule = hasattr(layer, "rule")
    layer.rule = EpsilonRule(epsilon=eps)
    try:
        out = LRP(net).attribute(x.detach().clone().requires_grad_(True))
    finally:
        if not had_rule and hasattr(layer, "rule"):
            del layer.rule
    return out.detach()


@RULES.register(Conv1d, Conv2d, Linear)
def _affine(op, module, x, r, cfg: LrpConfig):
    # ReLU (if any): relevance unchanged onto the pre-activation; the layer: Captum's epsilon rule
    return captum_epsilon(module, x, r, cfg.epsilon)


@RULES.register(MaxPool)
def _maxpool(op: MaxPool, module, x, r, cfg: LrpConfig):
    return captum_epsilon(nn.MaxPool1d(op.kernel, op.step), x, r, cfg.epsilon)


@RULES.register(MaxPool2d)
def _maxpool2d(op: MaxPool2d, module, x, r, cfg: LrpConfig):
    return captum_epsilon(nn.MaxPool2d(op.kernel, op.step), x, r, cfg.epsilon)


@RULES.register(GlobalMaxPool)
def _global_max(op, module, x, r, cfg: LrpConfig):       # x (B, C, ...), r (B, C)
    flat = x.flatten(2)
    out = torch.zeros_like(flat)
    out.scatter_(2, flat.argmax(dim=2, keepdim=True), r.unsqueeze(2).to(out.dtype))
    return out.reshape(x.shape)


@RULES.register(Image)
def _image(op, module, x, r, cfg: LrpConfig):            # (B, 1, T, C) -> (B, C, T)
    return r.squeeze(1).transpose(1, 2)


@RULES.register(Norm)
def _identity(op, module, x, r, cfg: LrpConfig):
    return r


@RULES.register(Flatten)
def _flatten(op, module, x, r, cfg: LrpConfig):          # (B, T*C) time-major -> (B, C, T)
    b, c, t = x.shape
    return r.reshape(b, t, c).transpose(1, 2)


def _vjp(fn, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``J_fn(x)^T s`` for a linear map ``fn`` (any module: dense or block-circulant)."""
    with torch.enable_grad():
        v = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(v), v, s)
    return g


@RULES.register(LSTM)
def _lstm(op: LSTM, cell, x, r, cfg: LrpConfig):           # x (B, C, T), r (B, H, T) -> (B, C, T)
    eps, hid = cfg.epsilon, cell.hidden
    xs = x.transpose(1, 2)                                  # (B, T, C)
    b, steps, _ = xs.shape
    g_slice = slice(2 * hid, 3 * hid)                       # gates (i, f, g, o) as in nn.LSTM
    with torch.no_grad():
        h, c = xs.new_zeros(b, hid), xs.new_zeros(b, hid)
        saved = []
        for t in range(steps):
            z = cell.ih(xs[:, t]) + cell.hh(h)
            zi, zf, zg, zo = z.chunk(4, dim=1)
            i, f, g, o = cell._sigmoid(zi), cell._sigmoid(zf), cell._tanh(zg), cell._sigmoid(zo)
            c_new = f * c + i * g
            saved.append((h, c, zg, i, f, g, c_new))
            h, c = o * cell._tanh(c_new), c_new
        r_x = torch.zeros_like(xs)
        r_h, r_c = xs.new_zeros(b, hid), xs.new_zeros(b, hid)
        rt = r.transpose(1, 2)                              # (B, T, H)
        for t in reversed(range(steps)):
            h_prev, c_prev, zg, i, f, g, c_t = saved[t]
            r_ct = r_c + rt[:, t] + r_h                     # h_t = o_t tanh(c_t): all of h_t's relevance to c_t
            d = stabilise(c_t, eps)
            r_c = f * c_prev / d * r_ct                     # c_t = f c_{t-1} + i g: epsilon rule over the sum ...
            s = (i * g / d * r_ct) / stabilise(zg, eps)     # ... i g's share goes to g, then to z_g (tanh: identity)
            r_x[:, t] = xs[:, t] * _vjp(lambda v: cell.ih(v)[:, g_slice], xs[:, t], s)
            r_h = h_prev * _vjp(lambda v: cell.hh(v)[:, g_slice], h_prev, s)
    return r_x.transpose(1, 2)
