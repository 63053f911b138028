"""The integer-only reference: what the hardware computes, in numpy int64. One handler per op kind.

Integer products, wide accumulators, explicit shifts with the spec's rounding, saturation that is counted
(never wraps). Circulant layers multiply their materialised integer matrix directly. The only float work is
outside the datapath: the front-end (Norm, then quantization of the input) and the softmax over the
dequantized logits. This is the definition; fake-quant, ONNX QDQ and the generated C must agree with it.
"""
from __future__ import annotations

import numpy as np
import torch

from gclf.backends.fixed import HANDLERS as FIXED
from gclf.backends.fixed import integer_weights, layer_kind, lstm_formats, plan
from gclf.frontend.norm import int_norm, ints_of_frames, model_norm_params
from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Image, Linear, MaxPool, MaxPool2d, Norm
from gclf.graph.registry import Registry
from gclf.graph.spec import QuantSpec, site_name
from gclf.quant.formats import activation_fixed
from gclf.quant.primitives import quantize_fixed, requantize
from gclf.quant.qformat import QFormat

HANDLERS = Registry("integer reference")
MAX_ELEMS = 2 ** 23     # int64 values of the largest activation of one batch (64 MB)


def frontend(model, x: torch.Tensor) -> np.ndarray:
    """Norm in float64: the one float step before the integer datapath (shared with fake-quant) of a model
    on float features (an int_mfcc model normalises in integers: ``IntegerReference.quantize_int_input``)."""
    with torch.no_grad():
        return model.input_norm()(x.double()).numpy()


class IntegerReference:
    """Integer inference of a GraphNet under a quantize spec."""

    def __init__(self, model, spec: QuantSpec):
        if spec.weights_only:
            raise ValueError("a weights-only spec has float activations: there is no integer reference")
        from gclf.approx import get_approx

        self.model, self.spec, self.graph = model, spec, model.graph
        self.plan = plan(self.graph, spec)
        self.q, self.weight_saturations = integer_weights(model, spec)
        self.mats = {}                            # module path -> the integer matrix it multiplies by
        for op in self.graph.weighted:
            for path, mod in FIXED[op].matrices(op, model).values():
                w = self.q[path + ".weight"].ints
                if layer_kind(mod) == "circulant":
                    from gclf.circulant import circulant_to_dense

                    w = circulant_to_dense(torch.from_numpy(w), mod.out_features, mod.in_features).numpy()
                self.mats[path] = w
        self.sig = get_approx(spec.sigmoid, "sigmoid")
        self.tanh = get_approx(spec.tanh, "tanh")
        self.fsig, self.ftanh = lstm_formats(spec)
        self.overflows: dict[str, int] = {}

    # ---- primitives used by the handlers ---------------------------------------------------------------
    def requant(self, acc: np.ndarray, frac, fmt: QFormat, site: str) -> np.ndarray:
        q, n = requantize(acc, frac, fmt)
        self.overflows[site] = self.overflows.get(site, 0) + int(n)
        return q

    def bias(self, op, acc_frac) -> np.ndarray:
        """The bias shifted left into the accumulator's fraction (exact: its fraction is never finer)."""
        b = self.q[op.name + ".bias"]
        return b.ints << (np.asarray(acc_frac) - b.frac).astype(np.int64)

    def quantize_input(self, x: torch.Tensor) -> np.ndarray:
        """Windows -> the quantized input: the float Norm then quantization, or for a model reading the
        integer front-end (``int_input_frac``) the integer Norm of :mod:`gclf.frontend.norm`."""
        fmt = self.plan[self.graph.norm.name].out_fmt
        if self.model.int_input_frac is not None:
            return self.quantize_int_input(ints_of_frames(x.numpy(), self.model.int_input_frac))
        q, n = quantize_fixed(frontend(self.model, x), fmt)
        self.overflows[self.graph.norm.name] = self.overflows.get(self.graph.norm.name, 0) + int(n)
        return q

    def quantize_int_input(self, xi: np.ndarray) -> np.ndarray:
        """Integer front-end windows (N, C, T) -> the quantized input, by the integer Norm."""
        q, counts = int_norm(xi, model_norm_params(self.model, self.plan[self.graph.norm.name].out_fmt))
        self.overflows[self.graph.norm.name] = self.overflows.get(self.graph.norm.name, 0) + sum(counts.values())
        return q

    # ---- the datapath ----------------------------------------------------------------------------------
    def run_int(self, xq: np.ndarray) -> np.ndarray:
        """Quantized input (N, C, T) int64 -> logits (N, classes) int64 in the last op's format."""
        for op in self.graph.ops:
            xq = HANDLERS[op](self, op, xq)
        return xq

    @property
    def logit_format(self) -> QFormat:
        return self.plan[self.graph.ops[-1].name].out_fmt

    def logits(self, x: torch.Tensor) -> np.ndarray:
        """Dequantized logits (float64) of raw windows."""
        return self.run_int(self.quantize_input(x)) * 2.0 ** -self.logit_format.frac

    def prob_fn(self, batch: int = 2048):
        """Class probabilities (N, classes) per window: softmax of the dequantized logits. Batches hold at
        most ``batch`` windows and at most MAX_ELEMS int64 values in the largest activation."""
        largest = max(int(np.prod(s)) for s in self.graph.shapes())
        batch = max(1, min(batch, MAX_ELEMS // largest))

        def fn(x: torch.Tensor) -> np.ndarray:
            out = []
            for i in range(0, len(x), batch):
                z = self.logits(x[i:i + batch])
                e = np.exp(z - z.max(axis=1, keepdims=True))
                out.append(e / e.sum(axis=1, keepdims=True))
            return np.concatenate(out)
        return fn


def _channel_frac(frac, ndim_after: int):
    return np.asarray(frac).reshape(1, -1, *([1] * ndim_after)) if np.ndim(frac) else frac


@HANDLERS.register(Norm)
def _norm(ref, op, x):              # the input is already quantized by quantize_input (the host front-end)
    return x


def int_matmul(a: np.ndarray, b: np.ndarray, acc_bits: int | None) -> np.ndarray:
    """``a @ b`` of integer arrays, exactly, as int64. When the spec proves every accumulator below
    2**(acc_bits - 1) (``acc_bits`` <= 53), in float64 (BLAS): every partial sum, in any order and with fused
    multiply-adds, is then an integer below 2**53, which float64 holds exactly; otherwise in int64."""
    if acc_bits is not None and acc_bits <= 53:
        return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def _conv_acc(ref: IntegerReference, op, win: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Accumulators (B, O, *out) of windows ``win`` (B, C, *out, *kernel) times weights ``w`` (O, C, *kernel),
    plus the aligned bias: one matrix product of the patches (im2col)."""
    nk = w.ndim - 2                                                        # kernel dimensions
    b, c, out = win.shape[0], win.shape[1], win.shape[2:2 + nk]
    cols = np.moveaxis(win, 1, 1 + nk).reshape(b * int(np.prod(out)), c * int(np.prod(w.shape[2:])))
    acc = int_matmul(cols, w.reshape(w.shape[0], -1).T, ref.spec.acc_bits)  # (B * out, O)
    acc = np.moveaxis(acc.reshape(b, *out, w.shape[0]), -1, 1)
    return acc + ref.bias(op, ref.plan[op.name].acc["acc"]).reshape(1, -1, *([1] * nk))


@HANDLERS.register(Conv1d)
def _conv(ref: IntegerReference, op: Conv1d, x):
    w = ref.mats[op.name]                                                  # (O, C, K)
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2], axis=2)[:, :, ::op.stride]  # (B, C, T', K)
    acc = _conv_acc(ref, op, win, w)
    return ref.requant(np.maximum(acc, 0) if op.relu else acc, _channel_frac(ref.plan[op.name].acc["acc"], 1),
                       ref.plan[op.name].out_fmt, op.name)


@HANDLERS.register(Conv2d)
def _conv2d(ref: IntegerReference, op: Conv2d, x):
    w = ref.mats[op.name]                                                  # (O, C, K, K)
    k, s = op.kernel, op.stride
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (B, C, H', W', K, K)
    acc = _conv_acc(ref, op, win, w)
    return ref.requant(np.maximum(acc, 0) if op.relu else acc, _channel_frac(ref.plan[op.name].acc["acc"], 2),
                       ref.plan[op.name].out_fmt, op.name)


@HANDLERS.register(Image)
def _image(ref, op, x):                                                    # (B, C, T) -> (B, 1, T, C)
    return x.transpose(0, 2, 1)[:, None]


@HANDLERS.register(MaxPool2d)
def _pool2d(ref, op: MaxPool2d, x):
    win = np.lib.stride_tricks.sliding_window_view(x, (op.kernel, op.kernel), axis=(2, 3))[:, :, ::op.step, ::op.step]
    return win.max(axis=(4, 5))


@HANDLERS.register(GlobalMaxPool)
def _global_pool(ref, op, x):                                              # (B, C, ...) -> (B, C)
    return x.reshape(x.shape[0], x.shape[1], -1).max(axis=2)


@HANDLERS.register(MaxPool)
def _pool(ref, op: MaxPool, x):
    win = np.lib.stride_tricks.sliding_window_view(x, op.kernel, axis=2)[:, :, ::op.step]
    return win.max(axis=3)


@HANDLERS.register(Flatten)
def _flatten(ref, op, x):
    return x.transpose(0, 2, 1).reshape(x.shape[0], -1)


@HANDLERS.register(Linear)
def _linear(ref: IntegerReference, op: Linear, x):
    p = ref.plan[op.name]
    acc = x @ ref.mats[op.name].T + ref.bias(op, p.acc["acc"])
    return ref.requant(np.maximum(acc, 0) if op.relu else acc, p.acc["acc"], p.out_fmt, op.name)


@HANDLERS.register(LSTM)
def _lstm(ref: IntegerReference, op: LSTM, x):                            # (B, C, T) -> (B, H, T)
    H, p, spec = op.hidden, ref.plan[op.name], ref.spec.ops[op.name]
    common = p.acc["acc"]
    si = (common - p.acc["ih"]).astype(np.int64)
    sh = (common - p.acc["hh"]).astype(np.int64)
    bias = ref.bias(op, common)
    fgates, fcell, fhid = spec.acts["gates"], spec.acts["cell"], spec.acts["hidden"]
    fg, fc = fgates.frac, fcell.frac
    fs, ft = ref.fsig.frac, ref.ftanh.frac
    wih, whh = ref.mats[f"{op.name}.ih"], ref.mats[f"{op.name}.hh"]
    h = np.zeros((x.shape[0], H), dtype=np.int64)
    c = np.zeros_like(h)
    outs = []
    for t in range(x.shape[2]):
        acc = ((x[:, :, t] @ wih.T) << si) + ((h @ whh.T) << sh) + bias
        g = ref.requant(acc, common, fgates, site_name(op.name, "gates"))
        i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
        sf, si_, so = (activation_fixed(ref.sig, v, fg, fs) for v in (f, i, o))
        tg = activation_fixed(ref.tanh, gg, fg, ft)
        a, b = fs + fc, fs + ft                                  # fractions of f*c and i*tanh(g)
        m = max(a, b)
        c = ref.requant(((sf * c) << (m - a)) + ((si_ * tg) << (m - b)), m, fcell, site_name(op.name, "cell"))
        h = ref.requant(so * activation_fixed(ref.tanh, c, fc, ft), fs + ft, fhid, site_name(op.name, "hidden"))
        outs.append(h)
    return np.stack(outs, axis=2)
