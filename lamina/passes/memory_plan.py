"""``memory-plan``: place a program's intermediates in one reused arena.

A loop-stage program func is straight-line code, so each ``loop.alloc``
buffer is live from its first use to its last (a ``loop.call`` or
``loop.dim`` naming it). Buffers whose live ranges do not intersect may share
bytes; the pass gives every static-sized, non-returned alloc an ``offset``
into one arena and states the arena's size with ``loop.arena {size = N}`` at
the top of the func::

    loop.arena {size = 8192}
    %0 = loop.alloc {offset = 0} : memref<8x32xf32>
    ...

Rules (so the runtime can trust the plan):

- live ranges are closed intervals over op positions: two buffers used by one
  ``loop.call`` always overlap there, so a kernel's output never shares bytes
  with one of its own inputs;
- returned buffers are never planned (the caller keeps them after the call,
  the arena is reused by the next one), nor are buffers with ``?`` sizes
  (they keep a fresh allocation per call);
- offsets and the size are multiples of 64 bytes (``ALIGNMENT``).

Placement is greedy by size (largest first, then earliest), each buffer at
the lowest aligned offset free of every placed buffer it is live with: the
classic heuristic for interval-graph colouring by weight, near optimal on the
chains of forward and backward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from lamina.ir.core import Graph, Module, Op
from lamina.ir.dialects import loop as L
from lamina.ir.types import MemRefType
from lamina.passes.manager import Pass, register_pass

ALIGNMENT = 64


@dataclass(frozen=True)
class Live:
    """One buffer to place: ``nbytes`` live over op positions ``start..end`` (inclusive)."""

    start: int
    end: int
    nbytes: int

    def overlaps(self, other: Live) -> bool:
        return self.start <= other.end and other.start <= self.end


def _round_up(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def assign_offsets(buffers: Sequence[Live]) -> tuple[list[int], int]:
    """Aligned offsets for ``buffers`` (simultaneously live ones never overlap) and the
    arena size in bytes."""
    offsets = [0] * len(buffers)
    order = sorted(range(len(buffers)),
                   key=lambda i: (-buffers[i].nbytes, buffers[i].start, i))
    placed: list[int] = []
    total = 0
    for i in order:
        b = buffers[i]
        size = _round_up(b.nbytes)
        if size == 0:
            continue  # nothing to hold: offset 0 touches no byte
        busy = sorted((offsets[j], _round_up(buffers[j].nbytes)) for j in placed
                      if buffers[j].overlaps(b))
        at = 0
        for off, n in busy:
            if at + size <= off:
                break
            at = max(at, off + n)
        offsets[i] = at
        placed.append(i)
        total = max(total, at + size)
    return offsets, total


def nbytes(t: MemRefType) -> int | None:
    """Bytes of a buffer of type ``t``; None when a size is ``?``."""
    if any(d is None for d in t.shape):
        return None
    return math.prod(t.shape) * t.dtype.itemsize


def live_ranges(func: Graph) -> dict[int, tuple[Op, Live]]:
    """``id(alloc result) -> (alloc op, live range)`` for every plannable alloc of ``func``:
    static sizes, not returned."""
    returned = {id(v) for v in func.returned}
    out: dict[int, tuple[Op, Live]] = {}
    born: dict[int, int] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for pos, op in enumerate(func.ops):
        if op.name == "loop.alloc":
            born[id(op.result)] = last[id(op.result)] = pos
            continue
        for v in op.operands:
            if id(v) in born:
                first.setdefault(id(v), pos)
                last[id(v)] = pos
    for op in func.ops:
        if op.name != "loop.alloc" or id(op.result) in returned:
            continue
        size = nbytes(op.result.type)
        if size is None:
            continue
        key = id(op.result)
        # From the first op that names it (the alloc itself touches no memory) to the last.
        out[key] = (op, Live(first.get(key, born[key]), last[key], size))
    return out


def plan_func(func: Graph) -> int | None:
    """Plan ``func`` in place (replacing any earlier plan); returns the arena size, or None
    when nothing is plannable (the func is then left without an arena)."""
    func.body.ops = [op for op in func.ops if op.name != "loop.arena"]
    for op in func.ops:
        if op.name == "loop.alloc":
            op.attrs.pop("offset", None)
    ranges = live_ranges(func)
    if not ranges:
        return None
    ops = [op for op, _ in ranges.values()]
    offsets, total = assign_offsets([live for _, live in ranges.values()])
    for op, off in zip(ops, offsets):
        op.attrs["offset"] = off
    arena = L.Arena([], [], {"size": total}, loc=func.ops[0].loc if func.ops else None)
    arena.parent = func.body
    func.body.ops.insert(0, arena)
    return total


def planned(func: Graph) -> tuple[int, dict[int, int]] | None:
    """``(arena size, id(alloc result) -> offset)`` of an already planned func, or None."""
    size = None
    offsets: dict[int, int] = {}
    for op in func.ops:
        if op.name == "loop.arena":
            size = int(op.attrs["size"])
        elif op.name == "loop.alloc" and "offset" in op.attrs:
            offsets[id(op.result)] = int(op.attrs["offset"])
    if size is None:
        if offsets:
            raise ValueError(f"func @{func.name}: allocs carry offsets but there is no "
                             "loop.arena")
        return None
    return size, offsets


@register_pass
@dataclass(frozen=True)
class MemoryPlan(Pass):
    """Plan every program func of a loop-stage module (kernels are left alone)."""

    name = "memory-plan"

    def run(self, module: Module) -> Module:
        for g in module.graphs:
            if g.kind == "func":
                plan_func(g)
        return module
