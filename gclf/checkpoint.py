"""Checkpoints: the file alone rebuilds the model, from its graph and the chain of steps applied.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"gclf": 2, "graph": {...}, "feature_config": {...}, "state_dict": {...},
     "chain": [{"step": "train", ...}, {"step": "compress", "block": 8, ...}, ...],
     "split": {"fold": 1, "folds": 5, "test_speakers": [...], "val_speakers": [...], "train_speakers": [...]},
     "corpus": {"name": "LibriSpeech", "id": "<hash of utterance ids and sexes>", "utterances": 251},
     "metrics": {...}, "run_id": "<the run folder's id, see gclf.manifest>"}

The graph and chain are stored in the dict forms of :mod:`gclf.graph.serial`; :func:`graph_of`,
:func:`chain_of` and :func:`quant_of` give them typed. Format-1 files (the CNN-LSTM before the graph) are
upgraded when read. A *model path* on the command line is a checkpoint file or a run folder of ``fold*.pt``
files (one per cross-validation fold, each knowing its held-out speakers), optionally with ``final.pt``, whose
``manifest.json`` must list exactly those files (:mod:`gclf.manifest`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from gclf.data.features import FeatureConfig
from gclf.errors import GclfError
from gclf.graph.chain import Approx, Compress, Quantize, Step, quant_step
from gclf.graph.ops import Graph
from gclf.graph.serial import chain_from_dicts, chain_to_dicts, graph_from_dict, graph_to_dict, upgrade_checkpoint
from gclf.io import atomic_torch_save
from gclf.manifest import MANIFEST, check_member, check_run, read_manifest

FORMAT_VERSION = 2


def make_checkpoint(model, feature_cfg: FeatureConfig, chain: list[Step], split: dict | None,
                    corpus: str | None, metrics: dict | None = None, extra: dict | None = None) -> dict:
    """The checkpoint dict of a :class:`gclf.backends.torch_float.GraphNet` after ``chain``."""
    ck = {"gclf": FORMAT_VERSION, "graph": graph_to_dict(model.graph), "feature_config": asdict(feature_cfg),
          "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
          "chain": chain_to_dicts(chain), "split": split or {}, "corpus": corpus, "metrics": metrics or {}}
    ck.update(extra or {})
    return ck


def save_checkpoint(path: str | Path, ck: dict) -> Path:
    return atomic_torch_save(path, ck)


REQUIRED_KEYS = {"graph": dict, "feature_config": dict, "state_dict": dict, "chain": list}


def _load_error(path: Path, exc: Exception) -> GclfError:
    """One line for a file torch cannot load: empty, truncated, foreign, or asking to run code."""
    import pickle
    import re

    text = str(exc)
    if path.stat().st_size == 0:
        return GclfError(f"{path}: empty file (0 bytes), not a checkpoint")
    glob = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if glob or isinstance(exc, pickle.UnpicklingError) and "weights_only" in text.lower():
        what = glob.group(1) if glob else "code"
        return GclfError(f"{path}: refused, the file asks to load {what}; gclf only reads plain tensors and data "
                         "from checkpoints (weights_only=True) and never runs code from them")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return GclfError(f"{path}: not a torch checkpoint file ({exc.__class__.__name__}"
                     + (f": {first[:160]}" if first and not isinstance(exc, KeyError) else "") + ")")


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True``; a missing, empty, foreign, malformed or malicious file is a one-line
    GclfError. A checkpoint inside a run folder must belong to that folder's run (its manifest)."""
    path = Path(path)
    if not path.is_file():
        raise GclfError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _load_error(path, exc) from None
    if not isinstance(ck, dict) or ck.get("gclf") not in (1, FORMAT_VERSION):
        raise GclfError(f"{path}: not a gclf checkpoint (format {FORMAT_VERSION})")
    ck = upgrade_checkpoint(ck, str(path))
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(ck.get(key), kind):
            raise GclfError(f"{path}: a damaged gclf checkpoint ({key!r} missing or not a {kind.__name__}); "
                            "rerun the command that wrote it")
    man_path = path.parent / MANIFEST
    if man_path.is_file():
        man = read_manifest(path.parent)
        if path.name in man["checkpoints"]:
            check_member(path, ck, man)
    return ck


def checkpoint_paths(path: str | Path, include_final: bool = False) -> list[Path]:
    """Fold checkpoints of a run folder (in fold order; the folder must be a complete run, see
    :mod:`gclf.manifest`), with ``final.pt`` last if asked and present; or the single file given."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise GclfError(f"no model at {path}: give a checkpoint file or a run folder from `gclf train`")
    man = check_run(path)
    for n in man["checkpoints"]:          # each must belong to this run (a file of another run, renamed, does not)
        load_checkpoint(path / n)
    names = [n for n in man["checkpoints"] if n != "final.pt" or include_final]
    return [path / n for n in names]


def deploy_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """The checkpoint to deploy from a model path: the file given, else the run's ``final.pt`` (trained on every
    speaker), else its ``fold1.pt`` with a note saying so."""
    path = Path(path)
    if path.is_file():
        return path, None
    paths = checkpoint_paths(path, include_final=True)
    if paths[-1].name == "final.pt":
        return paths[-1], None
    k = len(paths)
    return paths[0], (f"{path} has no final.pt (train with --final): using {paths[0].name}, trained on {k - 1} of "
                      f"its {k} speaker folds")


def graph_of(ck: dict) -> Graph:
    return graph_from_dict(ck["graph"])


def chain_of(ck: dict) -> list[Step]:
    return chain_from_dicts(ck.get("chain", []))


def quant_of(ck: dict) -> Quantize | None:
    """The checkpoint's quantize step (its config and spec), or None for a float model."""
    return quant_step(chain_of(ck))


def load_fixed_point(model_path: str | Path, integer: bool = False):
    """(checkpoint path, checkpoint, float GraphNet, QuantSpec) of a checkpoint file or of the checkpoint
    :func:`deploy_checkpoint` picks in a run folder (final.pt, else fold1.pt).

    A float checkpoint is a one-line GclfError; so is a weights-only one when ``integer`` (an integer
    datapath is asked for: its activations are float)."""
    path, _ = deploy_checkpoint(model_path)
    ck = load_checkpoint(path)
    q = quant_of(ck)
    if q is None:
        raise GclfError(f"{path} is a float checkpoint: run `gclf quantize` first")
    if integer and q.spec.weights_only:
        raise GclfError(f"{path} is a weights-only checkpoint: its activations are float, there is no integer "
                        "inference (run `gclf quantize` without --weights-only)")
    return path, ck, build_float_model(ck), q.spec


def apply_structure(model, step: Step) -> None:
    """Apply the structural part of one chain step to a GraphNet in place (compress, approx; others: none)."""
    if isinstance(step, Approx):
        for cell in model.lstm_cells():
            cell.set_activations(step.sigmoid, step.tanh)
    elif isinstance(step, Compress):
        from gclf.circulant import compress_model

        compress_model(model, step.block, list(step.targets))


def int_input_frac(ck: dict) -> int | None:
    """The fraction bits of an int_mfcc checkpoint's integer input (None for float features)."""
    from gclf.frontend.features import input_frac_of

    return input_frac_of(FeatureConfig.from_dict(ck.get("feature_config", {})))


def build_float_model(ck: dict):
    """Rebuild the float GraphNet of a checkpoint: graph, structural steps (compress, approx), weights."""
    from gclf.backends.torch_float import GraphNet

    try:
        model = GraphNet(graph_of(ck))
        model.int_input_frac = int_input_frac(ck)
        for step in chain_of(ck):
            apply_structure(model, step)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GclfError(f"the checkpoint's graph or chain is damaged ({exc.__class__.__name__}: {exc}); "
                        "rerun the command that wrote it") from None
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                   lines[0] if lines else "")
        raise GclfError(f"the checkpoint's weights do not fit its graph ({why[:200]}); rerun the command that "
                        "wrote it") from None
    model.eval()
    return model
