"""The chain of steps a checkpoint went through, as typed steps, and the one label every output uses.

A chain starts with :class:`Train`; then, at most once each and in this order, :class:`Compress`,
:class:`Approx` and :class:`Quantize`. Compress and Approx change the float structure (rebuilt in order when a
checkpoint loads); Quantize records the fixed-point spec the integer backends run. :func:`label` names a
chain in error messages, manifests, ONNX metadata and the report alike. Dict forms: :mod:`gclf.graph.serial`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gclf.errors import GclfError
from gclf.graph.spec import QuantConfig, QuantSpec

ORDER = ("train", "compress", "approx", "quantize")


@dataclass(frozen=True)
class Train:
    config: dict = field(default_factory=dict)   # the TrainConfig it ran with
    epochs_run: int = 0
    kind = "train"


@dataclass(frozen=True)
class Compress:
    block: int
    targets: tuple[str, ...]                     # matrices made block-circulant ("fc1", "lstm.ih", ...)
    finetune_epochs: int = 0
    kind = "compress"


@dataclass(frozen=True)
class Approx:
    sigmoid: str
    tanh: str
    finetune_epochs: int = 0
    kind = "approx"


@dataclass(frozen=True)
class Quantize:
    config: QuantConfig
    spec: QuantSpec
    qat_epochs: int = 0
    kind = "quantize"


Step = Train | Compress | Approx | Quantize


def quant_step(chain: list[Step]) -> Quantize | None:
    """The quantize step of a chain, or None (a float model)."""
    q = [s for s in chain if isinstance(s, Quantize)]
    return q[-1] if q else None


def check_order(chain: list[Step], kind: str) -> None:
    """Refuse a step that would come after a later one (e.g. compress after quantize), or twice."""
    later = [s for s in chain if s.kind != "train" and ORDER.index(s.kind) >= ORDER.index(kind)]
    if later:
        raise GclfError(f"cannot {kind} a checkpoint whose chain is {label(chain)}: the order is compress, "
                        "approx, quantize (each once); start from an earlier checkpoint")


def step_label(s: Step) -> str:
    if isinstance(s, Compress):
        return f"circulant k={s.block}"
    if isinstance(s, Approx):
        return f"PWL {s.sigmoid}/{s.tanh}"
    if isinstance(s, Quantize):
        c = s.config
        text = f"W{c.bits} weights-only" if c.weights_only else f"W{c.bits}/A{c.a_bits}"
        if c.bias_bits and c.bias_bits != min(32, 2 * c.bits):
            text += f" (bias {c.bias_bits} bits)"                # non-default bias width
        if c.per_channel:
            text += " per-channel"
        if s.qat_epochs:
            text += f" QAT {s.qat_epochs}"
        return text
    return "float"


def label(chain: list[Step]) -> str:
    """A short label: "float", "W8/A8", "circulant k=8 > PWL plan/pwl16 > W8/A8"."""
    return " > ".join(step_label(s) for s in chain if not isinstance(s, Train)) or "float"
