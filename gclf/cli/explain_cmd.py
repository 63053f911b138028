"""`gclf explain`: LRP relevance maps of audio files or of a fold's held-out utterances."""
from __future__ import annotations

from pathlib import Path

import click

from gclf.cli.common import CONTEXT, cache_option, data_option, default_data, emit_json, json_option, model_option
from gclf.errors import GclfError

DELETION_FRAMES = (5, 10, 20, 40)


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, type=click.Path())
@model_option
@click.option("--out", type=click.Path(file_okay=False), default="runs/explain", show_default=True,
              help="Folder for one PNG (and with --npz one .npz) per utterance.")
@click.option("--heldout", type=click.IntRange(1, 10000), default=None,
              help="Explain N utterances of the held-out speakers of --fold (drawn with --seed, classes "
                   "alternating) instead of FILES.")
@click.option("--fold", type=click.IntRange(1, 50), default=None,
              help="Which fold checkpoint of the run folder to explain [default: final.pt, else fold1.pt; "
                   "with --heldout: 1].")
@data_option
@cache_option
@click.option("--target", default=None,
              help="Class to explain (e.g. F) [default: each utterance's predicted label].")
@click.option("--score", type=click.Choice(["contrast", "logit"]), default="contrast", show_default=True,
              help="Score explained: contrast = logit of the class minus the mean of the others (the log-odds "
                   "for two classes), logit = the class's logit alone.")
@click.option("--epsilon", type=click.FloatRange(1e-12, 10.0), default=1e-3, show_default=True,
              help="Stabiliser of the LRP epsilon rule (larger: sparser maps, less relevance conserved).")
@click.option("--npz", is_flag=True, help="Also write the arrays (relevance, MFCC, per-window maps) as .npz.")
@click.option("--png/--no-png", default=True, show_default=True, help="Write the heatmap PNGs.")
@click.option("--deletion", is_flag=True,
              help=f"Also run the deletion check on the explained windows: the drop of the score when the "
                   f"{'/'.join(map(str, DELETION_FRAMES))} most relevant frames are replaced by the window's "
                   "mean frame, against as many random frames and the loudest ones.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Held-out draw and the deletion check's random frames.")
@json_option
def explain(files, model, out, heldout, fold, data, cache, target, score, epsilon, npz, png, deletion, seed, as_json):
    """LRP relevance of every MFCC coefficient and frame of each audio FILE, as a heatmap PNG titled with the
    label and its probability (and with --npz, arrays).

    \b
    Rules (Layer-wise Relevance Propagation, one per op kind, see gclf/explain/rules.py):
      conv, linear, max-pool  epsilon rule, by Captum's LRP
      LSTM                    Arras et al. 2017/2019: epsilon rule for the linear parts,
                              signal-take-all for the multiplicative gates
      input norm, flatten     identity (the map is over the normalised MFCC)
    Red is relevance for the explained class, blue against it; a map sums to the explained score (less
    what the biases and epsilon absorb: "conserved" in --json).

    A fixed-point checkpoint (after `gclf quantize`) is explained through its float twin: its weights and
    biases rounded to their fixed-point formats, activations in float (the integer datapath has no
    gradients); the output says so.
    """
    from gclf.explain.rules import LrpConfig
    from gclf.explain.run import audio_frames, deletion_for, explain_one, heldout_utterances, load_explainer, \
        stem_of, write_outputs

    if bool(files) == bool(heldout):
        raise GclfError("give audio FILES or --heldout N (not both)")
    if fold is None and heldout and Path(model).is_dir():
        fold = 1                                        # final.pt holds out no speaker
    ex = load_explainer(model, fold)
    if target is not None and target not in ex.classes:
        raise GclfError(f"--target {target!r} is not a class of the model ({', '.join(ex.classes)})")
    cfg = LrpConfig(epsilon, score, None if target is None else ex.classes.index(target))
    for note in ex.notes:
        click.echo(f"note: {note}", err=True)
    if heldout:
        items = heldout_utterances(ex, heldout, cache, data or default_data(), seed)
    else:
        items = [(f, None, None) for f in files]
    out, used, rows, maps = Path(out), set(), [], []
    for name, frames, truth in items:
        try:
            frames = audio_frames(name, ex.fcfg) if frames is None else frames
            u = explain_one(ex, name, frames, cfg, truth)
        except GclfError as exc:
            click.echo(f"error: {exc}", err=True)      # this file's one line; the others are still explained
            rows.append({"name": name, "error": str(exc)})
            continue
        maps.append(u)
        rows.append(write_outputs(u, ex, out, stem_of(name, used), png, npz))
        if not as_json:
            _print_row(rows[-1])
    result = {"model": str(ex.path), "notes": ex.notes, "lrp": {"epsilon": epsilon, "score": score},
              "utterances": rows}
    if deletion and maps:
        result["deletion"] = deletion_for(ex, maps, DELETION_FRAMES, cfg, seed)
        if not as_json:
            _print_deletion(result["deletion"])
    if as_json:
        emit_json(result)
    failed = sum("error" in r for r in rows)
    if failed:
        raise GclfError(f"{failed} of {len(rows)} file(s) could not be explained")


def _print_row(r: dict) -> None:
    p = r["probabilities"][r["label"]]
    truth = f" (true {r['true_label']})" if "true_label" in r else ""
    frames = ", ".join(f"{f['seconds']:.2f}s" for f in r["top_frames"][:3])
    cons = f"{100 * r['conserved']:.0f} %" if r["conserved"] is not None else "n/a"
    click.echo(f"{r['label']} p={p:.3f}{truth}  {r['name']}: score {r['score']:.3g} for {r['explained']}, "
               f"{cons} in the map; top frames {frames}; top coefficients {r['top_coefficients'][:3]}"
               + (f"  -> {r['png']}" if "png" in r else ""))


def _print_deletion(rows: list[dict]) -> None:
    click.echo("deletion check (mean score drop over the explained windows):")
    for d in rows:
        click.echo(f"  {d['frames']:>3} frames: most relevant {d['drop_relevant']:+.3f}, random "
                   f"{d['drop_random']:+.3f}, loudest {d['drop_loudest']:+.3f}  (score {d['score']:.3f}; "
                   f"relevant lower than random in {100 * d['windows_relevant_lower']:.0f} % of windows)")


COMMANDS = [explain]
