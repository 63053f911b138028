"""`gclf compress`, `gclf approx`, `gclf quantize`: post-processing steps measured on unseen speakers."""
from __future__ import annotations

import click

from gclf.cli.common import (CONTEXT, cache_option, command_line, default_data, device_option, emit_json, json_option,
                             model_option, pct, resolved_device, step_data_option)

SWEEP_BITS = (16, 12, 8, 6, 4, 3, 2)
SWEEP_BLOCKS = (2, 4, 8, 16)
SWEEP_APPROX = (("hard", "hard"), ("plan", "plan"), ("plan", "pwl16"), ("pwl8", "pwl8"), ("pwl16", "pwl16"),
                ("lut64", "lut64"), ("lut256", "lut256"))


def _fold_echo(quiet: bool):
    def fn(i, r):
        if not quiet:
            keys = [k for k in r if k.startswith("accuracy") and not k.endswith("window") and r[k] is not None]
            click.echo(f"fold {i}: " + (", ".join(f"{k[9:]} {pct(r[k])}" for k in keys) or "no held-out speakers"),
                       err=True)
    return fn


def _final_note(r: dict, as_json: bool) -> bool:
    """Say what happened to final.pt; True when nothing was measured (a lone final model): print and stop."""
    if as_json:
        emit_json(r)
        return True
    if not r["folds"]:
        click.echo(f"{r.get('note')}; model: {r['model']}")
        return True
    if r.get("final"):
        click.echo(f"final.pt: the same step, calibrated/fine-tuned on all its speakers (no held-out speakers: "
                   f"the figures below are the folds')", err=True)
    return False


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(c[1] for c in cols) + " |\n|" + "---|" * len(cols) + "\n"
    def fmt(v, key):
        if isinstance(v, float) and "accuracy" in key:
            return f"{100 * v:.1f} %"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    return head + "\n".join("| " + " | ".join(fmt(r.get(k, ""), k) for k, _ in cols) + " |" for r in rows)


@click.command(context_settings=CONTEXT)
@model_option
@click.option("--bits", type=click.IntRange(2, 16), default=8, show_default=True, help="Weight width.")
@click.option("--act-bits", type=click.IntRange(2, 16), default=None,
              help="Activation and LSTM-state width [default: same as --bits].")
@click.option("--bias-bits", type=click.IntRange(2, 32), default=None,
              help="Bias width [default: 2 x --bits, at most 32].")
@click.option("--weights-only", is_flag=True, help="Quantize weights only; activations stay float.")
@click.option("--per-channel", is_flag=True, help="One weight format per output channel (dense and conv layers).")
@click.option("--qat-epochs", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Quantization-aware fine-tuning epochs (straight-through estimator).")
@click.option("--qat-lr", type=click.FloatRange(1e-7, 1.0), default=5e-4, show_default=True)
@click.option("--rounding", type=click.Choice(["half_up", "half_away", "half_even", "floor"]), default="half_up",
              show_default=True, help="Rounding of every requantization.")
@click.option("--sweep", is_flag=True, help="Table over bits 16,12,8,6,4,3,2 (activations at max(bits, 8)), "
                                            "post-training and with --qat-epochs (default 5 in a sweep); writes no checkpoints.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[default: MODEL-qBITS]")
@click.option("--views", is_flag=True,
              help="QAT also on the run's augmented views, as it was trained (see `gclf compress --help`); the "
                   "calibration reads the clips only.")
@cache_option
@step_data_option
@device_option
@json_option
def quantize(model, bits, act_bits, bias_bits, weights_only, per_channel, qat_epochs, qat_lr, rounding, sweep, out,
             views, cache, data, device, as_json):
    """Fixed-point weights, activations and LSTM state; accuracy from the integer reference.

    Activation ranges are calibrated on each fold's training speakers; accuracy is measured on its held-out
    speakers. The fake-quant model is checked bit for bit against the integer reference.
    """
    from gclf.graph.spec import QuantConfig
    from gclf.steps.quantize import quantize_one
    from gclf.steps.runner import apply_step, default_out

    device = resolved_device(device)

    def run(b, a, qat, write):
        cfg = QuantConfig(bits=b, act_bits=a, bias_bits=bias_bits, weights_only=weights_only, per_channel=per_channel, rounding=rounding)
        dest = out or default_out(model, f"-q{b}" + (f"a{a}" if a and a != b else "") + ("w" if weights_only else ""))
        return apply_step(model, dest, lambda ck, u: quantize_one(ck, u, cfg, qat, qat_lr, device=device), cache,
                          on_fold=_fold_echo(as_json or sweep), write=write, data=data or default_data(),
                          command=command_line(), step_name="quantize", views=views and qat > 0)

    if sweep:
        rows = []
        for b in SWEEP_BITS:
            a = act_bits or max(b, 8)
            for qat in (0, qat_epochs or 5):
                r = run(b, a, qat, write=False)
                rows.append({"bits": b, "act_bits": a, "qat_epochs": qat, **{k: v for k, v in r.items() if k != "folds"}})
                if not as_json:
                    click.echo(f"W{b}/A{a} qat={qat}: {pct(r['accuracy_quantized'])} ({r['weight_bytes_quantized']:.0f} B)", err=True)
        cols = [("bits", "weight bits"), ("act_bits", "act bits"), ("qat_epochs", "QAT epochs"),
                ("accuracy_float", "float utt."), ("accuracy_quantized", "fixed-point utt."),
                ("accuracy_quantized_window", "fixed-point win."), ("weight_bytes_quantized", "weight bytes"),
                ("bit_exact_mismatches", "fake-quant vs integer mismatches")]
        emit_json(rows) if as_json else click.echo(_table(rows, cols))
        return
    r = run(bits, act_bits, qat_epochs, write=True)
    r.update({"bits": bits, "act_bits": act_bits or bits, "weights_only": weights_only, "qat_epochs": qat_epochs})
    if _final_note(r, as_json):
        return
    if r.get("accuracy_quantized") is None:     # a final model: nobody held out
        click.echo(f"W{bits}/A{act_bits or bits}: a final model has no held-out speakers; measure it with "
                   "`gclf evaluate --model ... --data DIR` on another corpus")
    else:
        click.echo(f"W{bits}/A{act_bits or bits}{' weights-only' if weights_only else ''}: utterance accuracy "
                   f"float {pct(r['accuracy_float'])} -> post-training {pct(r['accuracy_ptq'])} -> final "
                   f"{pct(r['accuracy_quantized'])} (window {pct(r['accuracy_quantized_window'])})")
    click.echo(f"weight bytes {r['weight_bytes_float']:.0f} -> {r['weight_bytes_quantized']:.0f} "
               f"({r['weight_matrix_bytes']:.0f} weights + {r['bias_bytes']:.0f} biases); "
               f"overflows {sum(r.get('overflows', {}).values())}, weight saturations {r['weight_saturations']}, "
               f"fake-quant vs integer mismatches {r.get('bit_exact_mismatches', 'n/a')}; model: {r['model']}")


@click.command(context_settings=CONTEXT)
@model_option
@click.option("--sigmoid", default="plan", show_default=True, help="exact, hard, plan, pwlN, lutN.")
@click.option("--tanh", default="pwl16", show_default=True, help="exact, hard, plan, pwlN, lutN.")
@click.option("--finetune-epochs", type=click.IntRange(0, 1000), default=10, show_default=True)
@click.option("--lr", type=click.FloatRange(1e-7, 1.0), default=1e-3, show_default=True)
@click.option("--errors", "errors_only", is_flag=True, help="Only print each approximation's max/mean error.")
@click.option("--sweep", is_flag=True, help="Accuracy table over several sigmoid/tanh pairs; writes no checkpoints.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[default: MODEL-a]")
@click.option("--views", is_flag=True,
              help="Fine-tune on the run's augmented views too, as it was trained (see `gclf compress --help`).")
@cache_option
@step_data_option
@device_option
@json_option
def approx(model, sigmoid, tanh, finetune_epochs, lr, errors_only, sweep, out, views, cache, data, device, as_json):
    """Put piecewise-linear / table sigmoid and tanh into the LSTM and fine-tune with them in the loop.

    A network without an LSTM has nothing to approximate: the command says so and writes nothing.
    """
    from gclf.approx.schemes import error_table, get_approx
    from gclf.errors import GclfError

    if errors_only:
        rows = error_table()
        emit_json(rows) if as_json else click.echo(_table(rows, [("func", "function"), ("name", "scheme"),
                                                                  ("segments", "segments"), ("max_abs_error", "max |error|"),
                                                                  ("mean_abs_error", "mean |error|")]))
        return
    for name, func in ((sigmoid, "sigmoid"), (tanh, "tanh")):
        try:
            get_approx(name, func)
        except ValueError as exc:
            raise GclfError(str(exc)) from None
    from gclf.checkpoint import checkpoint_paths, graph_of, load_checkpoint
    from gclf.graph.ops import LSTM
    from gclf.steps.float_steps import approx_one
    from gclf.steps.runner import apply_step, default_out

    device = resolved_device(device)

    graph = graph_of(load_checkpoint(checkpoint_paths(model, include_final=True)[0]))
    if not graph.of_kind(LSTM):
        note = f"the {graph.arch} network has no LSTM: approx has nothing to approximate; nothing written"
        emit_json({"applied": False, "note": note}) if as_json else click.echo(note)
        return

    def run(sig, tnh, write):
        r = apply_step(model, out or default_out(model, "-a"),
                       lambda ck, u: approx_one(ck, u, sig, tnh, finetune_epochs, lr, device=device), cache,
                       on_fold=_fold_echo(as_json or sweep), write=write, data=data or default_data(),
                       command=command_line(), step_name="approx", views=views)
        r.update({"sigmoid": sig, "tanh": tnh})
        return r

    if sweep:
        errs = {(e["func"], e["name"]): e["max_abs_error"] for e in error_table()}
        rows = [{**{k: v for k, v in run(s_, t_, False).items() if k != "folds"},
                 "sigmoid_max_error": errs[("sigmoid", s_)], "tanh_max_error": errs[("tanh", t_)]}
                for s_, t_ in SWEEP_APPROX]
        cols = [("sigmoid", "sigmoid"), ("tanh", "tanh"), ("sigmoid_max_error", "sigmoid max err"),
                ("tanh_max_error", "tanh max err"), ("accuracy_before", "float utt."),
                ("accuracy_swapped", "swapped utt."), ("accuracy_swapped_window", "swapped win."),
                ("accuracy_after", "fine-tuned utt."), ("accuracy_after_window", "fine-tuned win.")]
        emit_json(rows) if as_json else click.echo(_table(rows, cols))
        return
    r = run(sigmoid, tanh, True)
    if _final_note(r, as_json):
        return
    click.echo(f"sigmoid={sigmoid} tanh={tanh}: utterance accuracy {pct(r['accuracy_before'])} -> swapped "
               f"{pct(r['accuracy_swapped'])} -> fine-tuned {pct(r['accuracy_after'])}; model: {r['model']}")


@click.command(context_settings=CONTEXT)
@model_option
@click.option("--block", type=click.IntRange(1, 64), default=8, show_default=True, help="Circulant block size k.")
@click.option("--layers", default="fc,lstm", show_default=True,
              help="Comma list of groups (fc: every Linear op, lstm: both matrices of every LSTM) or matrix names "
                   "(fc1, lstm.ih, ...); a group the network lacks is skipped. Convolutions stay dense.")
@click.option("--finetune-epochs", type=click.IntRange(0, 1000), default=15, show_default=True)
@click.option("--lr", type=click.FloatRange(1e-7, 1.0), default=1e-3, show_default=True)
@click.option("--sweep", is_flag=True, help="Table over blocks 2, 4, 8, 16; writes no checkpoints.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="[default: MODEL-cBLOCK]")
@click.option("--views", is_flag=True,
              help="Fine-tune on the run's augmented views too, as it was trained (its augmentation and seed; "
                   "reads the corpus audio from --data unless the run's views are cached; nothing when the run "
                   "had no audio augmentation: the report's `views` says which). Keyword CNN-LSTM, "
                   "circulant k=2, 40 epochs: 82.5 % against 80.9 % without (README, per-task table).")
@cache_option
@step_data_option
@device_option
@json_option
def compress(model, block, layers, finetune_epochs, lr, sweep, out, views, cache, data, device, as_json):
    """Block-circulant fully connected and LSTM weights: k times fewer weights per compressed layer."""
    from gclf.steps.float_steps import compress_one
    from gclf.steps.runner import apply_step, default_out

    device = resolved_device(device)

    def run(k, write):
        return apply_step(model, out or default_out(model, f"-c{k}"),
                          lambda ck, u: compress_one(ck, u, k, layers, finetune_epochs, lr, device=device), cache,
                          on_fold=_fold_echo(as_json or sweep), write=write, data=data or default_data(),
                          command=command_line(), step_name="compress", views=views)

    if sweep:
        rows = []
        for k in SWEEP_BLOCKS:
            r = run(k, write=False)
            rows.append({k2: v for k2, v in r.items() if k2 != "folds"})
        cols = [("block", "block"), ("params_after", "parameters"), ("compression", "x fewer"),
                ("accuracy_before", "float utt."), ("accuracy_projected", "projected utt."),
                ("accuracy_after", "fine-tuned utt."), ("accuracy_after_window", "fine-tuned win.")]
        emit_json(rows) if as_json else click.echo(_table(rows, cols))
        return
    r = run(block, write=True)
    if _final_note(r, as_json):
        return
    for layer in r["folds"][0]["layers"]:
        click.echo(f"  {layer['name']}: {layer['params_before']} -> {layer['params_after']} parameters")
    click.echo(f"block {block}: parameters {r['params_before']:.0f} -> {r['params_after']:.0f} "
               f"({r['compression']:.2f}x), float32 bytes {r['bytes_before']:.0f} -> {r['bytes_after']:.0f}")
    click.echo(f"utterance accuracy {pct(r['accuracy_before'])} -> projected {pct(r['accuracy_projected'])} -> "
               f"fine-tuned {pct(r['accuracy_after'])}" + (" (on the run's views too)" if r.get("views") else "")
               + f"; model: {r['model']}")
    if views and not r.get("views"):
        click.echo("--views: the run had no audio augmentation, so it was fine-tuned on its clips only")


COMMANDS = [compress, approx, quantize]
