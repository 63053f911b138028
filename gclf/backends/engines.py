"""How a checkpoint computes: its chain's own arithmetic, or another backend chosen by name.

Engines: ``auto`` (what the chain defines: the float model; after `gclf quantize` the integer reference, or
the float datapath with quantized weights for a weights-only spec), ``float`` (the float model, whatever the
chain), ``int`` (the numpy integer reference), ``onnx`` (the checkpoint's ONNX graph in onnxruntime, run as
written) and ``c`` (the generated C, compiled and run). Each gives class probabilities per window.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from gclf.checkpoint import build_float_model, quant_of
from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.train.evaluate import ProbFn, torch_prob_fn

ENGINES = ("auto", "float", "int", "onnx", "c")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _fixed(ck: dict, engine: str):
    q = quant_of(ck)
    if q is None or q.spec.weights_only:
        raise GclfError(f"the {engine} engine runs a fixed-point model: quantize this checkpoint first "
                        "(`gclf quantize`, without --weights-only)")
    return q


def prob_fn_for(ck: dict, engine: str = "auto") -> ProbFn:
    """Class probabilities per window, computed by ``engine`` (see the module doc)."""
    if engine not in ENGINES:
        raise GclfError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    model = build_float_model(ck)
    q = quant_of(ck)
    if engine == "float" or (engine == "auto" and q is None):
        return torch_prob_fn(model)
    if engine == "auto" and q.spec.weights_only:
        from gclf.backends.fakequant import FakeQuantNet

        return torch_prob_fn(FakeQuantNet(model, q.spec, "weights"))
    if engine in ("auto", "int"):
        from gclf.backends.intref import IntegerReference

        return IntegerReference(model, _fixed(ck, engine).spec).prob_fn()
    if engine == "onnx":
        return _onnx_fn(ck)
    if model.int_input_frac is not None:
        return _c_pcm_fn(model, _fixed(ck, engine).spec, FeatureConfig.from_dict(ck["feature_config"]))
    return _c_fn(model, _fixed(ck, engine).spec)


def _onnx_fn(ck: dict) -> ProbFn:
    from gclf.backends.onnx.export import build_onnx, choose_opset, ort_logits, ort_session

    proto, _, _ = build_onnx(ck, choose_opset(ck, None))
    sess = ort_session(proto.SerializeToString(), qdq_fusion=quant_of(ck) is None)
    return lambda x: _softmax(ort_logits(sess, x))


def _c_pcm_fn(model, spec, fcfg) -> ProbFn:
    """An int_mfcc model's c engine: the network's C on windows, plus ``from_pcm`` (int16 PCM -> class
    probabilities per window) running the generated C from PCM (front-end, integer Norm, network), which
    :func:`gclf.predict.predict_file` calls."""
    from gclf.backends.c.build import find_cc
    from gclf.backends.intref import IntegerReference
    from gclf.frontend.pipeline import build_classifier_harness, run_classifier_c

    cc = find_cc()
    if cc is None:
        raise GclfError("the c engine needs a C compiler: install cc, gcc or clang, or set $CC")
    tmp = tempfile.TemporaryDirectory(prefix="gclf-engine-pcm-")
    exe = build_classifier_harness(tmp.name, cc, model, spec, fcfg)
    frac = IntegerReference(model, spec).logit_format.frac
    fn = _c_fn(model, spec)

    def from_pcm(pcm: np.ndarray) -> np.ndarray:
        from_pcm.tmp = tmp                                # keep the folder alive as long as the function
        z, _ = run_classifier_c(exe, pcm)
        return _softmax(z * 2.0 ** -frac)
    fn.from_pcm = from_pcm
    return fn


def _c_fn(model, spec) -> ProbFn:
    from gclf.backends.c.build import build_harness, find_cc, run_harness
    from gclf.backends.c.generate import generate_c
    from gclf.backends.intref import IntegerReference
    from gclf.io import atomic_text

    cc = find_cc()
    if cc is None:
        raise GclfError("the c engine needs a C compiler: install cc, gcc or clang, or set $CC")
    ref = IntegerReference(model, spec)
    tmp = tempfile.TemporaryDirectory(prefix="gclf-engine-")
    files, _ = generate_c(model, spec)
    for name, text in files.items():
        atomic_text(Path(tmp.name) / name, text)
    exe = build_harness(tmp.name, Path(tmp.name) / "gclf_main", cc)

    def fn(x: torch.Tensor) -> np.ndarray:
        fn.tmp = tmp                                    # keep the folder alive as long as the function
        z = run_harness(exe, ref.quantize_input(x)) * 2.0 ** -ref.logit_format.frac
        return _softmax(z)
    return fn
