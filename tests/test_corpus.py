"""Corpus reader: SPEAKERS.TXT, layout walking, audio loading and the bad inputs it must survive."""
import numpy as np
import pytest
import soundfile as sf

from gclf.data.corpus import find_root, load_audio, read_speakers, scan_corpus, speaker_folds, split_validation
from gclf.errors import GclfError

from tests.conftest import tone, write_utt


def test_read_speakers_skips_comments_and_parses_sex(tmp_path):
    p = tmp_path / "SPEAKERS.TXT"
    p.write_text(";ID |SEX| SUBSET |MINUTES| NAME\n14   | F | train-clean-360  | 25.03 | Kristin\n"
                 "16   | m | train-clean-360  | 25.11 | Alex | extra\n\n;  99 | F | commented out\n")
    assert read_speakers(p) == {"14": "F", "16": "M"}


def test_read_speakers_without_speaker_lines_is_an_error(tmp_path):
    p = tmp_path / "SPEAKERS.TXT"
    p.write_text("; only comments\n")
    with pytest.raises(GclfError, match="no speaker lines"):
        read_speakers(p)


def test_find_root_accepts_parent_and_rejects_bad_paths(tiny_corpus, tmp_path):
    assert find_root(tiny_corpus.parent) == tiny_corpus.resolve()
    with pytest.raises(GclfError, match="does not exist"):
        find_root(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GclfError, match="no SPEAKERS.TXT"):
        find_root(tmp_path / "empty")


def test_scan_finds_all_subsets_and_counts_unknown_speakers(tiny_corpus):
    write_utt(tiny_corpus, "11", "101", 3, tone(1.0, 200), subset="dev-other")   # second subset
    write_utt(tiny_corpus, "77", "100", 0, tone(1.0, 200))                       # not in SPEAKERS.TXT
    (tiny_corpus / "train-test" / "11" / "100" / "notes.flac").write_bytes(b"x")  # bad name
    c = scan_corpus(tiny_corpus)
    assert sorted(u.uid for u in c.utterances) == ["11-100-0000", "11-101-0003", "12-100-0000",
                                                   "21-100-0000", "22-100-0000"]
    assert c.skipped_unknown_speaker == 1 and c.skipped_bad_name == 1
    assert c.speakers == {"11": "F", "12": "F", "21": "M", "22": "M"}


def test_load_audio_mixes_stereo_and_resamples(tmp_path):
    """Two different channels (200 Hz left, 700 Hz right, at 8 kHz) come back as their mean, at 16 kHz."""
    sr = 8000
    t = np.arange(sr) / sr
    left, right = 0.4 * np.sin(2 * np.pi * 200 * t), 0.2 * np.sin(2 * np.pi * 700 * t)
    p = tmp_path / "s.wav"
    sf.write(p, np.stack([left, right], axis=1), sr, subtype="FLOAT")
    y = load_audio(p, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(y.size - 16000) <= 1
    spec = np.abs(np.fft.rfft(y)) / (y.size / 2)        # amplitude per frequency bin (1-s clip: 1 Hz bins)
    assert spec[200] == pytest.approx(0.2, abs=0.01)    # the mean: half of each channel's amplitude
    assert spec[700] == pytest.approx(0.1, abs=0.01)
    assert spec[1000:].max() < 0.01                     # nothing new above what 8 kHz audio can hold
    native = load_audio(p, sr)                          # no resampling: exactly the mean of the channels
    np.testing.assert_allclose(native, ((left + right) / 2).astype(np.float32), atol=1e-6)


@pytest.mark.parametrize("content,match", [(b"", "unreadable"), (b"fLaC\x00\x00\x00garbage" * 10, "unreadable")])
def test_load_audio_bad_files_raise_one_line(tmp_path, content, match):
    p = tmp_path / "1-2-0003.flac"
    p.write_bytes(content)
    with pytest.raises(GclfError, match=match) as e:
        load_audio(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("keep", [200, 0.5])
def test_load_audio_truncated_flac(tmp_path, keep):
    """A FLAC cut after its header, or half way through its frames, is refused by load_audio itself, with the
    file named on one line."""
    p = write_utt(tmp_path, "1", "2", 3, tone(2.0, 150))
    data = p.read_bytes()
    p.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(GclfError, match="unreadable audio") as e:
        load_audio(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_speaker_folds_are_disjoint_stratified_and_deterministic():
    speakers = {str(i): ("F" if i % 2 else "M") for i in range(23)}
    folds = speaker_folds(speakers, 5, seed=3)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted(speakers) and len(flat) == len(set(flat))
    for f in folds:
        nf = sum(speakers[s] == "F" for s in f)
        assert abs(nf - (len(f) - nf)) <= 2
    assert folds == speaker_folds(speakers, 5, seed=3)
    assert folds != speaker_folds(speakers, 5, seed=4)
    with pytest.raises(GclfError):
        speaker_folds({"1": "F"}, 2)


def test_split_validation_holds_out_both_sexes():
    speakers = {str(i): ("F" if i < 10 else "M") for i in range(20)}
    tr, val = split_validation(speakers, 0.2, seed=0)
    assert not set(tr) & set(val) and len(tr) + len(val) == 20
    assert {speakers[s] for s in val} == {"F", "M"}
