"""How a checkpoint computes: the float model, or, after `gclf quantize`, the integer reference
(weights-only quantization: the float datapath with quantized weights)."""
from __future__ import annotations

from gclf.checkpoint import build_float_model
from gclf.train.evaluate import ProbFn, torch_prob_fn


def quant_step(ck: dict) -> dict | None:
    """The last quantize step of the chain, or None."""
    steps = [s for s in ck.get("chain", []) if s["step"] == "quantize"]
    return steps[-1] if steps else None


def prob_fn_for(ck: dict) -> ProbFn:
    """P(female) per window, computed the way this checkpoint's hardware would."""
    model = build_float_model(ck)
    q = quant_step(ck)
    if q is None:
        return torch_prob_fn(model)
    spec = q["spec"]
    if spec["weights_only"]:
        from gclf.quant.fakequant import FakeQuantNet

        return torch_prob_fn(FakeQuantNet(model, spec, "weights"))
    from gclf.quant.intref import IntegerReference

    return IntegerReference(model, spec).prob_fn()
