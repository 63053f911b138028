"""Tests for gclf.data.synth: layout, SPEAKERS.TXT, FLAC format, determinism, signal sanity, sex differences."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gclf.errors import GclfError
from gclf.data.synth import SynthConfig, VoiceParams, synthesize_corpus, synthesize_voice

SR = 16000
SMALL = SynthConfig(speakers=5, utterances_per_speaker=2, min_seconds=1.0, max_seconds=1.6, seed=3)
NAME = re.compile(r"^(\d+)-(\d+)-(\d{4})\.flac$")


def parse_speakers(path: Path) -> dict[str, tuple[str, str, float]]:
    """SPEAKERS.TXT -> {id: (sex, subset, minutes)}; every non-comment line must parse."""
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith(";"):
            continue
        spk, sex, subset, minutes, name = (p.strip() for p in line.split("|"))
        assert spk.isdigit() and sex in ("F", "M") and name, line
        rows[spk] = (sex, subset, float(minutes))
    return rows


def estimate_f0(audio: np.ndarray, sr: int = SR) -> float:
    """Median autocorrelation pitch (Hz) over the loud, clearly periodic 40 ms frames."""
    frame, hop, lo, hi = 640, 320, sr // 400, sr // 60
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames ** 2).sum(axis=1)
    frames = frames[energy > 0.2 * energy.max()] * np.hanning(frame)
    spec = np.fft.rfft(frames, 2 * frame, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :hi + 1]
    r = ac[:, lo:] / ac[:, :1]
    best = r.max(axis=1)
    # the shortest lag reaching 90 % of the peak avoids picking a multiple of the period
    lag = lo + np.argmax(r >= 0.9 * best[:, None], axis=1)
    voiced = best > 0.4
    assert voiced.sum() >= 3, "too few periodic frames to estimate F0"
    return float(np.median(sr / lag[voiced]))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize_corpus(out, SMALL)


def audio_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.flac"))


def test_layout_matches_librispeech(corpus):
    out, summary = corpus
    root = out / "LibriSpeech"
    assert Path(summary["root"]) == root and (root / "SPEAKERS.TXT").is_file()
    files = audio_files(root)
    assert len(files) == summary["utterances"] == SMALL.speakers * SMALL.utterances_per_speaker
    for f in files:
        m = NAME.match(f.name)
        assert m, f.name
        spk, chap, _ = m.groups()
        assert f.relative_to(root).parts == (SMALL.subset, spk, chap, f.name)
    utts = sorted(NAME.match(f.name).group(3) for f in files if f.parent.parent.name == "1000")
    assert utts == ["0000", "0001"]
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix not in (".flac", ".TXT")]


def test_speakers_txt_matches_folders(corpus):
    out, summary = corpus
    root = out / "LibriSpeech"
    lines = (root / "SPEAKERS.TXT").read_text().splitlines()
    assert lines[0].startswith(";") and any(re.match(r";\s*ID\s*\|SEX\|", ln) for ln in lines)
    rows = parse_speakers(root / "SPEAKERS.TXT")
    folders = {p.name for p in (root / SMALL.subset).iterdir() if p.is_dir()}
    assert set(rows) == folders and len(rows) == SMALL.speakers
    sexes = [s for s, _, _ in rows.values()]
    assert sexes.count("F") == summary["female"] == 3 and sexes.count("M") == summary["male"] == 2
    assert all(subset == SMALL.subset for _, subset, _ in rows.values())
    for spk, (_, _, minutes) in rows.items():
        seconds = sum(sf.info(str(f)).duration for f in (root / SMALL.subset / spk).rglob("*.flac"))
        assert minutes == pytest.approx(seconds / 60, abs=0.006)


def test_corpus_module_reads_it(corpus):
    from gclf.data.corpus import scan_corpus

    out, _ = corpus
    scanned = scan_corpus(out)
    assert len(scanned.utterances) == 10 and scanned.skipped_bad_name == scanned.skipped_unknown_speaker == 0
    assert sorted(scanned.speakers.values()).count("F") == 3


def test_flac_format_and_durations(corpus):
    out, summary = corpus
    total = 0.0
    for f in audio_files(out):
        info = sf.info(str(f))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", SR, 1)
        assert SMALL.min_seconds <= info.duration <= SMALL.max_seconds
        total += info.duration
    assert summary["seconds"] == pytest.approx(total)


def test_audio_is_sane(corpus):
    out, _ = corpus
    for f in audio_files(out):
        audio, _ = sf.read(str(f), dtype="float64")
        assert np.all(np.isfinite(audio))
        peak = np.max(np.abs(audio))
        assert 0.05 <= peak < 1.0, f"{f.name}: peak {peak}"
        assert np.sqrt(np.mean(audio ** 2)) > 0.005
        assert np.mean(np.abs(audio) > 0.99) == 0.0  # nothing pinned at full scale


def test_voice_array_contract():
    rng = np.random.default_rng(0)
    audio = synthesize_voice("m", 1.234, rng, sample_rate=22050)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size == round(1.234 * 22050)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0 and audio.std() > 1e-3


def test_deterministic(tmp_path):
    cfg = SynthConfig(speakers=3, min_seconds=0.5, max_seconds=1.0, seed=11)
    synthesize_corpus(tmp_path / "a", cfg)
    synthesize_corpus(tmp_path / "b", cfg)
    synthesize_corpus(tmp_path / "c", dataclasses.replace(cfg, seed=12))
    names = [p.relative_to(tmp_path / "a") for p in sorted((tmp_path / "a").rglob("*")) if p.is_file()]
    assert len(names) == 4
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in names:
        if name.suffix == ".flac":
            a, _ = sf.read(str(tmp_path / "a" / name))
            c, _ = sf.read(str(tmp_path / "c" / name))
            assert a.shape != c.shape or not np.allclose(a, c), name


def test_f0_estimator_tracks_speaker_pitch():
    base = VoiceParams.draw("M", np.random.default_rng(5))
    for f0 in (100.0, 220.0):
        voice = dataclasses.replace(base, f0=f0, f0_range=1.0, vibrato_depth=0.0)
        audio = synthesize_voice("M", 2.0, np.random.default_rng(6), speaker=voice)
        assert estimate_f0(audio) == pytest.approx(f0, rel=0.2)


def test_male_voices_are_lower(tmp_path):
    cfg = SynthConfig(speakers=12, min_seconds=1.5, max_seconds=2.0, seed=21)
    synthesize_corpus(tmp_path, cfg)
    rows = parse_speakers(tmp_path / "LibriSpeech" / "SPEAKERS.TXT")
    pitch = {"F": [], "M": []}
    for f in audio_files(tmp_path):
        audio, sr = sf.read(str(f), dtype="float32")
        pitch[rows[f.name.split("-")[0]][0]].append(estimate_f0(audio, sr))
    assert len(pitch["F"]) == len(pitch["M"]) == 6
    assert np.mean(pitch["M"]) < 0.9 * np.mean(pitch["F"])
    assert np.median(pitch["M"]) < np.median(pitch["F"])


def test_sex_parameters_overlap_but_differ():
    rng = np.random.default_rng(0)
    men = [VoiceParams.draw("M", rng) for _ in range(400)]
    women = [VoiceParams.draw("F", rng) for _ in range(400)]
    for name in ("f0", "formant_scale"):
        m, f = np.array([getattr(v, name) for v in men]), np.array([getattr(v, name) for v in women])
        assert m.mean() < f.mean()
        assert m.max() > f.min()  # overlapping: some men above the lowest women
    assert all(85 <= v.f0 <= 185 for v in men) and all(140 <= v.f0 <= 270 for v in women)


def test_odd_count_and_progress(tmp_path):
    calls = []
    summary = synthesize_corpus(tmp_path, SynthConfig(speakers=3, utterances_per_speaker=2, min_seconds=0.5,
                                                      max_seconds=0.6), progress=calls.append)
    assert (summary["female"], summary["male"], summary["speakers"], summary["utterances"]) == (2, 1, 3, 6)
    assert calls == [1] * 6
    rows = parse_speakers(tmp_path / "LibriSpeech" / "SPEAKERS.TXT")
    assert sorted(s for s, _, _ in rows.values()) == ["F", "F", "M"]


@pytest.mark.parametrize("bad", [dict(speakers=0), dict(utterances_per_speaker=0), dict(min_seconds=0),
                                 dict(min_seconds=5.0, max_seconds=4.0), dict(subset="a/b"), dict(subset=""),
                                 dict(seed=-1), dict(sample_rate=100)])
def test_bad_config_is_refused(tmp_path, bad):
    with pytest.raises(GclfError):
        synthesize_corpus(tmp_path, SynthConfig(**bad))
    assert not any(tmp_path.iterdir())


def test_bad_sex_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(GclfError):
        synthesize_voice("X", 1.0, rng)
    with pytest.raises(GclfError):
        synthesize_voice("F", 1.0, rng, speaker=VoiceParams.draw("M", rng))
