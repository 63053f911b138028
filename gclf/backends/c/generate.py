"""A generated C99 inference of a fixed-point model: one ``gclf_model.c`` / ``gclf_model.h`` pair.

The C walks the model's graph (:class:`gclf.graph.ops.Graph`) op by op, with one handler per op kind in
:data:`HANDLERS`, and reproduces :class:`gclf.backends.intref.IntegerReference` bit for bit: the same integer
weights, shifts with the spec's rounding (all four modes of ``round_shift``), saturation at every
requantization, and the chain's sigmoid/tanh emitted from ``Approx.fixed_tables()`` exactly. Block-circulant
matrices are computed directly from their stored (p, q, k) vectors with the index (i - j) mod k (never
materialised). It is integer only (int8/16/32/64_t), allocates nothing (a static buffer per op output) and
takes the already-quantized input: Norm and the input quantization stay on the host, as in the reference.

Accumulators are int32_t when the spec's ``acc_bits`` is <= 32 *and* the worst case of these very weights
fits (with every alignment shift) in every op; otherwise int64_t. The text is filled into
``templates/*.tmpl`` with ``string.Template``; :mod:`gclf.backends.c.build` compiles, measures and runs it.

Adding an op kind: subclass :class:`CHandler`, register it with ``@HANDLERS.register(Kind)``, and put its
kernel (C functions taking ``gclf_act_t`` buffers) under ``templates/ops/``. The walker (:func:`generate_c`)
never names a layer nor assumes an order.
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
MAX_SHIFT = 62
HANDLERS = Registry("C")


def render(name: str, **fields) -> str:
    """Fill template ``name`` (under templates/) with ``fields``; a missing field raises KeyError."""
    return string.Template((TEMPLATES / name).read_text()).substitute(fields)


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
        const int mid = (lo + hi + 1) / 2;
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
           "shift": lambda ctx: render("support_shift.c.tmpl"),
           "matrix": lambda ctx: render("support_matrix.c.tmpl"),
           "segment": lambda ctx: SEGMENT_FN}


# ---- the walker's context -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    """A tensor of the C datapath: a C expression of its first ``gclf_act_t`` element, and its shape
    ((C, T) channel-major, element c * T + t; or (N,))."""

    expr: str
    shape: tuple[int, ...]


class Context:
    """What a handler reads (the integer reference ``ref``: its plan, integer weights and matrices, the spec)
    and writes (declarations, static buffers, shared support it needs, per-op report entries)."""

    def __init__(self, ref):
        self.ref, self.model, self.graph, self.spec, self.plan = ref, ref.model, ref.graph, ref.spec, ref.plan
        self.lines: list[str] = []                          # declarations, in definition order
        self.buffer_lines: list[str] = []
        self.bytes = {"weights": 0, "shifts": 0, "tables": 0}
        self.buffer_elems = 0
        self.needs: set[str] = set()
        self.activations: dict[str, str] = {}               # C function -> table kind
        self.info: dict[str, dict] = {}                     # per op, for the report
        q = ref.q
        widths = [w.width for n, w in q.items() if not n.endswith(".bias")]
        bwidths = [w.width for n, w in q.items() if n.endswith(".bias")]
        self.w_bits, self.b_bits = max(widths, default=8), max(bwidths, default=8)
        self.act_ctype = c_type(self.spec.act_bits)

    # names
    @staticmethod
    def desc(op: Op) -> str:
        """The symbol of an op's descriptor struct."""
        return "gclf_op_" + c_ident(op.name)

    def need(self, *names: str) -> None:
        unknown = set(names) - set(SUPPORT)
        if unknown:
            raise KeyError(f"unknown C support code {sorted(unknown)}; known: {', '.join(SUPPORT)}")
        self.needs.update(names)

    # declarations
    def tensor(self, name: str, kind: str = "weight") -> str:
        """Declare ``ref.q[name]`` (a weight in gclf_w_t or a bias in gclf_b_t); returns its symbol."""
        wq = self.ref.q[name]
        bits = self.w_bits if kind == "weight" else self.b_bits
        sym = "gclf_" + c_ident(name)
        self.lines += [tensor_comment(name, wq), c_array(c_type(bits), sym, wq.ints), ""]
        self.bytes["weights"] += wq.ints.size * int(c_type(bits)[3:-2]) // 8
        return sym

    def shift(self, sym: str, v: np.ndarray, what: str, low: int = -MAX_SHIFT) -> str:
        """A ``gclf_shift_t`` initializer: one value, or an int8_t array ``sym`` of per-channel values."""
        _check_shifts(what, v, low)
        if (v == v[0]).all():
            return f"{{0, {int(v[0])}}}"
        self.lines.append(c_array("int8_t", sym, v))
        self.bytes["shifts"] += v.size
        return f"{{{sym}, 0}}"

    def matrix(self, path: str, mod) -> str:
        """Declare the weight of matrix ``path`` and return its ``gclf_matrix_t`` initializer."""
        wq = self.ref.q[path + ".weight"]
        sym = self.tensor(path + ".weight")
        if wq.kind == "circulant":
            _, q, k = wq.ints.shape
            return f"{{{sym}, {mod.out_features}, {mod.in_features}, {k}, {q}}}"
        return f"{{{sym}, {wq.ints.shape[0]}, {wq.ints.shape[1]}, 0, 0}}"

    def buffer(self, sym: str, n: int) -> str:
        """A static ``gclf_act_t sym[n]``; returns ``sym``."""
        self.buffer_lines.append(f"static gclf_act_t {sym}[{max(int(n), 1)}];")
        self.buffer_elems += max(int(n), 1)
        return sym


# ---- one handler per op kind ----------------------------------------------------------------------------
class CHandler:
    """What the C backend knows of one op kind. The walker calls, per op in graph order:

    - ``kernel`` / ``needs`` (once per kind, when an op of it emits a call): the template under templates/
      holding the kind's C functions (None: none), and the shared support code they use (keys of
      :data:`SUPPORT`);
    - :meth:`bound` (first pass, every op): its contribution to the int32-vs-int64 accumulator decision;
    - :meth:`out_elems`: the size of its static output buffer (None: its output *is* its input);
    - :meth:`emit`: its declarations (through the :class:`Context`) and its call lines in gclf_infer.
    """

    kernel: str | None = None
    needs: tuple[str, ...] = ()

    @staticmethod
    def bound(ctx: Context, op: Op) -> tuple[int, int]:
        """(largest |partial sum| its accumulators can reach, in LSB; largest left shift applied to an
        accumulator term by a multiplication in gclf_acc_t). (0, 0): no accumulator."""
        return 0, 0

    @staticmethod
    def out_elems(op: Op, in_shape: tuple, out_shape: tuple) -> int | None:
        return math.prod(out_shape)

    @staticmethod
    def emit(ctx: Context, op: Op, x: Tensor, y: Tensor) -> list[str]:
        """Declarations into ``ctx``; returns the statements of gclf_infer computing ``y`` from ``x``."""
        return []


@HANDLERS.register(Norm)
class _Norm(CHandler):
    """The host front-end: gclf_infer takes its output, already quantized (the input x)."""

    @staticmethod
    def out_elems(op, in_shape, out_shape):
        return None


@HANDLERS.register(MaxPool)
class _MaxPool(CHandler):
    kernel = "ops/maxpool.c.tmpl"

    @staticmethod
    def emit(ctx, op: MaxPool, x, y):
        c, t = x.shape
        return [f"gclf_maxpool({x.expr}, {c}, {t}, {op.kernel}, {op.step}, {y.expr});"]


@HANDLERS.register(Flatten)
class _Flatten(CHandler):
    """A transposing copy to time-major; with one channel or one step the layout is already the same."""

    kernel = "ops/flatten.c.tmpl"

    @staticmethod
    def out_elems(op, in_shape, out_shape):
        return None if min(in_shape) == 1 else math.prod(out_shape)

    @staticmethod
    def emit(ctx, op, x, y):
        if x.expr == y.expr:
            return []
        c, t = x.shape
        return [f"gclf_flatten({x.expr}, {c}, {t}, {y.expr});"]


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


class _Affine(CHandler):
    needs = ("requant", "shift")

    @staticmethod
    def bound(ctx, op):
        bs, _ = _affine_shifts(ctx, op)
        xmax = _xmax(ctx.plan[op.name].in_fmt)
        rows = _row_abs(ctx.ref.mats[_matrices(ctx, op)["weight"][0]])
        return max(r * xmax + t for r, t in zip(rows, _bias_terms(ctx.ref.q[op.name + ".bias"], bs))), 0


@HANDLERS.register(Conv1d)
class _Conv1d(_Affine):
    kernel = "ops/conv1d.c.tmpl"

    @staticmethod
    def emit(ctx, op: Conv1d, x, y):
        bs, rs = _affine_shifts(ctx, op)
        d, path = ctx.desc(op), _matrices(ctx, op)["weight"][0]
        w, b = ctx.tensor(path + ".weight"), ctx.tensor(op.name + ".bias", "bias")
        bs, rs = ctx.shift(d + "_bs", bs, op.name, 0), ctx.shift(d + "_rs", rs, op.name)
        O, C, K = ctx.ref.q[path + ".weight"].ints.shape
        ctx.lines += [f"static const gclf_conv_t {d} = {{{w}, {O}, {C}, {K}, {op.stride}, {int(op.relu)}, {b}, "
                      f"{bs}, {rs}, {_fmt_range(ctx.plan[op.name].out_fmt)}}};", ""]
        return [f"gclf_conv1d(&{d}, {x.expr}, {x.shape[1]}, {y.expr});"]


@HANDLERS.register(Linear)
class _Linear(_Affine):
    kernel = "ops/linear.c.tmpl"
    needs = ("requant", "shift", "matrix")

    @staticmethod
    def emit(ctx, op: Linear, x, y):
        bs, rs = _affine_shifts(ctx, op)
        d = ctx.desc(op)
        m = ctx.matrix(*_matrices(ctx, op)["weight"])
        b = ctx.tensor(op.name + ".bias", "bias")
        bs, rs = ctx.shift(d + "_bs", bs, op.name, 0), ctx.shift(d + "_rs", rs, op.name)
        ctx.lines += [f"static const gclf_linear_t {d} = {{{m}, {b}, {bs}, {rs}, {int(op.relu)}, "
                      f"{_fmt_range(ctx.plan[op.name].out_fmt)}}};", ""]
        return [f"gclf_linear(&{d}, {x.expr}, {y.expr});"]


@HANDLERS.register(LSTM)
class _LSTM(CHandler):
    kernel = "ops/lstm.c.tmpl"
    needs = ("requant", "shift", "matrix")

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
        d, H = ctx.desc(op), op.hidden
        fns = _LSTM.activations(ctx, op)
        mats = _matrices(ctx, op)
        ih, hh = ctx.matrix(*mats["ih"]), ctx.matrix(*mats["hh"])
        b = ctx.tensor(op.name + ".bias", "bias")
        shifts = [ctx.shift(f"{d}_{k}", s[k], f"{op.name} {k}", 0 if k != "rs" else -MAX_SHIFT)
                  for k in ("si", "sh", "bs", "rs")]
        buf = "gclf_buf_" + c_ident(op.name)
        scratch = [ctx.buffer(f"{buf}_{k}", n) for k, n in (("xt", x.shape[0]), ("h", H), ("c", H), ("g", 4 * H))]
        ctx.lines += [f"static const gclf_lstm_t {d} = {{",
                      f"    {ih}, {hh}, {b},",
                      f"    {', '.join(shifts)},",
                      f"    {H}, {e['fc_shift']}, {e['ig_shift']}, {e['cell_rs']}, {e['hidden_rs']},",
                      f"    {_fmt_range(acts['gates'])}, {_fmt_range(acts['cell'])}, {_fmt_range(acts['hidden'])},",
                      f"    {', '.join(fns)},",
                      f"    {', '.join(scratch)}",
                      "};", ""]
        ctx.info[op.name].update(e)
        return [f"gclf_lstm(&{d}, {x.expr}, {x.shape[1]}, {y.expr});"]


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


def generate_c(model, spec, source: str = "", chain: str = "") -> tuple[dict[str, str], dict]:
    """({"gclf_model.h": text, "gclf_model.c": text}, report) for a float GraphNet under a QuantSpec."""
    ref = _reference(model, spec)
    ctx = Context(ref)
    graph = ctx.graph
    acc = _accumulator(ctx)
    kernels, calls, kinds = [], [], []
    x = Tensor("&x[0][0]", tuple(graph.input_shape))
    for op, shape in zip(graph.ops, graph.shapes()):
        h = HANDLERS[op]
        n = h.out_elems(op, x.shape, tuple(shape))
        y = Tensor(ctx.buffer("gclf_buf_" + c_ident(op.name), n) if n is not None else x.expr, tuple(shape))
        ctx.info[op.name] = {"kind": op.kind, "out_shape": list(shape), "buffer": y.expr}
        lines = h.emit(ctx, op, x, y)
        if lines:
            if type(op) not in kinds:                 # the kind's kernel, once, when an op of it runs
                kinds.append(type(op))
                ctx.need(*h.needs)
                if h.kernel:
                    kernels.append(render(h.kernel))
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
                  b_ctype=c_type(ctx.b_bits), b_bits=ctx.b_bits, acc_ctype=acc["ctype"], acc_reason=acc["reason"],
                  support="\n".join(support), kernels="\n".join(kernels), decls="\n".join(ctx.lines),
                  buffers="\n".join(ctx.buffer_lines), calls="\n".join(calls),
                  last=x.expr if x.expr.isidentifier() else f"({x.expr})")
    report = {"acc_ctype": acc["ctype"], "acc_bits_needed": acc["need"], "acc_bits_spec": spec.acc_bits,
              "rounding": spec.rounding, "activations": dict(ctx.activations),
              "circulant_layers": [n[:-len(".weight")] for n, w in ref.q.items() if w.kind == "circulant"],
              "circulant": "direct products over the stored (p, q, k) vectors, index (i - j) mod k",
              "array_bytes": dict(ctx.bytes), "buffer_bytes": ctx.buffer_elems * int(ctx.act_ctype[3:-2]) // 8,
              "ops": ctx.info}
    return {"gclf_model.h": header, "gclf_model.c": body}, report


# ---- from a checkpoint -------------------------------------------------------------------------------------
def export_c(model_path: str | Path, out: str | Path, measure: bool = True) -> dict:
    """Write gclf_model.c/.h for a fixed-point checkpoint (or a run folder's final.pt, else fold1.pt) into ``out``.

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
