"""Fixed-point weights of a quantized checkpoint, written for C, Verilog and Python, and read back exactly.

For every tensor of the integer reference (``integer_weights``: name -> :class:`WeightQ`; a circulant layer's
tensor is its stored (p, q, k) defining vectors, never the materialised matrix) :func:`export_weights` writes

- ``<model>.h``          a C header: include guard, one ``static const`` array per tensor in the smallest C
                         integer type that holds its width, preceded by a comment with shape, Q format(s), min
                         and max, and ``_FRAC`` macros (an array of fractions for per-channel formats);
- ``<model>_<t>.mem``    one hex file per tensor for Verilog ``$readmemh``: two's complement at the tensor's
                         width, ceil(width / 4) digits, one value per line, row-major (C order);
- ``<model>.npz``        each tensor's integers (key = tensor name) and fractions (key = name + ``".frac"``);
- ``manifest.json``      name, shape, dtypes, Q format(s), scale(s) = 2**-frac and file of each tensor, plus
                         the activation formats, the LSTM sigmoid/tanh schemes and the chain.

A value v of a tensor means ``v * 2**-frac`` (frac per tensor, or per output channel = first index).
Every file is written atomically; :func:`read_mem`, :func:`read_header`, :func:`read_npz` and
:func:`load_export` read them back.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from gclf.io import atomic_json, atomic_text, atomic_write
from gclf.quant.formats import WeightQ

C_WIDTHS = (8, 16, 32, 64)


# ---- C formatting (shared with gclf.backends.c.generate) ---------------------------------------------------
def c_bits(width: int) -> int:
    """Bits of the smallest C integer type (int8/16/32/64_t) that holds a signed ``width``-bit value."""
    for b in C_WIDTHS:
        if width <= b:
            return b
    raise ValueError(f"no C integer type holds {width} bits")


def c_type(width: int) -> str:
    return f"int{c_bits(width)}_t"


def bits_for_values(values: np.ndarray) -> int:
    """Smallest signed width holding every value (at least 2)."""
    v = np.asarray(values, dtype=np.int64)
    lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
    return max(2, max(hi.bit_length(), (-lo - 1).bit_length()) + 1)


def c_ident(name: str) -> str:
    """A C identifier from a tensor or model name (``lstm.ih.weight`` -> ``lstm_ih_weight``)."""
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


def c_literal(v: int, bits: int) -> str:
    """A C literal for ``v`` in a ``bits``-wide type; the most negative 32/64-bit value is written as
    ``(-2147483647 - 1)`` (its magnitude alone is not a constant of that type)."""
    v = int(v)
    if bits >= 32 and v == -(1 << (bits - 1)):
        return f"({v + 1} - 1)"
    return str(v)


def c_array(ctype: str, symbol: str, values: np.ndarray, per_line: int = 16) -> str:
    """``static const <ctype> <symbol>[N] = {...};`` with the values row-major, ``per_line`` to a line."""
    flat = np.asarray(values, dtype=np.int64).ravel()
    bits = int(ctype[3:-2])
    items = [c_literal(v, bits) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {symbol}[{max(len(items), 1)}] = {{\n    {body or '0'}\n}};"


# ---- what a tensor is ----------------------------------------------------------------------------
def q_name(width: int, frac: int) -> str:
    """``Q<integer>.<frac>`` of a signed format (integer bits exclude the sign)."""
    return f"Q{width - 1 - frac}.{frac}"


def q_summary(wq: WeightQ) -> str:
    """One format, or the distinct per-channel formats with their counts."""
    fracs = [int(f) for f in wq.frac]
    if len(set(fracs)) == 1:
        return f"{q_name(wq.width, fracs[0])} ({wq.width} bits)" + (" per channel" if len(fracs) > 1 else "")
    parts = [f"{q_name(wq.width, f)} x{fracs.count(f)}" for f in sorted(set(fracs), reverse=True)]
    return f"per output channel {', '.join(parts)} ({wq.width} bits)"


def tensor_comment(name: str, wq: WeightQ, extra: str = "") -> str:
    lo, hi = (int(wq.ints.min()), int(wq.ints.max())) if wq.ints.size else (0, 0)
    shape = "(" + ", ".join(str(d) for d in wq.ints.shape) + ")"
    return f"/* {name}: {wq.kind}, shape {shape}{extra}, {q_summary(wq)}, min {lo}, max {hi} */"


# ---- writers -------------------------------------------------------------------------------------
def mem_text(ints: np.ndarray, width: int) -> str:
    """``$readmemh`` text: two's complement, ceil(width / 4) hex digits, one value per line, row-major."""
    flat = np.asarray(ints, dtype=np.int64).ravel()
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if flat.size and (flat.min() < lo or flat.max() > hi):
        raise ValueError(f"values outside the signed {width}-bit range [{lo}, {hi}]")
    digits, mask = math.ceil(width / 4), (1 << width) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in flat)


def header_text(tensors: dict[str, WeightQ], model: str, preamble: list[str],
                extras: dict[str, str] | None = None) -> str:
    guard = c_ident(model).upper() + "_WEIGHTS_H"
    out = ["/* " + f"{model}.h: fixed-point weights (generated by gclf export-weights; do not edit)."]
    out += [f" * {line}" for line in preamble]
    out += [" * A value v means v * 2^-FRAC (FRAC per tensor, or per output channel = first index).",
            " * Circulant tensors hold (p, q, k) defining vectors: W[a*k+i][b*k+j] = v[a][b][(i-j) mod k]. */",
            f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", ""]
    for name, wq in tensors.items():
        sym = f"{c_ident(model)}_{c_ident(name)}"
        out.append(tensor_comment(name, wq, (extras or {}).get(name, "")))
        for i, d in enumerate(wq.ints.shape):
            out.append(f"#define {sym.upper()}_DIM{i} {d}")
        fracs = wq.frac.astype(np.int64)
        if len(fracs) == 1:
            out.append(f"#define {sym.upper()}_FRAC {int(fracs[0])}")
        else:
            out.append(c_array(c_type(bits_for_values(fracs)), sym + "_frac", fracs))
        out += [c_array(c_type(wq.width), sym, wq.ints), ""]
    out += [f"#endif /* {guard} */", ""]
    return "\n".join(out)


def tensor_entry(name: str, wq: WeightQ, model: str, extra: dict | None = None) -> dict:
    fracs = [int(f) for f in wq.frac]
    return {"name": name, "symbol": f"{c_ident(model)}_{c_ident(name)}", "kind": wq.kind,
            "shape": list(wq.ints.shape), "width": int(wq.width), "c_type": c_type(wq.width),
            "dtype": f"int{c_bits(wq.width)}", "per_channel": len(fracs) > 1,
            "q_format": [q_name(wq.width, f) for f in fracs], "integer_bits": [int(i) for i in wq.integer],
            "frac": fracs, "scale": [2.0 ** -f for f in fracs],
            "min": int(wq.ints.min()) if wq.ints.size else 0, "max": int(wq.ints.max()) if wq.ints.size else 0,
            "mem": f"{c_ident(model)}_{c_ident(name)}.mem", "npz_key": name, **(extra or {})}


def export_tensors(tensors: dict[str, WeightQ], out: str | Path, model: str = "gclf",
                   meta: dict | None = None, extras: dict[str, dict] | None = None) -> dict:
    """Write header, .mem files, .npz and manifest.json of ``tensors`` to ``out``; returns the report.

    ``meta`` (JSON-able) goes into the manifest (activation formats, chain, ...); ``extras`` adds fields to
    a tensor's manifest entry (e.g. a circulant layer's dense shape and block).
    """
    out, meta, extras = Path(out), meta or {}, extras or {}
    for wq in tensors.values():
        if not 2 <= wq.width <= 32:
            raise ValueError(f"weight width must be 2..32, got {wq.width}")
    names = list(tensors)                        # in the order given (checkpoints: graph order, weight before bias)
    entries = [tensor_entry(n, tensors[n], model, extras.get(n)) for n in names]
    mem_paths = [atomic_text(out / e["mem"], mem_text(tensors[e["name"]].ints, e["width"])) for e in entries]
    arrays = {}
    for n in names:
        arrays[n] = tensors[n].ints.astype(f"int{c_bits(tensors[n].width)}")
        arrays[n + ".frac"] = tensors[n].frac.astype(np.int64)
    npz = atomic_write(out / f"{model}.npz", lambda fh: np.savez(fh, **arrays))
    notes = {n: _extra_note(extras.get(n)) for n in names}
    header = atomic_text(out / f"{model}.h", header_text(tensors, model, meta.get("preamble", []), notes))
    manifest = {"format": "gclf-weights", "version": 1, "model": model, "header": header.name, "npz": npz.name,
                **{k: v for k, v in meta.items() if k != "preamble"}, "tensors": entries}
    man = atomic_json(out / "manifest.json", manifest)
    sizes = {"header": header.stat().st_size, "mem": sum(p.stat().st_size for p in mem_paths),
             "npz": npz.stat().st_size, "manifest": man.stat().st_size}
    return {"model": model, "out": str(out), "tensors": len(entries), "bytes": sizes,
            "files": {"header": str(header), "npz": str(npz), "manifest": str(man), "mem": [str(p) for p in mem_paths]},
            "weight_bytes_packed": sum(math.ceil(t.ints.size * t.width / 8) for t in tensors.values())}


def _extra_note(extra: dict | None) -> str:
    if extra and extra.get("block"):
        return f" (block-circulant k={extra['block']} of a {extra['dense_shape'][0]}x{extra['dense_shape'][1]} matrix)"
    return ""


# ---- readers -------------------------------------------------------------------------------------
def read_mem(path: str | Path, width: int) -> np.ndarray:
    """Values of a ``$readmemh`` file written at ``width`` bits, sign-extended, as int64."""
    vals = [int(line, 16) for line in Path(path).read_text().split()]
    v = np.array(vals, dtype=np.int64)
    return np.where(v >= (1 << (width - 1)), v - (1 << width), v)


_ARRAY = re.compile(r"static const (\w+) (\w+)\[(\d+)\] = \{([^}]*)\};")
_MINVAL = re.compile(r"\((-\d+) - 1\)")


def read_header(path: str | Path) -> dict[str, np.ndarray]:
    """Every ``static const`` array of a generated header: symbol -> int64 values (flat)."""
    out = {}
    for ctype, sym, n, body in _ARRAY.findall(Path(path).read_text()):
        body = _MINVAL.sub(lambda m: str(int(m.group(1)) - 1), body)
        out[sym] = np.array([int(t) for t in body.replace("\n", " ").split(",") if t.strip()], dtype=np.int64)
        if out[sym].size != int(n):
            raise ValueError(f"{path}: {sym} declares {n} values but holds {out[sym].size}")
    return out


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_export(out: str | Path, source: str = "npz") -> dict[str, np.ndarray]:
    """The tensors of an export folder, read back from ``source`` ("npz", "mem" or "header"), shaped."""
    out = Path(out)
    man = json.loads((out / "manifest.json").read_text())
    if source == "npz":
        z = read_npz(out / man["npz"])
        return {e["name"]: z[e["npz_key"]] for e in man["tensors"]}
    if source == "mem":
        return {e["name"]: read_mem(out / e["mem"], e["width"]).reshape(e["shape"]) for e in man["tensors"]}
    if source == "header":
        h = read_header(out / man["header"])
        return {e["name"]: h[e["symbol"]].reshape(e["shape"]) for e in man["tensors"]}
    raise ValueError(f"source must be npz, mem or header, got {source!r}")


# ---- from a checkpoint ---------------------------------------------------------------------------
def graph_tensors(model, spec) -> tuple[dict[str, WeightQ], dict[str, dict]]:
    """The integer tensors of a fixed-point model in graph order (each op's weights, then its bias), and the
    manifest extras of circulant weights (the dense shape they stand for and the block size)."""
    from gclf.backends.fixed import HANDLERS, integer_weights, layer_kind

    ints, _ = integer_weights(model, spec)
    tensors, extras = {}, {}
    for op in model.graph.weighted:
        for path, mod in HANDLERS[op].matrices(op, model).values():
            tensors[path + ".weight"] = ints[path + ".weight"]
            if layer_kind(mod) == "circulant":
                extras[path + ".weight"] = {"block": int(mod.block), "dense_shape": [int(mod.out_features),
                                                                                     int(mod.in_features)],
                                            "index": "W[a*k+i][b*k+j] = v[a][b][(i-j) mod k]"}
        tensors[op.name + ".bias"] = ints[op.name + ".bias"]
    return tensors, extras


def activation_meta(model, spec) -> dict:
    """Activation formats of a spec by site (empty for weights-only) and, with an LSTM, its sigmoid/tanh
    schemes and output formats."""
    from gclf.backends.fixed import lstm_formats

    def entry(f) -> dict:
        return {"q_format": str(f), **f.to_dict(), "frac": f.frac, "scale": f.scale}

    acts = {site: entry(f) for site, f in spec.sites().items()} if not spec.weights_only else {}
    out = {"activations": acts}
    if model.lstm_cells():
        out.update({"lstm_sigmoid": spec.sigmoid, "lstm_tanh": spec.tanh})
        if acts:
            sig, tanh = lstm_formats(spec)
            out.update({"sigmoid_output": entry(sig), "tanh_output": entry(tanh)})
    return out


def export_weights(model_path: str | Path, out: str | Path, name: str | None = None, force: bool = False) -> dict:
    """Export the integer weights of a fixed-point checkpoint (or a run folder's final.pt, else fold1.pt) into ``out``; refuses to
    overwrite another checkpoint's export there unless ``force``. Returns the report."""
    from dataclasses import asdict

    from gclf.backends.outdir import claim

    from gclf.checkpoint import chain_of, graph_of, load_fixed_point
    from gclf.graph.chain import label
    from gclf.graph.serial import graph_to_dict, step_to_dict

    path, ck, model, spec = load_fixed_point(model_path)
    tensors, extras = graph_tensors(model, spec)
    fe_meta = {}
    if model.int_input_frac is not None and not spec.weights_only:   # the integer front-end and Norm too
        from gclf.data.features import FeatureConfig
        from gclf.frontend.tensors import frontend_tensors

        fe, fe_extras, fe_meta = frontend_tensors(model, spec, FeatureConfig.from_dict(ck["feature_config"]))
        tensors, extras = {**fe, **tensors}, {**fe_extras, **extras}
    name = c_ident(name or f"gclf_{path.stem}")
    chain = label(chain_of(ck))
    cfg = {**asdict(spec.config), "act_bits": spec.act_bits, "bias_bits": spec.bias_bits, "acc_bits": spec.acc_bits}
    steps = [{k: v for k, v in step_to_dict(s).items() if k != "spec"} for s in chain_of(ck)]
    meta = {"source": str(path), "chain": chain, "chain_steps": steps, "graph": graph_to_dict(graph_of(ck)),
            "quantize": cfg, **activation_meta(model, spec), **fe_meta,
            "preamble": [f"source: {path}", f"chain: {chain}",
                         f"weights {spec.config.bits} bits, biases {spec.bias_bits} bits, activations "
                         f"{'float' if spec.weights_only else str(spec.act_bits) + ' bits'}, rounding {spec.rounding}"]}
    meta = json.loads(json.dumps(meta, default=str))
    claim(out, path, ["manifest.json", f"{name}.h", f"{name}.npz"], force)
    report = export_tensors(tensors, out, name, meta, extras)
    return {**report, "source": str(path), "chain": chain}
