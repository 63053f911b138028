"""Synthetic LibriSpeech-layout corpus of male and female source-filter voices, written as FLAC.

Each utterance is a glottal pulse train (Rosenberg flow pulses, differentiated for lip radiation) with a
per-speaker mean F0, intonation, jitter, shimmer and vibrato, plus aspiration noise; it is shaped by
syllable-like envelopes with pauses, sent through a cascade of four formant resonators whose frequencies
glide between vowel targets and are scaled by the speaker's vocal-tract length factor, mixed with
fricative noise bursts, band-limited by a per-speaker "microphone", and buried in coloured background
noise at a random SNR and gain. F0 and formant scale depend on sex but their ranges overlap, so the task
is learnable without being trivial. Everything is drawn from ``np.random.default_rng([seed, speaker])``:
the same config writes byte-identical files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from gclf.errors import GclfError
from gclf.io import atomic_text, atomic_write

SPEAKER_BASE = 1000   # speaker ids are SPEAKER_BASE + index; F on even indices, M on odd ones
CHAPTER_BASE = 10000  # one chapter per speaker: CHAPTER_BASE + index
# F1-F4 (Hz) of ten American English vowels for an adult male tract (Peterson & Barney 1952; F4 typical).
_VOWELS = np.array([[270, 2290, 3010, 3500], [390, 1990, 2550, 3500], [530, 1840, 2480, 3500],
                    [660, 1720, 2410, 3500], [730, 1090, 2440, 3400], [570, 840, 2410, 3400],
                    [440, 1020, 2240, 3400], [300, 870, 2240, 3400], [640, 1190, 2390, 3400],
                    [490, 1350, 1690, 3300]], dtype=float)
_BANDWIDTHS = np.array([70.0, 100.0, 140.0, 200.0])
# (mean, std, low, high) of the truncated normals each sex's speakers are drawn from; ranges overlap.
_SEX_PARAMS = {
    "M": {"f0": (130.0, 30.0, 85.0, 185.0), "formant_scale": (0.97, 0.05, 0.88, 1.06),
          "open_quotient": (0.55, 0.08, 0.35, 0.80), "breathiness": (0.05, 0.04, 0.0, 0.20)},
    "F": {"f0": (190.0, 35.0, 140.0, 270.0), "formant_scale": (1.05, 0.055, 0.96, 1.18),
          "open_quotient": (0.60, 0.08, 0.40, 0.85), "breathiness": (0.06, 0.04, 0.0, 0.20)},
}
_HEADER = ("; Synthetic speakers written by gclf.data.synth: source-filter voices, not recordings of people.\n"
           "; {n} speakers ({nf} F, {nm} M), {u} utterance(s) each, seed {seed}, {sr} Hz.\n"
           ";ID  |SEX| SUBSET           |MINUTES| NAME\n")


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`synthesize_corpus` writes."""

    speakers: int = 40            # half F, half M (F gets the extra one if odd)
    utterances_per_speaker: int = 1
    min_seconds: float = 3.0
    max_seconds: float = 8.0
    sample_rate: int = 16000
    subset: str = "train-synth"
    seed: int = 0


@dataclass(frozen=True)
class VoiceParams:
    """A speaker's fixed voice; utterances vary around it."""

    sex: str              # "F" or "M"
    f0: float             # mean fundamental frequency, Hz
    formant_scale: float  # vocal-tract length factor applied to F1-F4 (1.0 = reference adult male)
    open_quotient: float  # open fraction of the glottal cycle
    breathiness: float    # aspiration noise relative to the pulse train
    f0_range: float       # intonation swing, semitones (std)
    jitter: float         # relative period-to-period F0 perturbation (std)
    shimmer: float        # relative period-to-period amplitude perturbation (std)
    vibrato_hz: float
    vibrato_depth: float  # semitones
    rate: float           # syllables per second
    highpass: float       # channel band edges, Hz
    lowpass: float

    @classmethod
    def draw(cls, sex: str, rng: np.random.Generator) -> "VoiceParams":
        """Draw a speaker of ``sex`` from that sex's distributions."""
        sex = _check_sex(sex)
        drawn = {name: _truncnorm(rng, *spec) for name, spec in _SEX_PARAMS[sex].items()}
        return cls(sex=sex, **drawn, f0_range=rng.uniform(1.0, 3.0), jitter=rng.uniform(0.003, 0.02),
                   shimmer=rng.uniform(0.02, 0.12), vibrato_hz=rng.uniform(4.0, 7.0),
                   vibrato_depth=rng.uniform(0.0, 0.4), rate=rng.uniform(3.0, 5.5),
                   highpass=rng.uniform(50.0, 130.0), lowpass=rng.uniform(3500.0, 7500.0))


def _check_sex(sex: str) -> str:
    if not isinstance(sex, str) or sex.upper() not in ("F", "M"):
        raise GclfError(f"sex must be 'F' or 'M', not {sex!r}")
    return sex.upper()


def _truncnorm(rng: np.random.Generator, mean: float, std: float, lo: float, hi: float) -> float:
    """A normal draw restricted to [lo, hi] (rejection over a fixed batch, so rng use is constant)."""
    draws = rng.normal(mean, std, 32)
    inside = draws[(draws >= lo) & (draws <= hi)]
    return float(inside[0]) if inside.size else float(np.clip(mean, lo, hi))


def _syllables(n: int, rate: float, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Envelope (n,) of syllable bumps with closures and phrase pauses; syllable centres and onsets."""
    k = int(n / sr * rate * 1.5) + 4
    syl = rng.uniform(0.55, 1.2, k) * 0.8 * sr / rate
    gap = np.where(rng.random(k) < 0.12, rng.uniform(0.15, 0.6, k) * sr, rng.uniform(0.1, 0.25, k) * sr / rate)
    lens = np.concatenate([[rng.uniform(0.05, 0.3) * sr], np.column_stack([syl, gap]).ravel(), [n]]).astype(int)
    amp = np.zeros(lens.size)
    amp[1:-1:2] = rng.uniform(0.4, 1.0, k)
    starts = np.cumsum(lens) - lens
    idx = np.repeat(np.arange(lens.size), lens)[:n]
    phase = (np.arange(n) - starts[idx] + 0.5) / lens[idx]
    env = amp[idx] * np.sin(np.pi * phase) ** 0.6
    onsets = starts[1:-1:2]
    centres = (onsets + lens[1:-1:2] / 2.0)[onsets < n]
    return env, (centres if centres.size else np.array([n / 2.0])), onsets[onsets < n]


def _f0_contour(n: int, v: VoiceParams, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Per-sample F0 (Hz): intonation knots, declination, offset, vibrato and period-rate jitter."""
    t = np.arange(n) / sr
    knots = np.arange(0.0, n / sr + 0.3, 0.3)
    semis = rng.normal(0.0, v.f0_range, knots.size) + np.linspace(1.0, -1.0, knots.size) * rng.uniform(0, 2)
    st = np.interp(t, knots, semis) + rng.normal(0.0, 1.0)
    st += v.vibrato_depth * np.sin(2 * np.pi * v.vibrato_hz * t + rng.uniform(0, 2 * np.pi))
    jt = np.arange(0.0, n / sr + 2.0 / v.f0, 1.0 / v.f0)
    jitter = np.interp(t, jt, rng.normal(0.0, v.jitter, jt.size))
    return np.clip(v.f0 * 2.0 ** (st / 12.0) * (1.0 + jitter), 50.0, 500.0)


def _glottal_source(f0: np.ndarray, v: VoiceParams, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Differentiated Rosenberg flow pulses with shimmer, plus aspiration noise gated by the flow."""
    phase = np.cumsum(f0 / sr) + rng.random()
    period = phase.astype(np.int64)
    frac = phase - period
    tp, tn = 0.65 * v.open_quotient, 0.35 * v.open_quotient
    closing = np.where(frac < tp + tn, np.cos(0.5 * np.pi * (frac - tp) / tn), 0.0)
    flow = np.where(frac < tp, 0.5 * (1.0 - np.cos(np.pi * frac / tp)), closing)
    flow *= 1.0 + v.shimmer * rng.standard_normal(period[-1] + 1)[period]
    pulse = np.diff(flow, prepend=0.0)
    pulse /= pulse.std() + 1e-12
    return pulse + v.breathiness * rng.standard_normal(f0.size) * (0.3 + flow)


def _vocal_tract(x: np.ndarray, centres: np.ndarray, scale: float, sr: int, rng: np.random.Generator,
                 block: int = 160) -> np.ndarray:
    """Cascade of four resonators (unity DC gain) whose formants glide between per-syllable vowel targets.

    The cascade is one 8th-order filter per ``block`` samples, its state carried across blocks.
    """
    nb = -(-x.size // block)
    targets = _VOWELS[rng.integers(0, len(_VOWELS), centres.size)] * scale
    tb = (np.arange(nb) + 0.5) * block
    freqs = np.column_stack([np.interp(tb, centres, targets[:, j]) for j in range(4)])
    r = np.exp(-np.pi * _BANDWIDTHS * rng.uniform(0.8, 1.3) / sr)
    a1 = -2.0 * r * np.cos(2 * np.pi * np.minimum(freqs, 0.45 * sr) / sr)
    den = np.ones((nb, 1))
    for j in range(4):  # multiply the section polynomials 1 + a1 z^-1 + r^2 z^-2, all blocks at once
        nxt = np.zeros((nb, den.shape[1] + 2))
        nxt[:, :-2] += den
        nxt[:, 1:-1] += den * a1[:, j:j + 1]
        nxt[:, 2:] += den * r[j] ** 2
        den = nxt
    gain = den.sum(axis=1)
    y, zi = np.empty_like(x), np.zeros(8)
    for k in range(nb):
        y[k * block:(k + 1) * block], zi = lfilter(gain[k:k + 1], den[k], x[k * block:(k + 1) * block], zi=zi)
    return y


def _fricatives(n: int, onsets: np.ndarray, scale: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-pass noise bursts straddling some syllable onsets (unit-RMS bursts times a random level)."""
    out = np.zeros(n)
    for onset in onsets[rng.random(onsets.size) < 0.35]:
        m = int(rng.uniform(0.04, 0.13) * sr)
        a, b = max(int(onset) - m // 2, 0), min(int(onset) + m // 2, n)
        fc, bw = min(rng.uniform(2500.0, 6500.0) * scale, 0.45 * sr), rng.uniform(800.0, 2000.0)
        if b - a < 16:
            continue
        r = math.exp(-math.pi * bw / sr)
        burst = lfilter([1.0], [1.0, -2.0 * r * math.cos(2 * math.pi * fc / sr), r * r], rng.standard_normal(b - a))
        out[a:b] += burst / (burst.std() + 1e-12) * np.hanning(b - a) * rng.uniform(0.1, 0.5)
    return out


def _channel(x: np.ndarray, active: np.ndarray, v: VoiceParams, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limit, add coloured noise at a random SNR (5-30 dB), scale to a random peak (0.1-0.9)."""
    sos = butter(2, [v.highpass, min(v.lowpass, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    y = sosfilt(sos, x)
    power = np.mean(y[active] ** 2) if active.any() else np.mean(y ** 2)
    noise = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.97)], rng.standard_normal(x.size))
    noise *= math.sqrt(power / 10 ** (rng.uniform(5.0, 30.0) / 10)) / (noise.std() + 1e-12)
    y = y + noise
    y *= rng.uniform(0.1, 0.9) / (np.max(np.abs(y)) + 1e-12)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def synthesize_voice(sex: str, seconds: float, rng: np.random.Generator, sample_rate: int = 16000,
                     speaker: VoiceParams | None = None) -> np.ndarray:
    """One utterance, float32 mono in [-1, 1], ``round(seconds * sample_rate)`` samples.

    ``speaker`` fixes the voice (its sex must match ``sex``); without it a fresh one is drawn from ``rng``.
    """
    sex = _check_sex(sex)
    voice = speaker if speaker is not None else VoiceParams.draw(sex, rng)
    if voice.sex != sex:
        raise GclfError(f"speaker is {voice.sex} but sex {sex!r} was asked for")
    n, sr = max(int(round(seconds * sample_rate)), 1), int(sample_rate)
    env, centres, onsets = _syllables(n, voice.rate * rng.uniform(0.9, 1.1), sr, rng)
    scale = voice.formant_scale * rng.uniform(0.985, 1.015)
    voiced = _vocal_tract(_glottal_source(_f0_contour(n, voice, sr, rng), voice, sr, rng) * env,
                          centres, scale, sr, rng)
    active = env > 0.2
    rms = math.sqrt(np.mean(voiced[active] ** 2)) if active.any() else float(voiced.std())
    voiced /= rms + 1e-12
    return _channel(voiced + _fricatives(n, onsets, scale, sr, rng), active, voice, sr, rng)


def _validate(c: SynthConfig) -> None:
    """Raise GclfError listing everything wrong with ``c``."""
    problems = []
    if c.speakers < 1 or c.utterances_per_speaker < 1:
        problems.append("speakers and utterances_per_speaker must be at least 1")
    fits = math.ceil(c.min_seconds * c.sample_rate) <= math.floor(c.max_seconds * c.sample_rate)
    if not (0 < c.min_seconds <= c.max_seconds and fits):
        problems.append(f"need 0 < min_seconds <= max_seconds (got {c.min_seconds}, {c.max_seconds})")
    if c.sample_rate < 8000:
        problems.append(f"sample_rate must be at least 8000 Hz (got {c.sample_rate})")
    if c.subset in ("", ".", "..") or c.subset != c.subset.strip() or any(ch in c.subset for ch in "/\\|"):
        problems.append(f"subset must be a plain folder name (got {c.subset!r})")
    if c.seed < 0:
        problems.append(f"seed must be non-negative (got {c.seed})")
    if problems:
        raise GclfError("bad synth config: " + "; ".join(problems))


def _write_speaker(root: Path, index: int, sex: str, c: SynthConfig,
                   progress: Callable[[int], None] | None) -> float:
    """Write one speaker's utterances; return their total seconds."""
    import soundfile as sf

    rng = np.random.default_rng([c.seed, index])
    voice = VoiceParams.draw(sex, rng)
    spk, chap, sr = SPEAKER_BASE + index, CHAPTER_BASE + index, c.sample_rate
    lo, hi = math.ceil(c.min_seconds * sr), math.floor(c.max_seconds * sr)
    total = 0.0
    for u in range(c.utterances_per_speaker):
        n = int(np.clip(round(rng.uniform(c.min_seconds, c.max_seconds) * sr), lo, hi))
        audio = synthesize_voice(sex, n / sr, rng, sr, voice)
        path = root / c.subset / str(spk) / str(chap) / f"{spk}-{chap}-{u:04d}.flac"
        atomic_write(path, lambda fh: sf.write(fh, audio, sr, format="FLAC", subtype="PCM_16"))
        total += n / sr
        if progress is not None:
            progress(1)
    return total


def synthesize_corpus(out_dir: str | Path, config: SynthConfig = SynthConfig(),
                      progress: Callable[[int], None] | None = None) -> dict:
    """Write OUT/LibriSpeech/SPEAKERS.TXT and OUT/LibriSpeech/<subset>/<SPK>/<CHAP>/<SPK>-<CHAP>-<UTT:04d>.flac.

    Speakers alternate F, M, F, ... (so F gets the extra one when the count is odd); ``progress(1)`` is
    called after each file. Returns {"root", "speakers", "female", "male", "utterances", "seconds"}.
    """
    _validate(config)
    root = Path(out_dir).expanduser() / "LibriSpeech"
    rows, total = [], 0.0
    for i in range(config.speakers):
        sex = "F" if i % 2 == 0 else "M"
        seconds = _write_speaker(root, i, sex, config, progress)
        rows.append(f"{SPEAKER_BASE + i:<5}| {sex} | {config.subset:<17}| {seconds / 60:5.2f} | "
                    f"Synthetic Speaker {SPEAKER_BASE + i}\n")
        total += seconds
    nf, nm = (config.speakers + 1) // 2, config.speakers // 2
    header = _HEADER.format(n=config.speakers, nf=nf, nm=nm, u=config.utterances_per_speaker,
                            seed=config.seed, sr=config.sample_rate)
    atomic_text(root / "SPEAKERS.TXT", header + "".join(rows))
    return {"root": str(root), "speakers": config.speakers, "female": nf, "male": nm,
            "utterances": config.speakers * config.utterances_per_speaker, "seconds": total}
