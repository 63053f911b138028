"""`gclf quantize` as a library call: per fold checkpoint, calibrate on its training speakers, quantize,
optionally fine-tune (QAT), and measure on its held-out speakers with the integer reference."""
from __future__ import annotations

from dataclasses import replace

import torch

from gclf.checkpoint import build_float_model, make_checkpoint
from gclf.data.dataset import eval_windows, select
from gclf.train.evaluate import evaluate, torch_prob_fn
from gclf.data.features import FeatureConfig
from gclf.train.cv import heldout_windows
from gclf.train.fit import TrainConfig, fit
from gclf.quant.calibrate import integer_weights, make_spec, observe_ranges
from gclf.quant.fakequant import FakeQuantNet
from gclf.quant.spec import QuantConfig, packed_bytes, weight_bytes_float


def measure_quantized(model, spec: dict, test, check_exact: bool = False) -> tuple[dict, dict]:
    """Accuracy of the quantized model on ``test`` (the integer reference, or weights-only fake-quant) and,
    from that same run, the overflow counts and (optionally) the fake-quant/integer mismatches."""
    if spec["weights_only"]:
        return evaluate(torch_prob_fn(FakeQuantNet(model, spec, "weights")), test), {}
    from gclf.quant.intref import IntegerReference

    ref = IntegerReference(model, spec)
    metrics = evaluate(ref.prob_fn(), test)
    extra = {"overflows": dict(ref.overflows)}
    if check_exact:
        extra["bit_exact_mismatches"] = bit_exact_mismatches(model, spec, test.x, ref)
    return metrics, extra


@torch.no_grad()
def bit_exact_mismatches(model, spec: dict, x: torch.Tensor, ref=None) -> int:
    """Windows whose fake-quant logits differ from the integer reference's (must be 0)."""
    from gclf.quant.intref import IntegerReference

    ref = ref or IntegerReference(model, spec)
    fq = FakeQuantNet(model, spec, "full").eval()(x).numpy()
    return int((ref.logits(x) != fq).any(axis=1).sum())


def quantize_one(ck: dict, utts, qcfg: QuantConfig, qat_epochs: int = 0, qat_lr: float = 5e-4,
                 seed: int = 0, check_exact: bool = True, log=None) -> tuple[dict, dict]:
    """Quantize one fold checkpoint; returns (new checkpoint, report)."""
    from gclf.post import check_order

    check_order(ck, "quantize")
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    split = ck["split"]
    model = build_float_model(ck)
    calib = select(utts, split["train_speakers"] + split["val_speakers"])
    ws_calib = eval_windows(calib, fcfg)
    test = heldout_windows(ck, utts)
    acc_float = evaluate(torch_prob_fn(model), test)
    ranges = observe_ranges(model, ws_calib.x) if not qcfg.weights_only else None
    spec = make_spec(model, ranges, qcfg)
    acc_ptq, extra = measure_quantized(model, spec, test, check_exact and qat_epochs == 0)
    report = {"accuracy_float": acc_float["accuracy_utterance"], "accuracy_float_window": acc_float["accuracy_window"],
              "accuracy_ptq": acc_ptq["accuracy_utterance"], "accuracy_ptq_window": acc_ptq["accuracy_window"]}
    final = acc_ptq
    if qat_epochs > 0:
        torch.manual_seed(seed)
        tcfg = replace(TrainConfig(), epochs=qat_epochs, lr=qat_lr, patience=max(3, qat_epochs // 2),
                       feature_noise=0.0)
        net = FakeQuantNet(model, spec, "weights" if qcfg.weights_only else "full")
        fit(model, select(utts, split["train_speakers"]), select(utts, split["val_speakers"]), fcfg, tcfg,
            log=log, seed=seed, forward=net)
        final, extra = measure_quantized(model, spec, test, check_exact)
    q, w_sat = integer_weights(model, spec)
    report.update({"accuracy_quantized": final["accuracy_utterance"],
                   "accuracy_quantized_window": final["accuracy_window"],
                   "weight_bytes_float": weight_bytes_float(model),
                   "weight_bytes_quantized": sum(packed_bytes(w.ints.size, w.width) for w in q.values()),
                   "weight_matrix_bytes": sum(packed_bytes(w.ints.size, w.width) for k, w in q.items()
                                              if k.endswith(".weight")),
                   "bias_bytes": sum(packed_bytes(w.ints.size, w.width) for k, w in q.items() if k.endswith(".bias")),
                   "weight_saturations": w_sat, "acc_bits": spec["acc_bits"], **extra})
    step = {"step": "quantize", "bits": qcfg.bits, "act_bits": qcfg.a_bits, "weights_only": qcfg.weights_only,
            "qat_epochs": qat_epochs, "spec": spec}
    new = make_checkpoint(model, fcfg, ck["chain"] + [step], split, ck.get("corpus"),
                          {**final, "quantize": report})
    return new, report
