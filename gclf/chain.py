"""The chain of post-processing steps: how each recorded step changes a model's structure.

Steps are applied in order when a checkpoint is rebuilt; the weights that follow belong to the final
structure. Quantization does not change the float structure: it is applied by :mod:`gclf.quant`.
"""
from __future__ import annotations

from gclf.errors import GclfError
from gclf.model import GenderNet

KNOWN_STEPS = ("train", "compress", "approx", "quantize")


def apply_structure(model: GenderNet, step: dict) -> None:
    """Apply the structural part of one chain step to ``model`` in place."""
    kind = step.get("step")
    if kind in ("train", "quantize"):
        return
    if kind == "approx":
        model.lstm.set_activations(step["sigmoid"], step["tanh"])
        return
    if kind == "compress":
        from gclf.circulant.layer import compress_model

        compress_model(model, step["block"], step["targets"])
        return
    raise GclfError(f"unknown chain step {kind!r}: known steps are {', '.join(KNOWN_STEPS)}")


def describe_chain(chain: list[dict]) -> str:
    """A short human label such as ``float > compress(8) > approx(plan,pwl16) > quantize(8)``."""
    parts = []
    for s in chain:
        k = s["step"]
        if k == "train":
            parts.append("float")
        elif k == "compress":
            parts.append(f"compress({s['block']})")
        elif k == "approx":
            parts.append(f"approx({s['sigmoid']},{s['tanh']})")
        elif k == "quantize":
            parts.append(f"quantize({s['bits']}{'w' if s.get('weights_only') else ''})")
    return " > ".join(parts)
