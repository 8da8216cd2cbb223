"""The autograd graph: nodes recorded by the tape, and the hook that records them.

Every frontend op passes through ``dispatch.apply``, which calls ``record`` after
computing the result. When grad mode is on and an argument requires grad,
``record`` makes an ``OpNode`` that keeps the op's ``build`` (its meaning in
the tensor dialect), its arguments (tensors by reference, with their storage
version at that moment) and its outputs' storage; the outputs point back to it
through their ``grad_fn``. Leaves get an ``AccumulateGrad`` node, created on
first use and held weakly by the leaf (strongly by the nodes that use it).
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from lamina.autograd import grad_mode
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import AutogradMeta, Tensor, storage_owner, storage_version

Edge = tuple["Node", int]  # (node, which of its outputs)

_seq = itertools.count()


def next_seq() -> int:
    """A number smaller than that of every node recorded from now on."""
    return next(_seq)

_TORCH_TYPE = {"float32": "Float", "float64": "Double", "float16": "Half",
               "bfloat16": "BFloat16", "int64": "Long", "int32": "Int", "int8": "Char",
               "bool": "Bool"}


def torch_type_name(d: dt.dtype) -> str:
    """PyTorch's name of a dtype in messages (``Float``, ``Long``, ...)."""
    return _TORCH_TYPE[d.name]


def describe(t: Tensor) -> str:
    """``[lamina.FloatTensor [3, 4]]``, the way PyTorch names a tensor in errors."""
    return f"[lamina.{torch_type_name(t.dtype)}Tensor [{', '.join(map(str, t.shape))}]]"


class Node:
    """A function of the backward graph: output cotangents -> input cotangents."""

    __slots__ = ("next_edges", "seq", "pre_hooks", "retained", "released", "__weakref__")

    def __init__(self, next_edges: list[Edge | None]):
        self.next_edges = next_edges
        self.seq = next(_seq)  # later nodes run first in the backward
        self.pre_hooks: dict[int, list[Callable]] | None = None
        self.retained: dict[int, weakref.ref] | None = None
        self.released = False

    def name(self) -> str:
        return type(self).__name__

    @property
    def next_functions(self) -> tuple[tuple[Node | None, int], ...]:
        return tuple((None, 0) if e is None else e for e in self.next_edges)

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"

    def apply(self, grads: list[Tensor | None], needs: Sequence[bool],
              create_graph: bool) -> list[Tensor | None]:
        """Input cotangents (``None`` where not needed or zero) from output cotangents."""
        raise NotImplementedError

    def release(self) -> None:
        """Free what was saved for the backward (``retain_graph=False``)."""
        self.released = True

    def register_prehook(self, output_nr: int, hook: Callable) -> RemovableHandle:
        if self.pre_hooks is None:
            self.pre_hooks = {}
        hooks = self.pre_hooks.setdefault(output_nr, [])
        hooks.append(hook)
        return RemovableHandle(hooks, hook)


class AccumulateGrad(Node):
    """The sink of a leaf: adds the incoming gradient to ``leaf.grad``."""

    __slots__ = ("variable",)

    def __init__(self, variable: Tensor):
        super().__init__([])
        self.variable = variable


class OpNode(Node):
    """The backward of one recorded frontend op (see ``lamina.autograd.derivative``)."""

    __slots__ = ("op", "build", "args", "versions", "scalar_dtype", "out_types", "outs",
                 "out_versions", "_name")

    def __init__(self, op: str, build: Callable, args: list[Any], edges: list[Edge | None],
                 scalar_dtype: dt.dtype | None, outs: Sequence[Tensor]):
        super().__init__(edges)
        self.op = op
        self.build = build
        self.args = args
        self.versions = [storage_version(a._a) if isinstance(a, Tensor) else None for a in args]
        self.scalar_dtype = scalar_dtype
        self.out_types = [(t._shape, t._dtype) for t in outs]
        self.outs: list[np.ndarray] | None = [t._a for t in outs]
        self.out_versions = [storage_version(a) for a in self.outs]
        self._name: str | None = None

    def name(self) -> str:
        if self._name is None:
            from lamina.autograd.derivative import node_name

            self._name = node_name(self)
        return self._name

    def apply(self, grads: list[Tensor | None], needs: Sequence[bool],
              create_graph: bool) -> list[Tensor | None]:
        from lamina.autograd.derivative import apply_node

        return apply_node(self, grads, needs, create_graph)

    def release(self) -> None:
        self.released = True
        self.args = None  # type: ignore[assignment]
        self.outs = None


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: list[Callable], hook: Callable):
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


# -- edges ------------------------------------------------------------------------------------
def accumulator(t: Tensor) -> AccumulateGrad:
    """The leaf's AccumulateGrad node (one per leaf while a graph uses it)."""
    ag = t._ag
    node = ag.accumulator() if ag.accumulator is not None else None
    if node is None:
        node = AccumulateGrad(t)
        ag.accumulator = weakref.ref(node)
    return node


def existing_accumulator(t: Tensor) -> AccumulateGrad | None:
    ag = t._ag
    return None if ag is None or ag.accumulator is None else ag.accumulator()


def gradient_edge(t: Tensor) -> Edge:
    """Where the gradient of ``t`` (which requires grad) goes."""
    ag = t._ag
    if ag.grad_fn is not None:
        return (ag.grad_fn, ag.output_nr)
    return (accumulator(t), 0)


def collect_edges(args: Sequence[Any]) -> list[Edge | None]:
    return [gradient_edge(a) if isinstance(a, Tensor) and a.requires_grad else None
            for a in args]


def set_history(t: Tensor, node: Node, output_nr: int) -> None:
    """Make ``t`` an output of ``node`` (it then requires grad)."""
    ag = t._ag
    if ag is None:
        t._ag = AutogradMeta(True, node, output_nr)
        return
    old = ag.grad_fn
    if ag.retains_grad and old is not None and old.retained is not None:
        old.retained.pop(ag.output_nr, None)  # the retained gradient is the new history's
    ag.requires_grad = True
    ag.grad_fn = node
    ag.output_nr = output_nr
    if ag.retains_grad:
        if node.retained is None:
            node.retained = {}
        node.retained[output_nr] = weakref.ref(t)


# -- recording ---------------------------------------------------------------------------------
INFERENCE_SAVE_ERROR = ("Inference tensors cannot be saved for backward. To work around you can "
                        "make a clone to get a normal tensor and use it in autograd.")


def record(name: str, build: Callable, args: Sequence[Any], out: Any,
           scalar_dtype: dt.dtype | None) -> None:
    """``dispatch.autograd_hook``: put the op just computed on the tape if it needs it."""
    state = grad_mode._state
    if _epochs:
        _epoch_rules(args, out, state.enabled)
    if not state.enabled:
        if state.inference:
            _mark_inference(out)
        return
    needs = False
    inference = False
    for a in args:
        if isinstance(a, Tensor):
            ag = a._ag
            if ag is not None:
                needs |= ag.requires_grad
                inference |= ag.inference
    if not needs:
        return
    if inference:
        raise RuntimeError(INFERENCE_SAVE_ERROR)
    outs = (out,) if isinstance(out, Tensor) else tuple(out)
    if not any(t._dtype.is_floating_point for t in outs):
        return
    if any(t._a is None for t in outs):
        return  # symbolic (inside lamina.compile): the autodiff pass differentiates traces
    node = OpNode(name, build, list(args), collect_edges(args), scalar_dtype, outs)
    owners = {id(storage_owner(a._a)) for a in args if isinstance(a, Tensor)}
    for i, t in enumerate(outs):
        if not t._dtype.is_floating_point or any(t is a for a in args):
            continue
        set_history(t, node, i)
        if id(storage_owner(t._a)) in owners:
            t._ag.is_view = True


# -- history epochs: aliases go stale when their storage's history is rewritten -------------
# A recorded in-place op gives the written tensor a new history; every other tensor on that
# storage (its base, its other views) still carries the old one, which no longer explains
# its values. PyTorch regenerates their histories through view tracking; the tape refuses
# to use them in a recorded op instead. Epochs count such rewrites per storage (no entry:
# 0); a tensor's history belongs to the epoch in its meta (0 without one; None when
# detached, a constant that never goes stale). Nothing is checked while no storage has
# ever been rewritten.
_epochs: dict[int, list] = {}

STALE = (
    "a tensor is used after an in-place operation recorded by autograd, done through another "
    "tensor sharing its storage (a view or the base), rewrote the values it holds: its own "
    "history is stale (PyTorch regenerates it; that is not supported yet). Use the tensor the "
    "in-place operation was applied to, or take the view again after it")


def storage_epoch(a: np.ndarray) -> int:
    e = _epochs.get(id(storage_owner(a)))
    return 0 if e is None else e[0]


def bump_epoch(t: Tensor) -> None:
    """``t`` got a new history by an in-place op: the other tensors on its storage go stale."""
    o = storage_owner(t._a)
    e = _epochs.get(id(o))
    if e is None:
        e = _epochs[id(o)] = [0, None]
        try:
            weakref.finalize(o, _epochs.pop, id(o), None)
        except TypeError:
            e[1] = o  # kept alive so that its id stays unique
    e[0] += 1
    t._ag.epoch = e[0]


def is_stale(t: Tensor) -> bool:
    if not _epochs or t._a is None:
        return False
    ag = t._ag
    mine = 0 if ag is None else ag.epoch
    return mine is not None and storage_epoch(t._a) != mine


def _epoch_rules(args: Sequence[Any], out: Any, recording: bool) -> None:
    """Refuse stale inputs of a recorded op; outputs aliasing an input's storage (views)
    belong to the storage's current epoch."""
    owners = {}
    for a in args:
        if isinstance(a, Tensor) and a._a is not None:
            if recording and is_stale(a):
                raise RuntimeError(STALE)
            owners[id(storage_owner(a._a))] = a._a
    for t in (out,) if isinstance(out, Tensor) else out:
        if isinstance(t, Tensor) and t._a is not None:
            a = owners.get(id(storage_owner(t._a)))
            if a is not None:
                epoch = storage_epoch(a)
                if epoch:
                    if t._ag is None:
                        t._ag = AutogradMeta()
                    t._ag.epoch = epoch


def _mark_inference(out: Any) -> None:
    for t in (out,) if isinstance(out, Tensor) else out:
        if isinstance(t, Tensor):
            if t._ag is None:
                t._ag = AutogradMeta(inference=True)
            else:
                t._ag.inference = True


# -- tensor hooks ----------------------------------------------------------------------------
def register_tensor_hook(t: Tensor, hook: Callable) -> RemovableHandle:
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    ag = t._ag
    if ag.grad_fn is not None:
        return ag.grad_fn.register_prehook(ag.output_nr, hook)
    if ag.hooks is None:
        ag.hooks = []
    ag.hooks.append(hook)
    return RemovableHandle(ag.hooks, hook)


def retain_grad(t: Tensor) -> None:
    if not t.requires_grad:
        raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
    ag = t._ag
    if ag.grad_fn is None or ag.retains_grad:
        return
    ag.retains_grad = True
    node = ag.grad_fn
    if node.retained is None:
        node.retained = {}
    node.retained[ag.output_nr] = weakref.ref(t)
