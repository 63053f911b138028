"""The generated C from PCM to logits (gclf/frontend/pipeline.py): bit-exact with the numpy integer path, the
streaming API equal to the whole-clip call under any chunking, and two prefixed models in one program."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gclf.backends.c.build import CFLAGS
from gclf.backends.c.generate import generate_c
from gclf.backends.fixed import make_spec
from gclf.backends.intref import IntegerReference
from gclf.checkpoint import build_float_model, load_checkpoint
from gclf.data.features import FeatureConfig, cut_windows
from gclf.frontend import FrontendConfig, mfcc_int
from gclf.frontend.pipeline import build_classifier_harness, clip_logits_int, run_classifier_c
from gclf.frontend.signals import edge_cases, speech
from gclf.graph.spec import QuantConfig
from gclf.steps.api import observe_ranges

INT = FeatureConfig(kind="int_mfcc")
INT_EDGE = FeatureConfig(kind="int_mfcc", pad="edge")      # the digit task's padding


@pytest.fixture(scope="module")
def int_fixed(trained_run):
    """A trained model read as an int_mfcc model and quantized to W8/A8 on integer front-end windows."""
    out, _ = trained_run
    model = build_float_model(load_checkpoint(out / "fold1.pt"))
    model.int_input_frac = 8
    wins = [cut_windows(mfcc_int(speech("FM"[i % 2], i, 3.0), FrontendConfig())[0], INT) for i in range(4)]
    x = torch.from_numpy((np.concatenate(wins) / 256.0).astype(np.float32))
    spec = make_spec(model, observe_ranges(model, x), QuantConfig(bits=8))
    return model, spec


@pytest.fixture(scope="module")
def harness(int_fixed, cc, tmp_path_factory):
    model, spec = int_fixed
    return build_classifier_harness(tmp_path_factory.mktemp("cl"), cc, model, spec, INT, prefix="vc_")


@pytest.fixture(scope="module")
def harness_edge(int_fixed, cc, tmp_path_factory):
    model, spec = int_fixed
    return build_classifier_harness(tmp_path_factory.mktemp("cle"), cc, model, spec, INT_EDGE, prefix="ve_")


def _clips():
    cases = edge_cases(40000)
    return {"speech_f": speech("F", 7, 3.3), "speech_m": speech("M", 8, 2.0), "short": speech("F", 9, 0.7),
            "exact_window": speech("M", 10, 98 * 320 / 16000), "tail": speech("F", 11, 2.9),
            "silence": cases["silence"], "square": cases["full_scale_square"], "clipped": cases["clipped_speech"],
            "dc": cases["dc_offset"]}


@pytest.mark.parametrize("name", list(_clips()))
def test_whole_clip_c_is_bit_exact_with_the_numpy_integer_path(int_fixed, harness, name):
    model, spec = int_fixed
    pcm = _clips()[name]
    got, counts = run_classifier_c(harness, pcm)
    ref = IntegerReference(model, spec)
    want = clip_logits_int(pcm, ref, INT)
    np.testing.assert_array_equal(got, want)
    assert counts["diff"] == 0 and counts["out"] == ref.overflows.get(model.graph.norm.name, 0)


@pytest.mark.parametrize("chunking", ["one", "small", "large", "hop"])
def test_streaming_equals_the_whole_clip_call(harness, chunking):
    rng = np.random.default_rng(len(chunking))
    chunks = {"one": [1], "small": rng.integers(1, 40, 500), "large": rng.integers(1, 9000, 50),
              "hop": [320]}[chunking]
    for name in (["speech_f", "short", "tail"] if chunking != "one" else ["speech_m", "short"]):
        pcm = _clips()[name]
        whole, _ = run_classifier_c(harness, pcm)
        streamed, counts = run_classifier_c(harness, pcm, chunks)
        np.testing.assert_array_equal(streamed, whole)
        total = whole.sum(axis=0)
        assert counts["label"] == len(total) - 1 - int(np.argmax(total[::-1]))


@pytest.mark.parametrize("seconds", [0.7, 0.31, 0.05, 98 * 320 / 16000])
def test_edge_padded_short_clips_are_bit_exact_whole_and_streamed(int_fixed, harness_edge, seconds):
    """A clip shorter than a window, centred between copies of its first and last frame (FeatureConfig.pad
    "edge"): the C's frame index is pad_index's, whole-clip and streamed; it differs from the repeated clip."""
    model, spec = int_fixed
    pcm = speech("M", 12, seconds)
    got, _ = run_classifier_c(harness_edge, pcm)
    ref = IntegerReference(model, spec)
    np.testing.assert_array_equal(got, clip_logits_int(pcm, ref, INT_EDGE))
    streamed, _ = run_classifier_c(harness_edge, pcm, np.random.default_rng(3).integers(1, 700, 200))
    np.testing.assert_array_equal(streamed, got)
    if seconds in (0.7, 0.31):                         # padded speech: the repeated clip is another window
        assert not np.array_equal(got, clip_logits_int(pcm, ref, INT))


def test_two_prefixed_models_link_into_one_program(int_fixed, cc, tmp_path):
    model, spec = int_fixed
    srcs = []
    for p in ("ma_", "mb_"):
        files, _ = generate_c(model, spec, prefix=p)
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        srcs.append(str(tmp_path / f"{p}model.c"))
    C, T = model.graph.input_shape
    (tmp_path / "main.c").write_text(f"""#include <stdio.h>
#include "ma_model.h"
#include "mb_model.h"
static ma_input_t x[MA_IN_CH][MA_IN_T];
int main(void) {{
    int32_t a[MA_N_CLASSES], b[MB_N_CLASSES];
    for (int c = 0; c < {C}; c++) for (int t = 0; t < {T}; t++) x[c][t] = (ma_input_t)((c * 7 + t * 3) % 21 - 10);
    ma_infer((const ma_input_t (*)[MA_IN_T])x, a);
    mb_infer((const mb_input_t (*)[MB_IN_T])x, b);
    for (int k = 0; k < MA_N_CLASSES; k++) printf("%d %d\\n", (int)a[k], (int)b[k]);
    return 0;
}}
""")
    exe = tmp_path / "two"
    r = subprocess.run([cc, *CFLAGS, "-I", str(tmp_path), "-o", str(exe), *srcs, str(tmp_path / "main.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = np.array([[int(v) for v in ln.split()] for ln in subprocess.run(
        [str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()])
    xq = np.array([[(c * 7 + t * 3) % 21 - 10 for t in range(T)] for c in range(C)], dtype=np.int64)[None]
    want = IntegerReference(model, spec).run_int(xq)[0]
    np.testing.assert_array_equal(out[:, 0], want)
    np.testing.assert_array_equal(out[:, 1], want)
    assert "gclf_" not in Path(srcs[0]).read_text().replace("gclf.", "")


@pytest.mark.realdata
@pytest.mark.parametrize("corpus, pick, fixture, fcfg", [
    ("librispeech-251", slice(None, 5), "harness", INT),
    ("fsdd", slice(None, None, 250), "harness_edge", INT_EDGE)])   # trimmed digit clips: centred, edge padding
def test_classifier_c_is_bit_exact_on_real_utterances(int_fixed, request, corpus, pick, fixture, fcfg):
    """Real speech through the C from PCM, streamed in odd chunks: bit-exact with the numpy integer path."""
    from gclf.data.corpus import load_audio
    from gclf.frontend.intref import pcm16

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / corpus
    files = sorted(root.rglob("*.flac"))[pick]
    if not files:
        pytest.skip(f"{corpus} is not present")
    model, spec = int_fixed
    harness = request.getfixturevalue(fixture)
    for f in files:
        pcm = pcm16(load_audio(f, 16000))
        got, _ = run_classifier_c(harness, pcm, [1000, 7, 333])
        np.testing.assert_array_equal(got, clip_logits_int(pcm, IntegerReference(model, spec), fcfg))


@pytest.fixture(scope="module")
def run_harness(int_fixed, cc, tmp_path_factory):
    """The same network behind the running-peak floor (``--frontend int-running``)."""
    from dataclasses import replace

    model, spec = int_fixed
    fcfg = replace(INT, fe_floor="running")
    return build_classifier_harness(tmp_path_factory.mktemp("clr"), cc, model, spec, fcfg, prefix="vr_"), fcfg


def _loud_then_quiet():
    return np.concatenate([edge_cases(8000)["full_scale_square"], speech("M", 12, 3.0) // 32,
                           np.zeros(5000, np.int16), speech("F", 13, 1.0) // 8])


@pytest.mark.parametrize("chunking", [None, "one", "small", "large"])
def test_running_floor_classifier_is_bit_exact_and_streams_the_same(int_fixed, run_harness, chunking):
    """Whole clip equal to the numpy integer path (which differs from the frame floor's on this clip: the peak
    of the loud start floors the quiet speech after it), and every chunking equal to the whole clip."""
    model, spec = int_fixed
    exe, fcfg = run_harness
    pcm = _loud_then_quiet()
    want = clip_logits_int(pcm, IntegerReference(model, spec), fcfg)
    if chunking is None:
        np.testing.assert_array_equal(run_classifier_c(exe, pcm)[0], want)
        assert not np.array_equal(want, clip_logits_int(pcm, IntegerReference(model, spec), INT))
        return
    rng = np.random.default_rng(5)
    chunks = {"one": [1], "small": rng.integers(1, 40, 500), "large": rng.integers(1, 9000, 50)}[chunking]
    np.testing.assert_array_equal(run_classifier_c(exe, pcm, chunks)[0], want)
