"""Shared C text of the generated inference: the templates, the fixed-point primitives of one rounding mode,
sigmoid / tanh from the chain's integer tables, and the support blocks a handler asks for (:data:`SUPPORT`)."""
from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from gclf.backends.weights import bits_for_values, c_array, c_type
from gclf.errors import GclfError

TEMPLATES = Path(__file__).with_name("templates")
ROUNDING_IDS = {"floor": 0, "half_up": 1, "half_away": 2, "half_even": 3}
MAX_SHIFT = 62


def render(template: str, **fields) -> str:
    """Fill ``template`` (a file under templates/) with ``fields``; a missing field raises KeyError."""
    return string.Template((TEMPLATES / template).read_text()).substitute(fields)


def primitives_c(rounding: str) -> str:
    """The C fixed-point primitives (floor shift, rounding shift, requantize) for one rounding mode."""
    if rounding not in ROUNDING_IDS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING_IDS)}; got {rounding!r}")
    return render("primitives.c.tmpl", rounding=rounding, rounding_id=ROUNDING_IDS[rounding])

# ---- sigmoid / tanh -----------------------------------------------------------------------------------
def activation_c(fn: str, approx, in_frac: int, out_frac: int, label: str = "") -> tuple[str, dict, int]:
    """C function ``int64_t fn(int64_t q)`` evaluating ``approx`` from its fixed_tables() integers.

    Needs gclf_floor_shr (:func:`primitives_c`) and, for pwl and lut tables, :data:`SEGMENT_FN`. Returns
    (C text, the tables with ``pre_shift``, bytes of its arrays). A negative ``in_frac`` is handled as in
    ``activation_fixed``: the input is first multiplied by 2**-in_frac (exact) and read at fraction 0.
    """
    pre, tin = max(0, -in_frac), max(in_frac, 0)
    t = approx.fixed_tables(tin, out_frac)
    mag = "(q < 0 ? -q : q)" + (f" * ((int64_t)1 << {pre})" if pre else "")
    lines = [f"/* {label or fn}: {approx.func} '{approx.name}', input frac {in_frac}, output frac {out_frac}, "
             f"kind {t['kind']} */"]
    body, nbytes = [], 0

    def arr(suffix: str, vals) -> str:
        nonlocal nbytes
        v = np.asarray(vals, dtype=np.int64)
        ctype = "int32_t" if suffix == "breaks" else c_type(bits_for_values(v))
        if suffix == "breaks" and v.size and v.max() >= 2 ** 31:
            raise GclfError(f"{label}: breakpoints beyond int32_t")
        lines.append(c_array(ctype, f"{fn}_{suffix}", v))
        nbytes += v.size * int(ctype[3:-2]) // 8
        return f"{fn}_{suffix}"

    sat = t["sat"]
    if t["kind"] == "pwl":
        br, sl, it = arr("breaks", t["breaks"]), arr("slopes", t["slopes"]), arr("intercepts", t["intercepts"])
        n, s = len(t["breaks"]) - 1, t["slope_shift"]
        body = [f"    if (a < {t['breaks'][-1]}) {{", f"        const int k = gclf_segment({br}, {n}, a);",
                "        int64_t r;",
                f"        y = gclf_floor_shr({it}[k] + (int64_t){sl}[k] * (a - {br}[k]) + {1 << (s - 1)}, {s}, &r);",
                "    }"]
    elif t["kind"] == "lut":
        br, tb = arr("breaks", t["breaks"]), arr("table", t["table"])
        body = [f"    if (a < {t['breaks'][-1]})",
                f"        y = {tb}[gclf_segment({br}, {len(t['breaks']) - 1}, a)];"]
    elif t["table"]:
        tb = arr("table", t["table"])
        body = [f"    if (a < {len(t['table'])})", f"        y = {tb}[a];"]
    else:
        body = ["    (void)a;"]
    back = f"{t['one']} - y" if t["mirror"] == "one_minus" else "-y"
    lines += [f"static int64_t {fn}(int64_t q)", "{", f"    const int64_t a = {mag};", f"    int64_t y = {sat};",
              *body, f"    return q < 0 ? {back} : y;", "}", ""]
    return "\n".join(lines), {**t, "pre_shift": pre}, nbytes


SEGMENT_FN = """/* the segment holding a >= 0: the largest k < n with breaks[k] <= a (breaks[0] = 0) */
static int gclf_segment(const int32_t *breaks, int n, int64_t a)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) >> 1;
        if (breaks[mid] <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}
"""

# shared support code, emitted once (in this order) when a used kind's handler needs it
SUPPORT = {"requant": lambda ctx: primitives_c(ctx.spec.rounding),
           "dsp": lambda ctx: render("support_dsp.c.tmpl"),
           "pair": lambda ctx: render("support_pair.c.tmpl", scratch=ctx.scratch16),
           "segment": lambda ctx: SEGMENT_FN}
