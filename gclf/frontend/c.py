"""Generated C of the integer front-end (``<prefix>frontend.c/.h``), its host harness, and running it.

Same style as the network's C: no allocation, no float, literal sizes, tables as const arrays. Every symbol
and macro carries ``prefix`` (default ``gclf_``; macros upper-case), so two front-ends link into one firmware.
"""
from __future__ import annotations

import re
import string
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gclf.errors import GclfError
from gclf.frontend.config import FrontendConfig, tables

TEMPLATES = Path(__file__).parent / "templates"
C_FLAGS_STRICT = ("-Wpedantic", "-Wconversion")     # on top of gclf.backends.c.build.CFLAGS


def _render(name: str, fields: dict) -> str:
    return string.Template((TEMPLATES / name).read_text()).substitute(fields)


def _array(v, per_line: int = 12) -> str:
    v = [str(int(x)) for x in np.ravel(v)]
    return "\n".join("    " + ", ".join(v[i:i + per_line]) + "," for i in range(0, len(v), per_line))


def _check_prefix(prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prefix):
        raise GclfError(f"--prefix {prefix!r} is not a C identifier prefix (letters, digits, _)")
    return prefix


def floor_text(cfg: FrontendConfig) -> str:
    """The floor in words (header comment)."""
    if cfg.floor_mode == "frame":
        return f"floor {cfg.top_db:g} dB below the frame's loudest band (never below {cfg.min_db:g} dB)"
    if cfg.floor_mode == "running":
        return (f"floor {cfg.top_db:g} dB below a running peak of the frames' loudest bands that falls "
                f"{cfg.decay_db:g} dB per frame (never below {cfg.min_db:g} dB)")
    return f"absolute floor {cfg.floor_db:g} dB"


def frontend_fields(cfg: FrontendConfig, prefix: str = "gclf_") -> dict:
    t = tables(cfg)
    mel_w = np.concatenate([t.mel[m, lo:lo + n] for m, (lo, n) in enumerate(zip(t.mel_lo, t.mel_len))])
    rem_bits = cfg.log_frac - cfg.log_table_bits
    dct_rows = ",\n".join("    {" + ", ".join(str(int(x)) for x in row) + "}" for row in t.dct)
    table_bytes = (2 * cfg.n_fft + 4 * 2 * t.tw_re.size + 2 * t.bitrev.size + 2 * 2 * cfg.n_mels + 2 * mel_w.size
                   + 4 * cfg.n_mels + 4 * t.log_table.size + 4 * t.dct.size)
    ram_bytes = 4 * cfg.n_fft + 4 * cfg.n_fft + 8 * cfg.n_bins + 4 * cfg.n_mels + 2 * cfg.n_fft + 8
    return {
        "p": prefix, "P": prefix.upper(), **{k: v for k, v in cfg.as_dict().items()},
        "out_one": 1 << cfg.out_frac, "half_mask": cfg.n_fft // 2 - 1, "half": cfg.n_fft // 2, "n_half": cfg.n_fft // 2, "n_bins": cfg.n_bins,
        "log_segments": 1 << cfg.log_table_bits, "log_segments_1": (1 << cfg.log_table_bits) + 1,
        "window": _array(t.window), "tw_re": _array(t.tw_re, 8), "tw_im": _array(t.tw_im, 8),
        "bitrev": _array(t.bitrev, 16), "mel_lo": _array(t.mel_lo, 16), "mel_len": _array(t.mel_len, 16),
        "mel_nnz": mel_w.size, "mel_w": _array(mel_w), "band_off": _array(t.band_off, 8),
        "log_table": _array(t.log_table, 8), "dct": dct_rows, "floor_q": t.floor_q,
        "top_q": t.top_q, "decay_q": t.decay_q, "rel_floor": int(cfg.floor_mode in ("frame", "running")),
        "running_floor": int(cfg.floor_mode == "running"), "floor_text": floor_text(cfg),
        "peak_text": ("this floor keeps its peak there (Q16 log2, falling by decay_q = "
                      f"{t.decay_q} per frame)" if cfg.floor_mode == "running" else "this floor does not use it"),
        "mant_mask": (1 << cfg.log_frac) - 1, "rem_bits": rem_bits, "rem_mask": (1 << rem_bits) - 1,
        "rem_half": 1 << (rem_bits - 1), "log_one": 1 << cfg.log_frac,
        "out_shift": cfg.log_frac + cfg.dct_frac - cfg.out_frac,
        "table_bytes": table_bytes, "ram_bytes": ram_bytes,
    }


def generate_frontend_c(out_dir: str | Path, cfg: FrontendConfig = FrontendConfig(),
                        prefix: str = "gclf_") -> dict:
    """Write ``<prefix>frontend.c`` and ``<prefix>frontend.h`` into ``out_dir``; returns paths and bytes."""
    from gclf.io import atomic_text

    f = frontend_fields(cfg, _check_prefix(prefix))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = atomic_text(out / f"{prefix}frontend.c", _render("frontend.c.tmpl", f))
    h = atomic_text(out / f"{prefix}frontend.h", _render("frontend.h.tmpl", f))
    return {"c": str(c), "h": str(h), "table_bytes": f["table_bytes"], "ram_bytes": f["ram_bytes"]}


def build_frontend_harness(out_dir: str | Path, cc: str, cfg: FrontendConfig = FrontendConfig(),
                           prefix: str = "gclf_", flags: tuple[str, ...] | None = None) -> Path:
    """Generate the front-end and its host harness in ``out_dir`` and compile them (strict warnings)."""
    from gclf.backends.c.build import CFLAGS
    from gclf.io import atomic_text

    flags = tuple(CFLAGS) + C_FLAGS_STRICT if flags is None else flags
    out = Path(out_dir)
    gen = generate_frontend_c(out, cfg, prefix)
    main = atomic_text(out / f"{prefix}frontend_main.c", _render("frontend_main.c.tmpl", frontend_fields(cfg, prefix)))
    exe = out / f"{prefix}frontend_main"
    r = subprocess.run([cc, *flags, "-I", str(out), "-o", str(exe), gen["c"], str(main)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"compiling the front-end failed: {(r.stderr or r.stdout).strip()[:2000]}")
    return exe


def run_frontend_c(exe: str | Path, pcm: np.ndarray) -> tuple[np.ndarray, dict]:
    """MFCCs (n_mfcc, frames) int64 and overflow counts of the compiled harness on int16 ``pcm``."""
    pcm = np.ascontiguousarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError("the front-end reads int16 PCM")
    with tempfile.TemporaryDirectory(prefix="gclf-fe-") as tmp:
        path = Path(tmp) / "pcm.bin"
        pcm.astype("<i2").tofile(path)
        r = subprocess.run([str(exe), str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"the front-end harness failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
    lines = r.stdout.splitlines()
    fft, out = (int(v) for v in lines[-1].split()[1:])
    rows = np.array([[int(v) for v in ln.split()] for ln in lines[:-1]], dtype=np.int64)
    return rows.T, {"fft": fft, "out": out}


def build_stream_harness(out_dir: str | Path, cc: str, cfg: FrontendConfig = FrontendConfig(),
                         prefix: str = "gclf_") -> Path:
    """Generate the front-end and the streaming harness in ``out_dir`` and compile them (strict warnings)."""
    from gclf.backends.c.build import CFLAGS
    from gclf.io import atomic_text

    out = Path(out_dir)
    gen = generate_frontend_c(out, cfg, prefix)
    main = atomic_text(out / f"{prefix}frontend_stream_main.c",
                       _render("frontend_stream_main.c.tmpl", frontend_fields(cfg, prefix)))
    exe = out / f"{prefix}frontend_stream_main"
    r = subprocess.run([cc, *CFLAGS, *C_FLAGS_STRICT, "-I", str(out), "-o", str(exe), gen["c"], str(main)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"compiling the streaming front-end failed: {(r.stderr or r.stdout).strip()[:2000]}")
    return exe


def run_stream_c(exe: str | Path, pcm: np.ndarray, chunks) -> tuple[np.ndarray, dict]:
    """MFCCs (n_mfcc, frames) of ``pcm`` pushed through the streaming API in ``chunks`` (sizes >= 1, cycled)."""
    chunks = np.asarray(chunks, dtype="<i4")
    if chunks.size == 0 or chunks.min() < 1:
        raise ValueError("chunk sizes must be >= 1")
    pcm = np.ascontiguousarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError("the front-end reads int16 PCM")
    with tempfile.TemporaryDirectory(prefix="gclf-fes-") as tmp:
        pcm.astype("<i2").tofile(Path(tmp) / "pcm.bin")
        chunks.tofile(Path(tmp) / "chunks.bin")
        r = subprocess.run([str(exe), str(Path(tmp) / "pcm.bin"), str(Path(tmp) / "chunks.bin")],
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"the streaming harness failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
    lines = r.stdout.splitlines()
    fft, out = (int(v) for v in lines[-1].split()[1:])
    rows = np.array([[int(v) for v in ln.split()] for ln in lines[:-1]], dtype=np.int64)
    return rows.T, {"fft": fft, "out": out}


def verify_frontend_c(exe: str | Path, cfg: FrontendConfig = FrontendConfig()) -> dict:
    """Compare the compiled harness with the numpy integer reference on synthetic speech and edge cases."""
    from gclf.frontend.intref import mfcc_int
    from gclf.frontend.signals import edge_cases, speech

    signals = {**edge_cases(), "speech_f": speech("F", 100, 3.0), "speech_m": speech("M", 101, 3.0)}
    frames = bad = 0
    for pcm in signals.values():
        got, gc = run_frontend_c(exe, pcm)
        want, wc = mfcc_int(pcm, cfg)
        frames += want.shape[1]
        bad += want.shape[1] if got.shape != want.shape or gc != wc else int((got != want).any(axis=0).sum())
    return {"signals": len(signals), "frames": frames, "mismatches": bad}
