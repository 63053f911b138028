"""A corpus N times larger, for memory and scale measurements: each speaker folder of a LibriSpeech-layout
corpus appears N times under new speaker ids (copy k of speaker S is ``k * 10**6 + S``), with symlinks to
the same audio files and a SPEAKERS.TXT listing every copy with the original's sex. Nothing is copied.

    python -m benchmarks.replicate_corpus SRC OUT --times 8

The copies are the same voices, so accuracies on such a corpus mean nothing (a test speaker's twin is in
training): use it for peak memory and time only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from gclf.data.corpus import find_root, read_speakers, scan_corpus


def replicate(src: str | Path, out: str | Path, times: int) -> Path:
    """Write ``out/LibriSpeech`` (symlinks) and return it."""
    root = find_root(src)
    corpus, sexes = scan_corpus(root), read_speakers(root / "SPEAKERS.TXT")
    dst = Path(out) / "LibriSpeech"
    dst.mkdir(parents=True, exist_ok=True)
    lines = [";ID      |SEX| SUBSET           |MINUTES| NAME"]
    for k in range(times):
        for spk in sorted({u.speaker for u in corpus.utterances}):
            lines.append(f"{k * 10**6 + int(spk)} | {sexes[spk]} | replica-{k} | 0.0 | copy {k} of {spk}")
        for u in corpus.utterances:
            new = str(k * 10**6 + int(u.speaker))
            link = dst / f"replica-{k}" / new / u.chapter / f"{new}-{u.chapter}-{u.utt}{u.path.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(u.path.resolve())
    (dst / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="a LibriSpeech-layout corpus")
    ap.add_argument("out", help="folder to write LibriSpeech/ into (e.g. under /tmp)")
    ap.add_argument("--times", type=int, default=8)
    a = ap.parse_args()
    print(replicate(a.src, a.out, a.times))


if __name__ == "__main__":
    main()
