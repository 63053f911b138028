"""What the benchmarks run: one *engine* per step or peer, each holding, per fold, a function that computes
P(female) of all the fold's held-out windows and one that runs a single window at batch 1.

gclf's own steps compute as their checkpoint does (:func:`gclf.backends.engines.prob_fn_for`: PyTorch, or the
numpy integer reference after a quantize step). Peers: ONNX Runtime on the exported float model, the
generated C (via ctypes), ONNX Runtime's ``quantize_dynamic`` int8 and PyTorch's dynamic int8, all on the
same float checkpoints. Every fold model is evaluated on its own held-out speakers only.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

# name -> (run folder suffix, kind); kind "gclf" computes as the checkpoint does
ENGINES = {
    "float": ("", "gclf"),
    "circulant": ("-c8", "gclf"),
    "pwl": ("-a", "gclf"),
    "circulant-pwl": ("-c8-a", "gclf"),
    "w8a8": ("-q8", "gclf"),
    "w4a8": ("-q4a8", "gclf"),
    "chain": ("-c8-a-q8", "gclf"),
    "onnxruntime": ("", "ort"),
    "ort-qdq": ("-q8", "ort-qdq"),
    "c": ("-c8-a-q8", "c"),
    "c-w8a8": ("-q8", "c"),
    "c-w4a8": ("-q4a8", "c"),
    "ort-int8": ("", "ort-int8"),
    "torch-dynamic-int8": ("", "torch-dynamic"),
}


@dataclass
class Fold:
    prob: Callable[[], np.ndarray]      # P(female) of every held-out window of the fold
    one: Callable[[], object]           # one window, batch 1
    ws: object                          # gclf.data.dataset.WindowSet of the fold's held-out speakers


@dataclass
class Engine:
    name: str
    label: str
    runtime: str
    chain: str
    source: str                         # "chain": computes as gclf's checkpoint; "peer": another runtime
    weight_bytes: int
    folds: list[Fold]
    notes: dict = field(default_factory=dict)
    _metrics: dict | None = None

    def evaluate(self) -> list[np.ndarray]:
        """The whole evaluation: every fold model on all its held-out windows."""
        return [f.prob() for f in self.folds]

    def metrics(self, probs: list[np.ndarray] | None = None) -> dict:
        """Utterance accuracy mean ± std over folds (held-out speakers), window accuracy mean."""
        from gclf.train.evaluate import metrics_from_probs, summarize_folds

        if probs is None and self._metrics is not None:
            return self._metrics
        probs = probs if probs is not None else self.evaluate()
        per = [metrics_from_probs(p, f.ws) for p, f in zip(probs, self.folds)]
        s = summarize_folds(per)
        self._metrics = {"accuracy_utterance": s["accuracy_utterance_mean"],
                         "accuracy_utterance_std": s["accuracy_utterance_std"],
                         "accuracy_window": s["accuracy_window_mean"], "folds": len(per),
                         "accuracy_over": f"mean over {len(per)} folds, each on its own held-out speakers",
                         "utterances": s["utterances"], "windows": int(sum(m["windows"] for m in per))}
        return self._metrics

    def info(self, measure: str, probs: list[np.ndarray] | None = None) -> dict:
        """``benchmark.extra_info`` for one measure ("batch1" or "evaluation"); gclf.report.table reads it."""
        m = self.metrics(probs)
        return {"step": self.name, "label": self.label, "runtime": self.runtime, "chain": self.chain,
                "source": self.source, "measure": measure, "threads": 1,
                "windows_timed": 1 if measure == "batch1" else m["windows"],
                "weight_bytes": self.weight_bytes, **m, **self.notes}


def softmax_female(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[:, 1] / e.sum(axis=1)


# ---- gclf's own steps -------------------------------------------------------------------------------
def gclf_engine(name: str, cks: list[dict], windows: list) -> Engine:
    """A step of the chain, computed as its checkpoint does (PyTorch float or numpy integer reference)."""
    from gclf.backends.engines import prob_fn_for
    from gclf.report.table import runtime_of, step_label, weight_bytes

    folds = []
    for ck, ws in zip(cks, windows):
        fn, x1 = prob_fn_for(ck), ws.x[:1].clone()
        folds.append(Fold(prob=lambda fn=fn, ws=ws: fn(ws.x), one=lambda fn=fn, x1=x1: fn(x1), ws=ws))
    scope = "class probabilities of one window: gclf's prob_fn_for (InputNorm, model, softmax)"
    return Engine(name, step_label(cks[0]["chain"]), runtime_of(cks[0]), step_label(cks[0]["chain"]), "chain",
                  weight_bytes(cks[0]), folds, {"scope": scope})


# ---- ONNX Runtime -----------------------------------------------------------------------------------
def ort_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_initializer_bytes(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    return int(sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer))


def export_float_onnx(ck: dict, ws, out: Path) -> Path:
    from gclf.backends.onnx.export import export_onnx

    export_onnx(ck, out, windows=ws.x)
    return out


def quantize_onnx_int8(src: Path, out: Path) -> Path:
    """ONNX Runtime's own dynamic int8 quantization (after quant_pre_process, which it needs here)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(out.stem + "-pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(src), str(pre))
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
    return out


def ort_engine(name: str, cks: list[dict], windows: list, tmp: Path, int8: bool) -> Engine:
    """ONNX Runtime (one thread, CPU) on the float export, on ORT's dynamic int8 of it, or (a fixed-point
    checkpoint) on gclf's own QDQ export of it (ORT's default QDQ fusions on)."""
    from gclf.checkpoint import chain_of
    from gclf.graph.chain import label as chain_label

    folds, paths = [], []
    qdq = chain_of(cks[0])[-1].kind == "quantize"
    for i, (ck, ws) in enumerate(zip(cks, windows), start=1):
        path = tmp / (f"qdq-fold{i}.onnx" if qdq else f"fold{i}.onnx")   # the float export: shared by two engines
        if not path.is_file():
            export_float_onnx(ck, ws, path)
        if int8:
            path = quantize_onnx_int8(path, tmp / f"fold{i}-int8.onnx")
        sess, x, x1 = ort_session(path), ws.x.numpy(), ws.x[:1].numpy().copy()
        paths.append(path)
        folds.append(Fold(prob=lambda s=sess, x=x: softmax_female(s.run(["logits"], {"mfcc": x})[0]),
                          one=lambda s=sess, x1=x1: softmax_female(s.run(["logits"], {"mfcc": x1})[0]), ws=ws))
    chain = chain_label(chain_of(cks[0])) if qdq else "float"
    label = ("ONNX Runtime dynamic int8 (float model)" if int8 else
             f"ONNX Runtime QDQ ({chain})" if qdq else "ONNX Runtime (float model)")
    notes = {"scope": "session.run of one window + softmax; whole evaluation: one run per fold",
             "weight_bytes_note": "bytes of the ONNX initializers (includes InputNorm's 320 B of constants)"}
    if int8:
        notes["quantization"] = "quant_pre_process, then quantize_dynamic(weight_type=QInt8)"
    if qdq:
        notes["quantization"] = "gclf.backends.onnx.export of the fixed-point checkpoint (QDQ), ORT fusions on"
    return Engine(name, label, "onnxruntime " + _ort_version() + " (1 thread)", chain, "peer",
                  onnx_initializer_bytes(paths[0]), folds, notes)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


# ---- PyTorch dynamic int8 ---------------------------------------------------------------------------
def torch_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` on every Linear (gclf's LSTM is two Linears: covered)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # torch.ao.quantization is deprecated
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8).eval()


def torch_dynamic_bytes(qm: torch.nn.Module) -> int:
    """int8 weights + float32 biases + scale/zero point of the quantized Linears, float32 of the rest."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    total = 4 * sum(p.numel() for p in qm.parameters())     # the convolutions stay float
    for mod in qm.modules():
        if isinstance(mod, QLinear):
            b = mod.bias()
            total += mod.weight().numel() + (4 * b.numel() if b is not None else 0) + 8
    return int(total)


def torch_dynamic_engine(name: str, cks: list[dict], windows: list) -> Engine:
    from gclf.checkpoint import build_float_model
    from gclf.train.evaluate import torch_prob_fn

    folds, models = [], []
    for ck, ws in zip(cks, windows):
        models.append(torch_dynamic(build_float_model(ck)))
        fn, x1 = torch_prob_fn(models[-1]), ws.x[:1].clone()
        folds.append(Fold(prob=lambda fn=fn, ws=ws: fn(ws.x), one=lambda fn=fn, x1=x1: fn(x1), ws=ws))
    notes = {"scope": "P(female) of one window (InputNorm, model, softmax)",
             "quantization": "torch.ao.quantization.quantize_dynamic({nn.Linear}, qint8): fc1-3 and the LSTM's "
                             "ih/hh Linears; convolutions stay float"}
    return Engine(name, "PyTorch dynamic int8 (float model)", f"PyTorch {torch.__version__.split('+')[0]} (1 thread)",
                  "float", "peer", torch_dynamic_bytes(models[0]), folds, notes)


def build_engine(name: str, runs: dict[str, Path], cache_root: Path, tmp: Path) -> Engine:
    """Build one engine from the chain's run folders (fold checkpoints and their held-out windows)."""
    from gclf.checkpoint import checkpoint_paths, load_checkpoint
    from gclf.data.pipeline import features_for_checkpoint, heldout_windows

    suffix, kind = ENGINES[name]
    cks = [load_checkpoint(p) for p in checkpoint_paths(runs[suffix])]
    utts = features_for_checkpoint(cks[0], cache_root)
    windows = [heldout_windows(ck, utts) for ck in cks]
    if kind == "gclf":
        return gclf_engine(name, cks, windows)
    if kind in ("ort", "ort-int8", "ort-qdq"):
        out = tmp / "onnx"
        out.mkdir(parents=True, exist_ok=True)
        return ort_engine(name, cks, windows, out, kind == "ort-int8")
    if kind == "torch-dynamic":
        return torch_dynamic_engine(name, cks, windows)
    from benchmarks.cinfer import c_engine

    return c_engine(name, cks, windows, tmp / name)
