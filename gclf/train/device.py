"""Which device trains: ``auto`` takes CUDA, else Apple MPS, else the CPU; an explicit device that is not
present is a one-line error. Everything gclf measures is defined on the CPU (the README figures, the
integer paths); another device only trains faster, and its float results may differ in the last bits."""
from __future__ import annotations

from gclf.errors import GclfError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _available() -> dict[str, bool]:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": bool(mps and mps.is_available())}


def resolve_device(name: str = "auto", available: dict[str, bool] | None = None) -> str:
    """The torch device name to train on: ``auto`` -> cuda, else mps, else cpu. ``available`` (for tests):
    which devices are present, default torch's answer."""
    if name not in DEVICES:
        raise GclfError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    have = available if available is not None else _available()
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have.get(d))
    if not have.get(name):
        raise GclfError(f"device {name!r} is not available here (torch sees: "
                        f"{', '.join(d for d in ('cuda', 'mps', 'cpu') if have.get(d))}); use --device cpu or auto")
    return name
