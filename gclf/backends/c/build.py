"""Compiling, measuring and running the generated C: the system compiler, ``size``, and a test harness.

:func:`c_sizes` reads an object file with binutils ``size``: Berkeley ``text`` (code + read-only data, i.e.
the weights and tables), ``data`` and ``bss``, the code / read-only data / writable data split from
``size -A``, and the stack from the ``.su`` file GCC writes with ``-fstack-usage``.
Static RAM = writable data + bss + stack.
:func:`build_harness` compiles ``templates/gclf_main.c.tmpl`` with the model into an executable that reads
quantized windows (native int32) and prints integer logits; :func:`run_harness` drives it from numpy.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gclf.errors import GclfError

CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")


def find_cc() -> str | None:
    """$CC if set and found, else the first of cc, gcc, clang on PATH (None: no C compiler)."""
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def run_checked(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """Run a tool; its failure becomes one GclfError line naming ``what`` and the tool's first message."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise GclfError(f"{what} failed ({' '.join(cmd[:2])} ...): {msg[0] if msg else 'exit ' + str(r.returncode)}")
    return r


def compile_object(c_path: str | Path, obj_path: str | Path, cc: str, flags=CFLAGS) -> Path:
    """``cc flags -c c_path -o obj_path`` (with -fstack-usage when the compiler has it)."""
    obj = Path(obj_path)
    base = [cc, *flags, "-c", str(c_path), "-o", str(obj)]
    r = subprocess.run(base[:1] + ["-fstack-usage"] + base[1:], capture_output=True, text=True)
    if r.returncode != 0:
        run_checked(base, "compiling " + Path(c_path).name)
    return obj


def _berkeley(obj: Path, size: str = "size") -> dict:
    r = run_checked([size, str(obj)], "size")
    text, data, bss = (int(v) for v in r.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def _sections(obj: Path, size: str = "size") -> dict:
    """code = .text*; rodata = .rodata* + .data.rel.ro* (constants: relocated pointers of the const layer
    descriptors land there in position-independent builds); rw_data = the other .data* / .sdata*."""
    r = run_checked([size, "-A", str(obj)], "size -A")
    out = {"code": 0, "rodata": 0, "rw_data": 0}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        name, n = parts[0], int(parts[1])
        if name.startswith(".text"):
            out["code"] += n
        elif name.startswith((".rodata", ".data.rel.ro")):
            out["rodata"] += n
        elif name.startswith((".data", ".sdata")):
            out["rw_data"] += n
    return out


def _stack(su: Path) -> dict[str, int]:
    out = {}
    if su.is_file():
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                out[parts[0].rsplit(":", 1)[-1]] = int(parts[1])
    return out


def c_sizes(obj_path: str | Path, size: str = "size") -> dict:
    """Sizes of an object file in bytes: text/data/bss (Berkeley ``size``), code/rodata/rw_data (sections),
    stack and static RAM.

    ``stack`` sums the frames GCC reports in the ``.su`` file next to the object (an upper bound of the
    deepest call chain; None without one); ``static_ram`` = rw_data + bss + stack (read-only data is not RAM).
    """
    obj = Path(obj_path)
    if not obj.is_file():
        raise GclfError(f"no object file at {obj}")
    if not shutil.which(size):
        raise GclfError(f"binutils `{size}` is not installed: cannot measure the object")
    sizes = {**_berkeley(obj, size), **_sections(obj, size)}
    frames = _stack(obj.with_suffix(".su"))
    sizes["stack"] = sum(frames.values()) if frames else None
    sizes["stack_frames"] = frames
    sizes["static_ram"] = sizes["rw_data"] + sizes["bss"] + (sizes["stack"] or 0)
    return sizes


def measure_sizes(c_path: str | Path, cc: str) -> dict:
    """Compile ``c_path`` (CFLAGS) to an object in a temporary folder and return :func:`c_sizes`."""
    with tempfile.TemporaryDirectory(prefix="gclf-cc-") as tmp:
        obj = compile_object(c_path, Path(tmp) / "gclf_model.o", cc)
        return {**c_sizes(obj), "cflags": " ".join(CFLAGS)}


def build_harness(c_dir: str | Path, exe: str | Path, cc: str, flags=CFLAGS) -> Path:
    """Write gclf_main.c next to ``exe`` and compile it with ``c_dir``/gclf_model.c into ``exe``."""
    from gclf.io import atomic_text
    from gclf.backends.c.generate import render

    c_dir = Path(c_dir)
    main = atomic_text(Path(exe).parent / "gclf_main.c", render("gclf_main.c.tmpl"))
    run_checked([cc, *flags, "-I", str(c_dir), "-o", str(exe), str(c_dir / "gclf_model.c"), str(main)],
         "compiling the harness")
    return Path(exe)


def run_harness(exe: str | Path, xq: np.ndarray) -> np.ndarray:
    """Integer logits (N, classes) of quantized windows ``xq`` (N, channels, steps) from the harness."""
    xq = np.ascontiguousarray(xq, dtype=np.int64)
    if xq.size and (xq.min() < -2 ** 31 or xq.max() >= 2 ** 31):
        raise ValueError("quantized inputs must fit int32")
    with tempfile.TemporaryDirectory(prefix="gclf-run-") as tmp:
        path = Path(tmp) / "x.bin"
        xq.astype(np.int32).tofile(path)
        r = run_checked([str(exe), str(path)], "the C harness")
    rows = [[int(v) for v in line.split()] for line in r.stdout.splitlines() if line.strip()]
    return np.array(rows, dtype=np.int64).reshape(len(rows), -1)


def verify_c(model, spec, c_dir: str | Path, x, cc: str) -> dict:
    """Compare the C in ``c_dir`` with the integer reference on float windows ``x``: mismatching windows."""
    from gclf.backends.intref import IntegerReference

    ref = IntegerReference(model, spec)
    xq = ref.quantize_input(x)
    want = ref.run_int(xq)
    with tempfile.TemporaryDirectory(prefix="gclf-h-") as tmp:
        got = run_harness(build_harness(c_dir, Path(tmp) / "gclf_main", cc), xq)
    bad = int((got != want).any(axis=1).sum()) if got.shape == want.shape else len(want)
    return {"windows": len(want), "mismatches": bad}


def verification_windows(model_path: str | Path, cache_root: str | Path = "pkl_data",
                         data: str | Path | None = None):
    """(model, spec, windows) of a fixed-point checkpoint: its held-out windows (final.pt, which holds out
    none: its own training windows). ``data``: where the corpus lies, if not cached."""
    from gclf.checkpoint import load_fixed_point
    from gclf.data.dataset import eval_windows
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import features_for_checkpoint, heldout_or_none

    path, ck, model, spec = load_fixed_point(model_path, integer=True)
    utts = features_for_checkpoint(ck, cache_root, data)
    windows = heldout_or_none(ck, utts) or eval_windows(utts, FeatureConfig.from_dict(ck["feature_config"]))
    return model, spec, windows


def verify_export(model_path: str | Path, c_dir: str | Path, cache_root: str | Path = "pkl_data",
                  data: str | Path | None = None) -> dict:
    """Run the C in ``c_dir`` on :func:`verification_windows` and compare with the integer reference."""
    cc = find_cc()
    if cc is None:
        raise GclfError("verifying needs a C compiler: install cc, gcc or clang, or set $CC")
    model, spec, windows = verification_windows(model_path, cache_root, data)
    return verify_c(model, spec, c_dir, windows.x, cc)
