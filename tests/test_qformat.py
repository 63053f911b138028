"""QFormat: derived fields, validation, serialisation, and the choice of integer bits for a range."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from gclf.quant.primitives import quantize_fixed
from gclf.quant.qformat import MAX_FRAC, ROUNDINGS, QFormat, format_for_range, formats_per_channel


@pytest.mark.parametrize("fmt, frac, min_int, max_int, min_value, max_value, text", [
    (QFormat(8, 3), 4, -128, 127, -8.0, 7.9375, "Q3.4 (8b)"),
    (QFormat(8, 0, signed=False), 8, 0, 255, 0.0, 255 / 256, "UQ0.8 (8b)"),
    (QFormat(9, -2, rounding="floor"), 10, -256, 255, -0.25, 255 / 1024, "Q-2.10 (9b, floor)"),
    (QFormat(4, 6), -3, -8, 7, -64.0, 56.0, "Q6.-3 (4b)"),
    (QFormat(16, 15, signed=False), 1, 0, 65535, 0.0, 32767.5, "UQ15.1 (16b)"),
    (QFormat(32, 31), 0, -2**31, 2**31 - 1, -2.0**31, 2.0**31 - 1, "Q31.0 (32b)"),
    (QFormat(2, 0), 1, -2, 1, -1.0, 0.5, "Q0.1 (2b)"),
])
def test_derived_fields(fmt, frac, min_int, max_int, min_value, max_value, text):
    assert (fmt.frac, fmt.min_int, fmt.max_int) == (frac, min_int, max_int)
    assert fmt.scale == 2.0 ** -frac
    assert (fmt.min_value, fmt.max_value) == (min_value, max_value)
    assert str(fmt) == text


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=1, integer=0), "width must be in 2..32"),
    (dict(width=33, integer=0), "width must be in 2..32"),
    (dict(width=8.0, integer=3), "width must be an int"),
    (dict(width=True, integer=0), "width must be an int"),
    (dict(width=8, integer=3.5), "integer must be an int"),
    (dict(width=8, integer=3, signed="yes"), "signed must be a bool"),
    (dict(width=8, integer=3, rounding="nearest"), "rounding must be one of"),
    (dict(width=8, integer=3, saturation="wrap"), "never wraps"),
    (dict(width=8, integer=-200), "frac must be in"),
    (dict(width=8, integer=200), "frac must be in"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QFormat(**kwargs)


def test_frozen_hashable_and_numpy_ints_normalised():
    fmt = QFormat(np.int64(8), np.int32(3), np.bool_(True))
    assert fmt == QFormat(8, 3) and hash(fmt) == hash(QFormat(8, 3))
    assert type(fmt.width) is int and type(fmt.integer) is int and type(fmt.signed) is bool
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.width = 16


@pytest.mark.parametrize("fmt", [QFormat(8, 3), QFormat(12, -4, False, "floor"), QFormat(32, 40, True, "half_even")])
def test_dict_round_trip_survives_weights_only_checkpoint(fmt, tmp_path):
    d = fmt.to_dict()
    assert QFormat.from_dict(d) == fmt
    assert {type(v) for v in d.values()} <= {int, bool, str}
    torch.save({"fmt": d}, tmp_path / "f.pt")
    assert QFormat.from_dict(torch.load(tmp_path / "f.pt", weights_only=True)["fmt"]) == fmt


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown QFormat keys"):
        QFormat.from_dict({"width": 8, "integer": 3, "frac": 4})


def _overflows(max_abs: float, fmt: QFormat) -> bool:
    values = [max_abs, -max_abs] if fmt.signed else [max_abs]
    return quantize_fixed(np.array(values), fmt)[1] > 0


def test_format_for_range_picks_the_fewest_integer_bits_that_hold_the_value():
    rng = np.random.default_rng(0)
    for _ in range(400):
        max_abs = 10.0 ** rng.uniform(-6, 6)
        width, signed = int(rng.integers(2, 33)), bool(rng.integers(2))
        rounding = ROUNDINGS[rng.integers(len(ROUNDINGS))]
        fmt = format_for_range(max_abs, width, signed, rounding)
        assert (fmt.width, fmt.signed, fmt.rounding) == (width, signed, rounding)
        assert not _overflows(max_abs, fmt) and max_abs < fmt.max_value + fmt.scale
        assert _overflows(max_abs, dataclasses.replace(fmt, integer=fmt.integer - 1))


@pytest.mark.parametrize("max_abs, rounding, integer", [
    (7.9375, "half_up", 3),      # exactly max_value of Q3.4
    (7.96875, "half_up", 4),     # 127.5 steps rounds to 128: saturates in Q3.4
    (7.96875, "half_even", 4),   # 127.5 -> 128 (even)
    (7.96875, "floor", 3),       # floor(127.5) = 127 fits
    (8.0, "floor", 4),
    (0.75, "half_up", 0),
    (1.0, "half_up", 1),
])
def test_format_for_range_edges(max_abs, rounding, integer):
    assert format_for_range(max_abs, 8, rounding=rounding).integer == integer


def test_format_for_range_zero_tiny_and_invalid():
    assert format_for_range(0.0, 8) == QFormat(8, 0)
    assert format_for_range(1e-300, 8).frac == MAX_FRAC
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="finite and >= 0"):
            format_for_range(bad, 8)
    with pytest.raises(ValueError, match="does not fit"):
        format_for_range(1e60, 8)


def test_formats_per_channel():
    w = np.zeros((3, 4, 2))
    w[0, 1, 1], w[1, 2, 0] = -0.5, 3.0
    fmts = formats_per_channel(w, 8)
    assert fmts == [format_for_range(0.5, 8), format_for_range(3.0, 8), QFormat(8, 0)]
    assert [f.integer for f in formats_per_channel(w, 8, axis=1, signed=False)] == [0, 0, 2, 0]
    assert [f.integer for f in formats_per_channel(w, 8, axis=-1)] == [2, 0]
    with pytest.raises(ValueError, match="out of range"):
        formats_per_channel(w, 8, axis=3)
