"""The integer front-end as a feature kind: ``FeatureConfig(kind="int_mfcc")`` computes the frames a network
is trained on with :func:`gclf.frontend.mfcc_int` (exactly what the device computes), as float32 dB."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from gclf.errors import GclfError
from gclf.frontend.config import FrontendConfig
from gclf.frontend.intref import mfcc_int, pcm16

FRONTENDS = {"librosa": ("mfcc", "librosa"), "numpy": ("mfcc", "numpy"),   # --frontend name ->
             "int": ("int_mfcc", "librosa")}                                  # (FeatureConfig.kind, .mfcc_impl)


def frontend_config(fcfg) -> FrontendConfig:
    """The front-end definition of a FeatureConfig (its MFCC fields; every format at its default)."""
    return FrontendConfig(sample_rate=fcfg.sample_rate, n_fft=fcfg.n_fft, hop=fcfg.hop_length,
                          n_mels=fcfg.n_mels, n_mfcc=fcfg.n_mfcc, fmin=float(fcfg.fmin), fmax=float(fcfg.fmax))


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
    """``fcfg`` computed by the named front-end: librosa (float MFCC), numpy (the same, vectorised) or int
    (the integer front-end)."""
    if frontend not in FRONTENDS:
        raise GclfError(f"unknown front-end {frontend!r}: choose one of {', '.join(FRONTENDS)}")
    if fcfg.kind == "audio":
        if frontend != "librosa":
            raise GclfError(f"--frontend {frontend} computes MFCCs; this architecture reads raw audio")
        return fcfg
    kind, impl = FRONTENDS[frontend]
    return replace(fcfg, kind=kind, mfcc_impl=impl)
