"""The whole classifier from PCM to logits: the integer front-end, the integer Norm and the network, as one
numpy integer path (:func:`clip_logits_int`) and as generated C (``<prefix>classifier.c/.h`` beside
``<prefix>frontend.c/.h`` and ``<prefix>model.c/.h``) with a whole-clip call and a streaming API.

Windows are cut as gclf cuts them (:func:`gclf.data.features.cut_windows`): the C reproduces
``window_starts`` and ``pad_index`` from a ring of one window of frames, so each frame is computed once.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gclf.errors import GclfError
from gclf.frontend.c import C_FLAGS_STRICT, _array, _render, frontend_fields, generate_frontend_c
from gclf.frontend.features import frontend_config
from gclf.frontend.intref import mfcc_int
from gclf.frontend.norm import model_norm_params


def check_int_model(model, fcfg) -> None:
    if fcfg.kind != "int_mfcc" or model.int_input_frac is None:
        raise GclfError("the C from PCM needs a model trained on the integer front-end "
                        "(`gclf train --frontend int`, then `gclf quantize`)")


def clip_logits_int(pcm: np.ndarray, ref, fcfg) -> np.ndarray:
    """Integer logits (windows, classes) of int16 ``pcm``: the numpy integer path the C reproduces."""
    from gclf.data.features import cut_windows

    q, _ = mfcc_int(pcm, frontend_config(fcfg))
    return ref.run_int(ref.quantize_int_input(cut_windows(q, fcfg).astype(np.int64)))


def stream_state_bytes(fe_cfg, T: int, n_classes: int) -> int:
    """sizeof(<prefix>cl_stream_t) as C lays it out (int64 members aligned to 8): the front-end's stream state
    (samples of one frame, fill, running peak), the ring of T frames, three counters, logits and sums."""
    fe = 2 * fe_cfg.n_fft + 4 + 4
    off = fe + 4 * T * fe_cfg.n_mfcc + 12 + 4 * n_classes
    off = -(-off // 8) * 8 + 8 * n_classes
    return -(-off // 8) * 8


def _pad_c(pad: str, T: int) -> dict:
    """The C of :func:`gclf.data.features.pad_index` for ``pad``: the frame a padded window's frame t reads."""
    if pad == "wrap":
        return {"pad_doc": "its frames repeated: f % frames",
                "pad_code": "    if (f >= st->frames)\n        f %= st->frames;"}
    if pad == "edge":
        return {"pad_doc": "the clip centred between copies of its first and last frame",
                "pad_code": (f"    if (st->frames < {T}) {{\n"
                             f"        f = t - ({T} - st->frames) / 2;\n"
                             "        f = f < 0 ? 0 : f >= st->frames ? st->frames - 1 : f;\n    }")}
    raise GclfError(f"no C for padding {pad!r}")


def generate_classifier(out_dir: str | Path, model, spec, fcfg, prefix: str = "gclf_", source: str = "",
                        chain: str = "") -> dict:
    """Write the front-end, the network and the classifier C (``<prefix>*.c/.h``) into ``out_dir``."""
    from gclf.backends.c.generate import generate_c, with_prefix
    from gclf.backends.c.support import primitives_c
    from gclf.backends.intref import IntegerReference
    from gclf.io import atomic_text

    check_int_model(model, fcfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, report = generate_c(model, spec, source, chain, prefix)
    written = {name: str(atomic_text(out / name, text)) for name, text in files.items()}
    fe_cfg = frontend_config(fcfg)
    fe = generate_frontend_c(out, fe_cfg, prefix)
    written.update({Path(fe["c"]).name: fe["c"], Path(fe["h"]).name: fe["h"]})
    ref = IntegerReference(model, spec)
    fmt = ref.plan[model.graph.norm.name].out_fmt
    p = model_norm_params(model, fmt)
    T = model.graph.input_shape[1]
    if T != fcfg.window_frames:
        raise GclfError(f"the model reads windows of {T} frames, the feature config cuts {fcfg.window_frames}")
    fields = {**frontend_fields(fe_cfg, prefix), "source": source or "a gclf checkpoint", "T": T,
              "win_hop": fcfg.window_hop, "half_hop": fcfg.window_hop // 2,
              "win_hop_ms": fcfg.window_hop * fe_cfg.hop * 1000 // fe_cfg.sample_rate,
              "in_frac": p.in_frac, "out_frac": fmt.frac, "input_q": str(fmt), "n_div": p.n,
              "cmn": int(p.cmn), "bias": _array(p.bias, 8), "mult": _array(p.mult, 8), "shift": _array(p.shift, 20),
              "classes": ", ".join(f"{i} = {c}" for i, c in enumerate(model.graph.classes)),
              "primitives": with_prefix(primitives_c(fmt.rounding), prefix)}
    fields.update(_pad_c(fcfg.pad, T))
    fields["state_bytes"] = stream_state_bytes(fe_cfg, T, model.graph.n_classes)
    for name in ("classifier.c", "classifier.h"):
        written[prefix + name] = str(atomic_text(out / (prefix + name), _render(name + ".tmpl", fields)))
    return {"files": written, "network": report, "table_bytes": fe["table_bytes"],
            "frontend_ram_bytes": fe["ram_bytes"], "stream_state_bytes": fields["state_bytes"],
            "norm": {"in_frac": p.in_frac, "input_format": str(fmt), "cmn": p.cmn}}


def build_classifier_harness(out_dir: str | Path, cc: str, model, spec, fcfg, prefix: str = "gclf_") -> Path:
    """Generate the classifier and its host harness in ``out_dir`` and compile them (strict warnings)."""
    from gclf.backends.c.build import CFLAGS
    from gclf.io import atomic_text

    out = Path(out_dir)
    gen = generate_classifier(out, model, spec, fcfg, prefix)
    main = atomic_text(out / f"{prefix}classifier_main.c", _render("classifier_main.c.tmpl", {"p": prefix,
                                                                                           "P": prefix.upper()}))
    sources = [f for f in gen["files"].values() if f.endswith(".c")]
    exe = out / f"{prefix}classifier_main"
    r = subprocess.run([cc, *CFLAGS, *C_FLAGS_STRICT, "-I", str(out), "-o", str(exe), *sources, str(main)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"compiling the classifier failed: {(r.stderr or r.stdout).strip()[:2000]}")
    return exe


def run_classifier_c(exe: str | Path, pcm: np.ndarray, chunks=None) -> tuple[np.ndarray, dict]:
    """Integer logits (windows, classes) of the compiled harness on int16 ``pcm``: the whole-clip call, or
    with ``chunks`` (sizes >= 1, cycled) the streaming API; and {"label", "diff", "out"} (label -2 whole clip)."""
    pcm = np.ascontiguousarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError("the classifier reads int16 PCM")
    with tempfile.TemporaryDirectory(prefix="gclf-cl-") as tmp:
        args = [str(exe), str(Path(tmp) / "pcm.bin")]
        pcm.astype("<i2").tofile(args[1])
        if chunks is not None:
            chunks = np.asarray(chunks, dtype="<i4")
            if chunks.size == 0 or chunks.min() < 1:
                raise ValueError("chunk sizes must be >= 1")
            chunks.tofile(Path(tmp) / "chunks.bin")
            args.append(str(Path(tmp) / "chunks.bin"))
        r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise GclfError(f"the classifier harness failed (exit {r.returncode}): {r.stderr.strip()[:300]}")
    lines = r.stdout.splitlines()
    label, diff, over = (int(v) for v in lines[-1].split()[1:])
    rows = np.array([[int(v) for v in ln.split()] for ln in lines[:-1]], dtype=np.int64)
    return rows, {"label": label, "diff": diff, "out": over}
