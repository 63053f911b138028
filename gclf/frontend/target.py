"""The front-end's C on the emulated Cortex-M4 (the network's target flow, gclf.backends.c.target): build,
run frames under QEMU, compare every MFCC with the numpy integer reference, count instructions per frame."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gclf.backends.c.build import run_checked
from gclf.backends.c.target import TargetConfig, parse_run, require_tools
from gclf.errors import GclfError
from gclf.frontend.c import C_FLAGS_STRICT, _render, frontend_fields, generate_frontend_c
from gclf.frontend.config import FrontendConfig
from gclf.frontend.intref import frame_pcm, mfcc_frames_int


def build_frontend_target(work: str | Path, cfg: FrontendConfig = FrontendConfig(), prefix: str = "gclf_",
                          target: TargetConfig = TargetConfig()) -> dict:
    """Cross-compile the front-end and its target harness into ``work``/fe.elf; sizes of the front-end object."""
    from gclf.backends.c.build import c_sizes
    from gclf.backends.c.generate import render

    require_tools(target)
    work = Path(work)
    gen = generate_frontend_c(work, cfg, prefix)
    flags = [*target.cpu_flags, *target.cflags, *C_FLAGS_STRICT]
    (work / "fe_main.c").write_text(_render("frontend_target_main.c.tmpl", frontend_fields(cfg, prefix)))
    (work / "gclf_vectors.c").write_text(render("gclf_vectors.c.tmpl"))
    objs = []
    for src in (gen["c"], work / "fe_main.c", work / "gclf_vectors.c"):
        objs.append(work / (Path(src).stem + ".o"))
        run_checked([target.cc, *flags, "-fstack-usage", "-I", str(work), "-c", str(src), "-o", str(objs[-1])],
             f"cross-compiling {Path(src).name}")
    elf = work / "fe.elf"
    run_checked([target.cc, *target.cpu_flags, "--specs=rdimon.specs", "-Wl,--section-start=.vectors=0x0", "-o", str(elf),
          *map(str, objs)], "linking the front-end target harness")
    s = c_sizes(objs[0], target.size)
    return {"elf": str(elf), "code": s["code"], "rodata": s["rodata"], "rw_data": s["rw_data"], "bss": s["bss"],
            "stack": s["stack"], "cflags": " ".join(flags)}


def run_frontend_target(elf: str | Path, frames: np.ndarray, target: TargetConfig = TargetConfig()) -> dict:
    """Run padded int16 ``frames`` (F, n_fft) through the ELF: MFCCs (F, n_mfcc), instructions per frame."""
    with tempfile.TemporaryDirectory(prefix="gclf-feq-") as tmp:
        np.ascontiguousarray(frames, dtype="<i2").tofile(Path(tmp) / "fe_in.bin")
        cmd = [target.qemu, "-M", target.machine, "-nographic", "-monitor", "none", "-serial", "none",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel",
               str(Path(elf).resolve())]
        try:
            r = run_checked(cmd, f"running on {target.qemu}", cwd=tmp, timeout=60 + 0.5 * len(frames))
        except subprocess.TimeoutExpired as e:
            raise GclfError(f"{target.qemu} did not finish in {e.timeout:.0f} s") from None
    res = parse_run("\n".join(ln for ln in r.stdout.splitlines() if not ln.startswith("O")))
    over = [ln.split()[1:] for ln in r.stdout.splitlines() if ln.startswith("O")]
    ins = np.rint(res["ticks"] * res["instructions_per_tick"]).astype(np.int64)
    return {"mfcc": res["logits"], "instructions": ins,
            "overflows": {"fft": int(over[0][0]), "out": int(over[0][1])} if over else None,
            "instructions_error": int(round(res["instructions_per_tick"]))}


def measure_frontend_target(pcm: np.ndarray, cfg: FrontendConfig = FrontendConfig(),
                            target: TargetConfig = TargetConfig()) -> dict:
    """Front-end on the emulated MCU vs the numpy reference on ``pcm``: mismatching frames, instructions."""
    fr = frame_pcm(pcm, cfg)
    want, counts = mfcc_frames_int(fr, cfg)
    with tempfile.TemporaryDirectory(prefix="gclf-fe-m4-") as tmp:
        built = build_frontend_target(tmp, cfg, target=target)
        got = run_frontend_target(built["elf"], fr.astype(np.int16), target)
    built.pop("elf")
    ins = got["instructions"]
    per_frame = int(np.median(ins))
    bad = int((got["mfcc"] != want).any(axis=1).sum()) if got["mfcc"].shape == want.shape else len(want)
    return {**built, "frames": len(want), "mismatches": bad, "overflows": got["overflows"],
            "reference_overflows": counts, "instructions_per_frame": per_frame,
            "instructions_min": int(ins.min()), "instructions_max": int(ins.max()),
            "instructions_error": got["instructions_error"],
            "instructions_per_second_of_audio": per_frame * cfg.sample_rate / cfg.hop}
