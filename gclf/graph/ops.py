"""The model graph: an ordered list of typed ops, the one description every backend walks.

Tensors between ops are sequences ``(C, T)`` (channels by time, batch first in every backend: a PyTorch or
numpy array is ``(B, C, T)``), images ``(C, H, W)`` (``(B, C, H, W)``) or flat vectors ``(N,)``. Each op states
its output shape from its input shape (:meth:`Op.out_shape`), so a graph checks itself when it is built and
every backend can size its buffers without knowing which network it runs. Ops:

``Norm``     front-end on the host, float64: per-window mean removal over time (``cmn``), then
             ``(x - offset) * scale`` per channel (statistics from training data). Not a layer of the
             integer datapath: its output is quantized to the input format.
``Conv1d``   valid 1-D convolution with ``stride``, bias, optional ReLU; ``bn``: batch norm between the
             convolution and the ReLU, in float training only (see below).
``MaxPool``  max over windows of ``kernel`` steps, ``stride`` apart (default: non-overlapping).
``Image``    ``(C, T) -> (1, T, C)``: a window as a one-channel image, rows the T frames, columns the C
             coefficients (this orientation moves no data in the time-major C layout).
``Conv2d``   valid 2-D convolution, square ``kernel``, ``stride`` on both axes, bias, optional ReLU, ``bn``.
``MaxPool2d`` max over square windows of ``kernel``, ``stride`` apart (default: non-overlapping).
``GlobalMaxPool`` ``(C, ...) -> (C,)``: the max of each channel over time (and space).
``LSTM``     one layer, gates (i, f, g, o) as in ``nn.LSTM``, h and c from 0: ``(C, T) -> (hidden, T)``.
``Flatten``  ``(C, T) -> (T * C,)`` time-major: element ``t * C + c``.
``Linear``   ``(in,) -> (out,)``, bias, optional ReLU; ``dropout`` on its input, training only.

Batch norm (``bn=True`` on a convolution) exists only while a float model trains: every other backend
(fixed point, fake-quant, integer reference, ONNX, C, weight export) runs the graph after
:func:`gclf.backends.bnfold.fold_batchnorm` has folded each batch norm into its convolution's weights and
bias (``bn=False``), and refuses a graph that still has one.

Backends hold one handler per op kind in a :class:`gclf.graph.registry.Registry`; nothing outside this
module and the model builders names a layer or assumes an order.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from gclf.errors import GclfError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Op:
    name: str
    weighted: ClassVar[bool] = False        # holds trained weights (quantized, exported)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def out_shape(self, shape: Shape) -> Shape:
        return shape

    def _seq(self, shape: Shape, channels: int | None = None) -> tuple[int, int]:
        if len(shape) != 2:
            raise GclfError(f"{self.name} ({self.kind}) needs a (channels, time) input, got shape {shape}")
        if channels is not None and shape[0] != channels:
            raise GclfError(f"{self.name} ({self.kind}) expects {channels} input channels, got {shape[0]}")
        return shape


@dataclass(frozen=True)
class Norm(Op):
    channels: int = 1
    cmn: bool = True               # subtract each window's mean over time, per channel

    def out_shape(self, shape: Shape) -> Shape:
        return self._seq(shape, self.channels)


@dataclass(frozen=True)
class Conv1d(Op):
    in_channels: int = 1
    out_channels: int = 1
    kernel: int = 1
    stride: int = 1
    relu: bool = True
    bn: bool = False               # batch norm before the ReLU (float training; folded for everything else)
    weighted: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        _, t = self._seq(shape, self.in_channels)
        if t < self.kernel:
            raise GclfError(f"{self.name}: input of {t} steps is shorter than the kernel ({self.kernel})")
        return self.out_channels, (t - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class MaxPool(Op):
    kernel: int = 2
    stride: int = 0                # 0: the kernel (non-overlapping windows)

    @property
    def step(self) -> int:
        return self.stride or self.kernel

    def out_shape(self, shape: Shape) -> Shape:
        c, t = self._seq(shape)
        if t < self.kernel:
            raise GclfError(f"{self.name}: input of {t} steps is shorter than the pool ({self.kernel})")
        return c, (t - self.kernel) // self.step + 1


@dataclass(frozen=True)
class LSTM(Op):
    input_size: int = 1
    hidden: int = 1
    weighted: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        _, t = self._seq(shape, self.input_size)
        return self.hidden, t


@dataclass(frozen=True)
class Flatten(Op):
    def out_shape(self, shape: Shape) -> Shape:
        c, t = self._seq(shape)
        return (c * t,)


@dataclass(frozen=True)
class Linear(Op):
    in_features: int = 1
    out_features: int = 1
    relu: bool = False
    dropout: float = 0.0           # on the input, training only
    weighted: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        if shape != (self.in_features,):
            raise GclfError(f"{self.name} (Linear) expects ({self.in_features},) inputs, got shape {shape}")
        return (self.out_features,)


def _image(op: Op, shape: Shape, channels: int | None = None) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise GclfError(f"{op.name} ({op.kind}) needs a (channels, height, width) input, got shape {shape}")
    if channels is not None and shape[0] != channels:
        raise GclfError(f"{op.name} ({op.kind}) expects {channels} input channels, got {shape[0]}")
    return shape


def _windows(op: Op, size: int, kernel: int, step: int, what: str) -> int:
    if size < kernel:
        raise GclfError(f"{op.name}: input of {size} {what} is shorter than the kernel ({kernel})")
    return (size - kernel) // step + 1


@dataclass(frozen=True)
class Image(Op):
    def out_shape(self, shape: Shape) -> Shape:
        c, t = self._seq(shape)
        return 1, t, c


@dataclass(frozen=True)
class Conv2d(Op):
    in_channels: int = 1
    out_channels: int = 1
    kernel: int = 3                # square
    stride: int = 1
    relu: bool = True
    bn: bool = False               # batch norm before the ReLU (float training; folded for everything else)
    weighted: ClassVar[bool] = True

    def out_shape(self, shape: Shape) -> Shape:
        _, h, w = _image(self, shape, self.in_channels)
        return (self.out_channels, _windows(self, h, self.kernel, self.stride, "rows"),
                _windows(self, w, self.kernel, self.stride, "columns"))


@dataclass(frozen=True)
class MaxPool2d(Op):
    kernel: int = 2                # square
    stride: int = 0                # 0: the kernel (non-overlapping windows)

    @property
    def step(self) -> int:
        return self.stride or self.kernel

    def out_shape(self, shape: Shape) -> Shape:
        c, h, w = _image(self, shape)
        return (c, _windows(self, h, self.kernel, self.step, "rows"),
                _windows(self, w, self.kernel, self.step, "columns"))


@dataclass(frozen=True)
class GlobalMaxPool(Op):
    def out_shape(self, shape: Shape) -> Shape:
        if len(shape) not in (2, 3):
            raise GclfError(f"{self.name} (GlobalMaxPool) needs a (C, T) or (C, H, W) input, got shape {shape}")
        return (shape[0],)


OP_KINDS: dict[str, type[Op]] = {c.__name__: c for c in (Norm, Conv1d, MaxPool, LSTM, Flatten, Linear, Image, Conv2d,
                                                         MaxPool2d, GlobalMaxPool)}


@dataclass(frozen=True)
class Graph:
    """A network: its ops in order, the input it takes and the classes its logits stand for."""

    arch: str                              # builder name, e.g. "cnn_lstm"
    input_shape: Shape                     # (channels, length) of one window
    ops: tuple[Op, ...]
    classes: tuple[str, ...] = ("M", "F")  # logit k means classes[k]
    input_kind: str = "mfcc"               # what a window holds: "mfcc" frames or "audio" samples
    config: dict = field(default_factory=dict, compare=False)   # the builder's arguments (for the record)

    def __post_init__(self) -> None:
        names = [op.name for op in self.ops]
        if len(set(names)) != len(names):
            raise GclfError(f"op names must be unique: {names}")
        if not self.ops or not isinstance(self.ops[0], Norm):
            raise GclfError("a graph starts with its Norm op (the host front-end)")
        out = self.shapes()[-1]
        if out != (len(self.classes),):
            raise GclfError(f"the graph ends with shape {out}, not one logit per class ({len(self.classes)})")

    def shapes(self, input_shape: Shape | None = None) -> list[Shape]:
        """Output shape of every op, in order (raises GclfError where the ops do not fit)."""
        shape, out = tuple(input_shape or self.input_shape), []
        for op in self.ops:
            shape = op.out_shape(shape)
            out.append(shape)
        return out

    def in_shape(self, name: str) -> Shape:
        """The input shape of op ``name``."""
        i = self.index(name)
        return tuple(self.input_shape) if i == 0 else self.shapes()[i - 1]

    def accepts(self, length: int) -> bool:
        """Whether a window of ``length`` steps (frames or samples) fits the graph."""
        try:
            return self.shapes((self.input_shape[0], length))[-1] == (len(self.classes),)
        except GclfError:
            return False

    def index(self, name: str) -> int:
        for i, op in enumerate(self.ops):
            if op.name == name:
                return i
        raise GclfError(f"no op named {name!r} in the graph (ops: {', '.join(o.name for o in self.ops)})")

    def op(self, name: str) -> Op:
        return self.ops[self.index(name)]

    def of_kind(self, *kinds: type[Op]) -> list[Op]:
        return [op for op in self.ops if isinstance(op, kinds)]

    @property
    def weighted(self) -> list[Op]:
        return [op for op in self.ops if op.weighted]

    @property
    def norm(self) -> Norm:
        return self.ops[0]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        """One line per op with its output shape (for --help text, reports and the README)."""
        lines = [f"input {self.input_kind} {tuple(self.input_shape)}"]
        for op, shape in zip(self.ops, self.shapes()):
            args = ", ".join(f"{f.name}={getattr(op, f.name)}" for f in fields(op) if f.name != "name")
            lines.append(f"{op.name:<8} {op.kind}({args}) -> {shape}")
        return "\n".join(lines)
