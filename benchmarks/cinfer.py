"""The generated C inference as a benchmark engine: gclf_model.c compiled into a shared library with a
small batch loop, called through ctypes.

Per window (batch 1) the benchmark times one ``gclf_infer`` call on an already quantized window: the
integer datapath the hardware runs. The host front-end (InputNorm in float, input quantization) is not
in that figure; it is in the whole-evaluation figure, which also runs the C over every held-out window
in one ``gclf_infer_many`` call and checks its logits against the numpy integer reference (bit exact).
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from benchmarks.engines import Engine, Fold, softmax_female

BATCH_C = """/* gclf_bench.c: a batch loop over gclf_infer for the benchmarks (ctypes). */
#include "gclf_model.h"

void gclf_infer_many(const gclf_input_t *x, long n, int32_t *logits);

void gclf_infer_many(const gclf_input_t *x, long n, int32_t *logits)
{
    for (long i = 0; i < n; i++)
        gclf_infer((const gclf_input_t (*)[GCLF_IN_T])(x + i * GCLF_IN_CH * GCLF_IN_T),
                   logits + i * GCLF_N_CLASSES);
}
"""


def compile_library(model, spec, out: Path, chain: str) -> tuple[Path, dict]:
    """Generate the C for one fold and compile it with the batch loop into ``out``/libgclf.so."""
    import subprocess

    from gclf.backends.c.generate import generate_c
    from gclf.backends.c.build import CFLAGS, find_cc

    cc = find_cc()
    out.mkdir(parents=True, exist_ok=True)
    files, report = generate_c(model, spec, str(out), chain)
    for name, text in {**files, "gclf_bench.c": BATCH_C}.items():
        (out / name).write_text(text)
    lib = out / "libgclf.so"
    cmd = [cc, *CFLAGS, "-fPIC", "-shared", "-I", str(out), "-o", str(lib), str(out / "gclf_model.c"),
           str(out / "gclf_bench.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"compiling the generated C failed: {r.stderr.strip()[:500]}")
    return lib, {**report, "compiler": cc, "cflags": " ".join([*CFLAGS, "-fPIC", "-shared"])}


def load_library(path: Path):
    lib = ctypes.CDLL(str(path))
    lib.gclf_infer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.gclf_infer.restype = None
    lib.gclf_infer_many.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p]
    lib.gclf_infer_many.restype = None
    return lib


class CFold:
    """One fold's compiled model: host front-end in numpy, datapath in C."""

    def __init__(self, ck: dict, ws, out: Path):
        from gclf.backends.intref import IntegerReference
        from gclf.backends.weights import c_type
        from gclf.checkpoint import build_float_model, chain_of, quant_of
        from gclf.graph.chain import label

        model, spec = build_float_model(ck), quant_of(ck).spec
        self.ref, self.ws = IntegerReference(model, spec), ws
        path, self.report = compile_library(model, spec, out, label(chain_of(ck)))
        self.lib = load_library(path)
        self.dtype = np.dtype(c_type(spec.act_bits)[:-2])      # gclf_input_t
        self.n_classes = model.graph.n_classes
        self.logit_scale = 2.0 ** -self.ref.logit_format.frac
        self.x1 = np.ascontiguousarray(self.quantize(ws.x[:1]))
        self.out1 = np.zeros((1, self.n_classes), dtype=np.int32)

    def quantize(self, x) -> np.ndarray:
        return np.ascontiguousarray(self.ref.quantize_input(x).astype(self.dtype))

    def logits(self, xq: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xq), self.n_classes), dtype=np.int32)
        self.lib.gclf_infer_many(xq.ctypes.data, len(xq), out.ctypes.data)
        return out

    def prob(self) -> np.ndarray:
        """Whole evaluation: host front-end for every window, then the C over all of them."""
        return softmax_female(self.logits(self.quantize(self.ws.x)) * self.logit_scale)

    def one(self) -> None:
        self.lib.gclf_infer(self.x1.ctypes.data, self.out1.ctypes.data)

    def mismatches(self) -> int:
        """Held-out windows whose C logits differ from the integer reference's (must be 0)."""
        xq = self.ref.quantize_input(self.ws.x)
        return int((self.logits(np.ascontiguousarray(xq.astype(self.dtype))) != self.ref.run_int(xq)).any(axis=1).sum())


def c_engine(name: str, cks: list[dict], windows: list, out: Path) -> Engine:
    """The generated C of every fold checkpoint of a fixed-point run, compiled and loaded."""
    from gclf.checkpoint import chain_of
    from gclf.graph.chain import label
    from gclf.report.table import step_label

    cfolds = [CFold(ck, ws, out / f"fold{i}") for i, (ck, ws) in enumerate(zip(cks, windows), start=1)]
    folds = [Fold(prob=f.prob, one=f.one, ws=f.ws) for f in cfolds]
    rep = cfolds[0].report
    notes = {"scope": "batch 1: one gclf_infer call on a quantized window (host InputNorm and input quantization "
                      "excluded); whole evaluation: host front-end + C over all windows + softmax",
             "weight_bytes_note": "C arrays of weights and biases in their C integer types (fold 1); activation "
                                  f"tables {rep['array_bytes']['tables']} B and shift arrays "
                                  f"{rep['array_bytes']['shifts']} B not counted",
             "c_accumulator": rep["acc_ctype"], "cflags": rep["cflags"], "compiler": rep["compiler"],
             "mismatches_vs_integer_reference": sum(f.mismatches() for f in cfolds)}
    return Engine(name, "C (generated) " + step_label(cks[0]["chain"]), "C via ctypes", label(chain_of(cks[0])),
                  "peer", int(rep["array_bytes"]["weights"]), folds, notes)
