"""Features for a corpus (from the cache, extracting what is missing) and for a checkpoint, and the
held-out windows every figure is measured on."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from gclf.data.dataset import eval_windows, select
from gclf.data.features import FeatureConfig, UtteranceFeatures, cache_dir_for, extract_corpus, load_cache
from gclf.data.layouts import scan_any
from gclf.errors import GclfError


def corpus_features(data: str | Path, fcfg: FeatureConfig, cache_root: str | Path = "pkl_data",
                    workers: int | None = None, progress_factory: Callable | None = None,
                    on_error: Callable[[str], None] | None = None,
                    scheduler: str | None = None, task: str | None = None,
                    layout: str | None = None) -> tuple[list[UtteranceFeatures], dict]:
    """Features of every usable utterance of a corpus in any known layout (:mod:`gclf.data.layouts`; or the
    one named ``layout``), labelled for ``task`` (default: the layout's): from the cache, extracting what is
    missing (on the Dask cluster at ``scheduler`` when given). The frames stay in the cache's frame store."""
    corpus = scan_any(data, task, layout)
    bar = progress_factory(len(corpus.utterances)) if progress_factory else None
    summary = extract_corpus(corpus, fcfg, cache_root, workers, progress=bar.update if bar else None,
                             on_error=on_error, scheduler=scheduler)
    if bar:
        bar.close()
    _, utts = load_cache(summary.cache_dir)
    wanted = {u.uid for u in corpus.utterances}
    utts = [u for u in utts if u.uid in wanted]
    if not utts:
        raise GclfError(f"no utterance of {corpus.root} could be featurised")
    return utts, {**summary.as_dict(), "corpus": corpus.identity(), "root": str(corpus.root), "task": corpus.task,
                  "skipped_bad_name": corpus.skipped_bad_name}


def features_for_checkpoint(ck: dict, cache_root: str | Path = "pkl_data", data: str | Path | None = None,
                            workers: int | None = None) -> list[UtteranceFeatures]:
    """The features a checkpoint was trained with: from the cache folder its corpus identity and feature config
    name, else extracted from ``data`` (which must be that corpus, wherever it now lies)."""
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    ident = ck.get("corpus")
    if not isinstance(ident, dict):          # checkpoints before corpus identities recorded a path
        return _features_from_path(ck, fcfg, cache_root, data or ident, workers)
    cdir = cache_dir_for(ident, fcfg, cache_root)
    if (cdir / "meta.json").is_file():
        _, utts = load_cache(cdir)
        return utts
    if not data:
        raise GclfError(f"the features of the model's corpus ({ident.get('name')}, {ident.get('utterances')} "
                        f"utterances, id {ident.get('id')}) are not in {cache_root}/: pass --data DIR (or set "
                        "GCLF_DATA) with that corpus")
    corpus = scan_any(data, ident.get("task"), ident.get("layout"))
    if corpus.identity()["id"] != ident.get("id"):
        raise GclfError(f"{corpus.root} is not the corpus this model was trained on ({len(corpus.utterances)} "
                        f"utterances, id {corpus.identity()['id']}; the model's: {ident.get('utterances')} "
                        f"utterances, id {ident.get('id')})")
    return corpus_features(corpus.root, fcfg, cache_root, workers, task=corpus.task, layout=corpus.layout)[0]


def _features_from_path(ck: dict, fcfg: FeatureConfig, cache_root, corpus, workers) -> list[UtteranceFeatures]:
    if not corpus:
        raise GclfError("the checkpoint records no corpus: pass --data")
    utts, _ = corpus_features(corpus, fcfg, cache_root, workers)
    return utts


def has_heldout(ck: dict) -> bool:
    """Whether a checkpoint has held-out speakers (a fold model), or none (``final.pt``, trained on all)."""
    return bool(ck.get("split", {}).get("test_speakers"))


def heldout_windows(ck: dict, utts: list[UtteranceFeatures]):
    """Evaluation windows of the checkpoint's held-out (test) speakers."""
    test = ck.get("split", {}).get("test_speakers") or []
    if not test:
        raise GclfError("this checkpoint has no held-out speakers (a final model): evaluate a fold checkpoint "
                        "or pass --data with a corpus of unseen speakers")
    sel = select(utts, test)
    missing = set(test) - {u.speaker for u in sel}
    if missing:
        raise GclfError(f"{len(missing)} of the checkpoint's {len(test)} held-out speakers are missing from the "
                        "features found (an interrupted or edited cache?): rerun `gclf extract`")
    return eval_windows(sel, FeatureConfig.from_dict(ck["feature_config"]))


def heldout_or_none(ck: dict, utts: list[UtteranceFeatures]):
    """:func:`heldout_windows` of a fold checkpoint; None for a final model (nothing held out to measure on)."""
    return heldout_windows(ck, utts) if has_heldout(ck) else None
