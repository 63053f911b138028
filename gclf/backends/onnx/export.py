"""ONNX export of a checkpoint: the float model, and the post-processed chain wherever ONNX can express it.

Every file has one input ``mfcc`` (batch, 40, frames) float32 -- raw MFCC windows, InputNorm included -- and
one output ``logits`` (batch, 2) float32. The batch dimension is dynamic; all data is inline (no side file);
the exporter's per-node metadata (stack traces with local paths) is dropped; ``gclf.chain`` and
``gclf.form`` are stored as model metadata.

**No quantize step** (float, compress, approx) -- form ``float``: ``torch.onnx.export`` (dynamo) of a copy
of the float model in which

* each BlockCirculantLinear is *materialised* as a dense nn.Linear holding ``dense_weight()``. ONNX has DFT
  but no practical rfft/irfft pair for the per-block circular convolution, so the file stores the dense
  matrix: the k-fold weight saving of the checkpoint does not carry into ONNX (same arithmetic, to rounding);
* an approximate sigmoid/tanh (hard, plan, pwlN, lutN) is :class:`SegmentsModule`: the same float values as
  ``gclf.approx.schemes`` in Abs, GreaterOrEqual, ReduceSum, GatherND, Mul/Add, Where. ``Approx.float`` itself uses
  ``torch.bucketize``, which the exporter decomposes into a binary search (c8a: 190 s to export, not 15 s).

The LSTM is unrolled over its 5 steps (MatMul/Gemm, Split, Mul, Add); ONNX's LSTM op is not used.

**Quantize step** -- form ``qdq``: a graph built with onnx.helper (:class:`FixedGraph`) that computes exactly
what :class:`gclf.quant.intref.IntegerReference` computes, in standard ops:

* weights: int8 initializers (int16 above 8 bits) -> DequantizeLinear, scale 2^-frac per tensor or per output
  channel, zero point 0; circulant layers materialised as the dense integer matrix the reference multiplies;
  biases: int32 -> DequantizeLinear at the accumulator's scale (the LSTM's two biases folded, as in the
  spec). That is the QDQ convention, and onnxruntime's MatMul+Add -> QGemm fusion assumes it without
  checking: a bias at its own coarser scale gave wrong results there (4-bit per-channel: 53 % argmax);
* activations: QuantizeLinear -> DequantizeLinear at every site of the spec (input, conv1, conv2, gates,
  cell, hidden, fc1..fcN); a format narrower than its container (int8/int16) saturates by a Clip first.
  MaxPool runs before conv2's requantization (the same values: requantization is monotone), because
  onnxruntime's QDQ propagation across MaxPool builds an invalid QuantizeLinear at opset >= 21;
* rounding: QuantizeLinear rounds half to even. A requantized value is an exact multiple of its
  accumulator's LSB, so adding half that LSB first (an Add of a constant; times Sign for half_away; minus
  half an output LSB for floor) reproduces the spec's rounding exactly. The input is rounded in float64
  (Floor/Round) right after InputNorm, which runs in float64 as in the reference's front-end;
* sigmoid/tanh: gclf's integer tables are no ONNX op, but on an act_bits-bit input they are a 2^act_bits
  entry table: QuantizeLinear's integer output indexes a Gather in the exact integer outputs, then
  DequantizeLinear;
* not expressed: integer arithmetic itself (ONNX multiplies and adds the dequantized values in float32, exact
  while every accumulator stays below 2^24 LSB: 8-bit specs; wider ones are measured), the accumulator
  width, and the saturation counters.

onnxruntime's default session fuses QDQ patterns into integer kernels; on x86 without VNNI its u8s8 QGemm
saturates int16 pair sums (a documented onnxruntime limitation), so it can differ from the graph's own
semantics: :func:`measure` reports agreement with the graph run as written (QDQ fusion off) and with the
default session.

**Quantize step, weights only** -- form ``weights-qdq``: the same builder with integer weights and float
activations (sigmoid/tanh as elementwise ops), compared with the float64 fake-quant model.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from gclf.errors import GclfError
from gclf.backends.onnx.fixed import fixed_onnx

DEFAULT_OPSET = 18          # the dynamo exporter's native opset
WIDE_OPSET = 21             # int16 QuantizeLinear / DequantizeLinear (fixed point wider than 8 bits)
MIN_OPSET, MAX_OPSET = 13, 23
MATCH_BATCHES = (1, 7)


class SegmentsModule(nn.Module):
    """gclf.approx.schemes's float piecewise-linear / table evaluation, in ops the ONNX exporter maps one to one.

    Same values as ``Approx.float`` (segment index by counting breakpoints instead of bucketize; the
    straight-through term of lut schemes adds exactly 0 at inference)."""

    def __init__(self, approx):
        super().__init__()
        seg = approx.spec
        self.sigmoid = approx.func == "sigmoid"
        self.end, self.centre, self.step = float(seg.end), float(seg.centre), seg.step
        self.register_buffer("starts", torch.tensor([float(s) for s in seg.starts]))
        self.register_buffer("values", torch.tensor(seg.values, dtype=torch.float32))
        self.register_buffer("slopes", torch.tensor(seg.slopes, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.abs(x)
        if len(self.starts) == 1:                                 # one segment (hard): no index needed
            y = self.values[0] + self.slopes[0] * (a - self.starts[0])
        else:
            k = (a.unsqueeze(-1) >= self.starts[1:]).sum(-1)      # = bucketize(a, starts, right=True) - 1
            y = self.values[k] + self.slopes[k] * (a - self.starts[k])
        y = torch.where(a >= self.end, torch.ones_like(y), y)
        if self.step:
            y = torch.where(a == 0, torch.full_like(y, self.centre), y)
        neg = x < 0
        return torch.where(neg, 1.0 - y, y) if self.sigmoid else torch.where(neg, -y, y)


def export_copy(model: nn.Module) -> nn.Module:
    """A copy of a float GenderNet that the exporter handles: dense circulant layers, exportable sigmoid/tanh."""
    from gclf.approx.schemes import get_approx
    from gclf.circulant.layer import BlockCirculantLinear

    m = copy.deepcopy(model).eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, BlockCirculantLinear):
            dense = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
            with torch.no_grad():
                dense.weight.copy_(mod.dense_weight())
                if mod.bias is not None:
                    dense.bias.copy_(mod.bias)
            parent, _, child = name.rpartition(".")
            setattr(m.get_submodule(parent), child, dense)
    lstm = m.lstm
    for attr, func, scheme in (("_sigmoid", "sigmoid", lstm.sigmoid_name), ("_tanh", "tanh", lstm.tanh_name)):
        ap = get_approx(scheme, func)
        if ap.spec is not None:
            setattr(lstm, attr, SegmentsModule(ap))
    return m


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress on stdout (it would corrupt --json) and warns about torchvision."""
    import warnings

    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def float_onnx(model: nn.Module, opset: int = DEFAULT_OPSET):
    """The float model as an ONNX ModelProto (dynamo exporter, dynamic batch, no external data)."""
    m = export_copy(model)
    example = torch.randn(2, m.cfg.n_mfcc, m.cfg.n_frames, generator=torch.Generator().manual_seed(0))
    with _quiet_exporter():            # an example batch of 2: with batch 1 the exporter fixes the batch
        prog = torch.onnx.export(m, (example,), None, dynamo=True, external_data=False, opset_version=opset,
                                 input_names=["mfcc"], output_names=["logits"], verbose=False,
                                 dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return prog.model_proto


FLOAT_NOTES = [
    "float datapath exported with torch.onnx.export (dynamo); InputNorm (cepstral mean + scaling) included",
    "LSTM unrolled over its steps (MatMul/Gemm, Split, Mul, Add); ONNX's LSTM op is not used",
]


def _float_notes(ck: dict) -> list[str]:
    notes = list(FLOAT_NOTES)
    for step in ck.get("chain", []):
        if step["step"] == "compress":
            notes.append(f"block-circulant layers (block {step['block']}: {', '.join(step['targets'])}) are "
                         "materialised as dense matrices: ONNX has no practical rfft/irfft path, so these layers store "
                         f"{step['block']}x more weights than in the checkpoint; same arithmetic to float rounding")
        if step["step"] == "approx":
            notes.append(f"sigmoid={step['sigmoid']}, tanh={step['tanh']} expressed exactly as elementwise ops "
                         "(Abs, GreaterOrEqual, ReduceSum, GatherND of the segment table, Mul/Add, Where)")
    return notes


def _strip_metadata(proto) -> None:
    """Drop the exporter's per-node metadata (stack traces with local paths, FX names): about half the
    file. Subgraphs do not occur in these graphs."""
    g = proto.graph
    for item in (*g.node, *g.input, *g.output, *g.value_info, *g.initializer):
        del item.metadata_props[:]
    for node in g.node:
        node.doc_string = ""
    del proto.metadata_props[:]


def required_opset(ck: dict) -> tuple[int, str]:
    """(lowest opset, why) for a checkpoint: the float exporter cannot convert below its native 18 here
    (onnx's version converter fails on ReduceMean's axes); int16 QDQ needs 21; per-axis QDQ needs 13."""
    from gclf.inference import quant_step

    q = quant_step(ck)
    if q is None:
        return DEFAULT_OPSET, "the float exporter's graph does not convert below opset 18"
    widths = [q["spec"]["bits"]] + ([] if q["spec"]["weights_only"] else [q["spec"]["act_bits"]])
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
    from gclf.checkpoint import build_float_model
    from gclf.inference import quant_step

    model, q = build_float_model(ck), quant_step(ck)
    name = "float model"
    if q is not None:
        from gclf.quant.fakequant import FakeQuantNet

        mode = "weights" if q["spec"]["weights_only"] else "full"
        model, name = FakeQuantNet(model, q["spec"], mode).eval(), f"FakeQuantNet ({mode}, float64)"

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
    x = np.asarray(x, dtype=np.float32)
    outs = [sess.run(["logits"], {"mfcc": x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float64)


def check_windows(ck: dict, windows: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """(windows to check on, whether they are real held-out windows); synthetic MFCC-like ones otherwise."""
    if windows is not None and len(windows) >= max(MATCH_BATCHES):
        return windows.float(), True
    cfg = ck["model_config"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, cfg["n_mfcc"], cfg["n_frames"], generator=g) * 8.0
    return x + torch.linspace(-30.0, 10.0, cfg["n_mfcc"])[:, None], False


def _agreement(z: np.ndarray, ref: np.ndarray) -> dict:
    return {"argmax_agreement": float(np.mean(z.argmax(1) == ref.argmax(1))),
            "max_abs_logit_diff": float(np.abs(z - ref).max())}


def measure(ck: dict, data: bytes, x: torch.Tensor, real: bool) -> dict:
    """ONNX vs PyTorch at batch 1 and 7; for a fixed-point model, agreement with its reference on ``x``,
    with the graph run as written and with onnxruntime's default QDQ fusions."""
    from gclf.inference import quant_step

    q = quant_step(ck)
    name, torch_logits = reference_model(ck)
    sess = ort_session(data, qdq_fusion=q is None)
    out = {"matches_pytorch": {f"batch{b}_max_abs": float(np.abs(ort_logits(sess, x[:b]) - torch_logits(x[:b])).max())
                               for b in MATCH_BATCHES}}
    if q is None:
        return out
    if q["spec"]["weights_only"]:
        ref = torch_logits(x)
    else:
        from gclf.checkpoint import build_float_model
        from gclf.quant.intref import IntegerReference

        name, ref = "IntegerReference", IntegerReference(build_float_model(ck), q["spec"]).logits(x)
    out["agreement"] = {"reference": name, "windows": len(x), "held_out": real,
                        **_agreement(ort_logits(sess, x), ref)}
    out["agreement_ort_default"] = _agreement(ort_logits(ort_session(data), x), ref)
    return out


def build_onnx(ck: dict, opset: int) -> tuple[object, list[str], str]:
    """(ModelProto, notes, form) for a checkpoint: float export, or the fixed-point graph."""
    from gclf.checkpoint import build_float_model
    from gclf.inference import quant_step

    model = build_float_model(ck)
    q = quant_step(ck)
    if q is None:
        proto = float_onnx(model, opset)
        _strip_metadata(proto)
        return proto, _float_notes(ck), "float"
    proto, notes = fixed_onnx(model, q["spec"], opset, ck["chain"])
    return proto, notes, "weights-qdq" if q["spec"]["weights_only"] else "qdq"


def export_onnx(ck: dict, path: str | Path, opset: int | None = None, windows: torch.Tensor | None = None) -> dict:
    """Export one checkpoint to ``path`` (atomically), check it, and measure it against PyTorch.

    ``windows``: real (held-out) MFCC windows to check on; without them, synthetic windows check the
    PyTorch match and the agreement figure is marked ``held_out: false``.
    """
    import onnx

    from gclf.chain import describe_chain
    from gclf.io import atomic_write

    opset = choose_opset(ck, opset)
    proto, notes, form = build_onnx(ck, opset)
    got = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if got != opset:  # the exporter falls back to its own opset when conversion fails
        raise GclfError(f"the exporter produced opset {got}, not {opset}: pass --opset {got}")
    onnx.helper.set_model_props(proto, {"gclf.chain": describe_chain(ck["chain"]), "gclf.form": form})
    onnx.checker.check_model(proto, full_check=True)          # a failure here is a bug: let it raise
    data = proto.SerializeToString()
    x, real = check_windows(ck, windows)
    result = measure(ck, data, x, real)
    path = atomic_write(path, lambda fh: fh.write(data))
    if not real:
        notes.append("checked on synthetic windows (no held-out features given): agreement not on real speech")
    return {"path": str(path), "opset": opset, "bytes": path.stat().st_size, "chain": describe_chain(ck["chain"]),
            "form": form, **result, "notes": notes}


def export_name(ck_path: str | Path) -> str:
    """runs/model-q8/fold1.pt -> model-q8-fold1.onnx."""
    p = Path(ck_path).resolve()
    return f"{p.parent.name}-{p.stem}.onnx"

# ---- the fixed-point graph -------------------------------------------------------------------------------
