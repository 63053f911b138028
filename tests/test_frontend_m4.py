"""The front-end's C on the emulated Cortex-M4: every MFCC of speech and edge cases bit-exact with the numpy
integer reference, overflow counts equal, no library division (instruction counts are reported, not asserted)."""
import numpy as np
import pytest

from gclf.backends.c.target import APT_PACKAGES, missing_tools

from tests.test_frontend import _edge_cases, _speech

MISSING = missing_tools()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"no Cortex-M4 toolchain/emulator ({', '.join(MISSING)}): "
                                                      f"apt-get install -y {' '.join(APT_PACKAGES)}")


def test_frontend_on_cortex_m4_is_bit_exact():
    from gclf.frontend.target import measure_frontend_target

    e = _edge_cases()
    pcm = np.concatenate([_speech("F", 50, 1.0), e["full_scale_square"][:3200], e["clipped_speech"][:3200],
                          e["dc_offset"][:3200], e["one_lsb_noise"][:3200], np.zeros(1600, np.int16)])
    r = measure_frontend_target(pcm)
    assert r["frames"] == 1 + pcm.size // 320
    assert r["mismatches"] == 0
    assert r["overflows"] == r["reference_overflows"] == {"fft": 0, "out": 0}
    assert r["instructions_per_frame"] > 0 and r["rw_data"] == 0
