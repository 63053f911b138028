"""`gclf export-weights` and `gclf export-c`: a fixed-point checkpoint as integer files, and as C99."""
from __future__ import annotations

import click

from gclf.cli.common import CONTEXT, cache_option, default_data, emit_json, json_option, step_data_option, warn

DEFAULT_MODEL = "runs/model-q8"


def _model_option(f):
    return click.option("--model", type=click.Path(), default=DEFAULT_MODEL, show_default=True,
                        help="A fixed-point checkpoint (from `gclf quantize`), or a run folder: its final.pt "
                             "(trained on every speaker) is exported, or fold1.pt if it has none (a warning says so).")(f)


def _force_option(f):
    return click.option("--force", is_flag=True,
                        help="Overwrite an export folder that holds another checkpoint's files.")(f)


def _out(model: str, out: str | None, root: str):
    """--out, or a folder under ``root`` named after the run and checkpoint (runs/model-q8 -> root/model-q8-final)."""
    from gclf.backends.outdir import export_dir
    from gclf.checkpoint import deploy_checkpoint

    path, note = deploy_checkpoint(model)
    if note:
        warn(note)
    return out or export_dir(root, path)


def _kb(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,} B"


@click.command("export-weights", context_settings=CONTEXT)
@_model_option
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the C header, the .mem files, the .npz and manifest.json "
                   "[default: weights_data/<run>-<checkpoint>, e.g. weights_data/model-q8-final].")
@click.option("--name", default=None,
              help="Model name: file prefix and C symbol prefix [default: gclf_<checkpoint name>, e.g. gclf_fold1].")
@_force_option
@json_option
def export_weights(model, out, name, force, as_json):
    """Integer weights and Q formats of a fixed-point checkpoint: C header, $readmemh .mem files, .npz, manifest.

    Circulant layers are written as their stored (p, q, k) defining vectors, not as the materialised matrix.
    """
    from gclf.backends.weights import export_weights as run

    r = run(model, _out(model, out, "weights_data"), name, force=force)
    if as_json:
        emit_json(r)
        return
    b = r["bytes"]
    click.echo(f"exported {r['tensors']} tensors of {r['source']} ({r['chain']}) to {r['out']}/")
    click.echo(f"  header {_kb(b['header'])}, {len(r['files']['mem'])} .mem files {_kb(b['mem'])}, "
               f"npz {_kb(b['npz'])}, manifest {_kb(b['manifest'])}; packed weights {_kb(r['weight_bytes_packed'])}")


def _print_c(r: dict) -> None:
    b = r["bytes"]
    click.echo(f"wrote {r['out']}/gclf_model.c ({_kb(b['gclf_model.c'])}) and gclf_model.h ({_kb(b['gclf_model.h'])}) "
               f"for {r['source']} ({r['chain']})")
    acts = ", ".join(f"{k[5:]} {v}" for k, v in r["activations"].items())
    circ = ", ".join(r["circulant_layers"]) or "none"
    click.echo(f"  accumulators {r['acc_ctype']} ({r['acc_bits_needed']} bits needed); activations: {acts}; "
               f"circulant layers: {circ} (direct products, not materialised)")
    s = r.get("sizes")
    if s:
        click.echo(f"  object ({s['cflags']}): text {_kb(s['text'])}, data {_kb(s['data'])}, bss {_kb(s['bss'])} "
                   f"(code {_kb(s['code'])}, constants {_kb(s['rodata'])}); stack <= {_kb(s['stack'])}; "
                   f"static RAM {_kb(s['static_ram'])} (bss + writable data + stack)")
    elif "sizes" in r:
        click.echo("  no C compiler found: sizes not measured")
    v = r.get("verify")
    if v:
        click.echo(f"  verified: {v['mismatches']} of {v['windows']} held-out windows differ from the integer reference")
    t = r.get("target")
    if t:
        ram = (f"RAM {_kb(t['ram'])} (bss {_kb(t['bss'])} + data {_kb(t['rw_data'])} + stack {_kb(t['stack'])} measured)"
               if "ram" in t else f"RAM {_kb(t['bss'] + t['rw_data'])} (bss + data; stack measured with --verify)")
        click.echo(f"  {t['target']} ({t['cflags']}): flash {_kb(t['flash'])} (code {_kb(t['code'])}, constants "
                   f"{_kb(t['rodata'])}), {ram}")
        if "windows" in t:
            click.echo(f"  {t['target']} on qemu {t['machine']}: {t['instructions_per_inference']:,} instructions per "
                       f"inference (+-{t['instructions_error']}), {t['instructions_per_mac']} per MAC "
                       f"({t['macs']:,} MACs); {t['mismatches']} of {t['windows']} held-out windows differ from the "
                       "integer reference")


@click.command("export-c", context_settings=CONTEXT)
@_model_option
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for gclf_model.c and gclf_model.h [default: export/<run>-<checkpoint>, e.g. "
                   "export/model-q8-final].")
@click.option("--measure/--no-measure", default=True, show_default=True,
              help="Compile the object with the system C compiler and report text/data/bss, stack and static RAM.")
@click.option("--verify", is_flag=True,
              help="Also compile a harness and compare its logits with the integer reference on the checkpoint's "
                   "held-out windows (final.pt: its training windows; needs the corpus features, see --cache).")
@click.option("--target", type=click.Choice(["host", "cortex-m4"]), default="host", show_default=True,
              help="cortex-m4: also cross-compile with arm-none-eabi-gcc and report flash and RAM; with --verify run "
                   "the held-out windows on qemu-system-arm -M mps2-an386 and count instructions per inference.")
@click.option("--dsp/--no-dsp", default=True, show_default=True,
              help="With --target cortex-m4: use the DSP (SMLAD) kernels, or the portable C99 ones (-DGCLF_NO_DSP).")
@click.option("--prefix", default="gclf_", show_default=True,
              help="Start of every exported C symbol (macros upper-cased), so two models link into one firmware.")
@cache_option
@step_data_option
@_force_option
@json_option
def export_c(model, out, measure, verify, target, dsp, prefix, cache, data, force, as_json):
    """Integer-only C99 inference (gclf_model.c/.h), bit-exact with the integer reference.

    Static buffers only, no floating point; the chain's sigmoid/tanh tables and block-circulant layers computed
    from their defining vectors. The input is the quantized InputNorm output; for a model trained on the integer
    front-end (`gclf train --frontend int`) the export also holds the front-end and <prefix>classifier.c/.h:
    int16 PCM -> logits, a whole-clip call and a streaming API (see the header).
    """
    from gclf.errors import GclfError
    from gclf.backends.c.generate import export_c as run

    from gclf.backends.outdir import claim
    from gclf.checkpoint import deploy_checkpoint

    if target != "host":
        from gclf.backends.c.target import require_tools, target_config

        require_tools(target_config(target))                 # before anything is written
    out = _out(model, out, "export")
    from gclf.backends.c.generate import check_prefix

    check_prefix(prefix)
    if prefix != "gclf_" and (verify or target != "host"):
        raise GclfError("--verify and --target build gclf's harness, which calls gclf_infer: use the default --prefix")
    claim(out, deploy_checkpoint(model)[0], [f"{prefix}{n}" for n in ("model.c", "model.h", "frontend.c",
                                                                     "frontend.h", "classifier.c", "classifier.h")],
          force)
    r = run(model, out, measure=measure, prefix=prefix)
    if verify:
        from gclf.backends.c.build import verify_export

        r["verify"] = verify_export(model, out, cache, data or default_data())
    if target != "host":
        from gclf.backends.c.target import build_target, target_config, verify_export_target

        cfg = target_config(target, dsp)
        if verify:
            r["target"] = verify_export_target(model, out, cache, cfg, data or default_data())
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="gclf-m4-") as tmp:
                r["target"] = {k: v for k, v in build_target(out, tmp, cfg).items() if k != "elf"}
    emit_json(r) if as_json else _print_c(r)
    bad = [(k, r[k]) for k in ("verify", "target") if k in r and r[k].get("mismatches")]
    if bad:
        raise GclfError("the C differs from the integer reference: " + "; ".join(
            f"{k}: {v['mismatches']} of {v['windows']} windows" for k, v in bad))


COMMANDS = [export_weights, export_c]
