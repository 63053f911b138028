"""Resumable training: the whole state of :func:`gclf.train.fit.fit` after an epoch, saved atomically, so a
killed run continues from its last saved epoch with the result of an uninterrupted one.

The state is a plain dict of tensors, numbers, strings and lists (read with ``torch.load(weights_only=True)``):
the model's and the best epoch's weights, the optimiser and learning-rate schedule, early-stopping counters,
the history, and every random generator training draws from: torch's global generator (initialisation,
dropout), the data-order ``torch.Generator`` (batches, masks, feature noise), the numpy ``Generator`` (window
offsets, augmented views), numpy's and Python's global generators, and CUDA's or MPS's when training there
(bit-exact resumption is tested on the CPU only).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gclf.errors import GclfError
from gclf.io import atomic_torch_save

STATE_VERSION = 1


@dataclass(frozen=True)
class Checkpointing:
    path: str           # the fold's state file
    every: int = 1      # save after every ``every`` epochs (and always after the last)


def _np_legacy_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_np_legacy_state(d: dict) -> None:
    np.random.set_state((d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["gauss"]))


def _py_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _accel_state() -> dict:
    """The CUDA / MPS generators (dropout draws from them when training there); empty on the CPU."""
    out = {}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        out["mps"] = mps.get_rng_state()
    return out


def _set_accel_state(d: dict) -> None:
    if "cuda" in d and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(d["cuda"])
    if "mps" in d and torch.backends.mps.is_available():
        torch.mps.set_rng_state(d["mps"])


def capture(*, epoch: int, done: bool, model, opt, sched, gen: torch.Generator, rng: np.random.Generator,
            best: float, best_state: dict, since: int, history: list[dict], ema: dict | None = None) -> dict:
    """The training state after ``epoch`` (``done``: early stopping or the last epoch ended the loop);
    ``ema``: the weight average's state (:class:`gclf.train.fit.WeightEMA`), when training keeps one."""
    return {"ema": ema, "gclf_resume": STATE_VERSION, "epoch": epoch, "done": done,
            "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "best_state": {k: v.detach().cpu().clone() for k, v in best_state.items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "best": float(best), "since": int(since), "history": [dict(r) for r in history],
            "rng": {"torch": torch.get_rng_state(), "data_order": gen.get_state(), "accelerator": _accel_state(),
                    "numpy_generator": rng.bit_generator.state, "numpy_global": _np_legacy_state(),
                    "python": _py_state()}}


def restore(state: dict, *, model, opt, sched, gen: torch.Generator, rng: np.random.Generator) -> dict:
    """Put ``state`` back into the objects of a fresh :func:`fit`; returns the loop's counters."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    r = state["rng"]
    torch.set_rng_state(r["torch"])
    _set_accel_state(r.get("accelerator") or {})
    gen.set_state(r["data_order"])
    rng.bit_generator.state = r["numpy_generator"]
    _set_np_legacy_state(r["numpy_global"])
    p = r["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    return {k: state[k] for k in ("epoch", "done", "best", "best_state", "since", "history")}


def save_state(path: str | Path, state: dict) -> Path:
    return atomic_torch_save(path, state)


def load_state(path: str | Path) -> dict | None:
    """The saved state at ``path``, or None when there is none yet. A damaged file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GclfError(f"{path}: unreadable training state ({exc.__class__.__name__}); delete it to restart "
                        "that fold") from None
    if not isinstance(state, dict) or state.get("gclf_resume") != STATE_VERSION:
        raise GclfError(f"{path}: not a gclf training state; delete it to restart that fold")
    return state
