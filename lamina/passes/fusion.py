"""``fuse``: partition the primitives of each func into ``prim.fusion`` groups, one per kernel.

Groups are exactly the kinds ``docs/contracts.md`` lists (and ``group_kind``
checks): elementwise DAGs (functions, constants, iota, movement), one
reduction with its elementwise input DAG and epilogue, one ``dot_general``
whose operands are group args through ``permute``/``broadcast``, with its
epilogue, copies, and one ``opaque`` prim alone (a kernel of its own, e.g. a
sort: its operands and result are materialized). Every group has one result.

The partition is decided by which values are *materialized* (written to a
buffer as a group result); every other value is computed inside each group
that needs it:

1. func results are materialized;
2. a reduction or contraction absorbs the chain of elementwise ops after it
   while each link is the only user of the previous one (or a diamond whose
   branches meet in one op, like relu's ``where(x <= 0, 0, x)``) and keeps its
   shape (bias add, relu, ``* 1/n``); the end of that chain is materialized, so
   no other group ever recomputes a reduction;
3. a ``dot_general`` operand is materialized unless it is a group arg through
   ``permute``/``broadcast`` only;
4. an elementwise value needed by several groups is recomputed in each of them
   (a round trip through memory costs more than a few flops), unless computing
   it takes more than ``RECOMPUTE_LIMIT`` arithmetic ops: then it is materialized.

Groups already in the func (copy groups from ``decompose``, or an earlier
``fuse``) are kept as they are, so the pass is idempotent.

A group is named ``k<index>_<file>_<line>`` after the source line of its root
op (the op computing its result), or ``k<index>`` without a location; indices
count the groups of the module, so names are unique kernel symbols.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lamina.ir import Block, Graph, IRError, Loc, Module, Op, Value
from lamina.ir.core import Return
from lamina.ir.dialects.prim import Fusion, FusionYield
from lamina.passes.manager import Pass, register_pass
from lamina.passes.rewrite import (
    MOVEMENT,
    SOURCES,
    clone_op,
    is_core,
    is_elementwise,
    is_elementwise_like,
    is_opaque,
    new_graph_like,
    returned,
)

RECOMPUTE_LIMIT = 8
_BIG = None  # a cone known to cost more than the limit


def kernel_name(index: int, loc: Loc | None) -> str:
    """``k3_model_py_12`` for group 3 rooted at model.py:12; a valid C identifier."""
    if loc is None:
        return f"k{index}"
    stem = re.sub(r"[^A-Za-z0-9]+", "_", os.path.basename(loc.file)).strip("_")
    return f"k{index}_{stem}_{loc.line}" if stem else f"k{index}_{loc.line}"


# -- choosing the materialized values -------------------------------------------------------
def _users(ops: list[Op]) -> dict[Value, list[Op]]:
    use: dict[Value, list[Op]] = {}
    for op in ops:
        for v in dict.fromkeys(op.operands):
            use.setdefault(v, []).append(op)
    return use


def _is_root(op: Op, mat: set[Value]) -> bool:
    return isinstance(op, Fusion) or any(r in mat for r in op.results)


def materialized(ops: list[Op], results: list[Value]) -> set[Value]:
    """The values that become group results (rules 1-4 of the module docstring)."""
    use = _users(ops)
    mat = {v for v in results if isinstance(v.owner, Op)}
    mat |= {r for op in ops if isinstance(op, Fusion) for r in op.results}
    claimed: set[Op] = set()
    for op in ops:
        if is_opaque(op):  # a group of its own: its operands and result are buffers
            mat.add(op.result)
            mat.update(v for v in op.operands if isinstance(v.owner, Op))
        if is_core(op):
            v = op.result
            shape = op.result.type.shape
            while v not in mat:
                step = _epilogue_step(v, use, claimed, shape)
                if step is None:
                    break
                members, v = step
                claimed.update(members)
            mat.add(v)
        if op.has("contraction"):
            for w in op.operands:
                while (isinstance(w.owner, Op) and w not in mat
                       and w.owner.name in ("prim.permute", "prim.broadcast")):
                    w = w.owner.operands[0]
                if isinstance(w.owner, Op):
                    mat.add(w)
    _limit_recompute(ops, use, mat)
    return mat


def _epilogue_step(v: Value, use: dict[Value, list[Op]], claimed: set[Op],
                   shape: tuple) -> tuple[list[Op], Value] | None:
    """The next link of an epilogue after ``v``: its single user, or a small diamond
    whose users of ``v`` all feed one sink op (``where(x <= 0, 0, x)`` for relu)."""
    us = use.get(v, [])

    def fits(u: Op) -> bool:
        return is_elementwise(u) and u not in claimed and u.result.type.shape == shape

    if not us or not all(fits(u) for u in us):
        return None
    if len(us) == 1:
        return us, us[0].result
    for sink in us:
        others = [u for u in us if u is not sink]
        if all(use.get(u.result, []) == [sink] for u in others):
            return us, sink.result
    return None


def _cost(op: Op) -> int:
    return 0 if op.name in MOVEMENT or op.name in SOURCES else 1


def _limit_recompute(ops: list[Op], use: dict[Value, list[Op]], mat: set[Value]) -> None:
    """Rule 4: materialize shared elementwise values that are expensive to recompute."""
    groups: dict[Op, set[Op]] = {}  # up to two of the groups that would compute op
    for op in reversed(ops):
        if _is_root(op, mat):
            groups[op] = {op}
            continue
        seen: set[Op] = set()
        for u in (u for r in op.results for u in use.get(r, [])):
            seen |= groups[u]
            if len(seen) > 1:
                break
        groups[op] = set(list(seen)[:2])
    cones: dict[Op, frozenset[Op] | None] = {}
    for op in ops:
        if _is_root(op, mat) or not is_elementwise_like(op):
            continue
        cone: set[Op] | None = {op}
        for v in op.operands:
            if isinstance(v.owner, Op) and v.owner in cones:
                inner = cones[v.owner]
                cone = None if inner is _BIG or cone is None else cone | inner
        big = cone is None or sum(map(_cost, cone)) > RECOMPUTE_LIMIT or \
            len(cone) > 4 * RECOMPUTE_LIMIT
        if big and len(groups[op]) > 1:
            mat.add(op.result)
            continue
        cones[op] = _BIG if big else frozenset(cone)


# -- forming the groups ---------------------------------------------------------------------
def _members(root: Op, mat: set[Value], order: dict[Op, int]) -> list[Op]:
    seen = {root}
    stack = [root]
    while stack:
        for v in stack.pop().operands:
            p = v.owner
            if isinstance(p, Op) and p not in seen and v not in mat:
                seen.add(p)
                stack.append(p)
    return sorted(seen, key=order.__getitem__)


def _group_args(members: list[Op]) -> list[Value]:
    inside = {r for m in members for r in m.results}
    return list(dict.fromkeys(v for m in members for v in m.operands if v not in inside))


def fuse_graph(g: Graph, counter: Iterator[int]) -> Graph:
    """A new graph whose body is ``prim.fusion`` groups and ``return``."""
    ret = returned(g)
    if ret is None:
        raise IRError(f"fuse: @{g.name} does not end with return")
    ops = g.ops[:-1]
    for op in ops:
        if not op.name.startswith("prim.") or op.name == "prim.yield":
            raise IRError(f"fuse: {op.where()} in @{g.name} is not a primitive; run decompose "
                          "first")
    mat = materialized(ops, list(ret.operands))
    order = {op: i for i, op in enumerate(ops)}
    ng, vmap = new_graph_like(g)
    for root in ops:
        if not _is_root(root, mat):
            continue
        name = kernel_name(next(counter), root.loc)
        if isinstance(root, Fusion):
            clone_op(root, vmap, ng.body).attrs["name"] = name
            continue
        members = _members(root, mat, order)
        args = _group_args(members)
        body = Block([a.type for a in args],
                     [a.hint if isinstance(a.owner, Block) else None for a in args])
        inner = dict(zip(args, body.args))
        for m in members:
            clone_op(m, inner, body)
        body.append(FusionYield([inner[root.result]], []))
        f = Fusion([vmap[a] for a in args], [root.result.type], {"name": name}, [body],
                   loc=root.loc)
        group_kind(f)
        vmap[root.result] = ng.body.append(f).result
    ng.body.append(Return([vmap[v] for v in ret.operands], [], loc=ret.loc))
    return ng


# -- what a group is -------------------------------------------------------------------------
def group_kind(f: Op) -> str:
    """``"copy"``, ``"elementwise"``, ``"reduction"``, ``"contraction"`` or ``"opaque"``;
    IRError for a group the lowering does not support (see docs/contracts.md)."""
    body = f.regions[0]
    ops = body.ops[:-1]
    out = body.ops[-1].operands
    if len(out) != 1:
        raise f.error(f"group {f.attrs.get('name')} has {len(out)} results; groups have one")
    if out[0] in body.args:
        return "copy"
    if any(is_opaque(o) for o in ops):
        if len(ops) != 1 or out[0] is not ops[0].result or any(
                v not in body.args for v in ops[0].operands):
            raise f.error(f"group {f.attrs.get('name')}: an opaque prim "
                          f"({', '.join(o.name for o in ops if is_opaque(o))}) must be alone "
                          "in its group, on group args")
        return "opaque"
    cores = [o for o in ops if is_core(o)]
    odd = [o.name for o in ops if not is_core(o) and not is_elementwise_like(o)]
    if odd or len(cores) > 1:
        raise f.error(f"group {f.attrs.get('name')} holds {', '.join(odd) or 'several cores'}; "
                      "a group holds elementwise prims and at most one reduction/contraction")
    if not cores:
        return "elementwise"
    (core,) = cores
    after = {core.result}
    for o in ops[ops.index(core) + 1:]:
        if any(v in after for v in o.operands):
            if not is_elementwise(o) or o.result.type.shape != core.result.type.shape:
                raise f.error(f"group {f.attrs.get('name')}: {o.name} after {core.name} is "
                              "not an elementwise epilogue of its shape")
            after.add(o.result)
    if out[0] not in after:
        raise f.error(f"group {f.attrs.get('name')} does not yield its {core.name}'s epilogue")
    if core.has("contraction"):
        for v in core.operands:
            while isinstance(v.owner, Op) and v.owner.name in ("prim.permute", "prim.broadcast"):
                v = v.owner.operands[0]
            if v not in body.args:
                raise f.error(f"group {f.attrs.get('name')}: dot_general operands must be group "
                              "args through permute/broadcast only")
        return "contraction"
    return "reduction"


@register_pass
@dataclass(frozen=True)
class Fuse(Pass):
    """Partition each func's primitives into prim.fusion groups (see the module docstring)."""

    name = "fuse"

    def run(self, module: Module) -> Module:
        counter = itertools.count()
        return Module([fuse_graph(g, counter) if g.kind == "func" else g for g in module.graphs])
