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
  ``GCLF_NO_DSP``) the products are SMLAD dual multiply-accumulates, bit-exact with the portable C;
- images (C, H, W) are stored channel-last ((H, W, C), element (h * W + w) * C + c): a time-major window is
  already the image (1, T, C) (``Image`` moves nothing), a 2-D convolution's kernel row is contiguous, and its
  weights are stored (out, k, k, in) (portable dot products; no paired kernel for Conv2d yet).

The text is filled into ``templates/*.tmpl`` with ``string.Template``; :mod:`gclf.backends.c.build` compiles,
measures and runs it on the host, :mod:`gclf.backends.c.target` on an emulated Cortex-M4.

Modules: :mod:`~gclf.backends.c.support` (templates, primitives, activation tables, support blocks),
:mod:`~gclf.backends.c.context` (what a handler reads and writes), :mod:`~gclf.backends.c.handlers` (one
handler per op kind), this walker. Adding an op kind: subclass ``handlers.CHandler``, register it with
``@HANDLERS.register(Kind)``, and put its function template under ``templates/ops/`` (rendered per op with
its shapes). The walker (:func:`generate_c`) never names a layer nor assumes an order.
"""
from __future__ import annotations

import re
from pathlib import Path

from gclf.backends.c.context import Context, Tensor
from gclf.backends.c.handlers import HANDLERS
from gclf.backends.c.support import SEGMENT_FN, SUPPORT, activation_c, primitives_c, render  # noqa: F401 (API)
from gclf.backends.weights import c_ident, c_literal, c_type
from gclf.errors import GclfError
from gclf.graph.ops import LSTM, Norm


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


def with_prefix(text: str, prefix: str) -> str:
    """``text`` with every ``gclf_`` symbol (and ``GCLF_`` macro) renamed to ``prefix`` (upper-cased for macros)."""
    if prefix == "gclf_":
        return text
    return re.sub(r"\bGCLF_", prefix.upper(), re.sub(r"\bgclf_", prefix, text))


def check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise GclfError(f"--prefix {prefix!r} is not a C identifier prefix (letters, digits, _)")
    return prefix


def generate_c(model, spec, source: str = "", chain: str = "", prefix: str = "gclf_") -> tuple[dict[str, str], dict]:
    """({"<prefix>model.h": text, "<prefix>model.c": text}, report) for a float GraphNet under a QuantSpec.

    ``prefix`` starts every exported symbol and macro (upper-cased), so two models link into one firmware."""
    check_prefix(prefix)
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
    return {f"{prefix}model.h": with_prefix(header, prefix), f"{prefix}model.c": with_prefix(body, prefix)}, report


# ---- from a checkpoint -------------------------------------------------------------------------------------
def export_c(model_path: str | Path, out: str | Path, measure: bool = True, prefix: str = "gclf_") -> dict:
    """Write <prefix>model.c/.h for a fixed-point checkpoint (or a run folder's final.pt, else fold1.pt) into
    ``out``; for a model trained on the integer front-end also <prefix>frontend.c/.h and <prefix>classifier.c/.h
    (PCM -> logits, whole clip and streaming: :mod:`gclf.frontend.pipeline`).

    ``measure``: compile the object with the system C compiler (when there is one) and add its sizes.
    """
    from gclf.backends.c.build import find_cc, measure_sizes
    from gclf.checkpoint import chain_of, load_fixed_point
    from gclf.graph.chain import label
    from gclf.io import atomic_text

    path, ck, model, spec = load_fixed_point(model_path, integer=True)
    chain = label(chain_of(ck))
    files, report = generate_c(model, spec, str(path), chain, prefix)
    out = Path(out)
    written = {name: str(atomic_text(out / name, text)) for name, text in files.items()}
    if model.int_input_frac is not None:                # trained on the integer front-end: PCM -> label too
        from gclf.data.features import FeatureConfig
        from gclf.frontend.pipeline import generate_classifier

        cl = generate_classifier(out, model, spec, FeatureConfig.from_dict(ck["feature_config"]), prefix,
                                 str(path), chain)
        written.update(cl["files"])
        report["classifier"] = {k: v for k, v in cl.items() if k not in ("files", "network")}
    report.update({"source": str(path), "chain": chain, "out": str(out), "files": written,
                   "bytes": {name: len(text.encode()) for name, text in files.items()}})
    if measure:
        cc = find_cc()
        report["sizes"] = measure_sizes(out / f"{prefix}model.c", cc) if cc else None
        report["compiler"] = cc
    return report
