"""`gclf explain` as a library: the model to explain (a float checkpoint, or the float twin of a fixed-point
one), the utterances (audio files, or held-out utterances of a fold), and the files written per utterance
(PNG, .npz) with the summary a script reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gclf.backends.bnfold import fold_batchnorm
from gclf.checkpoint import build_float_model, checkpoint_paths, deploy_checkpoint, load_checkpoint, quant_of
from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.explain.maps import UtteranceMap, arrays, explain_utterance, summary
from gclf.explain.rules import LrpConfig

FLOAT_TWIN = ("explaining the float twin of a fixed-point model: its weights and biases rounded to their fixed-point "
              "formats, activations in float (the integer datapath has no gradients); the probabilities shown are "
              "the twin's and may differ slightly from the integer reference's")


@dataclass
class Explainer:
    """A float model to explain, with what a user must be told about it."""

    path: Path
    model: object                       # GraphNet, eval mode
    fcfg: FeatureConfig
    ck: dict
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.model.graph.classes)


def load_explainer(model_path: str | Path, fold: int | None = None) -> Explainer:
    """The checkpoint to explain: ``model_path`` itself if a file; in a run folder fold ``fold``'s checkpoint,
    or (no fold) the one `gclf predict` deploys (final.pt, else fold1.pt)."""
    if fold is not None:
        if not Path(model_path).is_dir():
            raise GclfError(f"--fold needs a run folder of fold*.pt files, not {model_path}")
        paths = checkpoint_paths(model_path)
        if not 1 <= fold <= len(paths):
            raise GclfError(f"--fold {fold}: the run has folds 1..{len(paths)}")
        path, note = paths[fold - 1], None
    else:
        path, note = deploy_checkpoint(model_path)
    ck = load_checkpoint(path)
    fcfg = FeatureConfig.from_dict(ck["feature_config"])
    model = fold_batchnorm(build_float_model(ck))        # LRP rules read plain convolutions
    if model.graph.input_kind != "mfcc" or fcfg.kind == "audio":
        raise GclfError(f"{path}: `gclf explain` draws relevance over MFCC frames; this model reads "
                        f"{model.graph.input_kind} windows")
    notes = [note] if note else []
    q = quant_of(ck)
    if q is not None:
        from gclf.explain.twin import rounded_twin

        model = rounded_twin(model, q.spec)
        notes.append(FLOAT_TWIN)
    return Explainer(Path(path), model, fcfg, ck, notes)


def audio_frames(path: str | Path, fcfg: FeatureConfig) -> np.ndarray:
    """The frames of an audio file, as `gclf predict` computes them."""
    from gclf.data.corpus import load_audio
    from gclf.data.features import frames

    audio = load_audio(path, fcfg.sample_rate)
    if audio.size / fcfg.sample_rate < fcfg.min_seconds:
        raise GclfError(f"{path}: shorter than {fcfg.min_seconds} s")
    return frames(audio, fcfg)


def heldout_utterances(ex: Explainer, n: int, cache: str | Path, data: str | Path | None,
                       seed: int = 0) -> list[tuple[str, np.ndarray, str]]:
    """(uid, frames, true class) of ``n`` utterances of the checkpoint's held-out speakers, drawn with ``seed``
    alternately from each class (so both classes are explained)."""
    from gclf.data.dataset import select
    from gclf.data.pipeline import features_for_checkpoint, has_heldout

    if not has_heldout(ex.ck):
        raise GclfError(f"{ex.path} has no held-out speakers (a final model): give a run folder and --fold, or "
                        "a fold checkpoint")
    utts = select(features_for_checkpoint(ex.ck, cache, data), ex.ck["split"]["test_speakers"])
    rng = np.random.default_rng(seed)
    by_class = [[u for u in utts if u.label == k] for k in range(len(ex.classes))]
    queues = [list(np.asarray(g, dtype=object)[rng.permutation(len(g))]) for g in by_class]
    picked = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return [(u.uid, u.mfcc, ex.classes[u.label]) for u in picked]


def stem_of(name: str, used: set[str]) -> str:
    """A file stem for an utterance's outputs, unique within one run of the command."""
    stem, k = Path(name).stem or "utterance", 1
    while stem in used:
        k += 1
        stem = f"{Path(name).stem}-{k}"
    used.add(stem)
    return stem


def write_outputs(u: UtteranceMap, ex: Explainer, out: Path, stem: str, png: bool = True,
                  npz: bool = False) -> dict:
    """PNG and/or .npz of one explanation in ``out``; the summary with the files written."""
    from gclf.io import atomic_write

    s = summary(u, ex.fcfg)
    if png:
        from gclf.explain.plot import plot_map

        note = "float twin of a fixed-point model" if quant_of(ex.ck) is not None else ""
        s["png"] = str(plot_map(out / f"{stem}.png", u, ex.fcfg, note))
    if npz:
        s["npz"] = str(atomic_write(out / f"{stem}.npz", lambda fh: np.savez_compressed(fh, **arrays(u))))
    return s


def explain_one(ex: Explainer, name: str, frames: np.ndarray, cfg: LrpConfig,
                true_label: str | None = None) -> UtteranceMap:
    return explain_utterance(ex.model, frames, ex.fcfg, cfg, name, true_label)


def deletion_for(ex: Explainer, maps: list[UtteranceMap], ks: tuple[int, ...], cfg: LrpConfig,
                 seed: int = 0) -> list[dict]:
    """The deletion check (:mod:`gclf.explain.deletion`) over every window of the explained utterances."""
    from gclf.explain.deletion import deletion_curve
    from gclf.explain.lrp import Explanation
    from gclf.explain.maps import window_batch

    x = np.concatenate([window_batch(u.mfcc, ex.fcfg)[0] for u in maps])
    e = Explanation(*(np.concatenate([getattr(u.windows, f) for u in maps]) for f in
                      ("relevance", "score", "target", "probabilities", "logits")))
    return deletion_curve(ex.model, x, e, list(ks), cfg.score, seed=seed)
