"""`gclf export-frontend`: the integer MFCC front-end as C, optionally verified and measured on the M4."""
from __future__ import annotations

import click

from gclf.cli.common import CONTEXT, emit_json, json_option
from gclf.frontend.config import FLOORS


def _print(r: dict) -> None:
    click.echo(f"wrote {r['c']} and {r['h']}: tables {r['table_bytes']:,} B const, work area {r['ram_bytes']:,} B RAM")
    if "verify" in r:
        v = r["verify"]
        click.echo(f"host C vs numpy integer reference: {v['mismatches']} of {v['frames']} frames differ "
                   f"({v['signals']} synthetic signals)")
    if "target" in r:
        t = r["target"]
        click.echo(f"cortex-m4 (qemu mps2-an386): {t['instructions_per_frame']:,} instructions per frame "
                   f"(+-{t['instructions_error']}), {t['instructions_per_second_of_audio'] / 1e6:.1f} M per second "
                   f"of audio; flash {t['code'] + t['rodata']:,} B, RAM {t['bss'] + (t['stack'] or 0):,} B; "
                   f"{t['mismatches']} of {t['frames']} frames differ from the reference")


@click.command("export-frontend", context_settings=CONTEXT)
@click.option("--out", type=click.Path(file_okay=False), default="export/frontend", show_default=True,
              help="Folder for <prefix>frontend.c and <prefix>frontend.h.")
@click.option("--prefix", default="gclf_", show_default=True,
              help="Prefix of every C symbol (macros: upper-case), so two front-ends link into one firmware.")
@click.option("--verify", is_flag=True,
              help="Compile a host harness and compare every frame of synthetic speech and edge cases with the "
                   "numpy integer reference.")
@click.option("--target", type=click.Choice(["host", "cortex-m4"]), default="host", show_default=True,
              help="cortex-m4: also run on qemu-system-arm -M mps2-an386, compare, count instructions per frame.")
@click.option("--floor", type=click.Choice(list(FLOORS)), default="frame", show_default=True,
              help="The log floor (gclf.frontend.config.FLOORS), as `gclf train --frontend int-<floor>` uses it. "
                   "A model's own front-end is exported by `gclf export-c` of that model.")
@json_option
def export_frontend(out, prefix, verify, target, floor, as_json):
    """PCM int16 -> MFCC frames in C (no float, no allocation), bit-exact with gclf.frontend's numpy reference."""
    import tempfile

    from gclf.backends.c.build import find_cc
    from gclf.errors import GclfError
    from gclf.frontend import FrontendConfig
    from gclf.frontend.c import build_frontend_harness, generate_frontend_c, verify_frontend_c
    cfg = FrontendConfig(**FLOORS[floor])
    r = {**generate_frontend_c(out, cfg, prefix), "config": cfg.as_dict(), "prefix": prefix}
    if verify:
        cc = find_cc()
        if cc is None:
            raise GclfError("--verify needs a C compiler: install cc, gcc or clang, or set $CC")
        with tempfile.TemporaryDirectory(prefix="gclf-fe-") as tmp:
            r["verify"] = verify_frontend_c(build_frontend_harness(tmp, cc, cfg, prefix), cfg)
    if target == "cortex-m4":
        from gclf.frontend.signals import speech
        from gclf.frontend.target import measure_frontend_target

        r["target"] = measure_frontend_target(speech("F", 102, 2.0), cfg)
    emit_json(r) if as_json else _print(r)


COMMANDS = [export_frontend]
