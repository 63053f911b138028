"""ONNX export of a checkpoint: the float model, or its fixed-point chain, checked and measured.

One builder (:mod:`gclf.backends.onnx.graph`, one handler per op kind) writes every form: ``float`` for a
chain without a quantize step (float, compress, approx), ``weights-qdq`` for a weights-only spec, ``qdq`` for a
full one. Every file has one input named after the graph's input kind (``mfcc`` or ``audio``; batch, C, T)
float32 -- raw windows, Norm included -- and one output ``logits`` (batch, classes) float32. The batch
dimension is dynamic; all data is inline (no side file); ``gclf.chain`` (the chain's label) and ``gclf.form``
and ``gclf.frontend`` (what the file leaves out: the MFCC front-end) are stored as model metadata. What each form expresses, and what not: :mod:`gclf.backends.onnx.graph`.

onnxruntime's default session fuses QDQ patterns into integer kernels; on x86 without VNNI its u8s8 QGemm
saturates int16 pair sums (a documented onnxruntime limitation), so it can differ from the graph's own
semantics: :func:`measure` reports agreement with the graph run as written (QDQ fusion off) and with the
default session.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gclf.backends.onnx.graph import form_notes, onnx_model
from gclf.errors import GclfError

DEFAULT_OPSET = 18          # ReduceMean takes its axes as an input from 18 on
WIDE_OPSET = 21             # int16 QuantizeLinear / DequantizeLinear (fixed point wider than 8 bits)
MIN_OPSET, MAX_OPSET = 13, 23
MATCH_BATCHES = (1, 7)


def required_opset(ck: dict) -> tuple[int, str]:
    """(lowest opset, why) for a checkpoint: 13 (axes of Split/ReduceSum/Unsqueeze as inputs, per-axis
    DequantizeLinear), 21 for fixed point wider than 8 bits (int16 QuantizeLinear/DequantizeLinear)."""
    from gclf.checkpoint import quant_of

    q = quant_of(ck)
    if q is None:
        return MIN_OPSET, "Split, ReduceSum and Unsqueeze take their axes as inputs from opset 13"
    c = q.spec.config
    widths = [c.bits] + ([] if c.weights_only else [c.a_bits])
    if max(widths) > 8:
        return WIDE_OPSET, "fixed point wider than 8 bits needs int16 QuantizeLinear/DequantizeLinear"
    return MIN_OPSET, "per-axis DequantizeLinear"


def choose_opset(ck: dict, opset: int | None) -> int:
    """The opset to use for this checkpoint (default: 18, or 21 for fixed point wider than 8 bits)."""
    need, why = required_opset(ck)
    if opset is None:
        return max(DEFAULT_OPSET, need)
    if not need <= opset <= MAX_OPSET:
        raise GclfError(f"opset {opset} does not fit this checkpoint: use {need}..{MAX_OPSET} ({why})")
    return opset


def reference_model(ck: dict):
    """(name, x -> float64 logits) of the PyTorch model an ONNX file stands for: the float model, or the
    fake-quant model (the float64 twin of the integer reference; weights only: float activations)."""
    from gclf.checkpoint import build_float_model, quant_of

    from gclf.backends.bnfold import fold_batchnorm

    model, q = fold_batchnorm(build_float_model(ck)), quant_of(ck)
    name = "float model"
    if q is not None:
        from gclf.backends.fakequant import FakeQuantNet

        mode = "weights" if q.spec.weights_only else "full"
        model, name = FakeQuantNet(model, q.spec, mode).eval(), f"FakeQuantNet ({mode}, float64)"

    def logits(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(x).double().numpy()
    return name, logits


def ort_session(model: bytes | str | Path, qdq_fusion: bool = True):
    """A one-thread CPU onnxruntime session. ``qdq_fusion=False`` runs a QDQ graph as written: onnxruntime's
    default fuses QDQ patterns into integer kernels (QGemm u8s8), which on x86 without VNNI saturate int16
    pair sums (a documented onnxruntime limitation) and so can differ from the graph's own semantics."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if not qdq_fusion:
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
    src = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def ort_logits(sess, x: torch.Tensor | np.ndarray, batch: int = 1024) -> np.ndarray:
    """Logits (N, classes) float64 of windows ``x`` (N, C, T), fed to the session's own input."""
    x = np.asarray(x, dtype=np.float32)
    name = sess.get_inputs()[0].name
    outs = [sess.run(["logits"], {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float64)


def check_windows(ck: dict, windows: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """(windows to check on, whether they are real held-out windows); synthetic ones of the graph's input
    shape otherwise (MFCC-like coefficients, or audio-like samples)."""
    from gclf.checkpoint import graph_of

    if windows is not None and len(windows) >= max(MATCH_BATCHES):
        return windows.float(), True
    graph = graph_of(ck)
    c, t = graph.input_shape
    g = torch.Generator().manual_seed(0)
    if graph.input_kind == "mfcc":
        x = torch.randn(64, c, t, generator=g) * 8.0 + torch.linspace(-30.0, 10.0, c)[:, None]
        from gclf.checkpoint import int_input_frac

        frac = int_input_frac(ck)
        if frac is not None:                  # the integer front-end's output lies on its Q grid
            x = torch.round(x * 2.0 ** frac) * 2.0 ** -frac
        return x, False
    return torch.randn(64, c, t, generator=g) * 0.1, False


def _agreement(z: np.ndarray, ref: np.ndarray) -> dict:
    return {"argmax_agreement": float(np.mean(z.argmax(1) == ref.argmax(1))),
            "max_abs_logit_diff": float(np.abs(z - ref).max())}


def measure(ck: dict, data: bytes, x: torch.Tensor, real: bool) -> dict:
    """ONNX vs PyTorch at batch 1 and 7; for a fixed-point model, agreement with its reference on ``x``,
    with the graph run as written and with onnxruntime's default QDQ fusions."""
    from gclf.checkpoint import quant_of

    q = quant_of(ck)
    name, torch_logits = reference_model(ck)
    sess = ort_session(data, qdq_fusion=q is None)
    out = {"matches_pytorch": {f"batch{b}_max_abs": float(np.abs(ort_logits(sess, x[:b]) - torch_logits(x[:b])).max())
                               for b in MATCH_BATCHES}}
    if q is None:
        return out
    if q.spec.weights_only:
        ref = torch_logits(x)
    else:
        from gclf.backends.intref import IntegerReference
        from gclf.checkpoint import build_float_model

        name, ref = "IntegerReference", IntegerReference(build_float_model(ck), q.spec).logits(x)
    out["agreement"] = {"reference": name, "windows": len(x), "held_out": real,
                        **_agreement(ort_logits(sess, x), ref)}
    out["agreement_ort_default"] = _agreement(ort_logits(ort_session(data), x), ref)
    return out


def build_onnx(ck: dict, opset: int) -> tuple[object, list[str], str]:
    """(ModelProto, notes, form) for a checkpoint."""
    from gclf.checkpoint import build_float_model, chain_of, quant_of

    from gclf.backends.bnfold import fold_batchnorm, has_batchnorm

    model, q = build_float_model(ck), quant_of(ck)
    notes = []
    if has_batchnorm(model.graph):                       # a float checkpoint (quantize folds them already)
        model = fold_batchnorm(model)
        notes.append("batch norm folded into the convolution before it (gclf.backends.bnfold)")
    spec = q.spec if q is not None else None
    proto, form = onnx_model(model, spec, opset)
    return proto, [frontend_note(model), *form_notes(model, spec, chain_of(ck)), *notes], form


def frontend_note(model) -> str:
    """What the file does not cover: the MFCC front-end (and, for an int_mfcc model, the integer Norm)."""
    if model.graph.input_kind == "audio":
        return "the input is raw audio windows; nothing before the network is left out"
    if model.int_input_frac is None:
        return ("not covered: the front-end. The input is a window of MFCC frames computed on the host "
                "(librosa, float); the file holds no MFCC computation")
    return ("not covered: the front-end. The input is a window of the integer front-end's MFCC frames "
            f"(int32 Q{model.int_input_frac} dB as float); the MFCC computation from PCM is not in the file (it is "
            "in `gclf export-c`'s <prefix>frontend.c and gclf.frontend), and the Norm here is the float one, whose "
            "quantized output can differ by one LSB from the integer Norm of the integer reference and the C "
            "(gclf/frontend/norm.py)")


def export_onnx(ck: dict, path: str | Path, opset: int | None = None, windows: torch.Tensor | None = None) -> dict:
    """Export one checkpoint to ``path`` (atomically), check it, and measure it against PyTorch.

    ``windows``: real (held-out) windows to check on; without them, synthetic windows check the PyTorch match
    and the agreement figure is marked ``held_out: false``.
    """
    import onnx

    from gclf.checkpoint import chain_of
    from gclf.graph.chain import label
    from gclf.io import atomic_write

    opset = choose_opset(ck, opset)
    proto, notes, form = build_onnx(ck, opset)
    chain = label(chain_of(ck))
    onnx.helper.set_model_props(proto, {"gclf.chain": chain, "gclf.form": form, "gclf.frontend": notes[0]})
    onnx.checker.check_model(proto, full_check=True)          # a failure here is a bug: let it raise
    data = proto.SerializeToString()
    x, real = check_windows(ck, windows)
    result = measure(ck, data, x, real)
    path = atomic_write(path, lambda fh: fh.write(data))
    if not real:
        notes.append("checked on synthetic windows (no held-out features given): agreement not on real speech")
    return {"path": str(path), "opset": opset, "bytes": path.stat().st_size, "chain": chain,
            "form": form, **result, "notes": notes}


def export_name(ck_path: str | Path) -> str:
    """runs/model-q8/fold1.pt -> model-q8-fold1.onnx."""
    p = Path(ck_path).resolve()
    return f"{p.parent.name}-{p.stem}.onnx"
