"""``out=`` for programs: writing results into the caller's buffers, inputs included.

An optimizer step returns each updated parameter; ``prog(*xs, out=[p, ...])``
with ``p`` also an input updates it in place. Writing the producing kernel's
result straight into ``p`` is safe only when nothing reads the old ``p``
afterwards, so the decision is made in two steps:

* statically, per result (``hazards``): which program arguments would make a
  direct write unsafe if ``out[k]`` overlapped them: arguments read by a call
  at or after the first call that writes the result, written by any call, or
  returned themselves. An argument read only by the single producing call,
  through a kernel that provably reads each element just before writing the
  same element (``pointwise``), is safe when ``out[k]`` is that very array;
* per call (``OutCall``): ``out[k]`` is compared (memory extents) with those
  arguments only; on overlap the kernels write a scratch buffer kept by the
  program, and the result is copied into ``out[k]`` after the last kernel.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from lamina.ir.core import Graph, Op, SymbolRef, Value
from lamina.ir.types import MemRefType
from lamina.runtime.bounds import written_args
from lamina.runtime.buffers import data_pointer

SAME = "same"  # safe only when out[k] is exactly this argument's array
COPY = "copy"  # any overlap means: go through a scratch buffer

_STORES = ("loop.store", "loop.vstore")
_LOADS = ("loop.load", "loop.vload")


def _width(op: Op) -> int:
    if op.name == "loop.vload":
        return int(op.attrs["width"])
    if op.name == "loop.vstore":
        return int(op.operands[0].type.width)
    return 1


def _const_int(v: Value) -> int | None:
    op = v.owner
    if isinstance(op, Op) and op.name == "loop.const":
        c = op.attrs["value"]
        if isinstance(c, int) and not isinstance(c, bool):
            return c
    return None


def pointwise(kernel: Graph, src: int, dst: int) -> bool:
    """Whether ``kernel`` may run with arguments ``src`` and ``dst`` being one array.

    Conservative proof: ``dst`` is stored by exactly one op, at the induction
    variables of all its enclosing loops (one per axis, distinct, positive
    constant steps not below the store's width), so each element is written
    once; ``src`` is never stored, and every load of it sits in the store's
    block, before the store, at the very same indices and width. Then each
    element of ``src`` is read only just before that same element is written.
    """
    a_src, a_dst = kernel.args[src], kernel.args[dst]
    if not (isinstance(a_src.type, MemRefType) and isinstance(a_dst.type, MemRefType)):
        return False
    if a_src.type.shape != a_dst.type.shape or a_src.type.dtype != a_dst.type.dtype:
        return False
    stores, loads = [], []
    for op in kernel.walk():
        if op.has("writes") and any(v is a_src for v in op.operands):
            return False
        if op.name in _STORES and op.operands[1] is a_dst:
            stores.append(op)
        elif op.has("writes") and any(v is a_dst for v in op.operands):
            return False
        elif op.name in _LOADS and op.operands[0] is a_src:
            loads.append(op)
        elif op.name not in _LOADS and any(v is a_src or v is a_dst for v in op.operands) \
                and op.name != "loop.dim":
            return False  # the buffer escapes into something we do not understand
        elif op.name in _LOADS and op.operands[0] is a_dst:
            return False  # reads its own output: an element might be read after written
    if len(stores) != 1:
        return False
    store = stores[0]
    idx = store.operands[2:]
    width = _width(store)
    if not _injective(store, idx, width):
        return False
    block = store.parent
    at = block.ops.index(store)
    for ld in loads:
        if ld.parent is not block or block.ops.index(ld) > at or _width(ld) != width:
            return False
        if len(ld.operands) - 1 != len(idx) or any(a is not b for a, b in
                                                   zip(ld.operands[1:], idx)):
            return False
    return True


def _injective(store: Op, idx: Sequence[Value], width: int) -> bool:
    """Every index is the induction variable of a distinct enclosing loop, and those are
    all the enclosing loops: each iteration of the nest writes its own elements."""
    loops = []
    block = store.parent
    while block is not None and isinstance(block.parent, Op):
        loop = block.parent
        if loop.name not in ("loop.for", "loop.parallel"):
            return False
        loops.append(loop)
        block = loop.parent
    ivs = {id(lp.regions[0].args[0]): lp for lp in loops}
    if len(idx) != len(loops) or len({id(v) for v in idx}) != len(idx):
        return False
    for axis, v in enumerate(idx):
        lp = ivs.get(id(v))
        if lp is None:
            return False
        step = _const_int(lp.operands[2])
        need = width if axis == len(idx) - 1 else 1
        if step is None or step < max(need, 1):
            return False
    return True


def _kernel_name(op: Op) -> str:
    ref = op.attrs["kernel"]
    return ref.name if isinstance(ref, SymbolRef) else str(ref)


def hazards(func: Graph, kernels: dict[str, Graph]) -> dict[int, dict[int, str]]:
    """For each result position that is a (first-returned) alloc: argument index -> SAME/COPY."""
    args = {id(a): j for j, a in enumerate(func.args)}
    calls = [op for op in func.ops if op.name == "loop.call"]
    writes: list[set[int]] = []
    for op in calls:
        g = kernels[_kernel_name(op)]
        writes.append({id(op.operands[i]) for i in written_args(g)})
    written_args_ids = set().union(*writes) if writes else set()
    returned_args = {id(v) for v in func.returned if id(v) in args}
    out: dict[int, dict[int, str]] = {}
    seen: set[int] = set()
    for k, v in enumerate(func.returned):
        if id(v) in args or id(v) in seen:
            continue
        seen.add(id(v))
        writers = [n for n, w in enumerate(writes) if id(v) in w]
        risky: dict[int, str] = {}
        if writers:
            first = writers[0]
            for j, a in enumerate(func.args):
                if id(a) in written_args_ids or id(a) in returned_args:
                    risky[j] = COPY
                    continue
                readers = [n for n in range(first, len(calls))
                           if any(x is a for x in calls[n].operands)]
                if not readers:
                    continue
                risky[j] = SAME if (len(writers) == 1 and readers == [first]
                                    and _pointwise_call(calls[first], kernels, a, v)) else COPY
        out[k] = risky
    return out


def _pointwise_call(call: Op, kernels: dict[str, Graph], a: Value, result: Value) -> bool:
    dst = [i for i, x in enumerate(call.operands) if x is result]
    src = [i for i, x in enumerate(call.operands) if x is a]
    if len(dst) != 1:
        return False
    g = kernels[_kernel_name(call)]
    return all(pointwise(g, s, dst[0]) for s in src)


def extent(a: np.ndarray) -> tuple[int, int]:
    """``[lo, hi)`` byte addresses ``a`` may touch (empty for size 0)."""
    if a.size == 0:
        return (0, 0)
    lo = data_pointer(a)
    span = sum((n - 1) * s for n, s in zip(a.shape, a.strides))
    return lo, lo + span + a.itemsize


def _overlap(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] < y[1] and y[0] < x[1] and x[0] != x[1] and y[0] != y[1]


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and data_pointer(a) == data_pointer(b))


class OutCall:
    """The ``out=`` buffers of one call: hands kernels where to write, copies at the end."""

    def __init__(self, prog: Any, xs: Sequence[np.ndarray], outs: list[np.ndarray | None]):
        self.prog = prog
        self.xs = xs
        self.outs = outs
        self.copies: list[tuple[int, np.ndarray]] = []

    def take(self, k: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The buffer the kernels write result ``k`` into (``out[k]``, scratch or fresh)."""
        o = self.outs[k]
        if o is None:
            return self.prog._alloc(shape, dtype)
        if o.shape != shape:
            raise self.prog._out_error(k, o, f"shape {o.shape} is not {shape}")
        mine = extent(o)
        for j, kind in self.prog._hazards.get(k, {}).items():
            x = self.xs[j]
            if _overlap(mine, extent(x)) and not (kind == SAME and _same_view(o, x)):
                buf = self.prog._scratch(k, shape, dtype)
                self.copies.append((k, buf))
                return buf
        return o

    def finish(self, results: list[np.ndarray], copyto: Callable[..., Any]) -> list[np.ndarray]:
        """Copy into the ``out=`` buffers in a safe order; return the results as given back."""
        outs, kinds = self.outs, self.prog._result_kinds
        for k, (kind, _) in enumerate(kinds):
            if kind == "arg" and outs[k] is not None and not _same_view(outs[k], results[k]):
                copyto(outs[k], results[k])
        for k, buf in self.copies:
            copyto(outs[k], buf)
        for k, o in enumerate(outs):
            if o is not None:
                results[k] = o
        for k, (kind, src) in enumerate(kinds):
            if kind == "dup" and outs[k] is not None and not _same_view(outs[k], results[src]):
                copyto(outs[k], results[src])
        return results
