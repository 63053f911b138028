"""The generated C on a real instruction set, emulated: Cortex-M4 under QEMU (``mps2-an386``).

:func:`build_target` cross-compiles ``gclf_model.c`` with ``arm-none-eabi-gcc`` (``-mcpu=cortex-m4 -mthumb
-O2``; newlib's semihosting ``--specs=rdimon.specs``) together with a harness
(``templates/gclf_target_main.c.tmpl``) and a 16-entry vector table, and measures the model object:
flash = code + read-only data (+ initial values of writable data), RAM = writable data + bss + the stack
gclf_infer really used (the harness paints the stack before the first window and finds the deepest word
written).

:func:`run_target` runs the ELF on ``qemu-system-arm -M mps2-an386 -semihosting -icount shift=0``, feeding
quantized windows through a host file, and reads back every window's integer logits and the instructions
executed by each ``gclf_infer`` call. Under ``-icount shift=0`` QEMU advances virtual time by exactly 1 ns per
executed instruction; the harness reads SysTick (clocked from the CPU clock) around the call, and a
calibration on a loop of known length (``subs``/``bne``: 2 instructions per turn) gives the instructions per
tick (40 on this machine model). A count is therefore exact to one tick: +-40 instructions per inference.
QEMU models no pipeline or memory timing, so these are instructions, not cycles (on a Cortex-M4 most
instructions of these kernels take one cycle; loads that feed the next instruction and taken branches more).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gclf.errors import GclfError
from gclf.backends.c.build import run_checked

APT_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm")


@dataclass(frozen=True)
class TargetConfig:
    """One emulated microcontroller: compiler, flags, QEMU machine."""

    name: str = "cortex-m4"
    cc: str = "arm-none-eabi-gcc"
    size: str = "arm-none-eabi-size"
    nm: str = "arm-none-eabi-nm"
    cpu_flags: tuple[str, ...] = ("-mcpu=cortex-m4", "-mthumb")
    cflags: tuple[str, ...] = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
    qemu: str = "qemu-system-arm"
    machine: str = "mps2-an386"
    dsp: bool = True                  # False: -DGCLF_NO_DSP, the portable C99 kernels on the same CPU
    paint_words: int = 8192           # stack words painted below main's frame (32 KB)
    seconds_per_window: float = 0.5   # QEMU time-out budget


TARGETS = {"cortex-m4": TargetConfig()}


def target_config(name: str, dsp: bool = True) -> TargetConfig:
    if name not in TARGETS:
        raise GclfError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    from dataclasses import replace

    return replace(TARGETS[name], dsp=dsp)


def missing_tools(cfg: TargetConfig = TargetConfig()) -> list[str]:
    """The tools of ``cfg`` not on PATH, plus newlib's rdimon specs when the compiler cannot find them."""
    missing = [t for t in (cfg.cc, cfg.size, cfg.nm, cfg.qemu) if not shutil.which(t)]
    if shutil.which(cfg.cc):
        r = subprocess.run([cfg.cc, "-print-file-name=rdimon.specs"], capture_output=True, text=True)
        if r.returncode != 0 or not Path(r.stdout.strip()).is_file():
            missing.append("newlib (rdimon.specs)")
    return missing


def require_tools(cfg: TargetConfig = TargetConfig()) -> None:
    missing = missing_tools(cfg)
    if missing:
        raise GclfError(f"the {cfg.name} target needs {', '.join(missing)}: install the Debian packages "
                        f"{' '.join(APT_PACKAGES)} (apt-get install -y {' '.join(APT_PACKAGES)})")


def build_target(c_dir: str | Path, work: str | Path, cfg: TargetConfig = TargetConfig()) -> dict:
    """Cross-compile ``c_dir``/gclf_model.c and the harness into ``work``/gclf.elf; sizes of the model object."""
    from gclf.backends.c.build import c_sizes
    from gclf.backends.c.generate import render

    require_tools(cfg)
    c_dir, work = Path(c_dir), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    flags = [*cfg.cpu_flags, *cfg.cflags, *([] if cfg.dsp else ["-DGCLF_NO_DSP"])]
    (work / "gclf_target_main.c").write_text(render("gclf_target_main.c.tmpl", paint_words=cfg.paint_words))
    (work / "gclf_vectors.c").write_text(render("gclf_vectors.c.tmpl"))
    model_o = work / "gclf_model.o"
    run_checked([cfg.cc, *flags, "-fstack-usage", "-c", str(c_dir / "gclf_model.c"), "-o", str(model_o)],
         f"cross-compiling gclf_model.c for {cfg.name}")
    objs = [model_o]
    for name in ("gclf_target_main", "gclf_vectors"):
        objs.append(work / f"{name}.o")
        run_checked([cfg.cc, *flags, "-I", str(c_dir), "-c", str(work / f"{name}.c"), "-o", str(objs[-1])],
             f"cross-compiling {name}.c")
    elf = work / "gclf.elf"
    run_checked([cfg.cc, *cfg.cpu_flags, "--specs=rdimon.specs", "-Wl,--section-start=.vectors=0x0", "-o", str(elf),
          *map(str, objs)], "linking the target harness")
    sizes = c_sizes(model_o, cfg.size)
    undefined = run_checked([cfg.nm, "-u", str(model_o)], "nm").stdout.split()
    return {"elf": str(elf), "target": cfg.name, "machine": cfg.machine, "dsp": cfg.dsp,
            "cflags": " ".join(flags), "flash": sizes["code"] + sizes["rodata"] + sizes["rw_data"],
            "code": sizes["code"], "rodata": sizes["rodata"], "rw_data": sizes["rw_data"], "bss": sizes["bss"],
            "library_calls": [s for s in undefined if s not in ("U",)],
            "stack_frames_static": sizes["stack_frames"]}


def parse_run(out: str) -> dict:
    """The harness output (logits, SysTick ticks, calibration, stack) as a report."""
    logits, ticks, stack, calib = [], [], None, None
    for line in out.splitlines():
        tag, *vals = line.split()
        if tag == "L":
            logits.append([int(v) for v in vals])
        elif tag == "T":
            ticks.append(int(vals[0]))
        elif tag == "S":
            stack = int(vals[0])
        elif tag == "C":
            calib = [int(v) for v in vals]
        elif tag == "E":
            raise GclfError("the target harness: " + " ".join(vals))
    if calib is None or len(ticks) != len(logits):
        raise GclfError(f"the target harness printed no complete result: {out[-300:]!r}")
    n1, t1, n2, t2 = calib
    if t2 <= t1:
        raise GclfError("the SysTick calibration did not advance: is qemu running with -icount?")
    per_tick = 2 * (n2 - n1) / (t2 - t1)
    return {"logits": np.array(logits, dtype=np.int64).reshape(len(logits), -1), "ticks": np.array(ticks),
            "stack": stack, "instructions_per_tick": per_tick}


def run_target(elf: str | Path, xq: np.ndarray, cfg: TargetConfig = TargetConfig()) -> dict:
    """Run ``elf`` on quantized windows ``xq`` (N, C, T) under QEMU: logits, instructions per call, stack."""
    xq = np.ascontiguousarray(xq, dtype=np.int64)
    if xq.size and (xq.min() < -2 ** 31 or xq.max() >= 2 ** 31):
        raise ValueError("quantized inputs must fit int32")
    with tempfile.TemporaryDirectory(prefix="gclf-qemu-") as tmp:
        xq.astype(np.int32).tofile(Path(tmp) / "gclf_in.bin")
        cmd = [cfg.qemu, "-M", cfg.machine, "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(Path(elf).resolve())]
        try:
            r = run_checked(cmd, f"running on {cfg.qemu} -M {cfg.machine}", cwd=tmp,
                     timeout=30 + cfg.seconds_per_window * len(xq))
        except subprocess.TimeoutExpired as e:
            raise GclfError(f"{cfg.qemu} did not finish in {e.timeout:.0f} s") from None
    res = parse_run(r.stdout)
    ins = np.rint(res["ticks"] * res["instructions_per_tick"]).astype(np.int64)
    return {**res, "instructions": ins}


def measure_target(model, spec, c_dir: str | Path, xq: np.ndarray, cfg: TargetConfig = TargetConfig()) -> dict:
    """Build for ``cfg``, run quantized windows ``xq`` and compare every logit with the integer reference."""
    from gclf.backends.c.generate import generate_c
    from gclf.backends.intref import IntegerReference

    ref = IntegerReference(model, spec)
    want = ref.run_int(xq)
    _, rep = generate_c(model, spec)
    with tempfile.TemporaryDirectory(prefix="gclf-m4-") as tmp:
        built = build_target(c_dir, tmp, cfg)
        got = run_target(built["elf"], xq, cfg)
    bad = int((got["logits"] != want).any(axis=1).sum()) if got["logits"].shape == want.shape else len(want)
    ins = got["instructions"]
    macs = rep["macs"]
    built.pop("elf")
    return {**built, "windows": len(want), "mismatches": bad,
            "ram": built["rw_data"] + built["bss"] + (got["stack"] or 0), "stack": got["stack"],
            "instructions_per_inference": int(np.median(ins)) if len(ins) else None,
            "instructions_min": int(ins.min()) if len(ins) else None,
            "instructions_max": int(ins.max()) if len(ins) else None,
            "instructions_error": int(round(got["instructions_per_tick"])),
            "instructions_per_tick": got["instructions_per_tick"], "macs": macs,
            "instructions_per_mac": round(float(np.median(ins)) / macs, 3) if len(ins) and macs else None,
            "counting": "qemu -icount shift=0 (1 ns per instruction) read through SysTick, calibrated on a loop "
                        "of known length; exact to one tick (instructions_error)"}


def verify_export_target(model_path: str | Path, c_dir: str | Path, cache_root: str | Path = "pkl_data",
                         cfg: TargetConfig = TargetConfig(), data: str | Path | None = None) -> dict:
    """:func:`measure_target` on the checkpoint's verification windows (see ``build.verification_windows``)."""
    from gclf.backends.c.build import verification_windows
    from gclf.backends.intref import IntegerReference

    require_tools(cfg)
    model, spec, windows = verification_windows(model_path, cache_root, data)
    xq = IntegerReference(model, spec).quantize_input(windows.x)
    return measure_target(model, spec, c_dir, xq, cfg)
