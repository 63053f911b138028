"""What a search varies and the configuration file it writes (read back by ``gclf train --config``).

A *configuration* is a flat dict of hyperparameters: training ones (fields of
:class:`gclf.train.fit.TrainConfig`: lr, epochs, batch_size, patience, weight_decay, ...) and the
architecture's (fields of its config dataclass, e.g. the CNN-LSTM's conv1_channels, lstm_hidden,
fc_hidden). The candidates are scikit-learn's ``ParameterGrid`` (every combination) or ``ParameterSampler``
(``n_iter`` of them drawn without replacement, seeded).
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from gclf.errors import GclfError
from gclf.io import atomic_json

CONFIG_FORMAT = 1
NOT_SEARCHABLE = {"folds", "seed", "threads", "augment", "device"}   # the run's, not the model's


def train_keys() -> set[str]:
    from gclf.train.fit import TrainConfig

    return {f.name for f in fields(TrainConfig)} - NOT_SEARCHABLE


def model_keys(arch: str) -> set[str]:
    from gclf.graph.models import ARCHS, config_for

    config_for(arch)                                   # an unknown arch is a one-line error
    return {f.name for f in fields(ARCHS[arch][0])}


def parse_value(text: str):
    """``3e-3`` -> 0.003, ``16`` -> 16, ``64x32`` -> (64, 32) (a tuple of widths), else the string."""
    text = text.strip()
    if "x" in text and all(p.isdigit() for p in text.split("x")):
        return tuple(int(p) for p in text.split("x"))
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_space(specs: list[str], arch: str) -> dict[str, list]:
    """``["lr=1e-3,3e-3", "lstm_hidden=8,16"]`` -> {"lr": [0.001, 0.003], "lstm_hidden": [8, 16]}, each name
    checked against the training and architecture configs."""
    known = train_keys() | model_keys(arch)
    space: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise GclfError(f"--param {spec!r}: write NAME=V1,V2,... (e.g. lr=1e-3,3e-3)")
        if name not in known:
            raise GclfError(f"--param {name}: not a hyperparameter of training or of {arch} "
                            f"(choose from {', '.join(sorted(known))})")
        space[name] = [parse_value(v) for v in values.split(",")]
    if not space:
        raise GclfError("nothing to search: give at least one --param NAME=V1,V2,...")
    return space


def candidates(space: dict[str, list], n_iter: int | None, seed: int) -> list[dict]:
    """Every combination of ``space`` (grid order), or ``n_iter`` of them sampled with ``seed``."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    grid = ParameterGrid(space)
    if n_iter is None or n_iter >= len(grid):
        return [dict(p) for p in grid]
    return [dict(p) for p in ParameterSampler(space, n_iter, random_state=seed)]


def config_key(params: dict) -> str:
    """One canonical string per configuration (the trial table's key)."""
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in sorted(params.items())})


def split_params(params: dict, arch: str) -> tuple[dict, dict]:
    """(training overrides, architecture overrides) of a configuration."""
    mk, tk = model_keys(arch), train_keys()
    unknown = set(params) - mk - tk
    if unknown:
        raise GclfError(f"unknown hyperparameter(s) {', '.join(sorted(unknown))} for {arch}")
    return {k: v for k, v in params.items() if k in tk}, {k: v for k, v in params.items() if k in mk}


def apply(params: dict, arch: str, tcfg, model_base: dict | None = None):
    """(TrainConfig, graph) of a configuration over the base ``tcfg`` and architecture settings."""
    from gclf.graph.models import build_graph

    t, m = split_params(params, arch)
    return replace(tcfg, **t), build_graph(arch, {**(model_base or {}), **m})


def write_config(path: str | Path, arch: str, params: dict, extra: dict | None = None) -> Path:
    """The configuration file ``gclf train --config`` reads."""
    t, m = split_params(params, arch)
    return atomic_json(path, {"gclf_config": CONFIG_FORMAT, "arch": arch,
                              "train": {k: list(v) if isinstance(v, tuple) else v for k, v in t.items()},
                              "model": {k: list(v) if isinstance(v, tuple) else v for k, v in m.items()},
                              **(extra or {})})


def read_config(path: str | Path) -> tuple[str, dict, dict]:
    """(arch, training overrides, architecture overrides) of a configuration file; a bad one is one line."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except OSError as exc:
        raise GclfError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GclfError(f"{path}: not a JSON configuration ({exc.__class__.__name__})") from None
    if not isinstance(d, dict) or d.get("gclf_config") != CONFIG_FORMAT:
        raise GclfError(f"{path}: not a gclf configuration file (write one with `gclf search`)")
    arch = d.get("arch", "cnn_lstm")
    train, model = d.get("train") or {}, d.get("model") or {}
    t, m = split_params({**train, **model}, arch)
    if set(t) != set(train) or set(m) != set(model):
        raise GclfError(f"{path}: a training key under 'model' or the reverse")
    return arch, t, m


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def base_values(arch: str, tcfg, model_base: dict | None = None) -> dict:
    """Every searchable hyperparameter's value in the base configuration."""
    from dataclasses import asdict

    from gclf.graph.models import config_for

    t = {k: v for k, v in asdict(tcfg).items() if k in train_keys()}
    return {**t, **{k: _plain(v) for k, v in asdict(config_for(arch, model_base)).items()}}


def canonical(params: dict, base: dict) -> dict:
    """``params`` without the values the base configuration has already (so a candidate equal to the
    default is the default: ``{}``, trained once)."""
    return {k: v for k, v in params.items() if _plain(v) != base.get(k)}
