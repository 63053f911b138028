"""The integer reference of the front-end (numpy int64, no floating point): PCM int16 -> MFCC int32 Q8 dB.

Every frame is computed on its own, vectorised over frames. Shifts are arithmetic (floor); a rounded shift
is ``(v + 2^(s-1)) >> s`` (round half up), the same in the generated C. See :mod:`gclf.frontend.config`
for the definition step by step.
"""
from __future__ import annotations

import numpy as np

from gclf.frontend.config import FrontendConfig, tables

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


def rshift_round(v: np.ndarray, s: int | np.ndarray) -> np.ndarray:
    """Round-half-up right shift by ``s`` >= 1 bits (int64)."""
    s = np.asarray(s, dtype=np.int64)
    return (v + (np.int64(1) << (s - 1))) >> s


def sat32(v: np.ndarray, counts: dict, key: str) -> np.ndarray:
    """Saturate to int32, adding the number of clipped values to ``counts[key]``."""
    bad = (v < I32_MIN) | (v > I32_MAX)
    counts[key] = counts.get(key, 0) + int(bad.sum())
    return np.clip(v, I32_MIN, I32_MAX)


def bit_length(v: np.ndarray, bits: int = 63) -> np.ndarray:
    """Number of bits of non-negative int64 values (0 for 0), integer-only."""
    v = np.asarray(v, dtype=np.int64)
    return (v[..., None] >= (np.int64(1) << np.arange(bits, dtype=np.int64))).sum(axis=-1).astype(np.int64)


def pcm16(audio: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1) -> int16 PCM (x 32768, rounded half away from zero, saturated); exact for
    audio read from 16-bit files."""
    a = np.asarray(audio, dtype=np.float64) * 32768.0
    q = np.sign(a) * np.floor(np.abs(a) + 0.5)
    return np.clip(q, -32768, 32767).astype(np.int16)


def frame_pcm(pcm: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(frames, n_fft) int64: centre-padded with n_fft/2 zeros each side, a frame every hop samples."""
    x = np.asarray(pcm)
    if x.dtype != np.int16:
        raise TypeError(f"the integer front-end reads int16 PCM, got {x.dtype}")
    half = cfg.n_fft // 2
    padded = np.concatenate([np.zeros(half, np.int64), x.astype(np.int64), np.zeros(half, np.int64)])
    idx = np.arange(cfg.n_frames(x.size))[:, None] * cfg.hop + np.arange(cfg.n_fft)[None, :]
    return padded[idx]


def block_normalise(xw: np.ndarray, cfg: FrontendConfig) -> tuple[np.ndarray, np.ndarray]:
    """Shift each frame so that max |x| is in [2^(b-1), 2^b): (shifted frames, exponent s per frame).
    A silent frame keeps s = 0."""
    m = np.abs(xw).max(axis=1)
    s = np.where(m > 0, cfg.fft_in_bits - bit_length(m, 32), 0)
    left = np.maximum(s, 0)[:, None]
    right = np.maximum(-s, 0)[:, None]
    shifted_r = rshift_round(xw, np.maximum(right, 1))
    out = np.where(right > 0, shifted_r, xw << left)
    return out, s


def fft_int(xn: np.ndarray, cfg: FrontendConfig, counts: dict) -> tuple[np.ndarray, np.ndarray]:
    """Real frames (F, n) -> 2X (re, im) of bins 0..n/2 (int32 values in int64 arrays): a radix-2 DIT FFT of
    z = x[0::2] + j x[1::2] over n/2 points, then the split into the real frame's spectrum (times 2)."""
    t = tables(cfg)
    n, f = cfg.n_fft, xn.shape[0]
    m = n // 2
    xr = xn[:, 0::2][:, t.bitrev].astype(np.int64)
    xi = xn[:, 1::2][:, t.bitrev].astype(np.int64)
    size = 2
    while size <= m:
        half = size // 2
        step = n // size                                     # W_m^(j m / size) = W_n^(j n / size)
        wr = t.tw_re[::step][:half]
        wi = t.tw_im[::step][:half]
        ar = xr.reshape(f, m // size, 2, half)
        ai = xi.reshape(f, m // size, 2, half)
        br, bi = ar[:, :, 1, :], ai[:, :, 1, :]
        tr = rshift_round(br * wr - bi * wi, cfg.twiddle_frac)
        ti = rshift_round(br * wi + bi * wr, cfg.twiddle_frac)
        a_r, a_i = ar[:, :, 0, :].copy(), ai[:, :, 0, :].copy()
        ar[:, :, 0, :] = sat32(a_r + tr, counts, "fft")
        ai[:, :, 0, :] = sat32(a_i + ti, counts, "fft")
        ar[:, :, 1, :] = sat32(a_r - tr, counts, "fft")
        ai[:, :, 1, :] = sat32(a_i - ti, counts, "fft")
        xr, xi = ar.reshape(f, m), ai.reshape(f, m)
        size *= 2
    k = np.arange(m + 1)
    a_r, a_i = xr[:, k % m], xi[:, k % m]
    b_r, b_i = xr[:, (m - k) % m], xi[:, (m - k) % m]
    fe_r, fe_i = a_r + b_r, a_i - b_i                        # Z[k] + conj Z[-k]
    fo_r, fo_i = a_i + b_i, b_r - a_r                        # -j (Z[k] - conj Z[-k])
    wr, wi = t.tw_re, t.tw_im                                # W^k, k = 0..n/2
    tr = rshift_round(fo_r * wr - fo_i * wi, cfg.twiddle_frac)
    ti = rshift_round(fo_r * wi + fo_i * wr, cfg.twiddle_frac)
    return sat32(fe_r + tr, counts, "fft"), sat32(fe_i + ti, counts, "fft")


def log2_q16(e: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """log2 of positive int64 values in Q(log_frac): bit length + linear interpolation in the mantissa table
    (64 segments). Error <= 5.5e-5 (interpolation, (1/64)^2 / (8 ln 2)) + 2.2e-5 (the mantissa truncated to
    16 bits, 2^-16 / ln 2) + 1.5e-5 (table and interpolation rounding, 2^-16) = 9.3e-5 log2 units (2.8e-4 dB)."""
    t = tables(cfg)
    e = np.asarray(e, dtype=np.int64)
    nb = np.maximum(bit_length(e) - 1, 0)                     # floor(log2 e)
    fb = cfg.log_frac                                         # mantissa bits kept
    right = np.maximum(nb - fb, 0)
    left = np.maximum(fb - nb, 0)
    mant = np.where(nb >= fb, e >> right, e << left) & ((1 << fb) - 1)
    rb = fb - cfg.log_table_bits
    idx = mant >> rb
    rem = mant & ((1 << rb) - 1)
    lo = t.log_table[idx]
    y = lo + (((t.log_table[idx + 1] - lo) * rem + (1 << (rb - 1))) >> rb)
    return (nb << cfg.log_frac) + y


def running_peak(loud: np.ndarray, cfg: FrontendConfig, peak0: int | None = None) -> np.ndarray:
    """The running floor's peak (F,) of consecutive frames whose loudest bands are ``loud`` (F,), Q(log_frac):
    ``peak[t] = max(loud[t], peak[t-1] - decay_q, floor_q)`` from ``peak[-1] = peak0`` (``floor_q``: a clip's
    start), as the C steps it; computed in closed form, ``max_{s<=t}(loud[s] + decay (s - t))``."""
    t = tables(cfg)
    loud = np.maximum(np.asarray(loud, dtype=np.int64), t.floor_q)
    peak0 = t.floor_q if peak0 is None else int(peak0)
    i = np.arange(loud.size, dtype=np.int64)
    lift = np.maximum.accumulate(loud + t.decay_q * i) if loud.size else loud
    return np.maximum(np.maximum(lift - t.decay_q * i, peak0 - t.decay_q * (i + 1)), t.floor_q)


def floor_q(lg: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Each frame's floor (F,) in Q(log_frac) log2 units from its band logs (F, n_mels) (zero-energy bands
    already at ``floor_q``): the loudest band minus ``top_q``, never below ``floor_q`` (frame mode); the
    running peak of the frames' loudest bands minus ``top_q``, never below ``floor_q`` (running mode: the
    frames are a clip's, in order, from its first); or ``floor_q`` (absolute mode)."""
    t = tables(cfg)
    if cfg.floor_mode == "frame":
        return np.maximum(lg.max(axis=1) - t.top_q, t.floor_q)
    if cfg.floor_mode == "running":
        return np.maximum(running_peak(lg.max(axis=1), cfg) - t.top_q, t.floor_q)
    return np.full(lg.shape[0], t.floor_q, dtype=np.int64)


def mfcc_frames_int(frames: np.ndarray, cfg: FrontendConfig) -> tuple[np.ndarray, dict]:
    """MFCCs (frames, n_mfcc) int64 holding int32 Q(out_frac) dB, and the overflow counts. With the running
    floor the frames must be one clip's, in order from its first."""
    t = tables(cfg)
    counts = {"fft": 0, "out": 0}
    xw = frames.astype(np.int64) * t.window                   # |xw| < 2^30: exact
    xn, s = block_normalise(xw, cfg)
    xr, xi = fft_int(xn, cfg, counts)
    p = xr * xr + xi * xi                                     # < 2^61: |2X| < 2^(fft_in_bits + 1 + log2 n)
    p = rshift_round(p, cfg.power_shift)
    e = p @ t.mel.T                                           # (F, n_mels) < 2^(2 (b + log2 n) - ps + 15 + 5)
    pos = e > 0
    lg = np.where(pos, log2_q16(np.where(pos, e, 1), cfg) + t.band_off - (2 * s[:, None] << cfg.log_frac),
                  t.floor_q)
    lg = np.maximum(lg, floor_q(lg, cfg)[:, None])
    acc = lg @ t.dct.T                                        # |acc| < 64 * 2^23 * 2^22
    out = rshift_round(acc, cfg.log_frac + cfg.dct_frac - cfg.out_frac)
    return sat32(out, counts, "out"), counts


def mfcc_int(pcm: np.ndarray, cfg: FrontendConfig = FrontendConfig()) -> tuple[np.ndarray, dict]:
    """PCM int16 (n,) -> MFCCs (n_mfcc, frames) int64 in Q(out_frac) dB, plus overflow counts."""
    out, counts = mfcc_frames_int(frame_pcm(pcm, cfg), cfg)
    return out.T, counts
