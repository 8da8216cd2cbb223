"""``prepare-loops``: loop-level clean-up of kernels before the backend.

- folds index arithmetic on constants (``4 * 8``, ``i + 0``, ``n rem 1``);
- hoists loop-invariant pure ops out of loops, and loop-invariant loads out of
  loops that run at least once (static trip count), of buffers the kernel
  never writes, never to the kernel's top level (the ABI keeps it pure);
- makes the top-level loop parallel when it is a ``loop.for`` whose
  iterations provably write disjoint elements and read nothing written;
- collapses a top-level ``loop.parallel`` of one trip into the loop it holds,
  which then becomes the parallel one (an output of shape ``1 x N`` is split
  over threads along N, not run on one thread);
- removes unused pure ops.

``lower-loops`` already emits folded, hoisted code, so on its output this pass
mostly collapses unit parallel loops; it also tidies hand-written kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lamina.ir.core import Block, Graph, Module, Op, Value
from lamina.ir.dialects import loop as L
from lamina.ir.types import MemRefType, index
from lamina.passes.loop_builder import _FOLD, dead_code_elimination
from lamina.passes.manager import Pass, register_pass


@register_pass
@dataclass(frozen=True)
class PrepareLoops(Pass):
    """Fold, hoist, parallelise and tidy every kernel of a loop-stage module."""

    name = "prepare-loops"

    def run(self, module: Module) -> Module:
        for g in module.graphs:
            prepare_graph(g)
        return module


def prepare_graph(g: Graph) -> None:
    fold_constants(g)
    if g.kind == "kernel":
        hoist_invariants(g)
        parallelize_top_loop(g)
    dead_code_elimination(g.body)


# -- constant folding --------------------------------------------------------------------
def _const_values(g: Graph) -> dict[int, Any]:
    return {id(op.result): op.attrs["value"] for op in g.walk() if isinstance(op, L.SConst)}


def fold_constants(g: Graph) -> int:
    """Fold index ops with constant operands (and identities); returns how many folded."""
    consts = _const_values(g)
    subst: dict[int, Value] = {}
    folded = 0

    def fold_block(block: Block) -> None:
        nonlocal folded
        ops: list[Op] = []
        for op in block.ops:
            op.operands = [subst.get(id(v), v) for v in op.operands]
            for r in op.regions:
                fold_block(r)
            replacement = _fold(op, consts)
            if replacement is None:
                ops.append(op)
                continue
            folded += 1
            if isinstance(replacement, Value):
                subst[id(op.result)] = replacement
                continue
            new = L.SConst([], [op.result.type], {"value": replacement}, loc=op.loc)
            new.parent = block
            consts[id(new.result)] = replacement
            subst[id(op.result)] = new.result
            ops.append(new)
        block.ops[:] = ops

    fold_block(g.body)
    return folded


def _fold(op: Op, consts: dict[int, Any]) -> Value | int | bool | None:
    """What ``op``'s result folds to: an existing value, a new constant, or None."""
    if op.name == "loop.select" and id(op.operands[0]) in consts:
        return op.operands[1] if consts[id(op.operands[0])] else op.operands[2]
    if op.name not in _FOLD or len(op.operands) != 2 or op.operands[0].type != index:
        return None
    x, y = op.operands
    a, b = consts.get(id(x)), consts.get(id(y))
    if a is not None and b is not None:
        return _FOLD[op.name](a, b)
    name = op.name
    if name == "loop.add" and (a == 0 or b == 0):
        return y if a == 0 else x
    if name == "loop.sub" and b == 0:
        return x
    if name == "loop.mul" and (a == 1 or b == 1):
        return y if a == 1 else x
    if name == "loop.mul" and (a == 0 or b == 0):
        return 0
    if name == "loop.div" and b == 1:
        return x
    if name == "loop.rem" and b == 1:
        return 0
    return None


# -- loop-invariant code motion -----------------------------------------------------------
def _written(g: Graph) -> set[int]:
    return {id(op.operands[1]) for op in g.walk() if isinstance(op, (L.Store, L.VStore))}


def _trips(loop: Op, consts: dict[int, Any]) -> int | None:
    lb, ub, step = (consts.get(id(v)) for v in loop.operands[:3])
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return max(0, -(-(ub - lb) // step))


def hoist_invariants(g: Graph) -> int:
    """Move invariant ops out of loops (see the module docstring); returns how many moved."""
    consts = _const_values(g)
    written = _written(g)
    moved = 0

    def visit(block: Block, top: bool) -> None:
        nonlocal moved
        i = 0
        while i < len(block.ops):
            op = block.ops[i]
            if isinstance(op, (L.For, L.Parallel)):
                visit(op.regions[0], False)
                hoisted = _hoist_from(op, consts, written, allow_loads=not top)
                for h in hoisted:
                    h.parent = block
                block.ops[i:i] = hoisted
                moved += len(hoisted)
                i += len(hoisted)
            i += 1

    visit(g.body, True)
    return moved


def _hoist_from(loop: Op, consts: dict[int, Any], written: set[int],
                allow_loads: bool) -> list[Op]:
    body = loop.regions[0]
    inside = {id(a) for a in body.args}
    for op in body.walk():
        inside.update(id(r) for r in op.results)
    loads_ok = allow_loads and (_trips(loop, consts) or 0) >= 1
    hoisted, kept = [], []
    for op in body.ops:
        movable = not op.regions and not any(id(v) in inside for v in op.operands) and (
            op.has("pure") or (loads_ok and isinstance(op, (L.Load, L.VLoad))
                               and id(op.operands[0]) not in written))
        if movable:
            hoisted.append(op)
            inside.difference_update(id(r) for r in op.results)
        else:
            kept.append(op)
    body.ops[:] = kept
    return hoisted


# -- parallel top-level loop ---------------------------------------------------------------
def _side_effects(op: Op) -> bool:
    return not op.has("pure")


def parallelize_top_loop(g: Graph) -> bool:
    """Make the top-level loop parallel (collapsing one-trip parallel loops); True if changed."""
    changed = False
    while True:
        consts = _const_values(g)
        loops = [op for op in g.ops if isinstance(op, (L.For, L.Parallel))]
        if len(loops) != 1 or g.ops[-1] is not loops[0]:
            return changed
        top = loops[0]
        if any(_side_effects(op) for op in g.ops[:-1]):
            return changed
        if isinstance(top, L.For):
            if not _disjoint_writes(top, consts):
                return changed
            g.ops[-1] = _as_parallel(top, g.body)
            changed = True
            continue
        if _trips(top, consts) != 1 or not _collapsible(top, consts):
            return changed
        _inline_single_trip(top, g.body)
        changed = True


def _as_parallel(loop: Op, parent: Block) -> Op:
    new = L.Parallel(loop.operands, [], {}, loop.regions, loc=loop.loc)
    new.parent = parent
    return new


def _collapsible(loop: Op, consts: dict[int, Any]) -> bool:
    ops = loop.regions[0].ops
    if not ops or not isinstance(ops[-1], (L.For, L.Parallel)):
        return False
    if any(_side_effects(op) for op in ops[:-1]):
        return False
    inner = ops[-1]
    return isinstance(inner, L.Parallel) or _disjoint_writes(inner, consts)


def _inline_single_trip(loop: Op, parent: Block) -> None:
    body = loop.regions[0]
    iv, lb = body.args[0], loop.operands[0]
    for op in body.walk():
        op.operands = [lb if v is iv else v for v in op.operands]
    ops = body.ops
    inner = ops[-1]
    if isinstance(inner, L.For):
        inner = _as_parallel(inner, parent)
    moved = ops[:-1] + [inner]
    for op in moved:
        op.parent = parent
    parent.ops[-1:] = moved


def _disjoint_writes(loop: Op, consts: dict[int, Any]) -> bool:
    """Whether different iterations of ``loop`` write different elements and read none."""
    if loop.results:
        return False
    iv = loop.regions[0].args[0]
    step = consts.get(id(loop.operands[2]))
    stored, loaded = set(), set()
    for op in loop.regions[0].walk():
        if isinstance(op, (L.Load, L.VLoad)):
            loaded.add(id(op.operands[0]))
        elif isinstance(op, (L.Store, L.VStore)):
            stored.add(id(op.operands[1]))
            if not _indexed_by(op, iv, step):
                return False
        elif isinstance(op, L.Call) or (_side_effects(op) and not op.regions
                                        and not isinstance(op, L.Yield)):
            return False
    return not (stored & loaded)


def _indexed_by(store: Op, iv: Value, step: int | None) -> bool:
    """Some axis of the stored buffer is indexed by ``iv`` itself, with a nonzero stride."""
    memref: MemRefType = store.operands[1].type
    idx = store.operands[2:]
    width = store.operands[0].type.width if isinstance(store, L.VStore) else 1
    for axis, v in enumerate(idx):
        if v is not iv:
            continue
        stride = None if memref.strides is None else memref.strides[axis]
        if memref.strides is not None and (stride is None or stride == 0):
            continue
        if axis == memref.rank - 1 and width > 1 and (step is None or step < width):
            continue
        return True
    return False

