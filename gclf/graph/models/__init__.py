"""Network builders: each turns its config dataclass into a :class:`gclf.graph.ops.Graph`.

``ARCHS`` maps an architecture name (``gclf train --arch``) to its config class and builder.
"""
from __future__ import annotations

from typing import Any, Callable

from gclf.errors import GclfError
from gclf.graph.models import cnn1d, cnn2d, cnn_lstm, raw_conv
from gclf.graph.ops import Graph

ARCHS: dict[str, tuple[type, Callable[..., Graph]]] = {
    cnn_lstm.ARCH: (cnn_lstm.CnnLstmConfig, cnn_lstm.build),
    raw_conv.ARCH: (raw_conv.RawConvConfig, raw_conv.build),
    cnn2d.ARCH: (cnn2d.Cnn2dConfig, cnn2d.build),
    cnn1d.ARCH: (cnn1d.Cnn1dConfig, cnn1d.build),
}
DEFAULT_ARCH = cnn_lstm.ARCH


def config_for(arch: str, d: dict | None = None) -> Any:
    if arch not in ARCHS:
        raise GclfError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    cls = ARCHS[arch][0]
    return cls.from_dict(d or {})


def feature_config(graph: Graph):
    """The features a graph's windows are cut from: MFCC frames (the defaults), or raw 16 kHz samples with
    windows of the graph's input length, half a window apart."""
    from gclf.data.features import FeatureConfig

    if graph.input_kind == "audio":
        n = graph.input_shape[1]
        return FeatureConfig(kind="audio", window_frames=n, window_hop=n // 2)
    if graph.input_shape[1] != FeatureConfig.window_frames or graph.input_shape[0] != FeatureConfig.n_mfcc:
        return FeatureConfig(n_mfcc=graph.input_shape[0], window_frames=graph.input_shape[1])
    return FeatureConfig()


def build_graph(arch: str = DEFAULT_ARCH, config: dict | Any | None = None,
                classes: tuple[str, ...] = ("M", "F")) -> Graph:
    """The graph of architecture ``arch`` with ``config`` (a dict or the arch's config dataclass)."""
    cfg = config if config is not None and not isinstance(config, dict) else config_for(arch, config)
    return ARCHS[arch][1](cfg, tuple(classes))
