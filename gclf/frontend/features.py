"""The integer front-end as a feature kind: ``FeatureConfig(kind="int_mfcc")`` computes the frames a network
is trained on with :func:`gclf.frontend.mfcc_int` (exactly what the device computes), as float32 dB."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from gclf.errors import GclfError
from gclf.frontend.config import FLOORS, FrontendConfig
from gclf.frontend.intref import mfcc_int, pcm16

FRONTENDS = {"librosa": ("mfcc", "librosa"), "numpy": ("mfcc", "numpy"),   # --frontend name ->
             "int": ("int_mfcc", "librosa"),                                  # (FeatureConfig.kind, .mfcc_impl)
             **{f"int-{name}": ("int_mfcc", "librosa") for name in FLOORS}}   # int-<floor>: that floor


def frontend_config(fcfg) -> FrontendConfig:
    """The front-end definition of a FeatureConfig (its MFCC fields and its named floor, ``fe_floor``; every
    other format at its default)."""
    floor = getattr(fcfg, "fe_floor", "frame")
    if floor not in FLOORS:
        raise GclfError(f"unknown front-end floor {floor!r}: choose one of {', '.join(FLOORS)}")
    return FrontendConfig(sample_rate=fcfg.sample_rate, n_fft=fcfg.n_fft, hop=fcfg.hop_length,
                          n_mels=fcfg.n_mels, n_mfcc=fcfg.n_mfcc, fmin=float(fcfg.fmin), fmax=float(fcfg.fmax),
                          **FLOORS[floor])


def input_frac_of(fcfg) -> int | None:
    """Fraction bits of a network's integer input when ``fcfg`` is the integer front-end (None otherwise): what
    ``GraphNet.int_input_frac`` is set to, so the integer paths normalise in integers."""
    return frontend_config(fcfg).out_frac if fcfg.kind == "int_mfcc" else None


def int_mfcc_frames(audio: np.ndarray, fcfg) -> np.ndarray:
    """Float audio in [-1, 1) -> int16 PCM -> integer MFCCs (n_mfcc, frames), returned as float32 dB."""
    cfg = frontend_config(fcfg)
    q, _ = mfcc_int(pcm16(audio), cfg)
    return (q.astype(np.float64) / (1 << cfg.out_frac)).astype(np.float32)


def with_frontend(fcfg, frontend: str):
    """``fcfg`` computed by the named front-end: librosa (float MFCC), numpy (the same, vectorised), int
    (the integer front-end with ``fcfg``'s floor) or int-<floor> (with that floor of ``FLOORS``)."""
    if frontend not in FRONTENDS:
        raise GclfError(f"unknown front-end {frontend!r}: choose one of {', '.join(FRONTENDS)}")
    if fcfg.kind == "audio":
        if frontend != "librosa":
            raise GclfError(f"--frontend {frontend} computes MFCCs; this architecture reads raw audio")
        return fcfg
    kind, impl = FRONTENDS[frontend]
    floor = frontend[4:] if frontend.startswith("int-") else fcfg.fe_floor
    return replace(fcfg, kind=kind, mfcc_impl=impl, fe_floor=floor)
