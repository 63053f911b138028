"""Corpus adapters of every layout on audio the tests write themselves (Speech Commands, FSDD, Common Voice with
MP3, and LibriSpeech/RAVDESS through the same entry point), tasks and their classes, speaker-disjoint folds
(leave-one-speaker-out for few speakers; silence clips spread), the cache keyed by task, and the CLI from
extract to export-c on a keyword corpus."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from gclf.checkpoint import load_checkpoint
from gclf.cli import cli
from gclf.data.corpus import load_audio, speaker_folds
from gclf.data.features import FeatureConfig, UtteranceFeatures, cache_dir_for
from gclf.data.layouts import detect_layout, scan_any
from gclf.data.tasks import AGE, DIGIT, KEYWORD, get_task
from gclf.errors import GclfError
from gclf.train.fit import fold_splits

from tests.conftest import tone

HASHES = [f"{i:08x}" for i in (0xa1b2c3d4, 0x0badf00d, 0x12345678, 0xdeadbeef, 0x00c0ffee, 0x5eed5eed)]


def write_speech_commands(root: Path, words=("yes", "no", "stop"), n_silence: int = 5, fmt: str = "flac",
                          seconds: float = 1.0) -> Path:
    """A Speech Commands-layout corpus: word folders per speaker hash, _unknown_/WORD_HASH_nohash_N and
    _silence_/N clips; each class a tone of its own pitch."""
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s, h in enumerate(HASHES):
            sf.write(root / word / f"{h}_nohash_0.{fmt}", tone(seconds, 120 + 60 * w, seed=s), 16000)
    (root / "_unknown_").mkdir(exist_ok=True)
    for s, h in enumerate(HASHES):
        sf.write(root / "_unknown_" / f"bed_{h}_nohash_{s % 2}.{fmt}", tone(seconds, 500, seed=s), 16000)
    (root / "_silence_").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n_silence):
        sf.write(root / "_silence_" / f"{i}.{fmt}", (0.01 * rng.standard_normal(int(seconds * 16000))).astype(np.float32),
                 16000)
    return root


def write_fsdd(root: Path, speakers=("jackson", "theo", "lucas"), digits=range(3), reps: int = 2) -> Path:
    d = root / "recordings"
    d.mkdir(parents=True)
    for s, spk in enumerate(speakers):
        for dig in digits:
            for n in range(reps):
                sf.write(d / f"{dig}_{spk}_{n}.wav", tone(0.4 + 0.1 * n, 150 + 80 * dig, 8000, seed=s), 8000,
                         subtype="PCM_16")
    return root


CV_ROWS = [("c1", "teens", "male"), ("c1", "teens", "male"), ("c2", "twenties", "female"),
           ("c3", "eighties", "female_feminine"), ("c4", "", "male"), ("c5", "fourties", "")]


def write_common_voice(root: Path, rows=CV_ROWS, missing: int = 0) -> Path:
    """validated.tsv + clips/*.mp3 (48 kHz stereo: resampled and mixed down when read)."""
    (root / "clips").mkdir(parents=True)
    lines = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"]
    for i, (cid, age, gender) in enumerate(rows):
        name = f"common_voice_en_{i}.mp3"
        if i >= missing:
            x = tone(1.0, 150 + 20 * i, 48000, seed=i)
            sf.write(root / "clips" / name, np.stack([x, x], axis=1), 48000, format="MP3")
        lines.append(f"{cid}\t{name}\tsome words\t2\t0\t{age}\t{gender}\t\ten\t")
    (root / "validated.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_speech_commands_layout(tmp_path):
    root = write_speech_commands(tmp_path / "sc")
    sf.write(root / "yes" / "notes.flac", tone(1.0, 100), 16000)                   # bad name: counted
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white.wav", tone(3.0, 100), 16000)     # long noise: not a clip
    c = scan_any(root)
    assert (c.layout, c.task) == ("speech_commands", "keyword") and c.skipped_bad_name == 1
    labels = Counter(u.label for u in c.utterances)
    assert labels == {"yes": 6, "no": 6, "stop": 6, "_unknown_": 6, "_silence_": 5}
    assert {u.speaker for u in c.utterances if u.label == "yes"} == set(HASHES)
    silence = [u for u in c.utterances if u.label == "_silence_"]
    assert len({u.speaker for u in silence}) == 5 and not set(HASHES) & {u.speaker for u in silence}
    assert all(u.uid.split("-")[0] == u.speaker for u in c.utterances)
    assert len({u.uid for u in c.utterances}) == len(c.utterances)
    assert set(KEYWORD.classes) >= set(labels) and len(KEYWORD.classes) == 12


def test_speech_commands_reads_wav_too(tmp_path):
    c = scan_any(write_speech_commands(tmp_path / "sc", fmt="wav", n_silence=2))
    assert len(c.utterances) == 26 and all(u.path.suffix == ".wav" for u in c.utterances)


def test_fsdd_layout_and_resampling(tmp_path):
    root = write_fsdd(tmp_path / "fsdd")
    for p in (root, root / "recordings"):                   # the corpus folder or its recordings/ folder
        c = scan_any(p)
        assert (c.layout, c.task, c.root) == ("fsdd", "digit", root.resolve())
    assert sorted(c.speakers) == ["jackson", "lucas", "theo"] and {u.label for u in c.utterances} == {"0", "1", "2"}
    x8, sr = sf.read(str(c.utterances[0].path))
    assert sr == 8000 and load_audio(c.utterances[0].path, 16000).size == 2 * x8.size
    assert DIGIT.index("7") == 7


def test_common_voice_layout_age_and_sex(tmp_path):
    root = write_common_voice(tmp_path / "cv", missing=1)
    age = scan_any(root)
    assert (age.layout, age.task) == ("common_voice", "age")
    # row 0's clip is missing (counted), c4 has no age (skipped), eighties joins seventies+
    assert sorted(u.label for u in age.utterances) == ["fourties", "seventies+", "teens", "twenties"]
    assert age.skipped_bad_name == 1 and age.skipped_unknown_speaker == 1
    assert set(u.label for u in age.utterances) <= set(AGE.classes)
    sex = scan_any(root, task="sex")
    assert sorted(u.label for u in sex.utterances) == ["F", "F", "M", "M"]      # c5 has no gender
    assert age.identity()["id"] != sex.identity()["id"]
    cfg = FeatureConfig()
    assert cache_dir_for(age.identity(), cfg, "c") != cache_dir_for(sex.identity(), cfg, "c")
    audio = load_audio(age.utterances[0].path, 16000)                           # MP3, 48 kHz stereo
    assert audio.ndim == 1 and abs(audio.size - 16000) < 1200


def test_tasks_refused_where_a_layout_has_no_such_label(tmp_path, tiny_corpus):
    with pytest.raises(GclfError, match="no 'digit' labels"):
        scan_any(tiny_corpus, task="digit")
    assert scan_any(tiny_corpus).task == "sex"
    with pytest.raises(GclfError, match="unknown task"):
        get_task("emotion")


def test_ambiguous_layout_needs_corpus(tmp_path):
    root = write_fsdd(tmp_path / "both")
    write_common_voice(root)
    with pytest.raises(GclfError, match="--corpus"):
        detect_layout(root)
    assert scan_any(root, corpus="fsdd").layout == "fsdd"
    assert scan_any(root, corpus="common_voice").layout == "common_voice"
    with pytest.raises(GclfError, match="not a speech_commands-layout"):
        scan_any(root, corpus="speech_commands")


def _feats(corpus, task):
    t = get_task(task)
    return [UtteranceFeatures(u.uid, u.speaker, u.label, 1.0, np.zeros((1, 1), np.float32), t.classes)
            for u in corpus.utterances]


def test_folds_are_speaker_disjoint_and_spread_silence(tmp_path):
    utts = _feats(scan_any(write_speech_commands(tmp_path / "sc", n_silence=10)), "keyword")
    splits = fold_splits(utts, 5, seed=0)
    assert len(splits) == 5
    tests = [set(t) for _, t in splits]
    assert set().union(*tests) == {u.speaker for u in utts} and sum(map(len, tests)) == len(set().union(*tests))
    for train, test in splits:
        assert not set(train) & set(test)
    per_fold = [sum(1 for u in utts if u.speaker in t and u.target == "_silence_") for t in tests]
    assert per_fold == [2] * 5                                   # 10 silence clips over 5 folds


def test_few_speakers_give_leave_one_speaker_out(tmp_path):
    utts = _feats(scan_any(write_fsdd(tmp_path / "fsdd")), "digit")
    splits = fold_splits(utts, 5, seed=0)
    assert sorted(t[0] for _, t in splits) == ["jackson", "lucas", "theo"] and all(len(t) == 1 for _, t in splits)


def test_sex_folds_unchanged():
    """Strata are sorted: F before M, as the sex folds always were (the README figures depend on it)."""
    spk = {f"{i}": "F" if i % 2 else "M" for i in range(20)}
    folds = speaker_folds(spk, 5, seed=3)
    rng = np.random.default_rng(3)
    want, offset = [[] for _ in range(5)], 0
    for sex in ("F", "M"):
        ids = sorted(s for s, x in spk.items() if x == sex)
        rng.shuffle(ids)
        for i, s in enumerate(ids):
            want[(i + offset) % 5].append(s)
        offset += len(ids)
    assert folds == [sorted(f) for f in want]


def _ok(r):
    assert r.exit_code == 0, (r.output, r.exception)
    return r


def test_keyword_task_from_extract_to_export_c(tmp_path, librosa_warm, cc):
    """--data alone picks the layout, the task, its 1-s window and default recipe; quantize and export-c
    follow; evaluate prints the task's class names."""
    root = write_speech_commands(tmp_path / "sc", n_silence=6)
    cache, run = str(tmp_path / "pkl"), str(tmp_path / "run")
    s = json.loads(_ok(CliRunner().invoke(cli, ["extract", "--data", str(root), "--cache", cache, "--workers", "1",
                                                "--json"])).stdout)
    assert s["utterances"] == 30 and s["windows"] == 30 and s["per_class"]["_silence_"] == 6   # one window a clip
    r = json.loads(_ok(CliRunner().invoke(cli, ["train", "--data", str(root), "--cache", cache, "--out", run,
                                                "--folds", "2", "--epochs", "3", "--no-augment", "--no-final",
                                                "--workers", "1", "--json"])).stdout)
    assert len(r["folds"]) == 2 and r["arch"] == "cnn1d"                     # the task's default
    from gclf.checkpoint import graph_of, load_checkpoint

    ck = load_checkpoint(Path(run) / "fold1.pt")
    assert graph_of(ck).classes == KEYWORD.classes and ck["feature_config"]["window_frames"] == 51
    assert ck["corpus"]["task"] == "keyword"
    ev = _ok(CliRunner().invoke(cli, ["evaluate", "--model", run, "--cache", cache]))
    assert "_silence_" in ev.output and "stop" in ev.output
    q = json.loads(_ok(CliRunner().invoke(cli, ["quantize", "--model", run, "--bits", "8", "--cache", cache,
                                                "--out", run + "-q8", "--json"])).stdout)
    assert q["bit_exact_mismatches"] == 0
    out = tmp_path / "export"
    _ok(CliRunner().invoke(cli, ["export-c", "--model", run + "-q8", "--out", str(out), "--json"]))
    assert "_silence_" in (out / "gclf_model.h").read_text()
    rep = _ok(CliRunner().invoke(cli, ["report", run, run + "-q8", "--no-latency", "--cache", cache,
                                       "--out", str(tmp_path / "report")]))
    assert rep.output.count("| keyword (cnn1d) |") == 2                     # the per-task table


def test_fsdd_train_learns_digits_on_unseen_speakers(tmp_path, librosa_warm):
    """Leave-one-speaker-out on a 3-speaker digit corpus (8 kHz) with the digit recipe (shortened): above chance."""
    root = write_fsdd(tmp_path / "fsdd", reps=4)
    r = json.loads(_ok(CliRunner().invoke(cli, ["train", "--data", str(root), "--cache", str(tmp_path / "pkl"),
                                                "--out", str(tmp_path / "run"), "--epochs", "8", "--no-augment",
                                                "--no-final", "--workers", "1", "--json"])).stdout)
    assert len(r["folds"]) == 3 and all(f["speakers"] == 1 for f in r["folds"])
    assert r["accuracy_utterance_mean"] > 0.6, r                 # chance: 1/3
    assert load_checkpoint(tmp_path / "run" / "fold1.pt")["feature_config"]["pad"] == "edge"   # the task's


def test_train_pad_option_overrides_the_task_and_is_recorded(tmp_path, librosa_warm):
    root = write_fsdd(tmp_path / "fsdd", speakers=("jackson", "theo"), reps=1)
    _ok(CliRunner().invoke(cli, ["train", "--data", str(root), "--cache", str(tmp_path / "pkl"), "--out",
                                 str(tmp_path / "run"), "--epochs", "1", "--no-augment", "--no-final",
                                 "--workers", "1", "--pad", "wrap", "--json"]))
    assert load_checkpoint(tmp_path / "run" / "fold1.pt")["feature_config"]["pad"] == "wrap"
    r = CliRunner().invoke(cli, ["train", "--data", str(root), "--out", str(tmp_path / "r2"), "--pad", "zero"])
    assert r.exit_code == 2 and "zero" in r.output and not (tmp_path / "r2").exists()


def test_task_recipes_and_windows():
    """The sex recipe (issue 15): 16 MFCCs, a moving average of the weights, the F0-shifted views; keyword and
    digit networks read one 1-s window (51 frames) whatever the architecture, including one without a recipe of
    its own."""
    from gclf.data.augment import RECIPE
    from gclf.graph.models import ARCHS, build_graph, feature_config
    from gclf.train.recipes import recipe_for, task_graph

    g, f, r = task_graph("sex")
    assert (g, f, r.train, r.augment) == (build_graph("cnn_lstm", {"n_mfcc": 16}),
                                          feature_config(build_graph("cnn_lstm", {"n_mfcc": 16})), {"ema": 0.995},
                                          RECIPE)
    assert g.input_shape == (16, 99) and f.n_mfcc == 16 and f.window_frames == 99
    for task in ("keyword", "digit"):
        for arch in ARCHS:
            g, f, r = task_graph(task, arch)
            assert g.classes == get_task(task).classes
            assert f.window_frames == (16000 if g.input_kind == "audio" else 51)
    assert (recipe_for("keyword").arch, recipe_for("digit").arch) == ("cnn1d", "cnn1d")   # best measured
    assert task_graph("digit")[1].min_seconds < 0.5                 # FSDD's shortest digits are kept
    assert [task_graph(t)[1].pad for t in ("sex", "keyword", "digit")] == ["wrap", "wrap", "edge"]
    assert all(task_graph("digit", a)[1].pad == "edge" for a in ARCHS)   # the task's, whatever the network
    d, other = recipe_for("digit"), recipe_for("digit", "cnn2d")     # the default's own recipe (README figures)
    assert (d.augment.copies, d.augment.p_augmented, d.train["epochs"]) == (8, 0.75, 60)
    assert (other.augment.copies, other.augment.p_augmented, other.train["epochs"]) == (4, 0.5, 30)
    with pytest.raises(GclfError, match="unknown architecture"):
        recipe_for("keyword", "transformer")
