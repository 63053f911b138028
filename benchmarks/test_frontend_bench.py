"""The integer front-end's cost: 10 s of synthetic speech through librosa's MFCC, the numpy integer reference,
its float64 mirror and the generated C (host harness, process start included); and, with the ARM tools, the
C on the emulated Cortex-M4 (instructions per second of audio in extra_info)."""
from __future__ import annotations

import pytest

SECONDS = 10.0


@pytest.fixture(scope="module")
def pcm():
    from gclf.frontend.signals import speech

    return speech("F", 7, SECONDS)


@pytest.mark.benchmark(group="front-end, 10 s of audio")
@pytest.mark.parametrize("impl", ["librosa", "numpy-int", "numpy-float-mirror"])
def test_frontend_python(benchmark, pcm, impl, librosa_warm):
    from gclf.data.features import FeatureConfig, mfcc
    from gclf.frontend import mfcc_float, mfcc_int

    fn = {"librosa": lambda: mfcc(pcm / 32768.0, FeatureConfig()), "numpy-int": lambda: mfcc_int(pcm)[0],
          "numpy-float-mirror": lambda: mfcc_float(pcm)}[impl]
    out = benchmark(fn)
    assert out.shape == (40, 1 + pcm.size // 320)
    benchmark.extra_info.update({"step": f"frontend-{impl}", "measure": "frontend", "audio_seconds": SECONDS})


@pytest.mark.benchmark(group="front-end, 10 s of audio")
def test_frontend_c_host(benchmark, pcm, tmp_path):
    from gclf.backends.c.build import find_cc
    from gclf.frontend.c import build_frontend_harness, run_frontend_c

    cc = find_cc()
    if cc is None:
        pytest.skip("no C compiler")
    exe = build_frontend_harness(tmp_path, cc)
    out, _ = benchmark(run_frontend_c, exe, pcm)
    assert out.shape == (40, 1 + pcm.size // 320)
    benchmark.extra_info.update({"step": "frontend-c-host", "measure": "frontend", "audio_seconds": SECONDS,
                                 "note": "incl. process start and PCM through a file"})


def test_frontend_cortex_m4(benchmark, pcm):
    from gclf.backends.c.target import missing_tools
    from gclf.frontend.target import measure_frontend_target

    if missing_tools():
        pytest.skip("no Cortex-M4 toolchain/emulator")
    r = benchmark.pedantic(measure_frontend_target, args=(pcm[:32000],), rounds=1, iterations=1)
    assert r["mismatches"] == 0
    benchmark.extra_info.update({k: r[k] for k in ("instructions_per_frame", "instructions_per_second_of_audio",
                                                   "code", "rodata", "bss", "stack")})
