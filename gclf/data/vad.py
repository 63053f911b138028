"""Is there speech in a clip at all? A documented energy + spectral-flatness rule, used by `gclf predict` to
answer "no speech" instead of labelling silence or noise as a sex.

A 20-ms frame counts as *voice-like* when both hold:

- its RMS level is at least ``min_dbfs`` (default -70 dBFS: quieter is silence or near-silence), and
- its spectral flatness (geometric over arithmetic mean of the power spectrum, 0 = pure tones, ~0.56 =
  white noise) is at most ``max_flatness`` (default 0.3): speech is dominated by harmonics and formants.

A clip has speech when its voice-like frames add up to at least ``min_speech_seconds`` (default 0.15 s).
This is a rule, not a trained voice-activity detector: hum or music passes it, and so would coloured noise
flat enough; digital silence, hiss and white noise do not. Measured on the shared corpora (all files):
no LibriSpeech-251 (251), RAVDESS (720, some peaking at -40 dBFS) or Speech Commands "yes" (359) file is
called "no speech"; 5 of 2,500 FSDD digits are (quiet sub-second clips); 166 of the 314 Speech Commands
``_silence_`` background clips are (the others hold hum, running water and such).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeechConfig:
    frame_seconds: float = 0.02       # analysis frame (no overlap)
    min_dbfs: float = -70.0           # a frame quieter than this (RMS, dB re full scale 1.0) is silence
    max_flatness: float = 0.3         # a frame flatter than this is noise-like
    min_speech_seconds: float = 0.15  # a clip needs this much voice-like audio


def voice_frames(audio: np.ndarray, sample_rate: int, cfg: SpeechConfig = SpeechConfig()) -> np.ndarray:
    """Boolean per frame: loud enough and harmonic enough to be speech."""
    n = max(1, int(round(cfg.frame_seconds * sample_rate)))
    k = len(audio) // n
    if k == 0:
        return np.zeros(0, dtype=bool)
    frames = np.asarray(audio[:k * n], dtype=np.float64).reshape(k, n)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    loud = 20 * np.log10(np.maximum(rms, 1e-12)) >= cfg.min_dbfs
    power = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1))[:, 1:] ** 2 + 1e-20
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    return loud & (flatness <= cfg.max_flatness)


def speech_seconds(audio: np.ndarray, sample_rate: int, cfg: SpeechConfig = SpeechConfig()) -> float:
    """Seconds of voice-like frames in a clip."""
    return float(voice_frames(audio, sample_rate, cfg).sum() * cfg.frame_seconds)


def has_speech(audio: np.ndarray, sample_rate: int, cfg: SpeechConfig = SpeechConfig()) -> bool:
    return speech_seconds(audio, sample_rate, cfg) >= cfg.min_speech_seconds
