"""`gclf quantize` per fold: calibrate on the fold's training speakers, quantize, optionally fine-tune (QAT),
and measure on its held-out speakers with the integer reference."""
from __future__ import annotations

import torch

from gclf.backends.fixed import weight_bytes_float
from gclf.checkpoint import build_float_model, chain_of, graph_of, make_checkpoint
from gclf.data.dataset import eval_windows, select
from gclf.data.features import FeatureConfig
from gclf.data.pipeline import heldout_or_none
from gclf.graph.chain import check_order
from gclf.graph.spec import QuantConfig
from gclf.quant.formats import packed_bytes
from gclf.steps.api import FixedPointModel, quantize
from gclf.steps.float_steps import finetune
from gclf.train.evaluate import evaluate, torch_prob_fn


def measure_quantized(fixed: FixedPointModel, test, classes, check_exact: bool = False) -> tuple[dict, dict]:
    """Accuracy of the quantized model on ``test`` (the integer reference, or weights-only fake-quant) and,
    from that same run, the overflow counts and (optionally) the fake-quant/integer mismatches."""
    if fixed.spec.weights_only:
        return evaluate(torch_prob_fn(fixed.fakequant()), test, classes), {}
    from gclf.backends.intref import IntegerReference

    ref = IntegerReference(fixed.model, fixed.spec)
    metrics = evaluate(ref.prob_fn(), test, classes)   # the overflow counts come from this run
    extra = {"overflows": dict(ref.overflows)}
    if check_exact:
        extra["bit_exact_mismatches"] = bit_exact_mismatches(fixed, test.x, ref)
    return metrics, extra


@torch.no_grad()
def bit_exact_mismatches(fixed: FixedPointModel, x: torch.Tensor, ref=None) -> int:
    """Windows whose fake-quant logits differ from the integer reference's (must be 0)."""
    ref = ref or fixed.reference()
    fq = fixed.fakequant().eval()(x).numpy()
    return int((ref.logits(x) != fq).any(axis=1).sum())


def weight_report(fixed: FixedPointModel) -> dict:
    q, w_sat = fixed.integer_weights()
    return {"weight_bytes_float": weight_bytes_float(fixed.model),
            "weight_bytes_quantized": sum(packed_bytes(w.ints.size, w.width) for w in q.values()),
            "weight_matrix_bytes": sum(packed_bytes(w.ints.size, w.width) for k, w in q.items() if k.endswith(".weight")),
            "bias_bytes": sum(packed_bytes(w.ints.size, w.width) for k, w in q.items() if k.endswith(".bias")),
            "weight_saturations": w_sat}


def quantize_one(ck: dict, utts, qcfg: QuantConfig, qat_epochs: int = 0, qat_lr: float = 5e-4,
                 seed: int = 0, check_exact: bool = True, device: str = "cpu") -> tuple[dict, dict]:
    """Quantize one fold checkpoint; returns (new checkpoint, report). A final model (no held-out speakers)
    is quantized the same way; its report has no accuracy (measure it with `gclf evaluate --data`) and its
    bit-exactness is checked on the calibration windows."""
    chain = chain_of(ck)
    check_order(chain, "quantize")
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    split, classes = ck["split"], graph_of(ck).classes
    model = build_float_model(ck)
    calib = eval_windows(select(utts, split["train_speakers"] + split["val_speakers"]), fcfg)
    # final.pt holds out no speaker: measured (overflows, fake-quant vs integer) on its own training windows,
    # which says nothing of accuracy; its accuracy figures are None (the folds' are the run's)
    held = heldout_or_none(ck, utts)
    test = held if held is not None else calib
    fixed = quantize(model, qcfg, calib.x)
    acc_float = evaluate(torch_prob_fn(model), test, classes)
    acc_ptq, extra = measure_quantized(fixed, test, classes, check_exact and qat_epochs == 0)
    report = {"accuracy_float": acc_float["accuracy_utterance"], "accuracy_float_window": acc_float["accuracy_window"],
              "accuracy_ptq": acc_ptq["accuracy_utterance"], "accuracy_ptq_window": acc_ptq["accuracy_window"]}
    final = acc_ptq
    model = fixed.model                 # batch norm folded (the model itself when it has none)
    if qat_epochs > 0:
        ft = finetune(model, ck, utts, qat_epochs, qat_lr, seed, forward=fixed.fakequant(), feature_noise=0.0,
                      device=device)
        report["views"] = ft["views"]
        fixed.qat_epochs = qat_epochs
        final, extra = measure_quantized(fixed, test, classes, check_exact)
    report.update({"accuracy_quantized": final["accuracy_utterance"],
                   "accuracy_quantized_window": final["accuracy_window"], **weight_report(fixed),
                   "acc_bits": fixed.spec.acc_bits, **extra})
    if held is None:
        report.update({k: None for k in report if k.startswith("accuracy")})
        final = {}
    new = make_checkpoint(model, fcfg, chain + [fixed.step()], split, ck.get("corpus"), {**final, "quantize": report})
    return new, report

