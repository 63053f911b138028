"""Options and helpers shared by the commands."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from gclf.errors import GclfError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DEFAULT_DATA_CANDIDATES = ("LibriSpeech", "../shared/data/librispeech-251/LibriSpeech")


def default_data() -> str | None:
    """$GCLF_DATA, else ./LibriSpeech, else ../shared/data/librispeech-251/LibriSpeech (first that exists)."""
    env = os.environ.get("GCLF_DATA")
    if env:
        return env
    for cand in DEFAULT_DATA_CANDIDATES:
        if Path(cand).is_dir():
            return cand
    return None


def resolve_data(data: str | None) -> str:
    data = data or default_data()
    if not data:
        raise GclfError("no corpus given: pass --data DIR (a corpus folder, e.g. LibriSpeech with SPEAKERS.TXT) or set GCLF_DATA")
    return data


def command_line() -> str:
    """The command as typed (what a manifest tells a user to rerun)."""
    import shlex
    import sys

    return " ".join(["gclf", *(shlex.quote(a) for a in sys.argv[1:])])


def step_data_option(f):
    """--data of the commands that read a run's corpus only when its features are not in the cache."""
    return click.option("--data", type=click.Path(file_okay=False), default=None,
                        help="Where the run's corpus lies now, read only if its features are not in --cache "
                             "(they are found by corpus identity and feature config, not by path). Default: "
                             "$GCLF_DATA, ./LibriSpeech or ../shared/data/librispeech-251/LibriSpeech.")(f)


def data_option(f):
    return click.option("--data", type=click.Path(file_okay=False), default=None,
                        help="Corpus folder in a known layout (LibriSpeech: the folder with SPEAKERS.TXT or its "
                             "parent; Speech Commands; FSDD; Common Voice; RAVDESS for evaluation). "
                             "Default: $GCLF_DATA, ./LibriSpeech or ../shared/data/librispeech-251/LibriSpeech.")(f)


def task_option(f):
    from gclf.data.tasks import TASKS

    return click.option("--task", type=click.Choice(list(TASKS)), default=None,
                        help="The label to classify where a corpus has several (Common Voice: age or sex). "
                             "Default: the corpus's own (LibriSpeech/RAVDESS sex, Speech Commands keyword, FSDD "
                             "digit, Common Voice age).")(f)


def corpus_option(f):
    from gclf.data.layouts import LAYOUT_NAMES

    return click.option("--corpus", "layout", type=click.Choice(list(LAYOUT_NAMES)), default=None,
                        help="The corpus layout, when --data could be read as more than one. Default: detected.")(f)


def cache_option(f):
    return click.option("--cache", type=click.Path(file_okay=False), default="pkl_data", show_default=True,
                        help="Feature cache folder.")(f)


def workers_option(f):
    return click.option("--workers", type=click.IntRange(1, 256), default=None,
                        help="Parallel extraction processes [default: all cores].")(f)


def scheduler_option(f):
    return click.option("--scheduler", metavar="ADDRESS", default=None,
                        help="Run on a Dask cluster: the scheduler's address (tcp://HOST:8786; see README, "
                             "Scale). The cache and run folders must be on a folder every worker sees at the "
                             "same path. Default: this machine.")(f)


def frontend_option(f):
    from gclf.frontend.config import FLOORS

    return click.option("--frontend", type=click.Choice(["librosa", "numpy", "int", *(f"int-{f}" for f in FLOORS)]),
                        default="librosa",
                        show_default=True,
                        help="How MFCCs are computed: librosa (float; the README figures' features), numpy (the same "
                             "definition vectorised: the MFCC step 1.3-2.4x faster, within 0.005 of librosa; a "
                             "separate cache) or int (the integer front-end the device runs, gclf.frontend: "
                             "bit-exact with its generated C; int-<floor> chooses its log floor: frame (int's), "
                             "running (a causal running peak) or running70 (the same 70 dB below it), see README).")(f)


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="cpu",
                        show_default=True,
                        help="Where training runs: auto = CUDA, else Apple MPS, else the CPU (it says which). The "
                             "README figures are CPU figures; another device may differ in the last bits.")(f)


def resolved_device(name: str) -> str:
    """The device ``--device`` names (auto: said on stderr, also with --json); one line if it is not here."""
    from gclf.train.device import resolve_device

    dev = resolve_device(name)
    if name == "auto":
        click.echo(f"device: {dev} (auto)", err=True)
    return dev


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def model_option(f, default: str = "runs/model"):
    return click.option("--model", type=click.Path(), default=default, show_default=True,
                        help="A checkpoint file or a run folder of fold*.pt checkpoints.")(f)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def progress(total: int, desc: str, quiet: bool = False):
    """A tqdm bar on stderr (hidden when not a terminal or when quiet)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="file", disable=quiet or None, leave=False, dynamic_ncols=True)


def warn(msg: str) -> None:
    click.echo(f"warning: {msg}", err=True)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"
