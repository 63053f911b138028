"""Deterministic test signals for the front-end (int16 PCM): synthetic speech and the edge cases a fixed-point
MFCC gets wrong first (silence, full-scale square, clipping, DC offset, 1-LSB noise, an impulse, a pure tone
(bands on the frame floor), a short clip), and lone 1-LSB samples (frames whose loudest band lies below the
frame floor's guard)."""
from __future__ import annotations

import numpy as np

from gclf.frontend.intref import pcm16


def speech(sex: str, seed: int, seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
    from gclf.data.synth import synthesize_voice

    return pcm16(synthesize_voice(sex, seconds, np.random.default_rng(seed), sample_rate))


def edge_cases(n: int = 16000) -> dict[str, np.ndarray]:
    t = np.arange(n) / 16000
    rng = np.random.default_rng(3)
    sq = np.where(np.sin(2 * np.pi * 110 * t) >= 0, 32767, -32768).astype(np.int16)
    voice = speech("F", 1, n / 16000).astype(np.int64)
    return {
        "silence": np.zeros(n, np.int16),
        "full_scale_square": sq,
        "clipped_speech": np.clip(voice * 20, -32768, 32767).astype(np.int16),
        "dc_offset": np.clip(voice + 12000, -32768, 32767).astype(np.int16),
        "dc_only": np.full(n, -32768, np.int16),
        "one_lsb_noise": rng.integers(-1, 2, n).astype(np.int16),
        "impulse": (np.arange(n) == n // 4).astype(np.int16) * np.int16(32767),
        "pure_tone": pcm16(0.3 * np.sin(2 * np.pi * 440 * t)),
        "short_clip": speech("M", 2)[:100],
    }


def lone_lsb(n: int = 16000, hop: int = 320, n_fft: int = 512) -> np.ndarray:
    """Zeros with single 1-LSB samples, some at the second sample of a frame's window (Q15 weight 1, a
    relative error of 20 % against the float window: outside the integer path's error bound vs the float
    mirror, so not among the edge cases, but bit-exact between the integer paths)."""
    pos = [3, 3 * hop - n_fft // 2 + 1, 9 * hop - n_fft // 2 + n_fft - 1, 20 * hop]
    return np.isin(np.arange(n), pos).astype(np.int16)
