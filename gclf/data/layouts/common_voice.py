"""Mozilla Common Voice layout: ``validated.tsv`` (tab-separated; columns ``client_id``, ``path``, ``age``,
``gender`` among others) and ``clips/<path>`` (MP3, 48 kHz or other rates: resampled when read). Tasks:
``age`` (the default; the decades of :data:`gclf.data.tasks.AGE`, seventies and older as one group) and
``sex`` (``gender`` male/female, also the newer male_masculine/female_feminine). Rows without that label, or
whose clip is missing, are skipped and counted. Speaker = ``client_id``; utterance ids are
``<client_id>-<clip name>-0``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from gclf.data.corpus import Corpus, Utterance
from gclf.errors import GclfError

NAME = "common_voice"
TASKS = ("age", "sex")
TSV = "validated.tsv"
AGE_GROUPS = {"teens": "teens", "twenties": "twenties", "thirties": "thirties", "fourties": "fourties",
              "forties": "fourties", "fifties": "fifties", "sixties": "sixties", "seventies": "seventies+",
              "eighties": "seventies+", "nineties": "seventies+"}
SEXES = {"male": "M", "male_masculine": "M", "female": "F", "female_feminine": "F"}


def detect(path: Path) -> Path | None:
    return path.resolve() if (path / TSV).is_file() and (path / "clips").is_dir() else None


def label_of(row: dict, task: str) -> str | None:
    """The task's class of a validated.tsv row; None when the row has no usable label."""
    if task == "age":
        return AGE_GROUPS.get((row.get("age") or "").strip().lower())
    return SEXES.get((row.get("gender") or "").strip().lower())


def read_rows(tsv: Path) -> list[dict]:
    try:
        with open(tsv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GclfError(f"cannot read {tsv}: {exc.__class__.__name__}") from None
    if rows and not {"client_id", "path"} <= rows[0].keys():
        raise GclfError(f"{tsv}: no client_id and path columns (not a Common Voice validated.tsv)")
    return rows


def scan(path: str | Path, task: str = "age") -> Corpus:
    root = detect(Path(path))
    if root is None:
        raise GclfError(f"{path}: no {TSV} with a clips/ folder (not a Common Voice-layout corpus)")
    corpus = Corpus(root=root, utterances=[], layout=NAME, task=task)
    for row in read_rows(root / TSV):
        label = label_of(row, task)
        f = root / "clips" / row["path"]
        if label is None:
            corpus.skipped_unknown_speaker += 1
            continue
        if not f.is_file():
            corpus.skipped_bad_name += 1
            corpus.problems.append(f"clips/{row['path']}: listed in {TSV} but missing")
            continue
        corpus.utterances.append(Utterance(f, row["client_id"], Path(row["path"]).stem.replace("-", "_"), "0",
                                           label))
    corpus.utterances.sort(key=lambda u: u.uid)
    if not corpus.utterances:
        raise GclfError(f"no clip of {root / TSV} has a usable {task} label")
    return corpus
