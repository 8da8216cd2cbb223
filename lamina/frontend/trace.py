"""Tracing: while a ``lamina.compile`` function runs, ops append to one graph.

Besides the function's own arguments, a trace records where every other graph
input comes from (a *source*): a concrete tensor the function read (a weight, a
buffer, optimizer state), the current ``.grad`` of a parameter, or a value
computed afresh on every call (this step's learning rate, the random
generator's key and offset). Writes into concrete tensors (``p.add_``,
``running_mean.copy_``) do not touch memory while tracing: the trace records
"the new value of tensor k" and the compiled step writes it back after each
run. Autograd is tracked per value (which values require grad, which are uses
of a leaf) so that ``loss.backward()`` can differentiate the graph recorded so
far (``lamina.frontend.step_backward``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lamina.ir import Builder, Graph, TensorType, Value
from lamina.ir.core import Return

if TYPE_CHECKING:
    from lamina.frontend.tensor import Tensor


class _Traced:
    """The ``grad_fn`` of a traced value that requires grad (it has history in the trace)."""

    def name(self) -> str:
        return "TracedBackward"

    def __repr__(self) -> str:
        return "<TracedBackward>"


TRACED = _Traced()


# -- where a graph input comes from at each call ------------------------------------------------
@dataclass(frozen=True)
class ArgSource:
    """Positional argument ``index`` of the compiled function."""

    index: int

    def describe(self) -> str:
        return f"arg {self.index}"


@dataclass(frozen=True, eq=False)
class TensorSource:
    """A concrete tensor read by the function (held, read afresh at every call)."""

    tensor: Any

    def get(self) -> Any:
        return self.tensor

    def describe(self) -> str:
        return f"captured tensor of shape {tuple(self.tensor.shape)}"


@dataclass(frozen=True, eq=False)
class GradSource:
    """The ``.grad`` of a parameter as it is at the call (its identity may change)."""

    param: Any

    def get(self) -> Any:
        return self.param.grad

    def describe(self) -> str:
        return f"grad of a parameter of shape {tuple(self.param.shape)}"


@dataclass(frozen=True, eq=False)
class ItemSource:
    """``container[key]`` as it is at the call (optimizer state: eager steps replace it)."""

    container: Any
    key: Any

    def get(self) -> Any:
        return self.container[self.key]

    def describe(self) -> str:
        return f"state {self.key!r}"


@dataclass(frozen=True, eq=False)
class DynamicSource:
    """A value computed by ``fn(ctx)`` before each call (hyperparameters, random state)."""

    fn: Callable[[dict], np.ndarray]
    what: str

    def describe(self) -> str:
        return self.what


Source = ArgSource | TensorSource | GradSource | ItemSource | DynamicSource


def _view_key(a: Any) -> tuple:
    """Identity of a view's memory (host arrays and CUDA device arrays alike)."""
    ptr = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else ("cuda", a.ptr)
    return (ptr, a.shape, a.strides, a.dtype.str)


class Trace:
    """The graph being recorded, where its inputs come from and what it writes."""

    def __init__(self, name: str, inputs: list[Tensor],
                 input_types: list[TensorType] | None = None):
        types = input_types or [TensorType(tuple(t.shape), t.dtype.ir) for t in inputs]
        self.graph = Graph(name, types, [f"arg{i}" for i in range(len(inputs))])
        self.builder = Builder(self.graph.body)
        self.sources: list[Source] = [ArgSource(i) for i in range(len(inputs))]
        # the device symbolic tensors report: the program runs where its inputs live
        self.device = next((t.device for t in inputs if t.is_cuda), None)
        self.captured: list[Tensor] = []  # concrete tensors read by the function
        self._current: dict[tuple, Value] = {}  # view key -> its value now
        self._owners: dict[int, tuple] = {}  # storage owner id -> the one view key used
        # view key -> (target source, tensor): the tensors this trace writes
        self.writes: dict[tuple, tuple[Source, Tensor]] = {}
        self.requires_grad: set[Value] = set()  # values with autograd history (or leaf uses)
        self.leaf_of: dict[Value, Tensor] = {}  # value -> the leaf tensor it is a use of
        self._leaf_value: dict[int, Value] = {}  # id(leaf) -> its current leaf-use value
        self._detached: dict[Value, Value] = {}
        self.leaves: dict[int, Tensor] = {}  # tensors whose .grad the step may change
        self.grad_snapshot: dict[int, Any] = {}  # id(leaf) -> its .grad before tracing
        # id(tensor) -> where the step finds it at each call (a .grad, optimizer state)
        self._source_of: dict[int, Source] = {}
        self._grad_read: set[int] = set()  # leaves whose .grad before the step was read
        self._grad_set: set[int] = set()  # leaves whose .grad the step set
        self.guards: list[Any] = []  # lamina.frontend.guards.Guard
        self.prepare: list[Callable[[dict], None]] = []  # run before each call (ctx)
        self.on_abort: list[Callable[[], None]] = []  # undo trace-time side effects
        self.generators: dict[int, list] = {}  # id(generator) -> [generator, counters used]
        self._alias_of: dict[Value, Value] = {}  # leaf-use copy -> the value it copies

    # -- values of tensors --------------------------------------------------------------------
    def value_of(self, t: Tensor) -> Value:
        """The graph value of a tensor; concrete tensors become extra inputs."""
        if t._value is not None:
            if t._trace is not self:
                raise RuntimeError("a tensor traced by another lamina.compile call was used")
            return t._value
        key = _view_key(t._a)
        v = self._current.get(key)
        if v is None:
            self._check_storage(t, key, "reads")
            src = self._source_of.get(id(t)) or TensorSource(t)
            if isinstance(src, GradSource):
                self.grad_read(src.param)
            v = self._add_arg(TensorType(tuple(t.shape), t.dtype.ir), f"c{len(self.captured)}")
            self.sources.append(src)
            self.captured.append(t)
            self._current[key] = v
        if t.requires_grad and t.is_leaf:
            return self._leaf_use(t, v)
        return v

    def _leaf_use(self, t: Tensor, v: Value) -> Value:
        """The value of leaf ``t`` as a differentiable input (one per current value)."""
        self.note_leaf(t)
        lv = self._leaf_value.get(id(t))
        if lv is not None and (lv is v or self._alias_of.get(lv) is v):
            return lv
        if v in self.leaf_of or v in self.requires_grad:
            v2 = self.builder("tensor.copy", v)
            self._alias_of[v2] = v
            v = v2
        self.requires_grad.add(v)
        self.leaf_of[v] = t
        self._leaf_value[id(t)] = v
        return v

    def _check_storage(self, t: Tensor, key: tuple, what: str) -> None:
        from lamina.frontend.tensor import storage_owner

        oid = id(storage_owner(t._a))
        seen = self._owners.setdefault(oid, key)
        if seen != key and any(k in self.writes for k in (seen, key)):
            raise NotImplementedError(
                f"lamina.compile: the step {what} a view (shape {list(t.shape)}) of a tensor "
                "whose storage it also writes through another view; write and read the whole "
                "tensor, or call this code outside the compiled step")

    def note_leaf(self, t: Tensor) -> None:
        """``t`` is a tensor whose ``.grad`` the step may read or change."""
        if id(t) in self.leaves:
            return
        self.leaves[id(t)] = t
        g = t._ag.grad if t._ag is not None else None
        self.grad_snapshot[id(t)] = g
        if g is not None and g._a is not None:
            self._source_of[id(g)] = GradSource(t)

    def bind(self, t: Tensor, source: Source) -> None:
        """Read and write concrete ``t`` through ``source`` at each call."""
        if t._a is not None:
            self._source_of.setdefault(id(t), source)

    def grad_read(self, t: Tensor) -> None:
        """The step read ``t.grad``: unless it set it first, the compiled step depends on it."""
        if id(t) in self._grad_set or id(t) not in self.leaves:
            return
        now = t._ag.grad if t._ag is not None else None
        if now is self.grad_snapshot[id(t)]:  # else untracked code (Module.zero_grad) set it
            self._grad_read.add(id(t))

    def grad_set(self, t: Tensor) -> None:
        self._grad_set.add(id(t))

    def grad_guarded(self, t: Tensor) -> bool:
        """Whether the step's result depends on ``t.grad`` as it was before the step (read
        before being set, or never set: conservatively)."""
        return id(t) in self._grad_read or id(t) not in self._grad_set

    def detached(self, v: Value) -> Value:
        """A copy of ``v`` without autograd history (what ``detach()`` gives)."""
        d = self._detached.get(v)
        if d is None:
            d = self._detached[v] = self.builder("tensor.copy", v)
        return d

    def wrap(self, v: Value, requires_grad: bool) -> Tensor:
        from lamina.frontend.tensor import AutogradMeta, Tensor

        t = Tensor._symbolic(v, self)
        if requires_grad and v.type.dtype.is_float:
            t._ag = AutogradMeta(requires_grad=True, grad_fn=TRACED)
            self.requires_grad.add(v)
        return t

    # -- ops ------------------------------------------------------------------------------------
    def apply(self, build: Callable[..., Any], args: Any, scalar_dtype: Any) -> Any:
        """Append one op (``dispatch.apply`` while tracing)."""
        from lamina.autograd import grad_mode
        from lamina.frontend.tensor import Tensor

        vals, rg = [], False
        for x in args:
            if isinstance(x, Tensor):
                v = self.value_of(x)
                if x.requires_grad:
                    rg = True
                elif v in self.requires_grad:
                    v = self.detached(v)
                vals.append(v)
            else:
                vals.append(self.builder("tensor.full", value=x, shape=(),
                                         dtype=scalar_dtype.ir))
        first = len(self.graph.body.ops)
        out = build(self.builder, *vals)
        rg = rg and grad_mode.is_grad_enabled()
        if rg:  # the build's inner values carry the history too (backward slices through)
            for op in self.graph.body.ops[first:]:
                self.requires_grad.update(r for r in op.results if r.type.dtype.is_float)
        if isinstance(out, Value):
            return self.wrap(out, rg)
        return tuple(self.wrap(v, rg) for v in out)

    def write(self, x: Tensor, r: Tensor, op: str) -> None:
        """Record ``x``'s new value ``r`` (x concrete, r of x's shape and dtype)."""
        key = _view_key(x._a)
        self._check_storage(x, key, f"writes ({op})")
        v = self.value_of(r)
        if v in self.requires_grad:
            v = self.detached(v)
        self._current[key] = v
        self._leaf_value.pop(id(x), None)
        if key not in self.writes:
            self.writes[key] = (self._source_of.get(id(x)) or TensorSource(x), x)

    def check_read(self, t: Tensor, what: str) -> None:
        """A host read (``item()``, ``numpy()``) of a concrete tensor: an error if the step
        wrote its storage, whose new value exists only in the trace."""
        from lamina.frontend.tensor import storage_owner

        if t._a is not None and self.writes and id(storage_owner(t._a)) in self._owners and \
                self._owners[id(storage_owner(t._a))] in self.writes:
            raise RuntimeError(
                f"{what}() needs the value of a tensor of shape {list(t.shape)} that this step "
                "wrote in place; its new value is symbolic inside lamina.compile "
                "(data-dependent Python control flow cannot be traced)")

    def written_value(self, key: tuple) -> Value:
        return self._current[key]

    # -- inputs computed per call ---------------------------------------------------------------
    def dynamic_input(self, fn: Callable[[dict], np.ndarray], dtype: Any, shape: tuple,
                      what: str) -> Tensor:
        """A graph input whose array ``fn(ctx)`` computes before every call."""
        v = self._add_arg(TensorType(tuple(shape), dtype.ir), f"d{len(self.sources)}")
        self.sources.append(DynamicSource(fn, what))
        return self.wrap(v, False)

    def random_inputs(self, gen: Any, counters: int | Callable[[int], int]
                      ) -> tuple[Tensor, Tensor]:
        """The Philox key and offset of one draw of ``counters`` counters from ``gen``.

        Each call of the compiled step reads the generator's seed and offset, gives
        each draw the offset the trace gave it relative to that start, and advances
        the generator by what the whole step consumes: replays draw fresh numbers,
        the same ones eager would draw. A draw whose shape holds the symbolic batch
        size passes ``counters`` as a function of that size: its count, and so the
        offsets of the draws after it and the generator's advance, are computed per
        call from the arguments' actual leading size (``batch_of``).
        """
        from lamina.frontend import dtypes as dt
        from lamina.frontend.random import _as_signed

        gid = id(gen)
        rec = self.generators.get(gid)
        if rec is None:  # [generator, static counters so far, per-batch counter functions]
            rec = self.generators[gid] = [gen, 0, []]

            def reserve(ctx: dict) -> None:
                ctx[gid] = (gen._seed, gen._offset)
                gen.advance(_used(rec[1], rec[2], ctx))

            self.prepare.append(reserve)
        rel, rel_dyn = rec[1], tuple(rec[2])
        if callable(counters):
            rec[2].append(counters)
        else:
            rec[1] += counters
        key = self.dynamic_input(lambda ctx: np.array(_as_signed(ctx[gid][0]), np.int64),
                                 dt.int64, (), "random key")
        off = self.dynamic_input(
            lambda ctx: np.array(_as_signed((ctx[gid][1] + _used(rel, rel_dyn, ctx)) % 2**64),
                                 np.int64),
            dt.int64, (), "random offset")
        return key, off

    # -- sizes that are the symbolic batch size -----------------------------------------------
    def batch_value(self) -> Value | None:
        """An argument of the step whose leading size is ``?`` (the batch size), or None
        when the trace has static shapes."""
        n = sum(isinstance(s, ArgSource) for s in self.sources)
        for v in self.graph.body.args[:n]:
            if v.type.rank and v.type.shape[0] is None:
                return v
        return None

    def _add_arg(self, t: TensorType, hint: str) -> Value:
        body = self.graph.body
        v = Value(t, hint, body, len(body.args))
        body.args.append(v)
        return v

    def finish(self, outputs: list[Value]) -> Graph:
        self.graph.body.append(Return(outputs, []))
        return self.graph


def _used(static: int, per_batch: Any, ctx: dict) -> int:
    """Counters drawn: ``static`` plus each per-batch count at this call's batch size."""
    if not per_batch:
        return static
    b = batch_of(ctx)
    return static + sum(f(b) for f in per_batch)


def batch_of(ctx: dict) -> int:
    """The leading size of this call's tensor arguments (``Entry.inputs`` puts them in
    ``ctx["args"]``; a dynamic program only runs when they all agree)."""
    from lamina.frontend.tensor import Tensor

    for a in ctx["args"]:
        if isinstance(a, Tensor) and a.ndim:
            return int(a.shape[0])
    raise RuntimeError("lamina.compile: a dynamic step drew random numbers of the batch size "
                       "but was called without a tensor argument that has a leading axis")


def symbolic_batch() -> bool:
    """Whether a trace with a symbolic batch size is recording: a creation op's size may
    then be ``None`` (``x.size(0)``, ``x.shape``), meaning that size."""
    tr = current()
    return tr is not None and tr.batch_value() is not None


def fill(b: Builder, value: Any, shape: tuple, dtype: Any) -> Value:
    """``tensor.full`` of ``shape``; where ``shape`` holds ``None`` (the batch size, only
    in a dynamic trace) a 0-d fill broadcast to it by ``prim.fill_batch``."""
    if None not in shape:
        return b("tensor.full", value=value, shape=tuple(shape), dtype=dtype)
    return batch_broadcast(b, b("tensor.full", value=value, shape=(), dtype=dtype), shape)


def batch_broadcast(b: Builder, v: Value, shape: tuple) -> Value:
    """0-d ``v`` broadcast to ``shape`` whose ``None`` sizes are the step's batch size."""
    from lamina.passes import lower_shape  # noqa: F401  (registers prim.fill_batch's rules)

    tr = current()
    like = tr.batch_value() if tr is not None else None
    if like is None:
        raise TypeError(f"size must be a sequence of ints, got {tuple(shape)!r} (None is the "
                        "batch size only inside lamina.compile(dynamic=True))")
    return b("prim.fill_batch", v, like, shape=tuple(shape))


_state = threading.local()


def current() -> Trace | None:
    return getattr(_state, "trace", None)


class tracing:  # noqa: N801 - used as a context manager
    def __init__(self, trace: Trace | None):
        self.trace = trace

    def __enter__(self) -> Trace | None:
        self.prev = current()
        _state.trace = self.trace
        return self.trace

    def __exit__(self, *exc) -> None:
        _state.trace = self.prev


def suspended() -> tracing:
    """Run eagerly inside a trace (e.g. to create optimizer state once, concretely)."""
    return tracing(None)
