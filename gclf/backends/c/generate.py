"""A generated C99 inference of a fixed-point model: one ``gclf_model.c`` / ``gclf_model.h`` pair.

The C walks the model's graph (:class:`gclf.graph.ops.Graph`) op by op, with one handler per op kind in
:data:`HANDLERS`, and reproduces :class:`gclf.backends.intref.IntegerReference` bit for bit: the same integer
weights, shifts with the spec's rounding (all four modes of ``round_shift``), saturation at every
requantization, and the chain's sigmoid/tanh emitted from ``Approx.fixed_tables()`` exactly. Block-circulant
matrices are computed directly from their stored (p, q, k) vectors (never materialised). It is integer only
(int8/16/32/64_t), allocates nothing (static buffers) and takes the already-quantized input: Norm and the
input quantization stay on the host, as in the reference.

Built for the datapath of a small CPU (Cortex-M4 first, x86 as well):

- accumulators are int32_t when the spec's ``acc_bits`` is <= 32 *and* the worst case of these very weights
  fits (with every alignment shift) in every op (:meth:`CHandler.bound`); otherwise int64_t;
- every right shift is an arithmetic ``>>`` with the rounding decided from the low bits: no division or
  modulo on the inference path (the assumption that ``>>`` of a negative value floors is checked at compile
  time); biases are stored pre-aligned to their accumulators;
- every op is its own function with its shapes as literals (loops of constant trip count);
- sequences are stored time-major ((T, C), element t * C + c), so a convolution's patch, an LSTM step's input
  and the flattened vector are contiguous; convolution weights are stored (out, k, in) so each output is one
  sequential dot product. With int32 accumulators and <= 16-bit weights and activations, convolutions widen
  their input once to int16 and compute blocks of 2 outputs x 2 steps; with ``__ARM_FEATURE_DSP`` (and without
  ``GCLF_NO_DSP``) the products are SMLAD dual multiply-accumulates, bit-exact with the portable C.

The text is filled into ``templates/*.tmpl`` with ``string.Template``; :mod:`gclf.backends.c.build` compiles,
measures and runs it on the host, :mod:`gclf.backends.c.target` on an emulated Cortex-M4.

Adding an op kind: subclass :class:`CHandler`, register it with ``@HANDLERS.register(Kind)``, and put its
function template under ``templates/ops/`` (rendered per op with its shapes). The walker
(:func:`generate_c`) never names a layer nor assumes an order.
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gclf.backends.weights import bits_for_values, c_array, c_ident, c_literal, c_type, tensor_comment
from gclf.errors import GclfError
from gclf.graph.ops import LSTM, Conv1d, Flatten, Linear, MaxPool, Norm, Op
from gclf.graph.registry import Registry

TEMPLATES = Path(__file__).with_name("templates")
ROUNDING_IDS = {"floor": 0, "half_up": 1, "half_away": 2, "half_even": 3}
CONV_CHUNK = 16         # output steps per widened chunk of a paired convolution (RAM: its input rows as int16)
MAX_SHIFT = 62
HANDLERS = Registry("C")


def render(template: str, **fields) -> str:
    """Fill ``template`` (a file under templates/) with ``fields``; a missing field raises KeyError."""
    return string.Template((TEMPLATES / template).read_text()).substitute(fields)


def primitives_c(rounding: str) -> str:
    """The C fixed-point primitives (floor shift, rounding shift, requantize) for one rounding mode."""
    if rounding not in ROUNDING_IDS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_IDS)}; got {rounding!r}")
    return render("primitives.c.tmpl", rounding=rounding, rounding_id=ROUNDING_IDS[rounding])


def _vec(v, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.int64).reshape(-1), (n,)).copy()


def _check_shifts(what: str, v: np.ndarray, low: int = -MAX_SHIFT) -> None:
    if v.size and (v.min() < low or v.max() > MAX_SHIFT):
        raise GclfError(f"{what}: shift {int(v.min())}..{int(v.max())} outside {low}..{MAX_SHIFT}; "
                        "this spec cannot be generated as C")


def _row_abs(mat: np.ndarray) -> list[int]:
    return [int(s) for s in np.abs(mat.reshape(mat.shape[0], -1)).sum(axis=1)]


def _bias_terms(b, bs: np.ndarray) -> list[int]:
    return [abs(int(v)) << int(s) for v, s in zip(b.ints, bs)]


def _fmt_range(f) -> str:
    return f"{c_literal(f.min_int, f.width)}, {f.max_int}"


def _xmax(fmt) -> int:
    """Largest |value| of a signed activation format, in LSB."""
    return 1 << (fmt.width - 1)


# ---- sigmoid / tanh -----------------------------------------------------------------------------------
def activation_c(fn: str, approx, in_frac: int, out_frac: int, label: str = "") -> tuple[str, dict, int]:
    """C function ``int64_t fn(int64_t q)`` evaluating ``approx`` from its fixed_tables() integers.

    Needs gclf_floor_shr (:func:`primitives_c`) and, for pwl and lut tables, :data:`SEGMENT_FN`. Returns
    (C text, the tables with ``pre_shift``, bytes of its arrays). A negative ``in_frac`` is handled as in
    ``activation_fixed``: the input is first multiplied by 2**-in_frac (exact) and read at fraction 0.
    """
    pre, tin = max(0, -in_frac), max(in_frac, 0)
    t = approx.fixed_tables(tin, out_frac)
    mag = "(q < 0 ? -q : q)" + (f" * ((int64_t)1 << {pre})" if pre else "")
    lines = [f"/* {label or fn}: {approx.func} '{approx.name}', input frac {in_frac}, output frac {out_frac}, "
             f"kind {t['kind']} */"]
    body, nbytes = [], 0

    def arr(suffix: str, vals) -> str:
        nonlocal nbytes
        v = np.asarray(vals, dtype=np.int64)
        ctype = "int32_t" if suffix == "breaks" else c_type(bits_for_values(v))
        if suffix == "breaks" and v.size and v.max() >= 2 ** 31:
            raise GclfError(f"{label}: breakpoints beyond int32_t")
        lines.append(c_array(ctype, f"{fn}_{suffix}", v))
        nbytes += v.size * int(ctype[3:-2]) // 8
        return f"{fn}_{suffix}"

    sat = t["sat"]
    if t["kind"] == "pwl":
        br, sl, it = arr("breaks", t["breaks"]), arr("slopes", t["slopes"]), arr("intercepts", t["intercepts"])
        n, s = len(t["breaks"]) - 1, t["slope_shift"]
        body = [f"    if (a < {t['breaks'][-1]}) {{", f"        const int k = gclf_segment({br}, {n}, a);",
                "        int64_t r;",
                f"        y = gclf_floor_shr({it}[k] + (int64_t){sl}[k] * (a - {br}[k]) + {1 << (s - 1)}, {s}, &r);",
                "    }"]
    elif t["kind"] == "lut":
        br, tb = arr("breaks", t["breaks"]), arr("table", t["table"])
        body = [f"    if (a < {t['breaks'][-1]})",
                f"        y = {tb}[gclf_segment({br}, {len(t['breaks']) - 1}, a)];"]
    elif t["table"]:
        tb = arr("table", t["table"])
        body = [f"    if (a < {len(t['table'])})", f"        y = {tb}[a];"]
    else:
        body = ["    (void)a;"]
    back = f"{t['one']} - y" if t["mirror"] == "one_minus" else "-y"
    lines += [f"static int64_t {fn}(int64_t q)", "{", f"    const int64_t a = {mag};", f"    int64_t y = {sat};",
              *body, f"    return q < 0 ? {back} : y;", "}", ""]
    return "\n".join(lines), {**t, "pre_shift": pre}, nbytes


SEGMENT_FN = """/* the segment holding a >= 0: the largest k < n with breaks[k] <= a (breaks[0] = 0) */
static int gclf_segment(const int32_t *breaks, int n, int64_t a)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (breaks[mid] <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}
"""

# shared support code, emitted once (in this order) when a used kind's handler needs it
SUPPORT = {"requant": lambda ctx: primitives_c(ctx.spec.rounding),
           "dsp": lambda ctx: render("support_dsp.c.tmpl"),
           "pair": lambda ctx: render("support_pair.c.tmpl", scratch=ctx.scratch16),
           "segment": lambda ctx: SEGMENT_FN}


# ---- the walker's context -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    """A tensor of the C datapath: a C expression of its first ``gclf_act_t`` element, and its shape
    ((C, T) stored time-major, element t * C + c; or (N,))."""

    expr: str
    shape: tuple[int, ...]
    channel_major: bool = False         # only the host's input x[C][T], and only for an op that reads it so


class Context:
    """What a handler reads (the integer reference ``ref``: its plan, integer weights and matrices, the spec;
    the accumulator choice) and writes (declarations, per-op functions, static buffers, shared support it
    needs, per-op report entries)."""

    def __init__(self, ref):
        self.ref, self.model, self.graph, self.spec, self.plan = ref, ref.model, ref.graph, ref.spec, ref.plan
        self.lines: list[str] = []                          # declarations, in definition order
        self.funcs: list[str] = []                          # one function per op (and per matrix)
        self.buffer_lines: list[str] = []
        self.bytes = {"weights": 0, "shifts": 0, "tables": 0}
        self.buffer_elems = 0
        self.scratch16 = 0                                  # int16 elements of the shared widening scratch
        self.needs: set[str] = set()
        self.activations: dict[str, str] = {}               # C function -> table kind
        self.info: dict[str, dict] = {}                     # per op, for the report
        q = ref.q
        widths = [w.width for n, w in q.items() if not n.endswith(".bias")]
        self.w_bits = max(widths, default=8)
        self.act_ctype = c_type(self.spec.act_bits)
        self.acc32 = False                                  # set by generate_c before any emit

    @property
    def acc_ctype(self) -> str:
        return "int32_t" if self.acc32 else "int64_t"

    @property
    def bytes_pair(self) -> bool:
        """int8 weights and activations into int32 accumulators: dense dot products take 4 bytes a load."""
        return self.acc32 and self.w_bits <= 8 and self.spec.act_bits <= 8

    @property
    def pair(self) -> bool:
        """int16 x int16 products into int32 accumulators (the SMLAD-shaped kernels) fit this spec."""
        return self.acc32 and self.w_bits <= 16 and self.spec.act_bits <= 16

    def need(self, *names: str) -> None:
        unknown = set(names) - set(SUPPORT)
        if unknown:
            raise KeyError(f"unknown C support code {sorted(unknown)}; known: {', '.join(SUPPORT)}")
        self.needs.update(names)

    # declarations
    def array(self, sym: str, ctype: str, values, comment: str = "", kind: str = "weights") -> str:
        """Declare ``static const ctype sym[] = values`` (counted in ``bytes[kind]``); returns ``sym``."""
        v = np.asarray(values, dtype=np.int64)
        self.lines += ([comment] if comment else []) + [c_array(ctype, sym, v), ""]
        self.bytes[kind] += max(v.size, 1) * int(ctype[3:-2]) // 8
        return sym

    def bias(self, op: Op, shifts: np.ndarray) -> str:
        """The op's bias aligned to its accumulators (b << shift, exact), as a gclf_acc_t array."""
        b = self.ref.q[op.name + ".bias"]
        v = np.array([int(x) << int(s) for x, s in zip(b.ints, shifts)], dtype=np.int64)
        return self.array("gclf_" + c_ident(op.name) + "_bias", self.acc_ctype, v,
                          tensor_comment(op.name + ".bias", b).rstrip() + f"\n/* aligned to the accumulator: "
                          f"b << {_shift_text(shifts)} */")

    def shift(self, sym: str, v: np.ndarray, what: str, index: str, low: int = -MAX_SHIFT) -> str:
        """A C expression of the shift of row ``index``: a literal, or ``sym[index]`` of an int8_t array."""
        _check_shifts(what, v, low)
        if (v == v[0]).all():
            return str(int(v[0]))
        self.array(sym, "int8_t", v, kind="shifts")
        return f"{sym}[{index}]"

    def requant(self, shifts: np.ndarray) -> str:
        """The requantization function for these shifts: 32-bit when the accumulator and shifts allow it."""
        return "gclf_requant32" if self.acc32 and shifts.min() >= -30 and shifts.max() <= 30 else "gclf_requant"

    def matrix(self, path: str, mod) -> str:
        """Declare the weight of matrix ``path`` and a function ``gclf_acc_t dot(int r, const gclf_act_t *x)``
        (row r times x, constant bounds); returns the function's name."""
        wq = self.ref.q[path + ".weight"]
        sym, fn, wt = "gclf_" + c_ident(path) + "_weight", "gclf_dot_" + c_ident(path), c_type(self.w_bits)
        if wq.kind == "circulant":
            p, q, k = wq.ints.shape
            n_in = mod.in_features
            self.array(sym, wt, wq.ints[:, :, ::-1], tensor_comment(path + ".weight", wq).rstrip()
                       + "\n/* each defining vector stored reversed: the products of a row read it sequentially */")
            a, i = (f"r >> {k.bit_length() - 1}", f"r & {k - 1}") if k & (k - 1) == 0 else (f"r / {k}", f"r % {k}")
            body = [f"    const int a = {a}, i = {i};", "    gclf_acc_t acc = 0;",
                    f"    for (int b = 0; b < {q}; b++) {{",
                    f"        const gclf_w_t *v = {sym} + (a * {q} + b) * {k};",
                    f"        const gclf_act_t *xb = x + b * {k};",
                    f"        const int n = b < {q - 1} ? {k} : {n_in - (q - 1) * k}, m = i + 1 < n ? i + 1 : n;",
                    "        for (int j = 0; j < m; j++)",
                    f"            acc += (gclf_acc_t)v[{k - 1} - i + j] * xb[j];",
                    "        for (int j = i + 1; j < n; j++)",
                    "            acc += (gclf_acc_t)v[j - i - 1] * xb[j];",
                    "    }", "    return acc;"]
            what = f"block-circulant ({p}, {q}, {k}): row a*{k}+i, column b*{k}+j uses v[a][b][(i - j) mod {k}]"
        else:
            n_out, n_in = wq.ints.shape
            self.array(sym, wt, wq.ints, tensor_comment(path + ".weight", wq).rstrip())
            body = [f"    const gclf_w_t *w = {sym} + r * {n_in};", "    gclf_acc_t acc = 0;"]
            plain = [f"    for (int c = 0; c < {n_in}; c++)", "        acc += (gclf_acc_t)w[c] * x[c];"]
            if self.bytes_pair and n_in % 4 == 0:       # int8 x int8: SXTB16 pairs bytes 0/2 and 1/3 of both
                self.need("dsp")
                body += ["#if GCLF_DSP", f"    for (int c = 0; c < {n_in}; c += 4) {{",
                         "        const int32_t wv = gclf_ld4(w + c), xv = gclf_ld4(x + c);",
                         "        acc = __smlad(__sxtb16(wv), __sxtb16(xv), acc);",
                         "        acc = __smlad(gclf_sxtb16_ror8(wv), gclf_sxtb16_ror8(xv), acc);", "    }",
                         "#else", *plain, "#endif", "    return acc;"]
            else:
                body += [*plain, "    return acc;"]
            what = f"dense ({n_out}, {n_in}) row-major"
        self.funcs += [f"/* {path}: {what} */", f"static inline gclf_acc_t {fn}(int r, const gclf_act_t *x)", "{",
                       *body, "}", ""]
        return fn

    def buffer(self, sym: str, n: int) -> str:
        """A static ``gclf_act_t sym[n]``; returns ``sym``."""
        self.buffer_lines.append(f"static gclf_act_t {sym}[{max(int(n), 1)}];")
        self.buffer_elems += max(int(n), 1)
        return sym

    def function(self, template: str, **fields) -> None:
        self.funcs += [render(template, **fields), ""]


def _shift_text(v: np.ndarray) -> str:
    return str(int(v[0])) if (v == v[0]).all() else f"{int(v.min())}..{int(v.max())} per row"


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


# ---- the walker --------------------------------------------------------------------------------------------
def _accumulator(ctx: Context) -> dict:
    """int32_t or int64_t accumulators, from every op's worst case (:meth:`CHandler.bound`)."""
    bounds = [HANDLERS[op].bound(ctx, op) for op in ctx.graph.ops]
    need = max((w for w, _ in bounds), default=0).bit_length() + 1
    align = max((a for _, a in bounds), default=0)
    spec_bits = ctx.spec.acc_bits or 64
    acc32 = spec_bits <= 32 and need <= 32 and align <= 30
    if need > 64:
        raise GclfError(f"the accumulators need {need} bits: more than int64_t")
    reason = (f"spec acc_bits {spec_bits}; these weights need at most {need} bits"
              + ("" if acc32 or spec_bits > 32 else ", more than the spec's: int64_t"))
    return {"ctype": "int32_t" if acc32 else "int64_t", "need": need, "reason": reason}


def _reference(model, spec):
    from gclf.backends.intref import IntegerReference

    if spec.weights_only:
        raise GclfError("a weights-only checkpoint has float activations: there is no integer C inference "
                        "(run `gclf quantize` without --weights-only)")
    return IntegerReference(model, spec)


def _input(ctx: Context, shape: tuple[int, int]) -> tuple[Tensor, list[str]]:
    """The input as a time-major tensor: x itself when one of its dimensions is 1 or when the first op reads
    it channel-major itself (:meth:`CHandler.reads_channel_major`), else a transposed copy."""
    c, t = shape
    if min(c, t) == 1:
        return Tensor("&x[0][0]", shape), []
    first = next((op for op in ctx.graph.ops if not isinstance(op, Norm)), None)
    if first is not None and HANDLERS[first].reads_channel_major(ctx, first):
        return Tensor("&x[0][0]", shape, channel_major=True), []
    buf = ctx.buffer("gclf_buf_input", c * t)
    return Tensor(buf, shape), [f"    /* the input, time-major: {buf}[t * {c} + c] = x[c][t] */",
                                f"    for (int t = 0; t < {t}; t++)", f"        for (int c = 0; c < {c}; c++)",
                                f"            {buf}[t * {c} + c] = x[c][t];"]


def generate_c(model, spec, source: str = "", chain: str = "") -> tuple[dict[str, str], dict]:
    """({"gclf_model.h": text, "gclf_model.c": text}, report) for a float GraphNet under a QuantSpec."""
    ref = _reference(model, spec)
    ctx = Context(ref)
    graph = ctx.graph
    acc = _accumulator(ctx)
    ctx.acc32 = acc["ctype"] == "int32_t"
    x, calls = _input(ctx, tuple(graph.input_shape))
    macs = 0
    for op, shape in zip(graph.ops, graph.shapes()):
        h = HANDLERS[op]
        n = h.out_elems(op, x.shape, tuple(shape))
        y = (Tensor(ctx.buffer("gclf_buf_" + c_ident(op.name), n), tuple(shape)) if n is not None
             else Tensor(x.expr, tuple(shape), x.channel_major))
        op_macs = h.macs(op, x.shape, tuple(shape))
        macs += op_macs
        ctx.info[op.name] = {"kind": op.kind, "out_shape": list(shape), "buffer": y.expr, "macs": op_macs}
        lines = h.emit(ctx, op, x, y)
        if lines:
            ctx.need(*h.needs)
            calls += [f"    /* {op.name}: {op.kind} {x.shape} -> {y.shape} */", *(f"    {s}" for s in lines)]
        x = y
    support = [SUPPORT[k](ctx) for k in SUPPORT if k in ctx.needs]

    fin, flog = ref.plan[graph.norm.name].out_fmt, ref.logit_format
    cfg, ab = spec.config, spec.act_bits
    config = (f"weights {cfg.bits} bits{' per channel' if cfg.per_channel else ''}, biases {spec.bias_bits} "
              f"bits, activations {ab} bits, rounding {spec.rounding}, spec acc_bits {spec.acc_bits}")
    if graph.of_kind(LSTM):
        config += f"; LSTM sigmoid '{spec.sigmoid}', tanh '{spec.tanh}'"
    common = {"source": source or "a gclf checkpoint", "chain": chain or "?", "config_line": config,
              "rounding": spec.rounding, "act_ctype": ctx.act_ctype, "act_bits": ab}
    header = render("gclf_model.h.tmpl", **common, in_ch=graph.input_shape[0], in_t=graph.input_shape[1],
                    n_classes=graph.n_classes, classes=", ".join(f"{i} = {c}" for i, c in enumerate(graph.classes)),
                    input_kind=graph.input_kind, input_frac=fin.frac, input_q=str(fin),
                    input_min=f"({c_literal(fin.min_int, fin.width)})", input_max=fin.max_int,
                    logit_frac=flog.frac, logit_q=str(flog))
    network = "\n".join(f" *   {line}" for line in graph.summary().splitlines())
    body = render("gclf_model.c.tmpl", **common, network=network, w_ctype=c_type(ctx.w_bits), w_bits=ctx.w_bits,
                  acc_ctype=acc["ctype"], acc_reason=acc["reason"], macs=f"{macs:,}",
                  support="\n".join(support), funcs="\n".join(ctx.funcs), decls="\n".join(ctx.lines),
                  buffers="\n".join(ctx.buffer_lines), calls="\n".join(calls),
                  last=x.expr if x.expr.isidentifier() else f"({x.expr})")
    report = {"acc_ctype": acc["ctype"], "acc_bits_needed": acc["need"], "acc_bits_spec": spec.acc_bits,
              "rounding": spec.rounding, "activations": dict(ctx.activations), "macs": macs,
              "paired_products": ctx.pair,
              "circulant_layers": [n[:-len(".weight")] for n, w in ref.q.items() if w.kind == "circulant"],
              "circulant": "direct products over the stored (p, q, k) vectors (each reversed), index (i - j) mod k",
              "array_bytes": dict(ctx.bytes),
              "buffer_bytes": ctx.buffer_elems * int(ctx.act_ctype[3:-2]) // 8 + 2 * ctx.scratch16,
              "ops": ctx.info}
    return {"gclf_model.h": header, "gclf_model.c": body}, report


# ---- from a checkpoint -------------------------------------------------------------------------------------
def export_c(model_path: str | Path, out: str | Path, measure: bool = True) -> dict:
    """Write gclf_model.c/.h for a fixed-point checkpoint (or a run folder's fold1) into ``out``.

    ``measure``: compile the object with the system C compiler (when there is one) and add its sizes.
    """
    from gclf.backends.c.build import find_cc, measure_sizes
    from gclf.checkpoint import chain_of, load_fixed_point
    from gclf.graph.chain import label
    from gclf.io import atomic_text

    path, ck, model, spec = load_fixed_point(model_path, integer=True)
    chain = label(chain_of(ck))
    files, report = generate_c(model, spec, str(path), chain)
    out = Path(out)
    written = {name: str(atomic_text(out / name, text)) for name, text in files.items()}
    report.update({"source": str(path), "chain": chain, "out": str(out), "files": written,
                   "bytes": {name: len(text.encode()) for name, text in files.items()}})
    if measure:
        cc = find_cc()
        report["sizes"] = measure_sizes(out / "gclf_model.c", cc) if cc else None
        report["compiler"] = cc
    return report
