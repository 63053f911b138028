"""Training-data augmentation on audio and on its power spectrum, and the MFCCs of an augmented clip.

Every transform is a pure function of its inputs and a ``numpy.random.Generator``: the same seed gives the
same augmented features. What is applied, and how strongly, is an :class:`AugmentConfig`
(``TrainConfig.augment``); the default applies nothing.

Source-filter perturbation works on the STFT power spectrum, split by cepstral liftering into a smooth
envelope (the vocal tract: formants) and a fine structure (the source: harmonics of F0). Stretching the
fine structure along frequency by ``pitch`` moves F0 and its harmonics and keeps the formants; stretching the
envelope by ``formant`` moves the formants (vocal-tract length) and keeps F0. The MFCCs are then computed
from the perturbed spectrum exactly as :func:`gclf.data.features.mfcc` computes them from audio (with both
factors 1 they are the same numbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gclf.data.features import FeatureConfig


@dataclass(frozen=True)
class AugmentConfig:
    copies: int = 0                                   # augmented versions of each training utterance (0: none)
    p_augmented: float = 0.5                          # chance an epoch uses one of them instead of the original
    with_original: bool = False                       # True: an epoch trains on every original, and besides it
                                                      #   (chance p_augmented) on one of its views
    pitch: tuple[float, float] | None = None          # F0 factor range (log-uniform), formants kept
    pitch_class: tuple = ()                           # ((class, lo, hi), ...): F0 factor range for the utterances
                                                      #   of a class, in place of ``pitch`` (e.g. raise male F0,
                                                      #   lower female F0: pitch alone no longer tells them apart)
    formant: tuple[float, float] | None = None        # formant (vocal-tract) factor range, F0 kept
    speed: tuple[float, float] | None = None          # resampling factor range: F0, formants and tempo together
    noise_snr: tuple[float, float] | None = None      # additive noise, SNR range in dB
    noise_dir: str | None = None                      # folder of noise clips (.flac/.wav); None: synthetic noise
    reverb: float = 0.0                               # chance of a synthetic room (RT60 0.2-0.8 s)
    bandlimit: float = 0.0                            # chance of a random band-pass (low cut 50-400 Hz, high 3-8 kHz)
    time_masks: int = 0                               # SpecAugment on windows: masked frame spans per window
    time_mask_frames: int = 10                        #   each up to this many frames
    coef_masks: int = 0                               #   masked coefficient spans per window
    coef_mask_width: int = 4                          #   each up to this many coefficients
    lifter: int = 30                                  # cepstral bins kept as envelope (< sample_rate / max F0)

    @property
    def audio_active(self) -> bool:
        return self.copies > 0 and any([self.pitch, self.pitch_class, self.formant, self.speed, self.noise_snr, self.reverb > 0,
                                        self.bandlimit > 0])

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        d = dict(d or {})
        for k in ("pitch", "formant", "speed", "noise_snr"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        if d.get("pitch_class"):
            d["pitch_class"] = tuple((str(c), float(lo), float(hi)) for c, lo, hi in d["pitch_class"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# The default recipe of `gclf train` (the library's TrainConfig applies no augmentation unless given one):
# three views of each training utterance with F0 moved by a factor 0.85..1.6, formants kept, one epoch in two.
# Chosen with RAVDESS as the development set; every alternative tried is in the README.
RECIPE = AugmentConfig(copies=3, pitch=(0.85, 1.6))


def _log_uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def power_spectrum(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """|STFT|^2, (n_fft // 2 + 1, frames): the spectrum the features start from. For the integer front-end
    (``kind="int_mfcc"``) that is its float mirror's (:mod:`gclf.frontend.floatref`) of the int16 PCM the
    device would read."""
    if cfg.kind == "int_mfcc":
        from gclf.frontend.features import frontend_config
        from gclf.frontend.floatref import power_frames
        from gclf.frontend.intref import pcm16

        return power_frames(pcm16(audio), frontend_config(cfg)).T
    import librosa

    return np.abs(librosa.stft(audio, n_fft=cfg.n_fft, hop_length=cfg.hop_length)) ** 2


def mfcc_from_power(power: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """MFCCs (n_mfcc, frames) float32 of a power spectrum, as :func:`gclf.data.features.mfcc` of audio (on one
    BLAS thread, as that one). For the integer front-end: its float mirror's mel bank, log floor and DCT,
    within 0.05 dB of the integer path (the mirror's tested bound), so augmented views of an ``int_mfcc``
    corpus are that front-end's features and not librosa's."""
    from gclf.data.features import one_blas_thread

    if cfg.kind == "int_mfcc":
        from gclf.frontend.features import frontend_config
        from gclf.frontend.floatref import mfcc_from_power as fe_mfcc_from_power

        with one_blas_thread():
            return fe_mfcc_from_power(power.T, frontend_config(cfg)).astype(np.float32)
    import librosa

    with one_blas_thread():
        mel = librosa.feature.melspectrogram(S=power, sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                             fmin=cfg.fmin, fmax=cfg.fmax)
        return librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=cfg.n_mfcc).astype(np.float32)


def _stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """y[k] = x[k / factor] along axis 0 (linear interpolation, edge value beyond the end)."""
    n = x.shape[0]
    pos = np.minimum(np.arange(n) / factor, n - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0)[:, None]
    return x[i0] * (1 - w) + x[i1] * w


def source_filter_shift(power: np.ndarray, pitch: float = 1.0, formant: float = 1.0, lifter: int = 30) -> np.ndarray:
    """Move F0 by ``pitch`` and the formants by ``formant``, independently, in a power spectrum (bins, frames)."""
    if pitch == 1.0 and formant == 1.0:
        return power
    log_p = np.log(np.maximum(power, 1e-12))
    n_fft = 2 * (power.shape[0] - 1)
    cep = np.fft.irfft(log_p, n=n_fft, axis=0)
    keep = np.zeros(n_fft)
    keep[:lifter] = 1.0
    keep[n_fft - lifter + 1:] = 1.0          # the cepstrum of a real spectrum is symmetric
    envelope = np.fft.rfft(cep * keep[:, None], axis=0).real
    fine = log_p - envelope
    return np.exp(_stretch(envelope, formant) + _stretch(fine, pitch))


def synthetic_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown Gaussian noise (equal chances), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(spec.size), 1.0)
    spec = spec / f ** (rng.integers(0, 3) / 2.0)    # slope 0, 1/2, 1 in amplitude: white, pink, brown
    x = np.fft.irfft(spec, n=n)
    return x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``audio`` plus ``noise`` (looped or cut to length) scaled to ``snr_db`` below the audio's power."""
    noise = np.resize(noise, audio.shape)
    p_sig, p_noise = float(np.mean(audio ** 2)), float(np.mean(noise ** 2))
    if p_noise == 0.0 or p_sig == 0.0:
        return audio
    return audio + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))


def room_impulse(sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise, RT60 0.2-0.8 s, unit energy."""
    rt60 = rng.uniform(0.2, 0.8)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    h = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.5)
    h[0] = 1.0
    return h / np.sqrt(np.sum(h ** 2))


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(audio, rir)[:audio.size]


def band_limit(audio: np.ndarray, sample_rate: int, low: float, high: float) -> np.ndarray:
    """Band-pass ``low``..``high`` Hz (4th-order Butterworth, zero phase); ``high`` at Nyquist: high-pass only."""
    from scipy.signal import butter, sosfiltfilt

    nyq = sample_rate / 2
    if high >= nyq * 0.99:
        sos = butter(4, low / nyq, btype="highpass", output="sos")
    else:
        sos = butter(4, [low / nyq, high / nyq], btype="bandpass", output="sos")
    return sosfiltfilt(sos, audio)


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (F0, formants and tempo together), by polyphase resampling."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    fr = Fraction(factor).limit_denominator(100)
    return resample_poly(audio, fr.denominator, fr.numerator)


def pitch_range(acfg: AugmentConfig, target: str | None) -> tuple[float, float] | None:
    """The F0 factor range for an utterance of class ``target``: its class's in ``pitch_class``, else ``pitch``."""
    for c, lo, hi in acfg.pitch_class:
        if c == target:
            return (lo, hi)
    return acfg.pitch


def augmented_mfcc(audio: np.ndarray, fcfg: FeatureConfig, acfg: AugmentConfig, rng: np.random.Generator,
                   noises: list[np.ndarray] | None = None, target: str | None = None) -> np.ndarray:
    """One random augmented version of a clip, as MFCCs (n_mfcc, frames), or for ``kind="audio"`` features the
    samples (1, n). Order: speed, room, band-limit, noise (audio), then source-filter perturbation (spectrum).
    ``target``: the clip's class (for ``acfg.pitch_class``)."""
    x = np.asarray(audio, dtype=np.float64)
    sr = fcfg.sample_rate
    if acfg.speed:
        x = speed(x, _log_uniform(rng, acfg.speed))
    if acfg.reverb > 0 and rng.random() < acfg.reverb:
        x = reverberate(x, room_impulse(sr, rng))
    if acfg.bandlimit > 0 and rng.random() < acfg.bandlimit:
        x = band_limit(x, sr, rng.uniform(50, 400), rng.uniform(3000, sr / 2))
    if acfg.noise_snr:
        noise = noises[rng.integers(len(noises))] if noises else synthetic_noise(x.size, rng)
        if noises and noise.size > x.size:             # a random stretch of a long noise clip
            start = rng.integers(noise.size - x.size + 1)
            noise = noise[start:start + x.size]
        x = add_noise(x, noise, rng.uniform(*acfg.noise_snr))
    if fcfg.kind == "audio":                           # a network on raw samples: the audio itself
        if acfg.pitch or acfg.pitch_class or acfg.formant:
            from gclf.errors import GclfError

            raise GclfError("pitch and formant perturbation work on MFCC features; a raw-audio network takes "
                            "speed, noise, reverb and band-limit augmentation")
        return x.astype(np.float32)[None, :]
    power = power_spectrum(x.astype(np.float32), fcfg)
    prange = pitch_range(acfg, target)
    pitch = _log_uniform(rng, prange) if prange else 1.0
    formant = _log_uniform(rng, acfg.formant) if acfg.formant else 1.0
    return mfcc_from_power(source_filter_shift(power, pitch, formant, acfg.lifter), fcfg)


def load_noises(noise_dir: str | Path | None, sample_rate: int) -> list[np.ndarray]:
    """Every readable clip of a folder (recursively), as float64 at ``sample_rate``; [] for None."""
    if noise_dir is None:
        return []
    from gclf.data.corpus import AUDIO_SUFFIXES, load_audio
    from gclf.errors import GclfError

    root = Path(noise_dir)
    if not root.is_dir():
        raise GclfError(f"noise folder does not exist: {root}")
    out = []
    for p in sorted(q for q in root.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES):
        a = load_audio(p, sample_rate).astype(np.float64)
        if np.any(a):
            out.append(a)
    if not out:
        raise GclfError(f"no usable noise clip in {root}")
    return out
