"""The float64 mirror of the integer front-end: the same definition (window, FFT, mel, log, floor, DCT)
without the integer formats. Used for training speed and as the reference the integer path is held to."""
from __future__ import annotations

import numpy as np

from gclf.frontend.config import DB_PER_LOG2, FrontendConfig, dct_matrix, hann, mel_weights, tables


def power_frames(pcm: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """PCM int16 (or float audio in int16 units) -> power spectrum (frames, n_fft // 2 + 1) float64: the
    front-end's framing (centre zero padding), window and FFT, in full-scale units (PCM / 32768)."""
    x = np.asarray(pcm, dtype=np.float64) / 32768.0
    half = cfg.n_fft // 2
    x = np.concatenate([np.zeros(half), x, np.zeros(half)])
    n_frames = cfg.n_frames(x.size - 2 * half)
    idx = np.arange(n_frames)[:, None] * cfg.hop + np.arange(cfg.n_fft)[None, :]
    spec = np.fft.rfft(x[idx] * hann(cfg.n_fft), axis=1)
    return spec.real ** 2 + spec.imag ** 2


def mfcc_from_power(power: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """Power spectrum (frames, n_fft // 2 + 1) -> MFCCs (n_mfcc, frames) float64 in dB: the front-end's mel
    bank, log, floor and DCT (so a perturbed spectrum, e.g. a training augmentation, gets the same features)."""
    mel = np.asarray(power, dtype=np.float64) @ mel_weights(cfg).T
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(mel)
    if cfg.floor_mode == "frame":
        db = np.maximum(db, np.maximum(db.max(axis=1, keepdims=True) - cfg.top_db, cfg.min_db))
    elif cfg.floor_mode == "running":              # peak[t] = max(loud[t], peak[t-1] - decay, min_db)
        decay = tables(cfg).decay_q / (1 << cfg.log_frac) * DB_PER_LOG2   # decay_db as the integer path has it
        loud = np.maximum(db.max(axis=1), cfg.min_db) if db.size else np.zeros(0)
        i = np.arange(loud.size)
        peak = np.maximum.accumulate(loud + decay * i) - decay * i if loud.size else loud
        db = np.maximum(db, np.maximum(peak - cfg.top_db, cfg.min_db)[:, None])
    else:
        db = np.maximum(db, cfg.floor_db)
    return (db @ dct_matrix(cfg).T).T


def mfcc_float(pcm: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """PCM int16 (or float audio already scaled to int16 units) -> MFCCs (n_mfcc, frames) float64 in dB."""
    return mfcc_from_power(power_frames(pcm, cfg), cfg)


def float_of_int(q: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> np.ndarray:
    """The integer MFCCs as float dB (q / 2^out_frac)."""
    return np.asarray(q, dtype=np.float64) / (1 << cfg.out_frac)


__all__ = ["power_frames", "mfcc_from_power", "mfcc_float", "float_of_int", "DB_PER_LOG2"]
