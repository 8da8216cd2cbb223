"""Tracing: while a ``lamina.compile`` function runs, ops append to one graph."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from lamina.ir import Builder, Graph, TensorType, Value
from lamina.ir.core import Return

if TYPE_CHECKING:
    from lamina.frontend.tensor import Tensor


class Trace:
    """The graph being recorded, its inputs and the concrete tensors it captured."""

    def __init__(self, name: str, inputs: list[Tensor]):
        self.graph = Graph(name, [TensorType(tuple(t.shape), t.dtype.ir) for t in inputs],
                           [f"arg{i}" for i in range(len(inputs))])
        self.builder = Builder(self.graph.body)
        self.captured: list[Tensor] = []  # concrete tensors read by the function
        self._capture_values: dict[int, Value] = {}

    def value_of(self, t: Tensor) -> Value:
        """The graph value of a tensor; concrete tensors become extra inputs."""
        if t._value is not None:
            if t._trace is not self:
                raise RuntimeError("a tensor traced by another lamina.compile call was used")
            return t._value
        v = self._capture_values.get(id(t))
        if v is None:
            v = self._add_arg(TensorType(tuple(t.shape), t.dtype.ir), f"c{len(self.captured)}")
            self.captured.append(t)
            self._capture_values[id(t)] = v
        return v

    def _add_arg(self, t: TensorType, hint: str) -> Value:
        body = self.graph.body
        v = Value(t, hint, body, len(body.args))
        body.args.append(v)
        return v

    def finish(self, outputs: list[Value]) -> Graph:
        self.graph.body.append(Return(outputs, []))
        return self.graph


_state = threading.local()


def current() -> Trace | None:
    return getattr(_state, "trace", None)


class tracing:  # noqa: N801 - used as a context manager
    def __init__(self, trace: Trace):
        self.trace = trace

    def __enter__(self) -> Trace:
        self.prev = current()
        _state.trace = self.trace
        return self.trace

    def __exit__(self, *exc) -> None:
        _state.trace = self.prev
