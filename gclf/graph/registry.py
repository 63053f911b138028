"""One handler per op kind, per backend: the registry every backend walks the graph with.

A backend declares ``HANDLERS = Registry("C")`` and registers a handler for each op kind with
``@HANDLERS.register(Conv1d)``; ``HANDLERS[op]`` finds it, or fails with a one-line message naming the
backend and the op kind. ``tests/test_graph.py`` crosses every op kind with every registry, so a kind added
to :mod:`gclf.graph.ops` without its handlers fails the suite the day it is added.
"""
from __future__ import annotations

from typing import Any, Callable

from gclf.errors import GclfError
from gclf.graph.ops import Op

ALL: list["Registry"] = []


class Registry:
    def __init__(self, backend: str, kinds: tuple[type[Op], ...] | None = None):
        self.backend = backend
        self.kinds = kinds                      # op kinds it must cover (None: all of OP_KINDS)
        self._handlers: dict[type[Op], Any] = {}
        ALL.append(self)

    def register(self, *kinds: type[Op]) -> Callable[[Any], Any]:
        def deco(handler):
            for k in kinds:
                self._handlers[k] = handler
            return handler
        return deco

    def __getitem__(self, op: Op | type[Op]) -> Any:
        kind = op if isinstance(op, type) else type(op)
        try:
            return self._handlers[kind]
        except KeyError:
            raise GclfError(f"the {self.backend} backend has no handler for {kind.__name__} ops") from None

    def __contains__(self, kind: type[Op]) -> bool:
        return kind in self._handlers

    def required(self) -> tuple[type[Op], ...]:
        from gclf.graph.ops import OP_KINDS

        return self.kinds if self.kinds is not None else tuple(OP_KINDS.values())
