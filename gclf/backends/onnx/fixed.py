"""The fixed-point ONNX graph (form ``qdq``), built node by node with onnx.helper.

Integer weights feed DequantizeLinear with scale 2**-frac; every site the quantize spec quantizes gets a
QuantizeLinear/DequantizeLinear pair (rounding made to match gclf's mode); sigmoid/tanh are Gathers into
gclf's integer tables. See :mod:`gclf.backends.onnx.export` for what is and is not expressed.
"""
from __future__ import annotations

import numpy as np
import torch

from gclf.errors import GclfError


def _container(width: int, signed: bool = True) -> np.dtype:
    """The ONNX integer type that holds a ``width``-bit value (int8/uint8, int16/uint16, int32)."""
    for bits in (8, 16, 32):
        if width <= bits:
            return np.dtype(f"{'' if signed else 'u'}int{bits}")
    raise GclfError(f"a {width}-bit fixed-point value has no ONNX integer type")


def _tie_nudge(rounding: str, acc_frac, out_frac: int) -> tuple[np.ndarray | None, bool]:
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


class FixedGraph:
    """The fixed-point datapath of a GenderNet under a quantize spec, as an ONNX graph (onnx.helper).

    Weights: integer initializers -> DequantizeLinear (scale 2**-frac, zero point 0; per channel when the
    spec is). Full spec: QuantizeLinear/DequantizeLinear at each activation site, sigmoid/tanh as a Gather in
    the exact integer table indexed by the quantized input. Weights-only spec: float activations."""

    def __init__(self, model, spec: dict, opset: int):
        from gclf.approx.schemes import get_approx
        from gclf.quant.calibrate import acc_fracs, integer_weights
        from gclf.quant.qformat import QFormat
        from gclf.quant.spec import sigmoid_format, tanh_format

        self.m, self.spec, self.opset = model, spec, opset
        self.full = not spec["weights_only"]
        self.ints, _ = integer_weights(model, spec)
        self.approx = {f: get_approx(spec[f], f) for f in ("sigmoid", "tanh")}
        self.nodes, self.inits, self.tables, self.consts, self._n = [], [], {}, {}, 0
        if self.full:
            self.fmt = {k: QFormat.from_dict(v) for k, v in spec["acts"].items()}
            self.fmt["sigmoid"] = sigmoid_format(spec["act_bits"], spec["rounding"])
            self.fmt["tanh"] = tanh_format(spec["act_bits"], spec["rounding"])
            self.acc = acc_fracs(spec, model)

    # ---- graph primitives ------------------------------------------------------------------------------
    def const(self, arr, base: str = "c") -> str:
        from onnx import numpy_helper

        arr = np.asarray(arr)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if base == "c" and key in self.consts:                       # one initializer per distinct constant
            return self.consts[key]
        self._n += 1
        name = f"{base}_{self._n}" if base == "c" else base
        self.inits.append(numpy_helper.from_array(arr, name))
        self.consts.setdefault(key, name)
        return name

    def op(self, op_type: str, *inputs: str, n_out: int = 1, out: str | None = None, **attrs):
        from onnx import helper

        self._n += 1
        outs = [out] if out else [f"{op_type.lower()}_{self._n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=f"{op_type}_{self._n}", **attrs))
        return outs[0] if n_out == 1 else outs

    def dequant(self, x: str, frac, dtype: np.dtype, axis: int = 0) -> str:
        """DequantizeLinear with scale 2**-frac: one scale, or one per channel along ``axis``."""
        frac = np.atleast_1d(np.asarray(frac, dtype=np.int64))
        scale = np.ldexp(np.float32(1.0), -frac).astype(np.float32)    # powers of two: exact
        if (frac == frac[0]).all():
            return self.op("DequantizeLinear", x, self.const(scale[0]), self.const(np.zeros((), dtype)))
        return self.op("DequantizeLinear", x, self.const(scale), self.const(np.zeros(len(frac), dtype)), axis=axis)

    def weight(self, name: str, transpose: bool) -> str:
        """The (materialised) integer weight matrix of a layer, dequantized; transposed for MatMul."""
        from gclf.quant.layers import expand

        wq, mod = self.ints[name + ".weight"], self.m.get_submodule(name)
        w = expand(mod, torch.from_numpy(wq.ints)).numpy()         # circulant: the dense integer matrix
        w = w.T if transpose else w
        dtype = _container(wq.width)
        return self.dequant(self.const(w.astype(dtype), name + ".weight_q"), wq.frac, dtype, 1 if transpose else 0)

    def bias(self, owner: str) -> str:
        """int32 bias -> DequantizeLinear, stored at the accumulator's scale (input scale x weight scale, the
        usual QDQ convention that runtimes' fused integer kernels assume) when it fits int32: an exact shift."""
        bq = self.ints[owner + ".bias"]
        ints, frac = bq.ints, bq.frac
        if self.full:
            acc = np.broadcast_to(np.asarray(self.acc[owner]), frac.shape)
            if (acc >= frac).all() and (np.abs(ints) << (acc - frac)).max(initial=0) < 2 ** 31:
                ints, frac = ints << (acc - frac), acc
        return self.dequant(self.const(ints.astype(np.int32), owner + ".bias_q"), frac, np.dtype(np.int32))

    # ---- fixed point ----------------------------------------------------------------------------------
    def requant(self, v: str, acc_frac, site: str, trailing: int = 0) -> tuple[str | None, str]:
        """(integer codes, dequantized value) of ``v`` in the site's format; float mode: (None, v).

        ``acc_frac``: v's exact LSB per channel (None: v is not on a grid); ``trailing``: dims after the channel."""
        if not self.full:
            return None, v
        f = self.fmt[site]
        if acc_frac is not None:
            nudge, signed = _tie_nudge(f.rounding, acc_frac, f.frac)
            if nudge is not None:
                c = self.const(nudge.reshape(-1, *[1] * trailing).astype(np.float32))
                v = self.op("Add", v, self.op("Mul", self.op("Sign", v), c) if signed else c)
        dtype = _container(f.width, f.signed)
        if f.width < 8 * dtype.itemsize:                             # saturate at the format's own range
            v = self.op("Clip", v, self.const(np.float32(f.min_value)), self.const(np.float32(f.max_value)))
        scale, zp = self.const(np.float32(f.scale)), self.const(np.zeros((), dtype))
        codes = self.op("QuantizeLinear", v, scale, zp)
        return codes, self.op("DequantizeLinear", codes, scale, zp)

    def table(self, codes: str, func: str, site: str) -> str:
        """sigmoid/tanh of quantized codes: Gather in the exact integer outputs for every possible input."""
        from gclf.quant.spec import activation_fixed

        fin, fout = self.fmt[site], self.fmt[func]
        dtype = _container(fout.width, fout.signed)
        if (func, site) not in self.tables:
            q = np.arange(fin.min_int, fin.max_int + 1, dtype=np.int64)
            vals = activation_fixed(self.approx[func], q, fin.frac, fout.frac).astype(dtype)
            self.tables[func, site] = self.const(vals, f"{func}_{self.spec[func]}_of_{site}_table")
        idx = self.op("Sub", self.op("Cast", codes, to=7), self.const(np.int64(fin.min_int)))  # 7: INT64
        return self.dequant(self.op("Gather", self.tables[func, site], idx, axis=0), fout.frac, dtype)

    def float_act(self, v: str, func: str) -> str:
        """Weights-only mode: the float sigmoid/tanh (scheme of the spec) as elementwise ops."""
        ap = self.approx[func]
        if ap.spec is None:
            return self.op("Sigmoid" if func == "sigmoid" else "Tanh", v)
        seg, f32 = ap.spec, np.float32
        starts = np.array([float(s) for s in seg.starts], f32)
        a, last = self.op("Abs", v), self.const(np.array([-1], np.int64))
        above = self.op("GreaterOrEqual", self.op("Unsqueeze", a, last), self.const(starts))   # (..., segments)
        k = self.op("Sub", self.op("ReduceSum", self.op("Cast", above, to=7), last, keepdims=0),
                    self.const(np.int64(1)))                           # segment index, as bucketize
        gather = lambda arr: self.op("Gather", self.const(np.asarray(arr, f32)), k, axis=0)  # noqa: E731
        y = self.op("Add", gather(seg.values), self.op("Mul", gather(seg.slopes), self.op("Sub", a, gather(starts))))
        y = self.op("Where", self.op("GreaterOrEqual", a, self.const(f32(seg.end))), self.const(f32(1)), y)
        if seg.step:
            y = self.op("Where", self.op("Equal", a, self.const(f32(0))), self.const(f32(seg.centre)), y)
        neg = self.op("Less", v, self.const(f32(0)))
        flip = self.op("Sub", self.const(f32(1)), y) if func == "sigmoid" else self.op("Neg", y)
        return self.op("Where", neg, flip, y)

    # ---- layers ---------------------------------------------------------------------------------------
    def input_norm(self, x: str) -> str:
        """InputNorm in float64, as the integer reference's front-end; full spec: rounded to the input format
        there with the spec's rounding (Floor/Round), so the QuantizeLinear that follows only saturates."""
        norm = self.m.norm
        xd = self.op("Cast", x, to=11)                                # 11: DOUBLE
        if norm.cmn:
            axes = self.const(np.array([-1], np.int64))
            mean = (self.op("ReduceMean", xd, axes, keepdims=1) if self.opset >= 18
                    else self.op("ReduceMean", xd, axes=[-1], keepdims=1))
            xd = self.op("Sub", xd, mean)
        col = lambda t: self.const(t.detach().double().numpy()[:, None])  # noqa: E731
        xd = self.op("Mul", self.op("Sub", xd, col(norm.offset)), col(norm.scale))
        if self.full:
            f = self.fmt["input"]
            t = self.op("Mul", xd, self.const(np.ldexp(1.0, f.frac)))
            half = self.const(np.float64(0.5))
            t = {"floor": lambda: self.op("Floor", t), "half_even": lambda: self.op("Round", t),
                 "half_up": lambda: self.op("Floor", self.op("Add", t, half)),
                 "half_away": lambda: self.op("Mul", self.op("Sign", t),
                                              self.op("Floor", self.op("Add", self.op("Abs", t), half)))}[f.rounding]()
            xd = self.op("Mul", t, self.const(np.ldexp(1.0, -f.frac)))
        return self.op("Cast", xd, to=1)                               # 1: FLOAT

    def layer(self, x: str, name: str, relu: bool, pool: int = 0) -> str:
        """conv1/conv2 (Conv) or an fc layer (MatMul): bias, ReLU, [MaxPool,] requantization at its site.

        Pooling before requantizing equals the reference's pooling after it (requantization is monotone
        within a channel), and keeps DequantizeLinear -> MaxPool out of the graph: onnxruntime's QDQ
        propagation breaks on that pattern at opset >= 21 (a QuantizeLinear whose output_dtype is INT8 and
        zero point UINT8, an onnxruntime bug)."""
        conv = name.startswith("conv")
        if conv:
            y = self.op("Conv", x, self.weight(name, False), self.bias(name))
        else:
            y = self.op("Add", self.op("MatMul", x, self.weight(name, True)), self.bias(name))
        y = self.op("Relu", y) if relu else y
        if pool:
            y = self.op("MaxPool", y, kernel_shape=[pool], strides=[pool])
        return self.requant(y, self.acc[name] if self.full else None, name, 1 if conv else 0)[1]

    def lstm(self, x: str) -> str:
        """(B, C, S) pooled features -> (B, S*H): the unrolled LSTM, h and c starting at 0."""
        seq = self.op("Transpose", x, perm=[0, 2, 1])
        wi, wh, b = self.weight("lstm.ih", True), self.weight("lstm.hh", True), self.bias("lstm")
        h = c = None
        outs = []
        for t in range(self.m.cfg.lstm_steps):
            acc = self.op("MatMul", self.op("Gather", seq, self.const(np.int64(t)), axis=1), wi)
            if h is not None:                                          # h = 0 at t = 0: the term is 0
                acc = self.op("Add", acc, self.op("MatMul", h, wh))
            acc = self.op("Add", acc, b)
            h, c = self.cell_fixed(acc, c) if self.full else self.cell_float(acc, c)
            outs.append(h)
        return self.op("Concat", *outs, axis=1)

    def _split(self, v: str) -> list[str]:
        hid = self.m.lstm.hidden
        return self.op("Split", v, self.const(np.array([hid] * 4, np.int64)), n_out=4, axis=1)

    def cell_fixed(self, acc: str, c: str | None) -> tuple[str, str]:
        gates, _ = self.requant(acc, self.acc["lstm"], "gates")
        i, f, g, o = self._split(gates)
        si, sf, so = (self.table(v, "sigmoid", "gates") for v in (i, f, o))
        ig = self.op("Mul", si, self.table(g, "tanh", "gates"))
        fs, ft, fc = self.fmt["sigmoid"].frac, self.fmt["tanh"].frac, self.fmt["cell"].frac
        cell = ig if c is None else self.op("Add", self.op("Mul", sf, c), ig)
        c_codes, c = self.requant(cell, max(fs + fc, fs + ft), "cell")
        _, h = self.requant(self.op("Mul", so, self.table(c_codes, "tanh", "cell")), fs + ft, "hidden")
        return h, c

    def cell_float(self, acc: str, c: str | None) -> tuple[str, str]:
        i, f, g, o = self._split(acc)
        ig = self.op("Mul", self.float_act(i, "sigmoid"), self.float_act(g, "tanh"))
        c = ig if c is None else self.op("Add", self.op("Mul", self.float_act(f, "sigmoid"), c), ig)
        return self.op("Mul", self.float_act(o, "sigmoid"), self.float_act(c, "tanh")), c

    def build(self):
        """The whole datapath as a checked-ready ModelProto: mfcc (batch, 40, T) -> logits (batch, classes)."""
        from onnx import TensorProto, helper

        cfg = self.m.cfg
        _, x = self.requant(self.input_norm("mfcc"), None, "input")
        x = self.layer(x, "conv1", relu=True)
        x = self.lstm(self.layer(x, "conv2", relu=True, pool=cfg.pool))
        names = self.m.fc_names
        for k, name in enumerate(names):
            x = self.layer(x, name, relu=k < len(names) - 1)
        self.op("Identity", x, out="logits")
        inp = helper.make_tensor_value_info("mfcc", TensorProto.FLOAT, ["batch", cfg.n_mfcc, cfg.n_frames])
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.n_classes])
        graph = helper.make_graph(self.nodes, "gclf_fixed_point", [inp], [out], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="gclf",
                                 ir_version=10 if self.opset <= 22 else 11)


def fixed_notes(spec: dict, chain: list[dict]) -> list[str]:
    """What the fixed-point graph expresses, and what it does not."""
    per = " per output channel" if spec["per_channel"] else ""
    notes = [f"weights: {_container(spec['bits'])} initializers -> DequantizeLinear (scale 2^-frac{per}, zero "
             "point 0); biases: int32 -> DequantizeLinear at the accumulator scale (LSTM biases folded, as in "
             "the spec)"]
    notes += [f"block-circulant layers (block {s['block']}) materialised as the dense integer matrices the integer "
              "reference multiplies: the file stores the dense matrix" for s in chain if s["step"] == "compress"]
    if spec["weights_only"]:
        return notes + ["activations stay float32 (the PyTorch fake-quant twin runs float64); sigmoid/tanh "
                        f"({spec['sigmoid']}/{spec['tanh']}) as elementwise ops; InputNorm in float64"]
    acc = spec.get("acc_bits") or 0
    return notes + [
        "activations: QuantizeLinear/DequantizeLinear at every site of the spec (input, conv1, conv2, gates, cell, "
        f"hidden, fc layers) in its {spec['act_bits']}-bit formats (power-of-two scales); a format narrower than "
        "its container saturates by a Clip before QuantizeLinear",
        f"rounding {spec['rounding']}: QuantizeLinear rounds half to even, so each requantization first adds half "
        "an accumulator LSB (exact: values are multiples of it; nothing for half_even); the input is rounded in "
        "float64 after InputNorm, which runs in float64 as in the integer reference",
        f"sigmoid/tanh ({spec['sigmoid']}/{spec['tanh']}): gclf's integer table outputs for every "
        f"{spec['act_bits']}-bit input, a Gather indexed by QuantizeLinear's integer output (exact)",
        f"not expressed: integer arithmetic (ONNX adds dequantized products in float32: exact below 2^24 LSB; this "
        f"spec's accumulators need {acc} bits: {'exact' if 0 < acc <= 24 else 'not guaranteed, see agreement'}), "
        "the accumulator width, saturation counters",
        "onnxruntime's default session fuses QDQ into integer kernels (x86 without VNNI: u8s8 saturation) and can "
        "differ: agreement_ort_default",
    ]


def fixed_onnx(model, spec: dict, opset: int, chain: list[dict]) -> tuple[object, list[str]]:
    """(ModelProto, notes) of a quantized checkpoint's datapath."""
    return FixedGraph(model, spec, opset).build(), fixed_notes(spec, chain)
