"""`gclf search`: hyperparameter search scored by nested speaker-disjoint cross-validation."""
from __future__ import annotations

import click

from gclf.errors import GclfError

from gclf.cli.augment_opts import AUGMENT_KEYS, augment_config, augment_options
from gclf.cli.common import (CONTEXT, cache_option, data_option, device_option, emit_json, json_option, pct,
                             progress, resolve_data, resolved_device, scheduler_option, warn)


def _print(r: dict) -> None:
    n, d = r["nested"], r["default"]
    k = len(n["per_fold"])
    click.echo(f"nested {k}x{r['search']['inner']} speaker CV, {len(r['candidates'])} candidates, {r['trials']} trials:")
    click.echo(f"  chosen per outer fold: utterance {pct(n['accuracy_utterance_mean'])} ± "
               f"{100 * n['accuracy_utterance_std']:.1f}   (the figure of the search: outer speakers never chose)")
    click.echo(f"  default, same outer folds: utterance {pct(d['accuracy_utterance_mean'])} ± "
               f"{100 * d['accuracy_utterance_std']:.1f}")
    for i, cfg in n["chosen"].items():
        click.echo(f"  outer fold {i}: chose {cfg or 'the default'}")
    click.echo(f"best configuration {r['best_config'] or '(the default)'} -> {r['files']['best_config']} "
               f"(gclf train --config); trials: {r['files']['trials']}")


@click.command(context_settings=CONTEXT)
@data_option
@cache_option
@click.option("--out", type=click.Path(file_okay=False), default="runs/search", show_default=True,
              help="Search folder: trials.csv, best_config.json, summary.json, search.json. A search there "
                   "with the same settings is resumed (its finished trials are not rerun).")
@click.option("--param", "params", multiple=True, metavar="NAME=V1,V2,...",
              help="A hyperparameter and its values; repeat for several. Training: lr, epochs, batch_size, "
                   "patience, weight_decay, ...; network (cnn_lstm): conv1_channels, conv2_channels, lstm_hidden, "
                   "fc_hidden (widths as 64x32), dropout, ...  Example: --param lr=1e-3,3e-3 --param lstm_hidden=8,16")
@click.option("--n-iter", type=click.IntRange(1, 100000), default=None,
              help="Random search: this many candidates drawn (seeded, no repeats) from the grid. Default: the whole grid.")
@click.option("--outer", type=click.IntRange(2, 50), default=5, show_default=True,
              help="Outer speaker folds (the test speakers of the reported figure; gclf train's folds of the same seed).")
@click.option("--inner", type=click.IntRange(2, 50), default=3, show_default=True,
              help="Inner speaker folds over each outer fold's training speakers (they choose the configuration).")
@click.option("--seed", type=int, default=0, show_default=True, help="Folds, sampling, initialisation, augmentation.")
@click.option("--arch", type=click.Choice(["cnn_lstm", "raw_conv"]), default="cnn_lstm", show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="A base configuration file (as --config of gclf train): the default the candidates vary.")
@click.option("--force", is_flag=True, help="Discard a search with other settings in --out and start again.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Trials run at once, each a process with one thread (also: extraction processes).")
@device_option
@augment_options
@scheduler_option
@json_option
def search(data, cache, out, params, n_iter, outer, inner, seed, arch, config_file, force, workers, device,
           scheduler, as_json, **aug):
    """Search training and network hyperparameters (grid or random), scored by nested speaker CV.

    \b
    Each outer fold's test speakers take no part in choosing: inner CV on the outer-training speakers
    picks a candidate, which is then trained on them and tested on the outer speakers. Reported: that
    nested figure, and the default configuration's on the same outer folds. Written: every trial
    (trials.csv), the configuration with the best mean inner score (best_config.json, for
    `gclf train --config`). Interrupted? Run the same command again: finished trials are kept.
    Training uses gclf train's recipe (the augmentation options are train's).
    """
    from dataclasses import replace

    from gclf.data.augment import RECIPE, AugmentConfig
    from gclf.data.layouts import check_trainable, detect_layout, task_of
    from gclf.data.pipeline import corpus_features
    from gclf.frontend.features import with_frontend
    from gclf.graph.models import build_graph, feature_config
    from gclf.search.nested import SearchConfig, nested_search
    from gclf.search.space import candidates, parse_space, read_config
    from gclf.train.augment import add_views
    from gclf.train.cv import check_two_classes
    from gclf.train.fit import TrainConfig
    from gclf.train.recipes import recipe_for

    data = resolve_data(data)
    check_trainable(data)
    task = task_of(detect_layout(data)[0], None)
    if task != "sex":
        raise GclfError(f"gclf search runs on the sex task (LibriSpeech layout) for now; {data} is a {task} corpus: "
                        "search its recipe's settings by hand with gclf train --lr/--epochs/--arch")
    device = resolved_device(device)
    t_over, m_over = {}, {}
    if config_file:
        arch, t_over, m_over = read_config(config_file)
    rec = recipe_for("sex", arch)                        # gclf train's recipe is the base (sex: 16 MFCCs, --ema)
    m_over = {**rec.arch_config, **m_over}
    space = parse_space(list(params), arch)
    scfg = SearchConfig(outer=outer, inner=inner, n_iter=n_iter, seed=seed)
    cands = candidates(space, n_iter, seed)
    fcfg = with_frontend(feature_config(build_graph(arch, m_over)), "librosa")
    recipe = RECIPE if fcfg.kind in ("mfcc", "int_mfcc") else AugmentConfig()
    acfg = augment_config(recipe, **{k: aug[k] for k in AUGMENT_KEYS})
    tcfg = replace(TrainConfig(**rec.train, seed=seed, folds=outer, augment=acfg, device=device), **t_over)
    utts, info = corpus_features(data, fcfg, cache, workers, on_error=warn, scheduler=scheduler,
                                 progress_factory=lambda n: progress(n, "features", quiet=as_json))
    check_two_classes(utts)
    utts = add_views(utts, data, fcfg, acfg, seed, cache, workers,
                     lambda n: progress(n, "augmented views", quiet=as_json))
    bar = progress(0, "trials", quiet=as_json)
    bar.unit = "trial"

    def on_trial(r, done, total):
        text = f"{r['phase']} {r['outer']}.{r['inner']} {r['config']}: utt {pct(r['accuracy_utterance'])}"
        if not bar.disable:
            bar.total, bar.n = total, done
            bar.set_postfix_str(text, refresh=True)
        elif not as_json:
            click.echo(f"trial {done}/{total} {text} ({r['seconds']} s)", err=True)

    r = nested_search(utts, out, arch, space, cands, fcfg, tcfg, scfg, m_over, info["corpus"], scheduler, workers,
                      force, on_trial, {**t_over, **m_over})
    bar.close()
    emit_json(r) if as_json else _print(r)


COMMANDS = [search]
