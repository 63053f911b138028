"""Each task's architectures and recipes: the network config for the task's window, the training settings and
the augmentation, and which architecture is the task's default (the best measured; README, per-task table).

``gclf train --data <corpus>`` with no --arch trains ``DEFAULT_ARCH[task]`` with its recipe. An architecture
with no recipe of its own for a task gets the task's window (``n_frames`` or ``n_samples`` of its config),
training settings and augmentation (:func:`recipe_for`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gclf.data.augment import RECIPE, AugmentConfig
from gclf.data.features import FeatureConfig
from gclf.data.tasks import Task, get_task
from gclf.graph.ops import Graph


@dataclass(frozen=True)
class Recipe:
    arch: str
    arch_config: dict = field(default_factory=dict)   # overrides of the arch's config (its window, its widths)
    train: dict = field(default_factory=dict)         # overrides of TrainConfig's fields (epochs, patience, ...)
    augment: AugmentConfig = AugmentConfig()          # the default --augment-* settings (MFCC and audio inputs)


# sex (issue 15): 16 MFCCs instead of 40 (the first 16 are the same numbers: the spectral envelope, with less of
# the low harmonics' fine structure, i.e. of F0, which rises on male voices in other recordings) and a moving
# average of the weights (TrainConfig.ema), on top of the F0-shifted views (RECIPE). Measured over seeds 0-4
# (README, "Other recordings: RAVDESS"): RAVDESS 92.5 % (male recall 89.9 %), CV 97.9 %, against 88.8 %
# (80.6 %) and 97.3 % for 40 MFCCs without the average (20 MFCCs: 92.4 %, 87.2 %, 97.7 %); 10,298 parameters.
SEX_MFCC = {"n_mfcc": 16}
SEX_TRAIN = {"ema": 0.995}

# the 1-s window (51 frames of 20 ms) comes from the task (_window_config); wider than the sex network (12
# classes): conv 40-32-32 (k3), pool 4 -> 11 LSTM steps of 32, FC 352-32-N: 27,116 parameters with 12 classes
# (under the 30k of the keyword target)
ONE_SECOND_MFCC = {"conv1_channels": 32, "conv1_kernel": 3, "conv2_channels": 32, "conv2_kernel": 3,
                   "pool": 4, "lstm_hidden": 32, "fc_hidden": [32]}
CLIP_AUGMENT = AugmentConfig(copies=3, speed=(0.9, 1.1), noise_snr=(10.0, 30.0))   # tempo/pitch and noise
CLIP_TRAIN = {"epochs": 40, "patience": 10}
# digits: 4 training speakers (leave-one-out of 5), so more voices from each: speed, F0, formants (vocal-tract
# length) and noise; no validation speaker is held out (it would be a quarter of the voices): 30 epochs on a
# cosine schedule. Clips are centred in the window (the digit task's edge padding, gclf.data.tasks). Measured
# (AVX-512 VM, seed 0, float / W8/A8): cnn1d 86.6 / 86.5 %; cnn2d 78.0 / 77.7; cnn_lstm 79.8 / 79.9. Keywords
# (AVX-512 VM): cnn1d 87.6 % +- 1.4, cnn_lstm 82.0 % +- 2.2, cnn2d 74.5 % +- 1.9 (README, per-task table).
DIGIT_AUGMENT = AugmentConfig(copies=4, speed=(0.85, 1.15), pitch=(0.85, 1.25), formant=(0.85, 1.2),
                              noise_snr=(10.0, 30.0))
DIGIT_TRAIN = {"epochs": 30, "patience": 30, "val_fraction": 0.0}
# cnn1d, the digit default: twice the views, an augmented view in 3 epochs of 4, twice the epochs. Measured on
# the AVX-512 VM (LOSO, float / W8/A8, edge padding): seed 0 87.2 % +- 3.7 / 87.4, seed 1 85.7 % +- 3.9 / 85.9,
# seed 2 86.7 % +- 4.9 / 86.2 (mean 86.5 at W8/A8; 84.2 with the clips repeated, 81.3 with the recipe above and
# repeated clips). Tried on seed 0 with repeated clips and not better (README, per-task table): SpecAugment masks,
# mixup, a 0.6-s window, fmax 4 kHz, wider factor ranges, kernel 5, 64 channels, 16 views, a view in 9 of 10.
DIGIT_CNN1D_AUGMENT = dataclasses.replace(DIGIT_AUGMENT, copies=8, p_augmented=0.75)
DIGIT_CNN1D_TRAIN = {**DIGIT_TRAIN, "epochs": 60, "patience": 60}

# what an architecture without a recipe of its own gets on a task: (training settings, augmentation)
TASK_DEFAULTS: dict[str, tuple[dict, AugmentConfig]] = {
    "sex": ({}, AugmentConfig()), "age": ({}, AugmentConfig()),
    "keyword": (CLIP_TRAIN, CLIP_AUGMENT), "digit": (DIGIT_TRAIN, DIGIT_AUGMENT)}

RECIPES: dict[tuple[str, str], Recipe] = {
    ("sex", "cnn_lstm"): Recipe("cnn_lstm", SEX_MFCC, SEX_TRAIN, RECIPE),
    ("sex", "raw_conv"): Recipe("raw_conv"),
    ("keyword", "cnn_lstm"): Recipe("cnn_lstm", ONE_SECOND_MFCC, CLIP_TRAIN, CLIP_AUGMENT),
    ("keyword", "raw_conv"): Recipe("raw_conv", {}, CLIP_TRAIN),
    ("digit", "cnn_lstm"): Recipe("cnn_lstm", ONE_SECOND_MFCC, DIGIT_TRAIN, DIGIT_AUGMENT),
    ("digit", "cnn1d"): Recipe("cnn1d", {}, DIGIT_CNN1D_TRAIN, DIGIT_CNN1D_AUGMENT),
    ("digit", "raw_conv"): Recipe("raw_conv", {}, DIGIT_TRAIN),
    ("age", "cnn_lstm"): Recipe("cnn_lstm"),
}
DEFAULT_ARCH: dict[str, str] = {"sex": "cnn_lstm", "keyword": "cnn1d", "digit": "cnn1d", "age": "cnn_lstm"}


def _window_config(arch: str, task: Task) -> dict:
    """The task's window in the fields ``arch``'s config has (MFCC frames or raw samples); {} for no window."""
    from gclf.graph.models import ARCHS

    if task.window_seconds is None:
        return {}
    names = {f.name for f in dataclasses.fields(ARCHS[arch][0])}
    fcfg = FeatureConfig()
    if "n_frames" in names:
        return {"n_frames": int(task.window_seconds * fcfg.sample_rate) // fcfg.hop_length + 1}
    if "n_samples" in names:
        return {"n_samples": int(task.window_seconds * fcfg.sample_rate)}
    return {}


def recipe_for(task: str | Task, arch: str | None = None) -> Recipe:
    """The recipe of ``arch`` on ``task`` (the task's default architecture when None)."""
    from gclf.graph.models import config_for

    t = get_task(task)
    arch = arch or DEFAULT_ARCH[t.name]
    config_for(arch)                                   # a one-line error for an unknown architecture
    window = _window_config(arch, t)                  # the task's window, in the arch's own fields
    if (t.name, arch) in RECIPES:
        r = RECIPES[(t.name, arch)]
        return dataclasses.replace(r, arch_config={**window, **r.arch_config})
    train, augment = TASK_DEFAULTS[t.name]
    return Recipe(arch, window, train, augment)


def task_graph(task: str | Task, arch: str | None = None,
               arch_overrides: dict | None = None) -> tuple[Graph, FeatureConfig, Recipe]:
    """(graph with the task's classes and window, its feature config, the recipe) of ``arch`` on ``task``;
    ``arch_overrides`` (e.g. a `gclf search` configuration's widths) win over the recipe's network settings."""
    from gclf.graph.models import build_graph, feature_config

    t, r = get_task(task), recipe_for(task, arch)
    graph = build_graph(r.arch, {**r.arch_config, **(arch_overrides or {})}, classes=t.classes)
    fcfg = feature_config(graph)
    if (t.min_seconds, t.pad) != (fcfg.min_seconds, fcfg.pad):
        fcfg = dataclasses.replace(fcfg, min_seconds=t.min_seconds, pad=t.pad)
    return graph, fcfg, r
