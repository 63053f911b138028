"""A generated C99 inference of a fixed-point checkpoint: one ``gclf_model.c`` / ``gclf_model.h`` pair.

The C reproduces :class:`gclf.quant.intref.IntegerReference` bit for bit: the same integer weights, shifts
with the spec's rounding (all four modes of ``round_shift``), saturation at every requantization, and the
chain's sigmoid/tanh emitted from ``Approx.fixed_tables()`` exactly. Block-circulant layers are computed
directly from their stored (p, q, k) vectors with the index (i - j) mod k (never materialised). It is
integer only (int8/16/32/64_t), allocates nothing (static buffers) and takes the already-quantized input:
InputNorm and the input quantization stay on the host, as in the reference.

Accumulators are int32_t when the spec's ``acc_bits`` is <= 32 *and* the worst case of these very weights
fits (with every alignment shift); otherwise int64_t. The text is filled into ``templates/*.tmpl`` with
``string.Template``; :mod:`gclf.backends.c.build` compiles, measures and runs it.
"""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from gclf.errors import GclfError
from gclf.backends.weights import bits_for_values, c_array, c_ident, c_literal, c_type, tensor_comment

TEMPLATES = Path(__file__).with_name("templates")
ROUNDING_IDS = {"floor": 0, "half_up": 1, "half_away": 2, "half_even": 3}
MAX_SHIFT = 62


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


class _Decls:
    """The C declarations of weights, shift arrays and layer descriptors, in definition order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.bytes = {"weights": 0, "shifts": 0, "tables": 0}

    def tensor(self, name: str, wq) -> str:
        sym = "gclf_" + c_ident(name)
        self.lines += [tensor_comment(name, wq), c_array(c_type(wq.width), sym, wq.ints), ""]
        self.bytes["weights"] += wq.ints.size * int(c_type(wq.width)[3:-2]) // 8
        return sym

    def shift(self, sym: str, v: np.ndarray, what: str, low: int = -MAX_SHIFT) -> str:
        """A ``gclf_shift_t`` initializer: one value, or an int8_t array of per-channel values."""
        _check_shifts(what, v, low)
        if (v == v[0]).all():
            return f"{{0, {int(v[0])}}}"
        self.lines.append(c_array("int8_t", sym, v))
        self.bytes["shifts"] += v.size
        return f"{{{sym}, 0}}"


def _row_abs(mat: np.ndarray) -> list[int]:
    return [int(s) for s in np.abs(mat.reshape(mat.shape[0], -1)).sum(axis=1)]


def _bias_terms(b, bs: np.ndarray) -> list[int]:
    return [abs(int(v)) << int(s) for v, s in zip(b.ints, bs)]


def _plan(ref) -> dict:
    """Shifts, bounds and formats of every layer, from the integer reference's own quantities."""
    model, q, fmt = ref.model, ref.q, ref.fmt
    xmax = 1 << (ref.spec["act_bits"] - 1)
    layers, bounds, align = {}, [], [0]
    for name in ("conv1", "conv2", *model.fc_names):
        w, b = q[name + ".weight"], q[name + ".bias"]
        n = len(b.ints)
        acc = _vec(ref.acc[name], n)
        bs, rs = acc - _vec(b.frac, n), acc - fmt[name].frac
        _check_shifts(f"{name} bias alignment", bs, 0)
        rows = _row_abs(ref.mats[name])
        bounds += [r * xmax + t for r, t in zip(rows, _bias_terms(b, bs))]
        layers[name] = {"w": w, "b": b, "bs": bs, "rs": rs, "fmt": fmt[name]}
    H4 = 4 * model.lstm.hidden
    common = _vec(ref.acc["lstm"], H4)
    b = q["lstm.bias"]
    lstm = {"si": common - _vec(ref.acc["lstm.ih"], H4), "sh": common - _vec(ref.acc["lstm.hh"], H4),
            "bs": common - _vec(b.frac, H4), "rs": common - fmt["gates"].frac, "b": b}
    for k in ("si", "sh", "bs"):
        _check_shifts(f"LSTM {k}", lstm[k], 0)
    align += [int(lstm["si"].max()), int(lstm["sh"].max())]
    ih, hh = _row_abs(ref.mats["lstm.ih"]), _row_abs(ref.mats["lstm.hh"])
    bounds += [(i * xmax << int(si)) + (h * xmax << int(sh)) + t
               for i, h, si, sh, t in zip(ih, hh, lstm["si"], lstm["sh"], _bias_terms(b, lstm["bs"]))]
    need = max(bounds).bit_length() + 1
    spec_bits = ref.spec.get("acc_bits") or 64
    acc32 = spec_bits <= 32 and need <= 32 and max(align) <= 30
    if need > 64:
        raise GclfError(f"the accumulators need {need} bits: more than int64_t")
    reason = (f"spec acc_bits {spec_bits}; these weights need at most {need} bits"
              + ("" if acc32 or spec_bits > 32 else ", more than the spec's: int64_t"))
    return {"layers": layers, "lstm": lstm, "acc_ctype": "int32_t" if acc32 else "int64_t", "acc_need": need,
            "acc_reason": reason}


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


def _activations(ref) -> tuple[str, dict, int]:
    """The three LSTM activation functions (tanh of the cell shares tanh of the gates' tables if equal)."""
    fg, fc = ref.fmt["gates"].frac, ref.fmt["cell"].frac
    parts, tables, nbytes = [], {}, 0
    for fn, approx, fin, fout, label in (("gclf_sigmoid_gates", ref.sig, fg, ref.fsig.frac, "sigmoid of a gate"),
                                         ("gclf_tanh_gates", ref.tanh, fg, ref.ftanh.frac, "tanh of the g gate"),
                                         ("gclf_tanh_cell", ref.tanh, fc, ref.ftanh.frac, "tanh of the cell")):
        if fn == "gclf_tanh_cell" and fc == fg:
            parts.append("#define gclf_tanh_cell gclf_tanh_gates   /* same input format: same tables */\n")
            tables[fn] = tables["gclf_tanh_gates"]
            continue
        text, tables[fn], n = activation_c(fn, approx, fin, fout, label)
        parts.append(text)
        nbytes += n
    if any(t["kind"] in ("pwl", "lut") for t in tables.values()):
        parts.insert(0, SEGMENT_FN)
    return "\n".join(parts), tables, nbytes


def _fmt_range(f) -> str:
    return f"{c_literal(f.min_int, f.width)}, {f.max_int}"


def _matrix(sym: str, wq, mod) -> str:
    if wq.kind == "circulant":
        p, q, k = wq.ints.shape
        return f"{{{sym}, {mod.out_features}, {mod.in_features}, {k}, {q}}}"
    return f"{{{sym}, {wq.ints.shape[0]}, {wq.ints.shape[1]}, 0, 0}}"


def _layers(ref, plan: dict, d: _Decls) -> list[str]:
    """Weights, shift arrays and layer descriptors into ``d``; returns the fc calls of gclf_infer."""
    model = ref.model
    for name in ("conv1", "conv2"):
        L = plan["layers"][name]
        w, b = d.tensor(name + ".weight", L["w"]), d.tensor(name + ".bias", L["b"])
        bs, rs = d.shift(f"gclf_{name}_bs", L["bs"], name, 0), d.shift(f"gclf_{name}_rs", L["rs"], name)
        O, C, K = L["w"].ints.shape
        d.lines += [f"static const gclf_conv_t gclf_{name} = {{{w}, {O}, {C}, {K}, {b}, {bs}, {rs}, "
                    f"{_fmt_range(L['fmt'])}}};", ""]
    P = plan["lstm"]
    ih, hh = d.tensor("lstm.ih.weight", ref.q["lstm.ih.weight"]), d.tensor("lstm.hh.weight", ref.q["lstm.hh.weight"])
    d.tensor("lstm.bias", P["b"])
    inits = {k: d.shift(f"gclf_lstm_{k}_v", P[k], f"LSTM {k}", 0 if k != "rs" else -MAX_SHIFT)
             for k in ("si", "sh", "bs", "rs")}
    d.lines += [f"static const gclf_matrix_t gclf_lstm_ih = {_matrix(ih, ref.q['lstm.ih.weight'], model.lstm.ih)};",
                f"static const gclf_matrix_t gclf_lstm_hh = {_matrix(hh, ref.q['lstm.hh.weight'], model.lstm.hh)};",
                *(f"static const gclf_shift_t gclf_lstm_{k} = {v};" for k, v in inits.items()), ""]
    calls, src = [], "gclf_buf_lstm"
    for i, name in enumerate(model.fc_names):
        L = plan["layers"][name]
        w, b = d.tensor(name + ".weight", L["w"]), d.tensor(name + ".bias", L["b"])
        bs, rs = d.shift(f"gclf_{name}_bs", L["bs"], name, 0), d.shift(f"gclf_{name}_rs", L["rs"], name)
        relu = int(i < len(model.fc_names) - 1)
        d.lines += [f"static const gclf_linear_t gclf_{name} = {{{_matrix(w, L['w'], model.get_submodule(name))}, "
                    f"{b}, {bs}, {rs}, {relu}, {_fmt_range(L['fmt'])}}};", ""]
        calls.append(f"    gclf_linear(&gclf_{name}, {src}, gclf_buf_fc[{i % 2}]);")
        src = f"gclf_buf_fc[{i % 2}]"
    return calls


def _lstm_defs(ref) -> tuple[str, dict]:
    """Constants of the LSTM's element-wise part: formats, alignment shifts, requantization shifts."""
    ab = ref.spec["act_bits"]
    fs, ft, fc, fh = ref.fsig.frac, ref.ftanh.frac, ref.fmt["cell"].frac, ref.fmt["hidden"].frac
    a, b = fs + fc, fs + ft
    m = max(a, b)
    c = {"FC_SHIFT": m - a, "IG_SHIFT": m - b, "CELL_RS": m - fc, "HIDDEN_RS": fs + ft - fh}
    _check_shifts("LSTM element-wise", np.array(list(c.values())))
    worst = ((1 << fs) * (1 << (ab - 1)) << (m - a)) + ((1 << fs) * (1 << ft) << (m - b))
    if worst.bit_length() + 1 > 64:
        raise GclfError("the LSTM cell update needs more than int64_t")
    lines = [f"#define GCLF_{k} {v}" for k, v in c.items()]
    for site in ("gates", "cell", "hidden"):
        f = ref.fmt[site]
        lines += [f"#define GCLF_{site.upper()}_LO ({c_literal(f.min_int, f.width)})",
                  f"#define GCLF_{site.upper()}_HI {f.max_int}"
                  f"   /* {site}: {f} */"]
    return "\n".join(lines), c


def _buffer_bytes(cfg, hidden: int, act_bits: int, fc_max: int) -> int:
    """Bytes of the static activation buffers of gclf_model.c (all of type gclf_act_t)."""
    t1 = cfg.n_frames - cfg.conv1_kernel + 1
    t2 = t1 - cfg.conv2_kernel + 1
    steps = t2 // cfg.pool
    n = (cfg.conv1_channels * t1 + cfg.conv2_channels * t2 + steps * cfg.conv2_channels + steps * hidden
         + 2 * hidden + 2 * fc_max + 4 * hidden)
    return n * int(c_type(act_bits)[3:-2]) // 8


def _reference(model, spec: dict):
    from gclf.quant.intref import IntegerReference

    if spec.get("weights_only"):
        raise GclfError("a weights-only checkpoint has float activations: there is no integer C inference "
                        "(run `gclf quantize` without --weights-only)")
    return IntegerReference(model, spec)


def generate_c(model, spec: dict, source: str = "", chain: str = "") -> tuple[dict[str, str], dict]:
    """({"gclf_model.h": text, "gclf_model.c": text}, report) for a float model under a quantize spec."""
    ref = _reference(model, spec)
    cfg = model.cfg
    plan = _plan(ref)
    d = _Decls()
    fc_calls = _layers(ref, plan, d)
    acts, tables, table_bytes = _activations(ref)
    lstm_defs, lstm_consts = _lstm_defs(ref)
    ab, fin, flog = spec["act_bits"], ref.fmt["input"], ref.fmt[model.fc_names[-1]]
    widths = [w.width for n, w in ref.q.items() if not n.endswith(".bias")]
    bwidths = [w.width for n, w in ref.q.items() if n.endswith(".bias")]
    fc_max = max(getattr(model, n).out_features for n in model.fc_names)
    config = (f"weights {spec['bits']} bits{' per channel' if spec.get('per_channel') else ''}, biases "
              f"{spec['bias_bits']} bits, activations {ab} bits, rounding {spec['rounding']}, "
              f"spec acc_bits {spec.get('acc_bits')}; LSTM sigmoid '{spec['sigmoid']}', tanh '{spec['tanh']}'")
    common = {"source": source or "a gclf checkpoint", "chain": chain or "?", "config_line": config,
              "rounding": spec["rounding"], "act_ctype": c_type(ab), "act_bits": ab}
    header = render("gclf_model.h.tmpl", **common, in_ch=cfg.n_mfcc, in_t=cfg.n_frames, n_classes=cfg.n_classes,
                    input_frac=fin.frac, input_q=str(fin), input_min=f"({c_literal(fin.min_int, fin.width)})",
                    input_max=fin.max_int, logit_frac=flog.frac, logit_q=str(flog))
    body = render("gclf_model.c.tmpl", **common, w_ctype=c_type(max(widths)), w_bits=max(widths),
                  b_ctype=c_type(max(bwidths)), b_bits=max(bwidths), acc_ctype=plan["acc_ctype"],
                  acc_reason=plan["acc_reason"], primitives=primitives_c(spec["rounding"]), activations=acts,
                  weights="\n".join(d.lines), hidden=model.lstm.hidden, lstm_defs=lstm_defs, k1=cfg.conv1_kernel,
                  k2=cfg.conv2_kernel, pool=cfg.pool, fc_max=fc_max, c1=cfg.conv1_channels, c2=cfg.conv2_channels,
                  fc_calls="\n".join(fc_calls), last_buf=(len(model.fc_names) - 1) % 2)
    buffers = _buffer_bytes(cfg, model.lstm.hidden, ab, fc_max)
    report = {"acc_ctype": plan["acc_ctype"], "acc_bits_needed": plan["acc_need"], "acc_bits_spec": spec.get("acc_bits"),
              "rounding": spec["rounding"], "activations": {k: v["kind"] for k, v in tables.items()},
              "circulant_layers": [n[:-7] for n, w in ref.q.items() if w.kind == "circulant"],
              "circulant": "direct products over the stored (p, q, k) vectors, index (i - j) mod k",
              "array_bytes": {**d.bytes, "tables": table_bytes}, "buffer_bytes": buffers, "lstm": lstm_consts}
    return {"gclf_model.h": header, "gclf_model.c": body}, report


def export_c(model_path: str | Path, out: str | Path = "export", measure: bool = True) -> dict:
    """Write gclf_model.c/.h for a fixed-point checkpoint (or a run folder's fold1) into ``out``.

    ``measure``: compile the object with the system C compiler (when there is one) and add its sizes.
    """
    from gclf.chain import describe_chain
    from gclf.io import atomic_text
    from gclf.backends.c.build import find_cc, measure_sizes
    from gclf.backends.weights import fixed_point_model

    path, ck, model, spec = fixed_point_model(model_path)
    files, report = generate_c(model, spec, str(path), describe_chain(ck["chain"]))
    out = Path(out)
    written = {name: str(atomic_text(out / name, text)) for name, text in files.items()}
    report.update({"source": str(path), "chain": describe_chain(ck["chain"]), "out": str(out), "files": written,
                   "bytes": {name: len(text.encode()) for name, text in files.items()}})
    if measure:
        cc = find_cc()
        report["sizes"] = measure_sizes(out / "gclf_model.c", cc) if cc else None
        report["compiler"] = cc
    return report
