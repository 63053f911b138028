"""The generated C's walker context: what an op handler reads (the integer reference, the accumulator choice)
and writes (arrays, per-op functions, buffers, support blocks), and the tensors passed between ops."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gclf.backends.c.support import MAX_SHIFT, SUPPORT, render
from gclf.backends.weights import c_array, c_ident, c_type, tensor_comment
from gclf.errors import GclfError
from gclf.graph.ops import Op


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


def _xmax(fmt) -> int:
    """Largest |value| of a signed activation format, in LSB."""
    return 1 << (fmt.width - 1)


# ---- the walker's context -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    """A tensor of the C datapath: a C expression of its first ``gclf_act_t`` element, and its shape
    ((C, T) stored time-major, element t * C + c; (C, H, W) stored channel-last, element (h * W + w) * C + c;
    or (N,))."""

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
