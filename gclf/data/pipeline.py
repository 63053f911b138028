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
                    on_error: Callable[[str], None] | None = None) -> tuple[list[UtteranceFeatures], dict]:
    """Features of every usable utterance of a corpus in any known layout (:mod:`gclf.data.layouts`): from the
    cache, extracting what is missing."""
    corpus = scan_any(data)
    bar = progress_factory(len(corpus.utterances)) if progress_factory else None
    summary = extract_corpus(corpus, fcfg, cache_root, workers, progress=bar.update if bar else None,
                             on_error=on_error)
    if bar:
        bar.close()
    _, utts = load_cache(summary.cache_dir)
    wanted = {u.uid for u in corpus.utterances}
    utts = [u for u in utts if u.uid in wanted]
    if not utts:
        raise GclfError(f"no utterance of {corpus.root} could be featurised")
    return utts, {**summary.as_dict(), "corpus": str(corpus.root)}


def features_for_checkpoint(ck: dict, cache_root: str | Path = "pkl_data", data: str | Path | None = None,
                            workers: int | None = None) -> list[UtteranceFeatures]:
    """The features a checkpoint was trained with: from the cache, or re-extracted from its corpus."""
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    corpus = data or ck.get("corpus")
    if not corpus:
        raise GclfError("the checkpoint records no corpus: pass --data")
    from gclf.data.corpus import find_root

    root = find_root(corpus)
    cdir = cache_dir_for(root, fcfg, cache_root)
    if (cdir / "meta.json").is_file():
        _, utts = load_cache(cdir)
        return utts
    utts, _ = corpus_features(root, fcfg, cache_root, workers)
    return utts


def heldout_windows(ck: dict, utts: list[UtteranceFeatures]):
    """Evaluation windows of the checkpoint's held-out (test) speakers."""
    test = ck.get("split", {}).get("test_speakers") or []
    if not test:
        raise GclfError("this checkpoint has no held-out speakers (a final model): evaluate a fold checkpoint "
                        "or pass --data with a corpus of unseen speakers")
    sel = select(utts, test)
    if not sel:
        raise GclfError("none of the checkpoint's held-out speakers are in the features found")
    return eval_windows(sel, FeatureConfig.from_dict(ck["feature_config"]))
