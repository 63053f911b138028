"""One handler per op kind of the generated C (:data:`HANDLERS`): each emits its op as a function with its shapes
as literals, through the :class:`~gclf.backends.c.context.Context`; kernels are templates under templates/ops/."""
from __future__ import annotations

import math

import numpy as np

from gclf.backends.c.context import Context, Tensor, _bias_terms, _check_shifts, _row_abs, _vec, _xmax
from gclf.backends.c.support import activation_c
from gclf.backends.weights import c_ident, c_literal, c_type, tensor_comment
from gclf.errors import GclfError
from gclf.graph.ops import LSTM, Conv1d, Conv2d, Flatten, GlobalMaxPool, Image, Linear, MaxPool, MaxPool2d, Norm, Op
from gclf.graph.registry import Registry

CONV_CHUNK = 16         # output steps per widened chunk of a paired convolution (RAM: its input rows as int16)
HANDLERS = Registry("C")


# ---- one handler per op kind ----------------------------------------------------------------------------
class CHandler:
    """What the C backend knows of one op kind. The walker calls, per op in graph order:

    - ``needs``: the shared support code its C uses (keys of :data:`SUPPORT`);
    - :meth:`bound` (first pass, every op): its contribution to the int32-vs-int64 accumulator decision;
    - :meth:`out_elems`: the size of its static output buffer (None: its output *is* its input);
    - :meth:`emit`: its declarations and its function (through the :class:`Context`, shapes as literals) and
      its call lines in gclf_infer.
    """

    needs: tuple[str, ...] = ()

    @staticmethod
    def reads_channel_major(ctx: Context, op: Op) -> bool:
        """Whether, as the first op, it reads the host's channel-major input itself (no transposed copy)."""
        return False

    @staticmethod
    def bound(ctx: Context, op: Op) -> tuple[int, int]:
        """(largest |partial sum| its accumulators can reach, in LSB; largest left shift applied to an
        accumulator term by a multiplication in gclf_acc_t). (0, 0): no accumulator."""
        return 0, 0

    @staticmethod
    def macs(op: Op, in_shape: tuple, out_shape: tuple) -> int:
        """Multiply-accumulates per window (circulant layers: as computed, i.e. as the dense matrix)."""
        return 0

    @staticmethod
    def out_elems(op: Op, in_shape: tuple, out_shape: tuple) -> int | None:
        return math.prod(out_shape)

    @staticmethod
    def emit(ctx: Context, op: Op, x: Tensor, y: Tensor) -> list[str]:
        """Declarations into ``ctx``; returns the statements of gclf_infer computing ``y`` from ``x``."""
        return []


def _fn(op: Op) -> str:
    return "gclf_" + c_ident(op.name)


@HANDLERS.register(Norm)
class _Norm(CHandler):
    """The host front-end: gclf_infer takes its output, already quantized (the input x)."""

    @staticmethod
    def out_elems(op, in_shape, out_shape):
        return None


@HANDLERS.register(MaxPool)
class _MaxPool(CHandler):
    @staticmethod
    def emit(ctx, op: MaxPool, x, y):
        c, t = x.shape
        ctx.function("ops/maxpool.c.tmpl", name=op.name, fn=_fn(op), c=c, t_in=t, t_out=y.shape[1], k=op.kernel,
                     step=op.step)
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(MaxPool2d)
class _MaxPool2d(CHandler):
    @staticmethod
    def emit(ctx, op: MaxPool2d, x, y):
        c, h, w = x.shape
        ctx.function("ops/maxpool2d.c.tmpl", name=op.name, fn=_fn(op), c=c, h_in=h, w_in=w, h_out=y.shape[1],
                     w_out=y.shape[2], k=op.kernel, step=op.step)
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(GlobalMaxPool)
class _GlobalMaxPool(CHandler):
    @staticmethod
    def emit(ctx, op: GlobalMaxPool, x, y):
        ctx.function("ops/globalmaxpool.c.tmpl", name=op.name, fn=_fn(op), c=x.shape[0], n=math.prod(x.shape[1:]))
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(Image)
class _Image(CHandler):
    """(C, T) stored time-major (element t * C + c) is the image (1, T, C) stored channel-last: no code."""

    @staticmethod
    def out_elems(op, in_shape, out_shape):
        return None


@HANDLERS.register(Flatten)
class _Flatten(CHandler):
    """Time-major (T, C) storage is already the flat order of the reference (element t * C + c): no code."""

    @staticmethod
    def out_elems(op, in_shape, out_shape):
        return None


def _affine_shifts(ctx: Context, op: Op) -> tuple[np.ndarray, np.ndarray]:
    """Bias alignment and requantization shifts per output channel of a Conv1d / Linear."""
    p, b = ctx.plan[op.name], ctx.ref.q[op.name + ".bias"]
    n = len(b.ints)
    acc = _vec(p.acc["acc"], n)
    bs, rs = acc - _vec(b.frac, n), acc - p.out_fmt.frac
    _check_shifts(f"{op.name} bias alignment", bs, 0)
    _check_shifts(f"{op.name} requantization", rs)
    return bs, rs


def _matrices(ctx: Context, op: Op) -> dict[str, tuple[str, object]]:
    """The op's weight matrices, {local name: (module path, module)}, as the fixed-point backend names them."""
    from gclf.backends.fixed import HANDLERS as FIXED

    return FIXED[op].matrices(op, ctx.model)


def _relu(relu: bool, names: list[str], indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}if ({v} < 0)\n{pad}    {v} = 0;\n" for v in names) if relu else ""


class _Affine(CHandler):
    needs = ("requant",)

    @staticmethod
    def bound(ctx, op):
        bs, _ = _affine_shifts(ctx, op)
        xmax = _xmax(ctx.plan[op.name].in_fmt)
        rows = _row_abs(ctx.ref.mats[_matrices(ctx, op)["weight"][0]])
        return max(r * xmax + t for r, t in zip(rows, _bias_terms(ctx.ref.q[op.name + ".bias"], bs))), 0

    @staticmethod
    def fields(ctx, op, rs: np.ndarray, index: str) -> dict:
        f = ctx.plan[op.name].out_fmt
        return {"name": op.name, "fn": _fn(op), "requant": ctx.requant(rs), "lo": c_literal(f.min_int, 32),
                "hi": f.max_int, "rs": ctx.shift(_fn(op) + "_rs", rs, f"{op.name} requantization", index),
                "relu_note": ", ReLU" if op.relu else ""}


@HANDLERS.register(Conv1d)
class _Conv1d(_Affine):
    @staticmethod
    def reads_channel_major(ctx, op):
        return ctx.pair                         # it widens its input into the scratch anyway: transpose there

    @staticmethod
    def macs(op, in_shape, out_shape):
        return op.out_channels * op.in_channels * op.kernel * out_shape[1]

    @staticmethod
    def emit(ctx, op: Conv1d, x, y):
        bs, rs = _affine_shifts(ctx, op)
        path = _matrices(ctx, op)["weight"][0]
        wq = ctx.ref.q[path + ".weight"]
        O, C, K = wq.ints.shape
        t_in, t_out, kc = x.shape[1], y.shape[1], K * C
        w = wq.ints.transpose(0, 2, 1).reshape(O, kc)                       # (O, K, C): one patch per row
        sym = "gclf_" + c_ident(path) + "_weight"
        note = tensor_comment(path + ".weight", wq).rstrip() + "\n/* stored (out, k, in): row o is the patch order */"
        b = ctx.bias(op, bs)
        f = _Affine.fields(ctx, op, rs, "o")
        common = dict(f, c_in=C, c_out=O, k=K, stride=op.stride, t_in=t_in, t_out=t_out, b=b, step=op.stride * C)
        if ctx.pair:
            kp, chunk = -(-kc // 8) * 8, min(CONV_CHUNK, t_out)
            ctx.array(sym, "int16_t", np.pad(w, ((0, 0), (0, kp - kc))),
                      note + f"\n/* as int16 for the paired products, rows zero-padded to {kp} */")
            ctx.scratch16 = max(ctx.scratch16, ((chunk - 1) * op.stride + K) * C + kp - kc)
            ctx.need("dsp", "pair")
            rs1 = f["rs"].replace("[o]", "[o + 1]")
            first = f"t0 * {op.stride}"
            widen = (f"for (int c = 0; c < {C}; c++)     /* the host's x[c][t], transposed */\n"
                     f"            for (int r = 0; r < rows; r++)\n"
                     f"                xs[r * {C} + c] = (int16_t)x[c * {t_in} + {first} + r];"
                     if x.channel_major else f"for (int i = 0; i < rows * {C}; i++)\n"
                                             f"            xs[i] = (int16_t)x[{first} * {C} + i];")
            ctx.function("ops/conv1d_pair.c.tmpl", **common, w=sym, kp=kp, chunk=chunk, pad=kp - kc,
                         rs0=f["rs"], rs1=rs1,
                         widen=widen,
                         relu4=_relu(op.relu, [f"s[{i}]" for i in range(4)], 16),
                         relu2=_relu(op.relu, ["s0", "s1"], 16), relu1=_relu(op.relu, ["s0"], 16))
            kernel = "paired int16 products, 2 outputs x 2 steps per block (SMLAD with __ARM_FEATURE_DSP)"
        else:
            ctx.array(sym, c_type(ctx.w_bits), w, note)
            ctx.function("ops/conv1d.c.tmpl", **common, w=sym, kc=kc, relu=_relu(op.relu, ["acc"], 12))
            kernel = f"one sequential dot product per output ({ctx.acc_ctype})"
        ctx.info[op.name]["kernel"] = kernel
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(Conv2d)
class _Conv2d(_Affine):
    """Portable C: one sequential dot product per output and kernel row (no paired-product kernel yet)."""

    @staticmethod
    def macs(op, in_shape, out_shape):
        return op.out_channels * op.in_channels * op.kernel ** 2 * out_shape[1] * out_shape[2]

    @staticmethod
    def emit(ctx, op: Conv2d, x, y):
        bs, rs = _affine_shifts(ctx, op)
        path = _matrices(ctx, op)["weight"][0]
        wq = ctx.ref.q[path + ".weight"]
        O, C, K, _ = wq.ints.shape
        (_, h_in, w_in), (_, h_out, w_out) = x.shape, y.shape
        w = wq.ints.transpose(0, 2, 3, 1).reshape(O, K * K * C)                # (O, K, K, C): kernel rows in order
        sym = "gclf_" + c_ident(path) + "_weight"
        note = tensor_comment(path + ".weight", wq).rstrip() + "\n/* stored (out, k, k, in): channel-last patches */"
        ctx.array(sym, c_type(ctx.w_bits), w, note)
        f = _Affine.fields(ctx, op, rs, "o")
        ctx.function("ops/conv2d.c.tmpl", **f, c_in=C, c_out=O, k=K, stride=op.stride, h_in=h_in, w_in=w_in,
                     h_out=h_out, w_out=w_out, b=ctx.bias(op, bs), w=sym, row=K * C, line=w_in * C,
                     relu=_relu(op.relu, ["acc"], 16))
        ctx.info[op.name]["kernel"] = f"one sequential dot product per output and kernel row ({ctx.acc_ctype})"
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(Linear)
class _Linear(_Affine):
    @staticmethod
    def macs(op, in_shape, out_shape):
        return op.in_features * op.out_features

    @staticmethod
    def emit(ctx, op: Linear, x, y):
        bs, rs = _affine_shifts(ctx, op)
        dot = ctx.matrix(*_matrices(ctx, op)["weight"])
        b = ctx.bias(op, bs)
        f = _Affine.fields(ctx, op, rs, "r")
        ctx.function("ops/linear.c.tmpl", **f, n_in=op.in_features, n_out=op.out_features, b=b, dot=dot,
                     relu=_relu(op.relu, ["acc"], 8))
        return [f"{_fn(op)}({x.expr}, {y.expr});"]


@HANDLERS.register(LSTM)
class _LSTM(CHandler):
    needs = ("requant",)

    @staticmethod
    def macs(op, in_shape, out_shape):
        return 4 * op.hidden * (op.input_size + op.hidden) * out_shape[1]

    @staticmethod
    def shifts(ctx, op: LSTM) -> dict[str, np.ndarray]:
        """Per gate row: alignment of Wih x (si), Whh h (sh), the bias (bs); gates requantization (rs)."""
        p, b, H4 = ctx.plan[op.name], ctx.ref.q[op.name + ".bias"], 4 * op.hidden
        common = _vec(p.acc["acc"], H4)
        s = {"si": common - _vec(p.acc["ih"], H4), "sh": common - _vec(p.acc["hh"], H4),
             "bs": common - _vec(b.frac, H4), "rs": common - ctx.spec.ops[op.name].acts["gates"].frac}
        for k in ("si", "sh", "bs"):
            _check_shifts(f"{op.name} {k}", s[k], 0)
        _check_shifts(f"{op.name} rs", s["rs"])
        return s

    @staticmethod
    def elementwise(ctx, op: LSTM) -> dict[str, int]:
        """Constants of the element-wise part: alignment of f*c and i*tanh(g), cell and hidden shifts."""
        acts = ctx.spec.ops[op.name].acts
        fs, ft, fc, fh = ctx.ref.fsig.frac, ctx.ref.ftanh.frac, acts["cell"].frac, acts["hidden"].frac
        a, b = fs + fc, fs + ft
        m = max(a, b)
        c = {"fc_shift": m - a, "ig_shift": m - b, "cell_rs": m - fc, "hidden_rs": fs + ft - fh}
        _check_shifts(f"{op.name} element-wise", np.array(list(c.values())))
        worst = ((1 << fs) * _xmax(acts["cell"]) << (m - a)) + ((1 << fs) * (1 << ft) << (m - b))
        if worst.bit_length() + 1 > 64:
            raise GclfError(f"the cell update of {op.name} needs more than int64_t")
        return c

    @staticmethod
    def bound(ctx, op):
        s = _LSTM.shifts(ctx, op)
        mats = _matrices(ctx, op)
        xi, xh = _xmax(ctx.plan[op.name].in_fmt), _xmax(ctx.spec.ops[op.name].acts["hidden"])
        ih, hh = _row_abs(ctx.ref.mats[mats["ih"][0]]), _row_abs(ctx.ref.mats[mats["hh"][0]])
        terms = _bias_terms(ctx.ref.q[op.name + ".bias"], s["bs"])
        worst = max((i * xi << int(si)) + (h * xh << int(sh)) + t
                    for i, h, si, sh, t in zip(ih, hh, s["si"], s["sh"], terms))
        return worst, int(max(s["si"].max(), s["sh"].max()))

    @staticmethod
    def activations(ctx, op: LSTM) -> list[str]:
        """The op's three activation functions (tanh of the cell is tanh of the gates when the formats agree)."""
        ref, acts = ctx.ref, ctx.spec.ops[op.name].acts
        fg, fc = acts["gates"].frac, acts["cell"].frac
        base, fns = "gclf_" + c_ident(op.name), {}
        for role, approx, fin, fout, label in (
                ("sigmoid_gates", ref.sig, fg, ref.fsig.frac, "sigmoid of a gate"),
                ("tanh_gates", ref.tanh, fg, ref.ftanh.frac, "tanh of the g gate"),
                ("tanh_cell", ref.tanh, fc, ref.ftanh.frac, "tanh of the cell")):
            fn = f"{base}_{role}"
            if role == "tanh_cell" and fc == fg:
                fns[role] = fns["tanh_gates"]
                ctx.activations[fn] = ctx.activations[fns["tanh_gates"]]
                continue
            text, tables, n = activation_c(fn, approx, fin, fout, f"{op.name}: {label}")
            ctx.lines.append(text)
            ctx.bytes["tables"] += n
            ctx.activations[fn] = tables["kind"]
            if tables["kind"] in ("pwl", "lut"):
                ctx.need("segment")
            fns[role] = fn
        return [fns["sigmoid_gates"], fns["tanh_gates"], fns["tanh_cell"]]

    @staticmethod
    def emit(ctx, op: LSTM, x, y):
        s, e = _LSTM.shifts(ctx, op), _LSTM.elementwise(ctx, op)
        acts = ctx.spec.ops[op.name].acts
        fn, H = _fn(op), op.hidden
        sig, tg, tc = _LSTM.activations(ctx, op)
        mats = _matrices(ctx, op)
        dot_ih, dot_hh = ctx.matrix(*mats["ih"]), ctx.matrix(*mats["hh"])
        b = ctx.bias(op, s["bs"])
        si, sh = (ctx.shift(f"{fn}_{k}", s[k], f"{op.name} {k}", "r", 0) for k in ("si", "sh"))
        mult = {k: "" if v == "0" else f" * ((gclf_acc_t)1 << {v})" for k, v in (("si", si), ("sh", sh))}
        rs = s["rs"]
        zero, cell, gates = (ctx.buffer(f"gclf_buf_{c_ident(op.name)}_{k}", n)
                             for k, n in (("h0", H), ("c", H), ("gates", 4 * H)))
        rng = {f"{k}_lo": c_literal(acts[k].min_int, 64) for k in ("gates", "cell", "hidden")}
        rng.update({f"{k}_hi": acts[k].max_int for k in ("gates", "cell", "hidden")})
        ctx.function("ops/lstm.c.tmpl", name=op.name, fn=fn, n_in=x.shape[0], hidden=H, t_len=x.shape[1],
                     zero=zero, cell=cell, gates=gates, dot_ih=dot_ih, dot_hh=dot_hh, si=mult["si"], sh=mult["sh"],
                     b=b, requant=ctx.requant(rs), rs=ctx.shift(f"{fn}_rs", rs, f"{op.name} rs", "r"),
                     sigmoid=sig, tanh_gates=tg, tanh_cell=tc, **e, **rng)
        ctx.info[op.name].update(e)
        return [f"{fn}({x.expr}, {y.expr});"]
