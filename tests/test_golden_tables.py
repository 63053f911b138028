"""The sigmoid/tanh integer tables the chain ships (PLAN sigmoid, pwl16 tanh, and their twins), pinned by
golden values and hashes: a change of one LSB in any slope, intercept or break fails here, whatever the code
under test believes its own bounds to be.

Formats pinned: every input fraction 0..bits-1 at the output formats the chain uses for 8-, 12- and 16-bit
activations (sigmoid UQ1.(b-1), tanh Q1.(b-2); :func:`gclf.quant.formats.sigmoid_format` / ``tanh_format``).
If a change of the tables is intended, regenerate the hashes with :func:`table_hash` and say why in the commit.
"""
import hashlib
import json

import pytest

from gclf.approx.schemes import get_approx
from gclf.quant.formats import sigmoid_format, tanh_format

GOLDEN_HASHES = {
    ("plan", "sigmoid", 8): "ae45357fefb42405", ("plan", "sigmoid", 12): "1b87f4041e4c581e",
    ("plan", "sigmoid", 16): "74568b4cd9046dc0", ("plan", "tanh", 8): "036540b6f9380249",
    ("plan", "tanh", 12): "f4fc1552aecabef7", ("plan", "tanh", 16): "2fe3ca83b152433b",
    ("pwl16", "sigmoid", 8): "5192f63c7d4447f4", ("pwl16", "sigmoid", 12): "5e191fac163431d4",
    ("pwl16", "sigmoid", 16): "ff6aac4cb4377d19", ("pwl16", "tanh", 8): "e4def84f7f1dbdf1",
    ("pwl16", "tanh", 12): "eb1171d1b362d3f1", ("pwl16", "tanh", 16): "3a10e43a06dd68f7",
}


def out_frac(func: str, bits: int) -> int:
    fmt = sigmoid_format(bits, "half_up") if func == "sigmoid" else tanh_format(bits, "half_up")
    return fmt.frac


def table_hash(name: str, func: str, bits: int) -> str:
    tables = [get_approx(name, func).fixed_tables(i, out_frac(func, bits)) for i in range(bits)]
    return hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]


def test_output_formats_are_the_pinned_ones():
    assert [(out_frac("sigmoid", b), out_frac("tanh", b)) for b in (8, 12, 16)] == [(7, 6), (11, 10), (15, 14)]


@pytest.mark.parametrize("key", sorted(GOLDEN_HASHES))
def test_tables_match_their_golden_hash(key):
    assert table_hash(*key) == GOLDEN_HASHES[key]


def test_pwl16_tanh_golden_values_at_a8():
    """The W8/A8 chain's tanh at input Q.5: every integer written out."""
    t = get_approx("pwl16", "tanh").fixed_tables(5, 6)
    assert t["breaks"] == [0, 12, 24, 36, 48, 60, 72, 84, 96]
    assert t["slopes"] == [979, 756, 476, 262, 134, 65, 31, 29]
    assert t["intercepts"] == [0, 11743, 20813, 26519, 29660, 31262, 32048, 32426]
    assert (t["slope_shift"], t["one"], t["sat"], t["mirror"]) == (9, 64, 64, "negate")


def test_plan_sigmoid_golden_values_at_a8():
    """PLAN in fixed point: power-of-two slopes (1/4, 1/8, 1/32 at shift 9), breaks 1, 2.375, 5."""
    t = get_approx("plan", "sigmoid").fixed_tables(5, 7)
    assert t["breaks"] == [0, 32, 76, 160]
    assert t["slopes"] == [512, 256, 64]
    assert t["intercepts"] == [32768, 49152, 60160]
    assert (t["slope_shift"], t["one"], t["sat"], t["mirror"]) == (9, 128, 128, "one_minus")
