"""The ``gclf`` command: a thin click group over the library.

Start-up imports neither torch nor librosa: every command imports what it needs inside its body.
User errors (:class:`gclf.errors.GclfError`) print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import os
import sys

import click

from gclf.errors import GclfError
from gclf.cli.common import CONTEXT


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="gclf")
def cli() -> None:
    """gclf: a tiny male/female voice classifier, carried down to fixed-point hardware.

    \b
    Typical flow:
      gclf extract --data DIR --store   LibriSpeech FLAC -> MFCC cache in pkl_data/
      gclf train                        k-fold speaker-disjoint CV -> runs/model/
      gclf search --param lr=1e-3,3e-3  nested speaker CV of a grid -> runs/search/best_config.json
      gclf evaluate --model runs/model  accuracy on held-out speakers
      gclf demo                         all of it on synthetic speech, no download

    Each process uses one compute thread unless OMP_NUM_THREADS is set: the model is tiny, and extra
    threads only slow it down on a busy machine (extraction parallelises over files with --workers).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read by torch when a command first imports it


def _register() -> None:
    from gclf.cli import (data_cmds, explain_cmd, frontend_cmd, model_cmds, onnx_cmd, post_cmds, report_cmd,
                          search_cmd, weights_cmds)

    for mod in (data_cmds, model_cmds, search_cmd, post_cmds, onnx_cmd, weights_cmds, frontend_cmd, report_cmd,
                explain_cmd):
        for cmd in mod.COMMANDS:
            cli.add_command(cmd)


_register()


def main() -> None:
    """Console entry point, and the one place errors become exit codes: bad input (a GclfError raised where
    the input is read, or an OSError on a file the user named) is one line on stderr and status 2, usage
    errors are click's (status 2); anything else is a bug and keeps its traceback."""
    try:
        cli.main(standalone_mode=False)
    except GclfError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:         # a file the user named that the system will not give us: bad input too
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted: finished files are kept; run the command again to resume", err=True)
        sys.exit(130)
