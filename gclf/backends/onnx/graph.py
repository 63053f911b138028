"""The ONNX graph of a GraphNet, built node by node with onnx.helper: one handler per op kind, three forms.

:func:`onnx_model` walks ``graph.ops`` in order and calls ``HANDLERS[op](g, op, x) -> Value`` for each op, where
``g`` is the :class:`OnnxGraph` under construction (its primitives: constants, nodes, weights, biases,
requantization, sigmoid/tanh) and ``x`` the op's input :class:`Value`. No handler names a layer or assumes
what comes before or after it. Forms (chosen by the spec):

``float`` (no spec): float32 initializers, float activations. Circulant layers are *materialised* as the dense
    matrix (ONNX has DFT but no practical rfft/irfft pair for the per-block circular convolution, so the file
    stores k times the checkpoint's weights; same arithmetic to float rounding); an approximate sigmoid/tanh
    (hard, plan, pwlN, lutN) is :meth:`OnnxGraph.float_act`, the float values of ``gclf.approx.schemes`` in
    elementwise ops; Norm in float32, as GraphNet's. Compared with the float GraphNet.
``weights-qdq`` (weights-only spec): integer weights and biases -> DequantizeLinear, float activations as in
    ``float``, Norm in float64 (the fake-quant front-end). Compared with
    :class:`gclf.backends.fakequant.FakeQuantNet` in mode ``weights``.
``qdq`` (full spec): what :class:`gclf.backends.intref.IntegerReference` computes, in standard ops:

* weights: int8 initializers (int16 above 8 bits) -> DequantizeLinear, scale 2^-frac per tensor or per output
  channel, zero point 0; circulant layers as the dense integer matrix the reference multiplies. Biases: int32
  -> DequantizeLinear at the accumulator's scale (the LSTM's two biases folded, as in the spec). That is the
  QDQ convention, and onnxruntime's MatMul+Add -> QGemm fusion assumes it without checking: a bias at its own
  coarser scale gave wrong results there (4-bit per-channel: 53 % argmax);
* activations: QuantizeLinear -> DequantizeLinear at every site of the spec (the input after Norm, every
  Conv1d/Linear output, an LSTM's gates, cell and hidden state); a format narrower than its container
  (int8/int16) saturates by a Clip first;
* rounding: QuantizeLinear rounds half to even. A requantized value is an exact multiple of its accumulator's
  LSB, so adding half that LSB first (an Add of a constant; times Sign for half_away; minus half an output
  LSB for floor) reproduces the spec's rounding exactly. The input is rounded in float64 right after Norm
  (which runs in float64, as the reference's front-end), with the same IEEE operations as
  :func:`gclf.quant.primitives.round_float`;
* sigmoid/tanh: gclf's integer tables are no ONNX op, but on an act_bits-bit input they are a 2^act_bits
  entry table: QuantizeLinear's integer output indexes a Gather in the exact integer outputs, then
  DequantizeLinear;
* data movement (Transpose, Reshape, Unsqueeze, Concat; MaxPool on 8-bit codes) acts on the integer codes,
  before DequantizeLinear, and MaxPool on a value not yet requantized acts before that requantization (see
  :class:`Value`): the graph never has DequantizeLinear -> Transpose/Reshape/Unsqueeze/MaxPool, which
  onnxruntime's default session breaks at opset >= 21 for int8;
* not expressed: integer arithmetic itself (ONNX multiplies and adds the dequantized values in float32, exact
  while every accumulator stays below 2^24 LSB: 8-bit specs; wider ones are measured), the accumulator
  width, and the saturation counters.

Every graph has one input named after ``graph.input_kind`` (``mfcc`` or ``audio``), (batch, C, T) float32 raw
windows (Norm included), and one output ``logits`` (batch, classes) float32; the batch dimension is dynamic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gclf.approx import get_approx
from gclf.backends.fixed import HANDLERS as FIXED
from gclf.backends.fixed import expand, integer_weights, lstm_formats, plan
from gclf.errors import GclfError
from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Image, Linear, MaxPool, MaxPool2d, Norm
from gclf.graph.registry import Registry
from gclf.graph.spec import QuantSpec, site_name
from gclf.quant.qformat import QFormat

HANDLERS = Registry("ONNX")
INT64, FLOAT, DOUBLE = 7, 1, 11                       # onnx.TensorProto data types used by Cast


def form_of(spec: QuantSpec | None) -> str:
    """The ONNX form of a model: ``float`` without a spec, ``weights-qdq`` for a weights-only one, else ``qdq``."""
    return "float" if spec is None else "weights-qdq" if spec.weights_only else "qdq"


def container(width: int, signed: bool = True) -> np.dtype:
    """The ONNX integer type that holds a ``width``-bit value (int8/uint8, int16/uint16, int32)."""
    for bits in (8, 16, 32):
        if width <= bits:
            return np.dtype(f"{'' if signed else 'u'}int{bits}")
    raise GclfError(f"a {width}-bit fixed-point value has no ONNX integer type")


def tie_nudge(rounding: str, acc_frac, out_frac: int) -> tuple[np.ndarray | None, bool]:
    """What to add to an exact accumulator (multiples of 2**-acc_frac) so that QuantizeLinear's round half to
    even gives ``rounding``: half an accumulator LSB moves every tie off the tie and no other value across
    a rounding boundary. Returns (per-channel amounts or None, whether to multiply them by sign(v))."""
    a = np.atleast_1d(np.asarray(acc_frac, dtype=np.int64))
    rounds = a > out_frac                                 # a right shift that discards bits
    half_acc = np.where(rounds, np.ldexp(1.0, -(a + 1)), 0.0)
    if rounding == "half_even" or not rounds.any():
        return None, False
    if rounding == "floor":
        return np.where(rounds, half_acc - np.ldexp(1.0, -(out_frac + 1)), 0.0), False
    return half_acc, rounding == "half_away"


@dataclass(frozen=True)
class Requant:
    """A requantization still owed: to ``fmt``, from values that are exact multiples of 2**-acc_frac (per
    channel along axis 1; None: not on a grid, e.g. the input already rounded in float64)."""

    fmt: QFormat
    acc_frac: np.ndarray | int | None
    site: str


@dataclass(frozen=True)
class Codes:
    """Integers of ``fmt`` (in its ONNX container type): the quantized form of a value (qdq form only)."""

    name: str
    fmt: QFormat


@dataclass(frozen=True)
class Value:
    """A tensor between two ops: its shape without the batch dimension, and one of

    * ``name``: a float32 tensor; with ``owed`` set (qdq form), *before* the requantization it still owes:
      a Norm, Conv1d or Linear handler returns its output so;
    * ``codes``: a requantized value as its integers (qdq form); :meth:`OnnxGraph.floats` dequantizes them.

    Handlers call :meth:`OnnxGraph.settle` (apply what is owed) and then :meth:`OnnxGraph.floats` for
    arithmetic, or :meth:`OnnxGraph.move` for data movement, which acts on the codes before they are
    dequantized. MaxPool pools a value that still owes its requantization first and passes the debt on:
    pooling before requantizing gives the reference's pooling after it, exactly (the requantization -- tie
    nudge, Clip, QuantizeLinear -- is monotone non-decreasing within a channel and max commutes with such
    functions; the max of exact multiples of the accumulator LSB is one, so the tie nudge stays exact). A
    value already requantized is pooled as its 8-bit codes (the same max: dequantization is monotone), or
    dequantized first when wider (ONNX's MaxPool takes no int16).

    Why codes: onnxruntime's QDQ propagation (default session) rewrites DequantizeLinear(int8) -> MaxPool,
    Transpose, Reshape, Unsqueeze into an invalid QuantizeLinear at opset >= 21 ("output_dtype INT8 does
    not match y_zero_point type UINT8"; onnxruntime 1.32; fixed upstream by microsoft/onnxruntime#28144), so
    the graph never has that pattern."""

    name: str | None
    shape: tuple[int, ...]
    owed: Requant | None = None
    codes: Codes | None = None


class OnnxGraph:
    """The ONNX graph of a GraphNet under ``spec`` (None: the float model), built by the op handlers."""

    def __init__(self, model, spec: QuantSpec | None, opset: int):
        self.model, self.graph, self.spec, self.opset = model, model.graph, spec, opset
        self.form = form_of(spec)
        self.full = self.form == "qdq"
        self.ints = integer_weights(model, spec)[0] if spec is not None else None
        self.plan = plan(self.graph, spec) if self.full else None
        if self.full:
            self.fsig, self.ftanh = lstm_formats(spec)
        self.nodes, self.inits, self.consts, self.tables, self._n = [], [], {}, {}, 0
        self._dequantized: dict[str, str] = {}               # codes tensor -> its DequantizeLinear output
        self.scope = ""

    # ---- graph primitives ------------------------------------------------------------------------------
    def const(self, arr, name: str | None = None) -> str:
        """An initializer; anonymous constants with equal dtype, shape and bytes are stored once."""
        from onnx import numpy_helper

        arr = np.asarray(arr)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if name is None and key in self.consts:
            return self.consts[key]
        self._n += 1
        name = name or f"c_{self._n}"
        self.inits.append(numpy_helper.from_array(arr, name))
        self.consts.setdefault(key, name)
        return name

    def node(self, op_type: str, *inputs: str, n_out: int = 1, out: str | None = None, **attrs):
        """One node, named after the op it belongs to (``conv1/Conv_12``); its outputs get short names
        (``t12``, ``t12_0``...: every use of a tensor repeats its name in the file)."""
        from onnx import helper

        self._n += 1
        name = f"{self.scope}/{op_type}_{self._n}" if self.scope else f"{op_type}_{self._n}"
        outs = [out] if out else [f"t{self._n}"] if n_out == 1 else [f"t{self._n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def dequant(self, x: str, frac, dtype: np.dtype, axis: int = 0) -> str:
        """DequantizeLinear with scale 2**-frac: one scale, or one per channel along ``axis``."""
        frac = np.atleast_1d(np.asarray(frac, dtype=np.int64))
        scale = np.ldexp(np.float32(1.0), -frac).astype(np.float32)    # powers of two: exact
        if (frac == frac[0]).all():
            return self.node("DequantizeLinear", x, self.const(scale[0]), self.const(np.zeros((), dtype)))
        return self.node("DequantizeLinear", x, self.const(scale), self.const(np.zeros(len(frac), dtype)), axis=axis)

    # ---- weights -----------------------------------------------------------------------------------------
    def weight(self, op, local: str = "weight", transpose: bool = False) -> str:
        """The matrix op ``op`` multiplies by (circulant: materialised), transposed for MatMul: float32, or the
        integers -> DequantizeLinear (per output channel when the spec is)."""
        path, mod = FIXED[op].matrices(op, self.model)[local]
        if self.ints is None:
            w = expand(mod, mod.weight.detach()).float().numpy()
            return self.const(np.ascontiguousarray(w.T if transpose else w), path + ".weight")
        wq = self.ints[path + ".weight"]
        w = expand(mod, torch.from_numpy(wq.ints)).numpy()              # circulant: the dense integer matrix
        dtype = container(wq.width)
        w = np.ascontiguousarray((w.T if transpose else w).astype(dtype))
        return self.dequant(self.const(w, path + ".weight_q"), wq.frac, dtype, 1 if transpose else 0)

    def bias(self, op) -> str:
        """The op's bias (an LSTM's two folded, in float64, as the spec does): float32, or int32 ->
        DequantizeLinear, stored at the accumulator's scale (input scale x weight scale, the usual QDQ
        convention that runtimes' fused integer kernels assume) when that fits int32: an exact shift."""
        if self.ints is None:
            b = FIXED[op].float_bias(op, self.model).detach().numpy().astype(np.float32)
            return self.const(b, op.name + ".bias")
        bq = self.ints[op.name + ".bias"]
        ints, frac = bq.ints, bq.frac
        if self.full:
            acc = np.broadcast_to(np.asarray(self.plan[op.name].acc["acc"]), frac.shape)
            if (acc >= frac).all() and (np.abs(ints) << (acc - frac)).max(initial=0) < 2 ** 31:
                ints, frac = ints << (acc - frac), acc
        return self.dequant(self.const(ints.astype(np.int32), op.name + ".bias_q"), frac, np.dtype(np.int32))

    # ---- fixed point ------------------------------------------------------------------------------------
    def result(self, op, name: str, shape: tuple[int, ...]) -> Value:
        """A Conv1d/Linear output before requantization: owes it (qdq form) to the op's output format, from
        the accumulator fraction of the plan."""
        if not self.full:
            return Value(name, shape)
        return Value(name, shape, Requant(self.spec.act(op.name), self.plan[op.name].acc["acc"], site_name(op.name)))

    def settle(self, v: Value) -> Value:
        """``v`` after the requantization it owes (what every op but MaxPool consumes): its codes, by tie
        nudge, Clip (a format narrower than its container) and QuantizeLinear; ``v`` itself if it owes none."""
        r = v.owed
        if r is None:
            return v
        f, x = r.fmt, v.name
        if r.acc_frac is not None:
            nudge, signed = tie_nudge(f.rounding, r.acc_frac, f.frac)
            if nudge is not None:                          # channel axis 1, then len(shape) - 1 trailing dims
                c = self.const(nudge.reshape(-1, *[1] * (len(v.shape) - 1)).astype(np.float32))
                x = self.node("Add", x, self.node("Mul", self.node("Sign", x), c) if signed else c)
        dtype = container(f.width, f.signed)
        if f.width < 8 * dtype.itemsize:                   # saturate at the format's own range
            x = self.node("Clip", x, self.const(np.float32(f.min_value)), self.const(np.float32(f.max_value)))
        codes = self.node("QuantizeLinear", x, self.const(np.float32(f.scale)), self.const(np.zeros((), dtype)))
        return Value(None, v.shape, codes=Codes(codes, f))

    def floats(self, v: Value) -> str:
        """The float32 tensor of a settled value: its codes -> DequantizeLinear (one per codes tensor)."""
        assert v.owed is None, "settle() the value first"
        if v.codes is None:
            return v.name
        c = v.codes
        if c.name not in self._dequantized:
            dtype = container(c.fmt.width, c.fmt.signed)
            self._dequantized[c.name] = self.node("DequantizeLinear", c.name, self.const(np.float32(c.fmt.scale)),
                                                  self.const(np.zeros((), dtype)))
        return self._dequantized[c.name]

    def move(self, v: Value, shape: tuple[int, ...], fn) -> Value:
        """Data movement ``fn`` (tensor name -> tensor name: Transpose, Reshape, ...) on a settled value: on
        its codes when it has them (dequantized after, never before), else on its floats."""
        v = self.settle(v)
        if v.codes is not None:
            return Value(None, shape, codes=Codes(fn(v.codes.name), v.codes.fmt))
        return Value(fn(v.name), shape)

    def round_float64(self, t: str, rounding: str) -> str:
        """Round float64 values to integers with :func:`gclf.quant.primitives.round_float`'s IEEE operations
        (floor(v + 0.5) would differ from it on v = 0.5 - 2**-54)."""
        if rounding == "floor":
            return self.node("Floor", t)
        if rounding == "half_even":
            return self.node("Round", t)
        a = self.node("Abs", t) if rounding == "half_away" else t
        f = self.node("Floor", a)
        up = self.node("GreaterOrEqual", self.node("Sub", a, f), self.const(np.float64(0.5)))
        r = self.node("Add", f, self.node("Cast", up, to=DOUBLE))
        if rounding == "half_away":
            r = self.node("Where", self.node("Less", t, self.const(np.float64(0.0))), self.node("Neg", r), r)
        return r

    def table(self, codes: str, op, func: str, site: str) -> str:
        """sigmoid/tanh of quantized codes at ``site`` of LSTM ``op``: a Gather in the exact integer outputs
        for every possible input, then DequantizeLinear."""
        from gclf.quant.formats import activation_fixed

        fin, fout = self.spec.act(op.name, site), self.fsig if func == "sigmoid" else self.ftanh
        scheme = self.spec.sigmoid if func == "sigmoid" else self.spec.tanh
        dtype = container(fout.width, fout.signed)
        key = (op.name, func, site)
        if key not in self.tables:
            q = np.arange(fin.min_int, fin.max_int + 1, dtype=np.int64)
            vals = activation_fixed(get_approx(scheme, func), q, fin.frac, fout.frac).astype(dtype)
            self.tables[key] = self.const(vals, f"{op.name}.{func}_{scheme}_of_{site}_table")
        idx = self.node("Sub", self.node("Cast", codes, to=INT64), self.const(np.int64(fin.min_int)))
        return self.dequant(self.node("Gather", self.tables[key], idx, axis=0), fout.frac, dtype)

    def float_act(self, v: str, scheme: str, func: str) -> str:
        """The float sigmoid/tanh of ``scheme`` as elementwise ops: Sigmoid/Tanh, or the segment table of
        ``gclf.approx.schemes`` (same float32 operations as its torch version: index by counting breakpoints
        instead of bucketize; a lut's straight-through term adds exactly 0 at inference)."""
        ap = get_approx(scheme, func)
        if ap.spec is None:
            return self.node("Sigmoid" if func == "sigmoid" else "Tanh", v)
        seg, f32 = ap.spec, np.float32
        starts = np.array([float(s) for s in seg.starts], f32)
        a, last = self.node("Abs", v), self.const(np.array([-1], np.int64))
        above = self.node("GreaterOrEqual", self.node("Unsqueeze", a, last), self.const(starts))  # (..., segments)
        k = self.node("Sub", self.node("ReduceSum", self.node("Cast", above, to=INT64), last, keepdims=0),
                      self.const(np.int64(1)))                           # = bucketize(a, starts, right=True) - 1
        if starts[0] > 0:                                                # the torch version clamps at 0
            k = self.node("Max", k, self.const(np.int64(0)))
        gather = lambda arr: self.node("Gather", self.const(np.asarray(arr, f32)), k, axis=0)  # noqa: E731
        y = self.node("Add", gather(seg.values),
                      self.node("Mul", gather(seg.slopes), self.node("Sub", a, gather(starts))))
        y = self.node("Where", self.node("GreaterOrEqual", a, self.const(f32(seg.end))), self.const(f32(1)), y)
        if seg.step:
            y = self.node("Where", self.node("Equal", a, self.const(f32(0))), self.const(f32(seg.centre)), y)
        neg = self.node("Less", v, self.const(f32(0)))
        flip = self.node("Sub", self.const(f32(1)), y) if func == "sigmoid" else self.node("Neg", y)
        return self.node("Where", neg, flip, y)

    # ---- the walker -------------------------------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return self.graph.input_kind

    def build(self):
        """The ModelProto: input (batch, C, T) -> logits (batch, classes), every op by its handler."""
        from onnx import TensorProto, helper

        c, t = self.graph.input_shape
        x = Value(self.input_name, (c, t))
        for op in self.graph.ops:
            self.scope = op.name
            x = HANDLERS[op](self, op, x)
            want = op.out_shape(self.graph.in_shape(op.name))
            assert x.shape == want, f"ONNX handler of {op.kind} gave shape {x.shape}, not {want}"
        self.scope = ""
        self.node("Identity", self.floats(self.settle(x)), out="logits")
        inp = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["batch", c, t])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", self.graph.n_classes])
        graph = helper.make_graph(self.nodes, f"gclf_{self.graph.arch}_{self.form}", [inp], [out], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="gclf",
                                 ir_version=10 if self.opset <= 22 else 11)


def onnx_model(model, spec: QuantSpec | None, opset: int):
    """(ModelProto, form) of a GraphNet: float (``spec`` None), weights-qdq or qdq."""
    g = OnnxGraph(model, spec, opset)
    return g.build(), g.form


# ---- one handler per op kind: (g, op, x: Value) -> Value ----------------------------------------------------
@HANDLERS.register(Norm)
def _norm(g: OnnxGraph, op: Norm, x: Value) -> Value:
    """Per-window mean over time (cmn), then (x - offset) * scale per channel, in the precision of the model
    the form stands for: float32 as GraphNet's InputNorm (form ``float``), float64 as the integer reference's
    and fake-quant's front-end (both fixed-point forms; the float32 buffers are widened exactly). qdq: rounded
    to the input format there, in float64, so the QuantizeLinear it owes only saturates."""
    mod = g.model.module_of(op)
    wide = g.spec is not None
    xd = g.node("Cast", x.name, to=DOUBLE) if wide else x.name
    if op.cmn:
        mean = (g.node("ReduceMean", xd, g.const(np.array([-1], np.int64)), keepdims=1) if g.opset >= 18
                else g.node("ReduceMean", xd, axes=[-1], keepdims=1))     # axes: an input from opset 18
        xd = g.node("Sub", xd, mean)
    col = {}
    for k in ("offset", "scale"):                                          # (C, 1): per channel
        col[k] = g.const(getattr(mod, k).detach().float().numpy()[:, None], f"{op.name}.{k}")
        col[k] = g.node("Cast", col[k], to=DOUBLE) if wide else col[k]
    xd = g.node("Mul", g.node("Sub", xd, col["offset"]), col["scale"])
    shape = op.out_shape(x.shape)
    if not g.full:
        return Value(g.node("Cast", xd, to=FLOAT) if wide else xd, shape)
    f = g.spec.act(op.name)
    t = g.round_float64(g.node("Mul", xd, g.const(np.ldexp(1.0, f.frac))), f.rounding)
    xd = g.node("Mul", t, g.const(np.ldexp(1.0, -f.frac)))
    return Value(g.node("Cast", xd, to=FLOAT), shape, Requant(f, None, site_name(op.name)))


@HANDLERS.register(Conv1d)
def _conv(g: OnnxGraph, op: Conv1d, x: Value) -> Value:
    """Conv (valid, strided) with bias, optional Relu; owes the requantization to its output format."""
    x = g.settle(x)
    y = g.node("Conv", g.floats(x), g.weight(op), g.bias(op), kernel_shape=[op.kernel], strides=[op.stride])
    return g.result(op, g.node("Relu", y) if op.relu else y, op.out_shape(x.shape))


@HANDLERS.register(Conv2d)
def _conv2d(g: OnnxGraph, op: Conv2d, x: Value) -> Value:
    """Conv (valid, strided, square kernel) with bias, optional Relu; owes the requantization."""
    x = g.settle(x)
    k, s = [op.kernel] * 2, [op.stride] * 2
    y = g.node("Conv", g.floats(x), g.weight(op), g.bias(op), kernel_shape=k, strides=s)
    return g.result(op, g.node("Relu", y) if op.relu else y, op.out_shape(x.shape))


def _max(g: OnnxGraph, x: Value, shape: tuple[int, ...], pool) -> Value:
    """A max (``pool``: tensor name -> tensor name) before the requantization its input owes (passed on), on
    8-bit codes, or on floats (see :class:`Value`: all give the reference's max of the requantized integers)."""
    if x.owed is not None or x.codes is None:
        return Value(pool(x.name), shape, x.owed)
    if x.codes.fmt.width <= 8:                              # ONNX MaxPool takes int8/uint8, not int16
        return g.move(x, shape, pool)
    return Value(pool(g.floats(x)), shape)


@HANDLERS.register(MaxPool)
def _pool(g: OnnxGraph, op: MaxPool, x: Value) -> Value:
    return _max(g, x, op.out_shape(x.shape),
                lambda t: g.node("MaxPool", t, kernel_shape=[op.kernel], strides=[op.step]))


@HANDLERS.register(MaxPool2d)
def _pool2d(g: OnnxGraph, op: MaxPool2d, x: Value) -> Value:
    return _max(g, x, op.out_shape(x.shape),
                lambda t: g.node("MaxPool", t, kernel_shape=[op.kernel] * 2, strides=[op.step] * 2))


@HANDLERS.register(GlobalMaxPool)
def _global_pool(g: OnnxGraph, op: GlobalMaxPool, x: Value) -> Value:
    """MaxPool over the whole of time (and space), then Reshape (B, C, 1[, 1]) -> (B, C); MaxPool rather than
    GlobalMaxPool, which takes no int8."""
    flat = g.const(np.array([0, -1], np.int64))
    return _max(g, x, op.out_shape(x.shape),
                lambda t: g.node("Reshape", g.node("MaxPool", t, kernel_shape=list(x.shape[1:])), flat))


@HANDLERS.register(Image)
def _image(g: OnnxGraph, op: Image, x: Value) -> Value:
    """(B, C, T) -> (B, 1, T, C): Transpose then Unsqueeze, on the codes."""
    axis = g.const(np.array([1], np.int64))
    return g.move(x, op.out_shape(x.shape),
                  lambda t: g.node("Unsqueeze", g.node("Transpose", t, perm=[0, 2, 1]), axis))


@HANDLERS.register(Flatten)
def _flatten(g: OnnxGraph, op: Flatten, x: Value) -> Value:
    """(B, C, T) -> (B, T*C), time-major: Transpose then Reshape."""
    flat = g.const(np.array([0, -1], np.int64))
    return g.move(x, op.out_shape(x.shape),
                  lambda t: g.node("Reshape", g.node("Transpose", t, perm=[0, 2, 1]), flat))


@HANDLERS.register(Linear)
def _linear(g: OnnxGraph, op: Linear, x: Value) -> Value:
    """MatMul by the transposed matrix, Add the bias, optional Relu; owes the requantization."""
    x = g.settle(x)
    y = g.node("Add", g.node("MatMul", g.floats(x), g.weight(op, transpose=True)), g.bias(op))
    return g.result(op, g.node("Relu", y) if op.relu else y, op.out_shape(x.shape))


@HANDLERS.register(LSTM)
def _lstm(g: OnnxGraph, op: LSTM, x: Value) -> Value:
    """(B, C, T) -> (B, H, T): unrolled over the T steps (ONNX's LSTM op is not used), h and c from 0.

    The input projection of all steps is one MatMul; each step Gathers its row, adds h @ Whh (nothing at
    t = 0, where h = 0) and the folded bias. qdq: the gates, cell and hidden state requantized at their sites,
    sigmoid/tanh as table Gathers; otherwise float sigmoid/tanh of the cell's scheme."""
    steps, hid = x.shape[1], op.hidden
    seq = g.move(x, x.shape[::-1], lambda t: g.node("Transpose", t, perm=[0, 2, 1]))     # (B, T, C)
    xi = g.node("MatMul", g.floats(seq), g.weight(op, "ih", transpose=True))             # (B, T, 4H)
    wh, b = g.weight(op, "hh", transpose=True), g.bias(op)
    split = g.const(np.array([hid] * 4, np.int64))
    if g.full:
        fs, ft = g.fsig.frac, g.ftanh.frac
        fc = g.spec.act(op.name, "cell").frac
        p = g.plan[op.name]
    else:
        cell = g.model.module_of(op)
        sig = lambda v: g.float_act(v, cell.sigmoid_name, "sigmoid")          # noqa: E731
        tanh = lambda v: g.float_act(v, cell.tanh_name, "tanh")               # noqa: E731
    h = c = None
    outs = []
    for t in range(steps):
        acc = g.node("Gather", xi, g.const(np.int64(t)), axis=1)               # (B, 4H)
        if h is not None:
            acc = g.node("Add", acc, g.node("MatMul", h, wh))
        acc = g.node("Add", acc, b)
        if g.full:
            gates = g.settle(Value(acc, (4 * hid,), Requant(g.spec.act(op.name, "gates"), p.acc["acc"],
                                                             site_name(op.name, "gates")))).codes
            i, f, gg, o = g.node("Split", gates.name, split, n_out=4, axis=1)
            si, sf, so = (g.table(v, op, "sigmoid", "gates") for v in (i, f, o))
            ig = g.node("Mul", si, g.table(gg, op, "tanh", "gates"))
            s = ig if c is None else g.node("Add", g.node("Mul", sf, c), ig)
            cv = g.settle(Value(s, (hid,), Requant(g.spec.act(op.name, "cell"), max(fs + fc, fs + ft),
                                                    site_name(op.name, "cell"))))
            c = g.floats(cv)
            hv = g.node("Mul", so, g.table(cv.codes.name, op, "tanh", "cell"))
            hq = g.settle(Value(hv, (hid,), Requant(g.spec.act(op.name, "hidden"), fs + ft,
                                                     site_name(op.name, "hidden"))))
            h, out = g.floats(hq), hq.codes.name           # floats for the next h @ Whh; codes are stacked
        else:
            i, f, gg, o = g.node("Split", acc, split, n_out=4, axis=1)
            ig = g.node("Mul", sig(i), tanh(gg))
            c = ig if c is None else g.node("Add", g.node("Mul", sig(f), c), ig)   # c = 0 at t = 0
            h = out = g.node("Mul", sig(o), tanh(c))
        outs.append(g.node("Unsqueeze", out, g.const(np.array([2], np.int64))))
    y = outs[0] if steps == 1 else g.node("Concat", *outs, axis=2)
    if g.full:                                               # the hidden states' codes, dequantized by the next op
        return Value(None, op.out_shape(x.shape), codes=Codes(y, g.spec.act(op.name, "hidden")))
    return Value(y, op.out_shape(x.shape))


# ---- what each form expresses ---------------------------------------------------------------------------------
def form_notes(model, spec: QuantSpec | None, chain: list) -> list[str]:
    """What the file expresses and what it does not, for the chain it comes from."""
    from gclf.graph.chain import Approx, Compress

    notes = [f"Norm (per-window mean removal, offset, scale) runs inside the graph in "
             f"{'float32, as in the float model' if spec is None else 'float64, as the host front-end'}; "
             "the input is the raw window"]
    if model.graph.of_kind(LSTM):
        notes.append("LSTM unrolled over its steps (MatMul, Gather, Split, Mul, Add); ONNX's LSTM op is not used")
    circ = [s for s in chain if isinstance(s, Compress)]
    appr = [s for s in chain if isinstance(s, Approx)]
    for s in circ:
        what = "the dense integer matrices the integer reference multiplies" if spec is not None else "dense matrices"
        notes.append(f"block-circulant layers (block {s.block}: {', '.join(s.targets)}) are materialised as {what}: "
                     "ONNX has no practical rfft/irfft path, so the file stores "
                     f"{s.block}x more weights than the checkpoint; same arithmetic")
    if spec is None:
        for s in appr:
            notes.append(f"sigmoid={s.sigmoid}, tanh={s.tanh} expressed exactly as elementwise ops "
                         "(Abs, GreaterOrEqual, ReduceSum, Gather of the segment table, Mul/Add, Where)")
        return notes
    c = spec.config
    per = " per output channel" if c.per_channel else ""
    notes.append(f"weights: {container(c.bits)} initializers -> DequantizeLinear (scale 2^-frac{per}, zero point 0); "
                 "biases: int32 -> DequantizeLinear" + (" at the accumulator scale" if not c.weights_only else "")
                 + " (LSTM biases folded, as in the spec)")
    if c.weights_only:
        return notes + ["activations stay float32 (the PyTorch fake-quant twin runs float64); sigmoid/tanh "
                        "of the chain's scheme as elementwise ops"]
    sites = ", ".join(spec.sites())
    acc = spec.acc_bits or 0
    notes += [
        f"activations: QuantizeLinear/DequantizeLinear at every site of the spec ({sites}) in its "
        f"{spec.act_bits}-bit formats (power-of-two scales); a format narrower than its container saturates by a "
        "Clip before QuantizeLinear; MaxPool runs before the requantization it follows (equal: monotone)",
        f"rounding {spec.rounding}: QuantizeLinear rounds half to even, so each requantization first adds half an "
        "accumulator LSB (exact: values are multiples of it; nothing for half_even); the input is rounded in "
        "float64 after Norm, with the integer reference's own operations",
        "not expressed: integer arithmetic (ONNX adds dequantized products in float32: exact below 2^24 LSB; this "
        f"spec's accumulators need {acc} bits: {'exact' if 0 < acc <= 24 else 'not guaranteed, see agreement'}), "
        "the accumulator width, saturation counters",
        "onnxruntime's default session fuses QDQ into integer kernels (x86 without VNNI: u8s8 saturation) and can "
        "differ: agreement_ort_default",
    ]
    if model.graph.of_kind(LSTM):
        notes.insert(-2, f"sigmoid/tanh ({spec.sigmoid}/{spec.tanh}): gclf's integer table outputs for every "
                         f"{spec.act_bits}-bit input, a Gather indexed by QuantizeLinear's integer output (exact)")
    return notes
