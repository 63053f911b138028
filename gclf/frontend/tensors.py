"""The front-end's tables and the integer Norm's constants as exported tensors (``gclf export-weights`` of a
model trained on the integer front-end), each with its Q format, like the network's weights."""
from __future__ import annotations

import numpy as np

from gclf.errors import GclfError
from gclf.frontend.config import tables
from gclf.frontend.features import frontend_config
from gclf.frontend.norm import model_norm_params
from gclf.quant.formats import WeightQ


def _wq(ints, width: int, frac: int) -> WeightQ:
    ints = np.asarray(ints, dtype=np.int64)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if ints.size and (ints.min() < lo or ints.max() > hi):
        raise GclfError(f"a front-end table does not fit {width} bits")
    return WeightQ(ints, width, np.array([width - 1 - frac]), "frontend")


def frontend_tensors(model, spec, fcfg) -> tuple[dict[str, WeightQ], dict[str, dict], dict]:
    """(tensors, manifest extras, meta) of the front-end and the integer Norm of an int_mfcc model."""
    cfg = frontend_config(fcfg)
    t = tables(cfg)
    from gclf.backends.fixed import plan

    fmt = plan(model.graph, spec)[model.graph.norm.name].out_fmt
    p = model_norm_params(model, fmt)
    bias_bits = max(2, int(np.abs(p.bias).max()).bit_length() + 1)
    if bias_bits > 32:
        raise GclfError("the Norm's offsets do not fit 32 bits")
    tensors = {
        "frontend.window": _wq(t.window, 16, cfg.window_frac),
        "frontend.twiddle_re": _wq(t.tw_re, 32, cfg.twiddle_frac),
        "frontend.twiddle_im": _wq(t.tw_im, 32, cfg.twiddle_frac),
        "frontend.bitrev": _wq(t.bitrev, 16, 0),
        "frontend.mel": _wq(t.mel, 16, cfg.mel_frac),
        "frontend.mel_lo": _wq(t.mel_lo, 16, 0),
        "frontend.mel_len": _wq(t.mel_len, 16, 0),
        "frontend.band_offset": _wq(t.band_off, 32, cfg.log_frac),
        "frontend.log2_table": _wq(t.log_table, 32, cfg.log_frac),
        "frontend.dct": _wq(t.dct, 32, cfg.dct_frac),
        "norm.bias": _wq(p.bias, bias_bits, p.in_frac),
        "norm.multiplier": _wq(p.mult, 32, 31),
        "norm.shift": _wq(p.shift, 8, 0),
    }
    extras = {
        "frontend.window": {"meaning": "periodic Hann window"},
        "frontend.twiddle_re": {"meaning": "cos(2 pi k / n_fft), k = 0..n_fft/2"},
        "frontend.twiddle_im": {"meaning": "-sin(2 pi k / n_fft), k = 0..n_fft/2"},
        "frontend.bitrev": {"meaning": "bit-reversal permutation of the half-size complex FFT"},
        "frontend.mel": {"meaning": "mel weights relative to each band's largest weight (band scale in band_offset)"},
        "frontend.mel_lo": {"meaning": "first FFT bin of each band"},
        "frontend.mel_len": {"meaning": "FFT bins in each band"},
        "frontend.band_offset": {"meaning": "log2 offset of each band: band scale, power shift, PCM scale"},
        "frontend.log2_table": {"meaning": "log2(1 + i / 2^log_table_bits)"},
        "frontend.dct": {"meaning": "orthonormal DCT-II x 10 log10(2): log2 -> dB"},
        "norm.bias": {"meaning": f"round(offset x 2^{p.in_frac} x {p.n}): the offset added to the window sum "
                                 f"before the rounded division by {p.n}"},
        "norm.multiplier": {"meaning": f"Q31 multiplier of scale x 2^({fmt.frac} - {p.in_frac}), applied with "
                                       "norm.shift as a rounded right shift"},
        "norm.shift": {"meaning": "right shift after the multiplier"},
    }
    meta = {"frontend": {**cfg.as_dict(), "floor_q16_log2": int(t.floor_q), "top_q16_log2": int(t.top_q),
                         "decay_q16_log2_per_frame": int(t.decay_q),
                         "definition": "gclf/frontend/config.py",
                         "norm": {"input_frac": p.in_frac, "window_frames": p.length, "cmn": p.cmn,
                                  "input_format": str(fmt), "definition": "gclf/frontend/norm.py"}}}
    return tensors, extras, meta
