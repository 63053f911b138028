"""The integer MFCC front-end's definition: one frozen config holding every format, and the tables it implies.

PCM int16 -> MFCC frames, per frame (nothing depends on the whole clip):

1. framing: ``n_fft`` samples every ``hop`` samples, centre padded with ``n_fft // 2`` zeros each side
   (librosa's ``center=True, pad_mode="constant"``): a clip of n samples gives ``1 + n // hop`` frames.
2. window: periodic Hann in Q15 (``round(32768 w)`` saturated to 32767); ``xw = x * w`` is exact in int32.
3. block floating point: each frame is shifted (left, or right with rounding) so that ``max |xw|`` lies in
   [2^(fft_in_bits-1), 2^fft_in_bits); the shift ``s`` is the frame's exponent.
4. FFT of a real frame through a complex one of half the size: z[i] = x[2i] + j x[2i+1], a radix-2 DIT FFT
   Z of n_fft/2 points on int32 data with Q30 twiddles (products in int64, rounded back by ``>> 30``), then
   for k = 0..n_fft/2: 2X[k] = (Z[k] + conj Z[-k]) + W^k (-j) (Z[k] - conj Z[-k]), W = e^(-2 pi j / n_fft)
   (the same table, 1 + n_fft/2 entries). No per-stage scaling: |2X| < 2^(fft_in_bits + 10) <= 2^30 fits.
   Butterfly and 2X outputs saturate to int32 and count (``overflows["fft"]``; unreachable by default).
5. power: ``|2X|^2`` (int64, < 2^61), rounded ``>> power_shift`` (the factor 4 goes into the band offsets).
6. mel: Slaney-normalised triangular filters (librosa's ``filters.mel``), each band's weights in Q15
   relative to the band's largest weight; the band's scale goes into a per-band log2 offset.
7. log: ``log2`` in Q16 from the bit length plus a 65-entry table of ``log2(1 + i/64)`` with linear
   interpolation of the next 10 bits (error below 9.3e-5 log2 units = 2.8e-4 dB, see ``log2_q16``), plus
   the band offset minus ``2 s``; a band with zero energy starts at the lowest value (below). Then the floor,
   by ``floor_mode``:
   - ``"frame"`` (default): each band floored at the frame's loudest band minus ``top_db`` (an integer row max,
     Q16 ``top_q``), never below ``min_db``: librosa's ``top_db`` relative to the frame instead of the whole
     clip, so streamable and level-invariant (PCM scaled by 2^k shifts every band of a frame by the same
     6.02 k dB, the floor with them). ``min_db`` (-190 dB) is only a guard: every band of an all-zero frame
     sits there; a single LSB at the window centre already gives a loudest band of about -105 dB.
   - ``"running"``: each band floored at a causal running peak minus ``top_db``, never below ``min_db``: the
     peak is the loudest band of this frame or the previous peak lowered by ``decay_db`` (Q16 ``decay_q``),
     whichever is larger (the decay rounded to Q16 log2: 0.05 dB is 1089 / 2^16 log2 = 0.050022 dB, which the
     float mirror uses too), and never below ``min_db`` (``peak[t] = max(loud[t], peak[t-1] - decay, min)``,
     starting at ``min_db`` with a clip's first frame). It follows a clip's loud part as librosa's whole-clip
     ``top_db`` floor does, forgets it at ``decay_db`` per frame, and is streamable: the peak is the only
     state (one int32 in the stream struct). Still level-invariant above ``min_db``.
   - ``"absolute"``: each band floored at ``floor_db`` dB of (PCM/32768)^2 power (the first definition, kept
     for comparison: a quiet corpus loses most of its bands to it).
8. DCT-II (orthonormal) to ``n_mfcc`` coefficients, scaled by ``10 log10 2`` (log2 -> dB) in Q``dct_frac``;
   the int64 sum rounded to Q``out_frac`` dB and saturated to int32 (``overflows["out"]``).

The float mirror (:mod:`gclf.frontend.floatref`) computes the same definition in float64.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

DB_PER_LOG2 = 10.0 * math.log10(2.0)   # dB per octave of power
ARITHMETIC_VERSION = 3                 # bump whenever the integer arithmetic changes (feature caches key on it)


FLOOR_MODES = ("frame", "running", "absolute")
# Named floors (``gclf train --frontend int-<name>``): the FrontendConfig fields each sets. "running" uses
# librosa's own lowest value (its ``amin`` = 1e-10 power, -100 dB) as the guard: digital silence before any
# speech then sits at -100 dB as in librosa instead of -190 dB.
# "running70" floors 10 dB higher: on LibriSpeech it floors about the share of band values librosa's clip floor
# does (9.8 % against 7.8 %; "running" 3.9 %, "frame" 0.4 %), hiding the same quiet background.
FLOORS = {"frame": {"floor_mode": "frame"},
          "running": {"floor_mode": "running", "min_db": -100.0},
          "running70": {"floor_mode": "running", "min_db": -100.0, "top_db": 70.0}}


@dataclass(frozen=True)
class FrontendConfig:
    sample_rate: int = 16000
    n_fft: int = 512           # window and FFT size (power of two)
    hop: int = 320             # samples between frames
    n_mels: int = 64
    n_mfcc: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    floor_mode: str = "frame"  # "frame": floor relative to the frame's loudest band; "running": to a decaying
                               # running peak of the frames' loudest bands; "absolute": at floor_db
    top_db: float = 80.0       # frame/running: each band floored at the frame's loudest band (or the peak) - top_db
    min_db: float = -190.0     # frame/running: lower guard (every band of an all-zero frame)
    decay_db: float = 0.05     # running: the peak falls by this many dB per frame (2.5 dB/s at hop 320)
    floor_db: float = -70.0    # absolute mode: floor of each band (dB of (PCM/32768)^2 power)
    window_frac: int = 15      # Hann window in Q15
    fft_in_bits: int = 20      # block floating point: max |frame| in [2^19, 2^20) before the FFT
    twiddle_frac: int = 30     # FFT twiddles in Q30
    power_shift: int = 24      # |X|^2 >> 24 before the mel sums
    mel_frac: int = 15         # mel weights in Q15 of the band's largest weight
    log_frac: int = 16         # log2 values in Q16
    log_table_bits: int = 6    # 2^6 segments of the log2 mantissa table
    dct_frac: int = 20         # DCT (x dB per log2) in Q20
    out_frac: int = 8          # MFCC output in Q8 dB, int32

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def log2_n(self) -> int:
        return int(self.n_fft).bit_length() - 1

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Identity of the definition: every field and the arithmetic version."""
        import hashlib
        import json

        d = self.as_dict()
        if self.floor_mode != "running":   # keys of the other floors as they were before decay_db existed
            d.pop("decay_db")
        blob = json.dumps({"arithmetic": ARITHMETIC_VERSION, **d}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def check(self) -> None:
        if self.n_fft & (self.n_fft - 1) or self.n_fft < 4:
            raise ValueError(f"n_fft must be a power of two >= 4, got {self.n_fft}")
        if self.fft_in_bits + self.log2_n + 1 > 30:
            raise ValueError("fft_in_bits + log2(n_fft) must be <= 29 (2X in int32 without scaling)")
        if self.floor_mode not in FLOOR_MODES:
            raise ValueError(f"floor_mode must be one of {', '.join(FLOOR_MODES)}, got {self.floor_mode!r}")
        if self.top_db <= 0:
            raise ValueError("top_db must be > 0")
        if self.floor_mode == "running" and not self.decay_db > 0:
            raise ValueError("decay_db must be > 0")
        if not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError("need 1 <= n_mfcc <= n_mels")


@dataclass(frozen=True)
class Tables:
    """Every constant of the integer path (int64 arrays; the C stores them in the narrowest fitting type)."""
    window: np.ndarray      # (n_fft,) Q15
    tw_re: np.ndarray       # (n_fft/2 + 1,) Q30 cos(2 pi k / n)
    tw_im: np.ndarray       # (n_fft/2 + 1,) Q30 -sin(2 pi k / n)
    bitrev: np.ndarray      # (n_fft/2,) bit-reversal permutation of the half-size complex FFT
    mel: np.ndarray         # (n_mels, n_bins) Q15 relative to each band's max
    mel_lo: np.ndarray      # (n_mels,) first bin with a non-zero weight
    mel_len: np.ndarray     # (n_mels,) bins in the band
    band_off: np.ndarray    # (n_mels,) Q16 log2 offset: band scale, power shift, PCM scale
    log_table: np.ndarray   # (2^log_table_bits + 1,) Q16 log2(1 + i / 2^bits)
    dct: np.ndarray         # (n_mfcc, n_mels) Q(dct_frac), dB per log2 folded in
    floor_q: int            # lowest value of a band in Q16 log2 units: floor_db (absolute) or min_db (frame, running)
    top_q: int              # frame/running: top_db in Q16 log2 units (0 in absolute mode)
    decay_q: int            # running: decay_db in Q16 log2 units per frame (0 otherwise)


def mel_weights(cfg: FrontendConfig) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, n_bins), float64."""
    import librosa

    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                               fmax=cfg.fmax, dtype=np.float64)


def dct_matrix(cfg: FrontendConfig) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_mfcc-1 over n_mels inputs (scipy's ``dct(norm="ortho")``)."""
    m = np.arange(cfg.n_mels)
    c = np.arange(cfg.n_mfcc)[:, None]
    d = np.cos(np.pi * c * (2 * m + 1) / (2 * cfg.n_mels)) * math.sqrt(2.0 / cfg.n_mels)
    d[0] /= math.sqrt(2.0)
    return d


def hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window("hann", n, fftbins=True)``, as librosa uses)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _rint(x) -> np.ndarray:
    """Round half away from zero (the tables' one rounding)."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def _bitrev(n: int) -> np.ndarray:
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) for i in range(n)], dtype=np.int64)


@lru_cache(maxsize=8)
def tables(cfg: FrontendConfig) -> Tables:
    cfg.check()
    n = cfg.n_fft
    wmax = (1 << cfg.window_frac) - 1
    window = np.minimum(_rint(hann(n) * (1 << cfg.window_frac)), wmax)
    k = np.arange(n // 2 + 1)
    one = 1 << cfg.twiddle_frac
    tw_re = _rint(np.cos(2 * np.pi * k / n) * one)
    tw_im = _rint(-np.sin(2 * np.pi * k / n) * one)
    w = mel_weights(cfg)
    peak = w.max(axis=1)
    if np.any(peak <= 0):
        raise ValueError("a mel band has no FFT bin: fewer n_mels, a larger n_fft or a wider fmin..fmax")
    mq = (1 << cfg.mel_frac) - 1
    mel = _rint(w / peak[:, None] * mq)
    nz = mel > 0
    mel_lo = nz.argmax(axis=1)
    mel_len = cfg.n_bins - nz[:, ::-1].argmax(axis=1) - mel_lo
    # E = sum P' Wq  ->  librosa's mel power = E * (peak / mq) * 2^(power_shift - 2 - 2 (window_frac + 15))
    # (|2X|^2 = 4 |X|^2, PCM / 32768, window / 2^window_frac), times 2^(-2 s) for the block exponent s.
    log_scale = np.log2(peak / mq) + cfg.power_shift - 2 - 2 * (cfg.window_frac + 15)
    band_off = _rint(log_scale * (1 << cfg.log_frac))
    seg = 1 << cfg.log_table_bits
    log_table = _rint(np.log2(1.0 + np.arange(seg + 1) / seg) * (1 << cfg.log_frac))
    dct = _rint(dct_matrix(cfg) * DB_PER_LOG2 * (1 << cfg.dct_frac))
    rel = cfg.floor_mode in ("frame", "running")
    floor_q = int(_rint((cfg.min_db if rel else cfg.floor_db) / DB_PER_LOG2 * (1 << cfg.log_frac)))
    top_q = int(_rint(cfg.top_db / DB_PER_LOG2 * (1 << cfg.log_frac))) if rel else 0
    decay_q = int(_rint(cfg.decay_db / DB_PER_LOG2 * (1 << cfg.log_frac))) if cfg.floor_mode == "running" else 0
    return Tables(window, tw_re, tw_im, _bitrev(n // 2), mel, mel_lo.astype(np.int64), mel_len.astype(np.int64),
                  band_off, log_table, dct, floor_q, top_q, decay_q)
