"""The RAVDESS-layout reader (synthetic files written in its layout) and `gclf evaluate --data` on it."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from gclf.cli import cli
from gclf.data.layouts import detect_layout, find_any_root, ravdess, scan_any
from gclf.errors import GclfError

from .conftest import tone


def ravdess_name(actor: int, emotion: int = 1, statement: int = 1, rep: int = 1) -> str:
    return f"03-01-{emotion:02d}-01-{statement:02d}-{rep:02d}-{actor:02d}"


def write_ravdess(root: Path, actors=(1, 2), clips=2, sr: int = 48000, stereo: bool = True, voice: bool = False,
                  seed: int = 0) -> Path:
    """Actor_NN/MM-VV-EE-II-SS-RR-NN.flac at ``sr`` (RAVDESS's own 48 kHz, stereo by default)."""
    from gclf.data.synth import synthesize_voice

    rng = np.random.default_rng(seed)
    for a in actors:
        d = root / f"Actor_{a:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for c in range(clips):
            sex = ravdess.sex_of_actor(a)
            if voice:
                y = synthesize_voice(sex, 3.0, rng, sample_rate=sr)
            else:
                y = tone(3.0, 110 if sex == "M" else 220, sr=sr, seed=a * 10 + c)
            data = np.stack([y, 0.5 * y], axis=1) if stereo else y
            sf.write(d / f"{ravdess_name(a, emotion=c + 1)}.flac", data, sr, subtype="PCM_16")
    return root


def test_scan_reads_actor_sex_and_skips_bad_names(tmp_path):
    root = write_ravdess(tmp_path / "ravdess", actors=(1, 2, 11), clips=2)
    (root / "Actor_01" / "notes.flac").write_bytes(b"")                       # name does not parse
    sf.write(root / "Actor_02" / f"{ravdess_name(3)}.flac", tone(1.0, 100), 16000)  # actor 3 in Actor_02
    c = scan_any(root)
    assert c.root == root.resolve()
    assert len(c.utterances) == 6 and c.skipped_bad_name == 2
    assert c.speakers == {"Actor_01": "M", "Actor_02": "F", "Actor_11": "M"}
    assert len({u.uid for u in c.utterances}) == 6
    assert all(u.uid.split("-")[0] == u.speaker for u in c.utterances)   # the speaker is the uid's first field


def test_layout_detection(tmp_path, tiny_corpus):
    root = write_ravdess(tmp_path / "rav", actors=(2,), clips=1)
    assert detect_layout(root)[0] is ravdess
    assert find_any_root(root / "Actor_02") == root.resolve()              # an actor folder names its corpus
    assert detect_layout(tiny_corpus)[0].NAME == "librispeech"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GclfError, match="not a known corpus layout"):
        scan_any(tmp_path / "empty")
    with pytest.raises(GclfError, match="does not exist"):
        scan_any(tmp_path / "missing")


def test_ravdess_audio_is_resampled_to_16k_mono(tmp_path, librosa_warm):
    from gclf.data.corpus import load_audio
    from gclf.data.features import FeatureConfig
    from gclf.data.pipeline import corpus_features

    root = write_ravdess(tmp_path / "rav", actors=(1, 2), clips=1, sr=48000, stereo=True)
    u = scan_any(root).utterances[0]
    a = load_audio(u.path, 16000)
    assert a.ndim == 1 and a.size == 3 * 16000
    spec = np.abs(np.fft.rfft(a))
    assert abs(np.argmax(spec) * 16000 / a.size - 110) < 2             # the 110 Hz tone survives resampling
    utts, info = corpus_features(root, FeatureConfig(), tmp_path / "pkl", workers=1)
    assert [x.target for x in utts] == ["M", "F"] and utts[0].mfcc.shape == (40, 151)
    assert info["root"] == str(root.resolve())


def test_evaluate_data_on_ravdess_layout(trained_run, tmp_path):
    out, _ = trained_run
    root = write_ravdess(tmp_path / "rav", actors=(1, 2, 3, 4), clips=3, voice=True)
    r = CliRunner().invoke(cli, ["evaluate", "--model", str(out), "--data", str(root), "--cache",
                                 str(tmp_path / "pkl"), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["utterances"] == 12 and j["speakers"] == 4 and len(j["folds"]) == 3
    for f in j["folds"]:
        assert f["excluded_seen_utterances"] == 0                         # other corpus: nobody was seen
        cm = np.array(f["confusion"]["matrix"])
        assert cm.sum() == 12 and cm[0].sum() == 6 and cm[1].sum() == 6   # rows: true M, true F
        assert f["recall"]["M"] == pytest.approx(cm[0, 0] / 6) and f["recall"]["F"] == pytest.approx(cm[1, 1] / 6)
        assert f["accuracy_utterance"] == pytest.approx(np.trace(cm) / 12)
    text = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "fold1.pt"), "--data", str(root), "--cache",
                                    str(tmp_path / "pkl")])
    assert text.exit_code == 0 and "recall M" in text.output and "true F" in text.output


def test_train_with_augmentation_then_quantize_final_and_evaluate_on_ravdess(synth_corpus, synth_features, tmp_path):
    """The cross-corpus workflow of the README: augmented training with a final model, W8/A8 of that final
    model (no held-out speakers: no accuracy of its own), both measured on a RAVDESS-layout folder."""
    run, cache = tmp_path / "run", str(tmp_path / "pkl")
    r = CliRunner().invoke(cli, ["train", "--data", str(synth_corpus), "--cache", cache, "--out", str(run), "--folds",
                                 "2", "--epochs", "2", "--final", "--copies", "1", "--pitch", "0.9,1.3",
                                 "--time-masks", "1", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    ck = __import__("torch").load(run / "final.pt", weights_only=True)
    aug = ck["chain"][0]["config"]["augment"]
    assert aug["copies"] == 1 and list(aug["pitch"]) == [0.9, 1.3] and aug["time_masks"] == 1
    assert len(list((tmp_path / "pkl" / "augment").glob("*.json"))) == 1
    q = CliRunner().invoke(cli, ["quantize", "--model", str(run / "final.pt"), "--bits", "8", "--cache", cache,
                                 "--out", str(tmp_path / "q8"), "--json"])
    assert q.exit_code == 0, q.output
    qj = json.loads(q.output)
    assert qj.get("accuracy_quantized") is None and qj["folds"] == []          # final.pt: nothing measured
    assert qj["final"]["measured"] is False and qj["final"]["bit_exact_mismatches"] == 0
    rav = write_ravdess(tmp_path / "rav", actors=(1, 2), clips=2, voice=True)
    for model in (run / "final.pt", tmp_path / "q8" / "final.pt"):
        e = CliRunner().invoke(cli, ["evaluate", "--model", str(model), "--data", str(rav), "--cache", cache, "--json"])
        assert e.exit_code == 0, e.output
        assert json.loads(e.output)["utterances"] == 4
    bad = CliRunner().invoke(cli, ["train", "--data", str(synth_corpus), "--pitch", "1.4,0.9"])
    assert bad.exit_code == 2 and "LO must not exceed HI" in bad.output


def test_augment_options_on_top_of_the_recipe_or_of_nothing():
    from gclf.cli.augment_opts import augment_config, describe
    from gclf.data.augment import RECIPE, AugmentConfig

    assert augment_config(RECIPE) == RECIPE
    assert augment_config(RECIPE, no_augment=True) == AugmentConfig()
    assert augment_config(RECIPE, pitch="off", copies=0) == AugmentConfig(p_augmented=RECIPE.p_augmented)
    assert augment_config(RECIPE, reverb=0.3).reverb == 0.3 and augment_config(RECIPE, reverb=0.3).pitch == RECIPE.pitch
    with pytest.raises(GclfError, match="needs --copies"):
        augment_config(RECIPE, no_augment=True, pitch=(0.9, 1.2))
    assert describe(RECIPE) == "--copies 3 --pitch 0.85,1.6" and describe(AugmentConfig()) == "none"
    both = augment_config(RECIPE, with_original=True)
    assert both.with_original and describe(both) == "--copies 3 --with-original --pitch 0.85,1.6"
    by_class = augment_config(RECIPE, pitch_class=(("M", 1.0, 1.6), ("F", 0.75, 1.0)))
    assert by_class.pitch == RECIPE.pitch and by_class.pitch_class == (("M", 1.0, 1.6), ("F", 0.75, 1.0))
    assert describe(by_class) == "--copies 3 --pitch 0.85,1.6 --pitch-class M:1,1.6 --pitch-class F:0.75,1"
    assert augment_config(RECIPE, pitch_class=()) == RECIPE                      # the option not given
    import click

    from gclf.cli.augment_opts import CLASS_RANGE
    assert CLASS_RANGE.convert("M:1,1.6", None, None) == ("M", 1.0, 1.6)
    for bad in ("1,1.6", "M:off", "M:1.6,1", ":1,2"):
        with pytest.raises(click.BadParameter):
            CLASS_RANGE.convert(bad, None, None)


def test_train_refuses_a_ravdess_corpus(tmp_path, monkeypatch, capsys):
    import sys

    from gclf.cli import main

    root = write_ravdess(tmp_path / "rav", actors=(1, 2), clips=1)
    monkeypatch.setattr(sys, "argv", ["gclf", "train", "--data", str(root), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "never trains on it" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
