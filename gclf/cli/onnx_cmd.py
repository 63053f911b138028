"""`gclf export-onnx`: a checkpoint (or the folds of a run) as ONNX files in export/, checked and measured."""
from __future__ import annotations

from pathlib import Path

import click

from gclf.errors import GclfError
from gclf.cli.common import CONTEXT, cache_option, default_data, emit_json, json_option, model_option, step_data_option, warn


def _pick(model: str, fold: int | None, all_folds: bool) -> list[Path]:
    """The checkpoints to export: the file given, or fold N / every fold of a run folder (default: final.pt,
    else fold1.pt with a warning)."""
    from gclf.checkpoint import checkpoint_paths, deploy_checkpoint

    if fold is not None and all_folds:
        raise GclfError("give --fold N or --all, not both")
    paths = checkpoint_paths(model)
    if Path(model).is_file():
        if fold is not None or all_folds:
            raise GclfError(f"{model} is a checkpoint file: --fold and --all apply to a run folder")
        return paths
    if all_folds:
        return paths
    if fold is None:
        path, note = deploy_checkpoint(model)
        if note:
            warn(note)
        return [path]
    want = f"fold{fold}.pt"
    chosen = [p for p in paths if p.name == want]
    if not chosen:
        raise GclfError(f"{model} has no {want} (folds: {', '.join(p.stem for p in paths)})")
    return chosen


class _HeldOut:
    """Held-out windows of each checkpoint; the corpus features are read once, a missing corpus warns once."""

    def __init__(self, cache: str, data: str | None):
        self.cache, self.data, self.utts, self.failed = cache, data, None, False

    def __call__(self, ck: dict):
        from gclf.data.pipeline import features_for_checkpoint, has_heldout, heldout_windows

        if self.failed:
            return None
        try:
            if self.utts is None:
                self.utts = features_for_checkpoint(ck, self.cache, self.data)
            if not has_heldout(ck):    # final.pt: agreement on its own training windows (no accuracy claim)
                from gclf.data.dataset import eval_windows
                from gclf.data.features import FeatureConfig

                return eval_windows(self.utts, FeatureConfig.from_dict(ck["feature_config"])).x
            return heldout_windows(ck, self.utts).x
        except GclfError as exc:
            self.failed = self.utts is None
            warn(f"{exc}; checking on synthetic windows instead (agreement not measured on real speech)")
            return None


def _line(r: dict) -> str:
    m = r["matches_pytorch"]
    text = (f"{r['path']}: {r['bytes']} bytes, opset {r['opset']}, {r['form']} ({r['chain']}); "
            f"max |ONNX - PyTorch| {max(m.values()):.2g} at batch 1 and 7")
    a = r.get("agreement")
    if a:
        kind = a.get("windows_kind") or ("held-out" if a["held_out"] else "synthetic")
        text += (f"; vs {a['reference']} on {a['windows']} {kind} windows: "
                 f"argmax {100 * a['argmax_agreement']:.1f} %, max |logit diff| {a['max_abs_logit_diff']:.2g}")
    return text


@click.command("export-onnx", context_settings=CONTEXT)
@model_option
@click.option("--fold", type=click.IntRange(1, 1000), default=None,
              help="Fold checkpoint of a run folder to export [default: the run's final.pt, else fold 1].")
@click.option("--all", "all_folds", is_flag=True, help="Export every fold checkpoint of the run folder.")
@click.option("--out", type=click.Path(file_okay=False), default="export", show_default=True,
              help="Folder for <run>-<fold>.onnx files.")
@click.option("--opset", type=click.IntRange(13, 23), default=None,
              help="ONNX opset: 13..23 for a float model or 8-bit fixed point, 21..23 wider "
                   "(int16 QDQ) [default: 18, or 21 for fixed point wider than 8 bits].")
@step_data_option
@cache_option
@json_option
def export_onnx(model, fold, all_folds, out, opset, data, cache, as_json):
    """Write checkpoints as ONNX: the float model, or the fixed-point chain as a QDQ graph.

    Circulant layers are materialised as dense matrices. Each file passes onnx.checker (full check); its
    onnxruntime output is compared with PyTorch at batch 1 and 7 and, for a fixed-point model, with the
    integer reference on the fold's held-out windows. What ONNX cannot express is listed under "notes"
    in --json.
    """
    from gclf.checkpoint import load_checkpoint
    from gclf.backends.onnx.export import export_name, export_onnx as export_one
    from gclf.data.pipeline import has_heldout

    results, heldout = [], _HeldOut(cache, data or default_data())
    for p in _pick(model, fold, all_folds):
        ck = load_checkpoint(p)
        r = export_one(ck, Path(out) / export_name(p), opset=opset, windows=heldout(ck))
        if r.get("agreement") and r["agreement"]["held_out"] and not has_heldout(ck):
            r["agreement"].update(held_out=False, windows_kind="training (final.pt holds out no speaker)")
        results.append(r)
        if not as_json:
            click.echo(_line(r))
    if as_json:
        emit_json(results if all_folds else results[0])


COMMANDS = [export_onnx]
