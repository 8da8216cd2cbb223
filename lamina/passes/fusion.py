"""``fuse``: partition the primitives of each func into ``prim.fusion`` groups, one per kernel.

Groups are exactly the kinds ``docs/contracts.md`` lists (and ``group_kind``
checks): elementwise DAGs (functions, constants, iota, movement), one
reduction with its elementwise input DAG and epilogue, one ``dot_general``
whose operands are group args through ``permute``/``broadcast``, with its
epilogue, copies, and one ``opaque`` prim alone (a kernel of its own, e.g. a
sort: its operands and result are materialized). Groups have one result, except
the multi-output groups that ``merge_groups`` makes (see below).

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

Multi-output (horizontal) fusion, ``merge_groups``: after the partition,
elementwise groups whose results have one static shape are merged into one
group with several results when they read a common input of that shape, or
one reads the other's result, and no path through a third group connects
them (merging would make a cycle). An optimizer update (new state, new
parameter, all read from grad, param and state) then becomes one kernel that
reads its inputs once, instead of one kernel per result. Ops equal in the
merged groups are computed once; a result that only the merged group itself
reads is no longer yielded (no buffer). Groups reading a row reduction keep
their own kernels (``lower-loops`` computes those reductions inside their
single-result readers on the CPU). ``LAMINA_MULTI_OUTPUT_FUSION=0`` (read when
the pass runs) turns merging off.

A group is named ``k<index>_<file>_<line>`` after the source line of its root
op (the op computing its result), or ``k<index>`` without a location; indices
count the groups of the module, so names are unique kernel symbols.
"""

from __future__ import annotations

import heapq
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
    return merge_groups(ng) if multi_output_enabled() else ng


# -- multi-output groups -----------------------------------------------------------------------
MAX_RESULTS = 8  # results of one merged group: each is one more live value per element


def multi_output_enabled() -> bool:
    """``LAMINA_MULTI_OUTPUT_FUSION`` is not ``0``: sibling groups are merged."""
    return os.environ.get("LAMINA_MULTI_OUTPUT_FUSION", "1").strip() != "0"


def _merge_shape(f: Op) -> tuple[int, ...] | None:
    """The static shape of every result of an elementwise group, else None (never merged)."""
    try:
        if group_kind(f) != "elementwise":
            return None
    except IRError:
        return None
    shapes = {r.type.shape for r in f.results}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    return None if None in shape else shape


def _row_reduced(f: Op) -> bool:
    """A group reducing over its operand's last axis into a non-scalar result: ``lower-loops``
    computes it inside the kernel reading it when that kernel has one result."""
    if len(f.results) != 1 or f.result.type.rank == 0:
        return False
    reds = [o for o in f.regions[0].ops if o.has("reduction")]
    return len(reds) == 1 and "axes" in reds[0].attrs and \
        reds[0].operands[0].type.rank - 1 in reds[0].attrs["axes"]


class _Clusters:
    """Groups of a func being merged: union-find over the groups, and the dependence
    graph between the clusters (kept acyclic: every merge is checked first)."""

    def __init__(self, preds: list[set[int]]):
        n = len(preds)
        self.rep = list(range(n))
        self.members = {i: [i] for i in range(n)}
        self.preds = {i: set(p) for i, p in enumerate(preds)}
        self.succs: dict[int, set[int]] = {i: set() for i in range(n)}
        for i, p in enumerate(preds):
            for j in p:
                self.succs[j].add(i)

    def find(self, i: int) -> int:
        while self.rep[i] != i:
            self.rep[i] = self.rep[self.rep[i]]
            i = self.rep[i]
        return i

    def _detour(self, src: int, dst: int) -> bool:
        """A path ``src -> x -> ... -> dst`` through some other cluster ``x``."""
        stack = [x for x in self.succs[src] if x != dst]
        seen = set(stack)
        while stack:
            x = stack.pop()
            for y in self.succs[x]:
                if y == dst:
                    return True
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        return False

    def can_merge(self, a: int, b: int) -> bool:
        return not self._detour(a, b) and not self._detour(b, a)

    def merge(self, a: int, b: int) -> None:
        """Cluster ``b`` joins cluster ``a``."""
        self.rep[b] = a
        self.members[a] += self.members.pop(b)
        for side, other in ((self.preds, self.succs), (self.succs, self.preds)):
            for x in side.pop(b):
                other[x].discard(b)
                if x != a:
                    other[x].add(a)
                    side[a].add(x)
            side[a].discard(a)
            side[a].discard(b)


def merge_groups(g: Graph) -> Graph:
    """``g`` (fused: groups and return) with sibling elementwise groups merged into
    multi-output groups (the module docstring says when); ``g`` itself when none merge."""
    ops, ret = g.ops[:-1], g.ops[-1]
    where = {r: i for i, op in enumerate(ops) for r in op.results}
    preds = [{where[v] for v in op.operands if v in where} for op in ops]
    shapes = [_merge_shape(op) for op in ops]
    row = {i for i, op in enumerate(ops) if _row_reduced(op)}
    shapes = [None if s is None or preds[i] & row else s for i, s in enumerate(shapes)]
    readers: dict[Value, list[int]] = {}
    for i, op in enumerate(ops):
        if shapes[i] is not None:
            for v in dict.fromkeys(op.operands):
                if v.type.shape == shapes[i]:
                    readers.setdefault(v, []).append(i)
    cl = _Clusters(preds)
    nres = [len(op.results) for op in ops]
    changed = True
    while changed:
        changed = False
        for j in range(len(ops)):
            if shapes[j] is None:
                continue
            near = [i for v in ops[j].operands for i in readers.get(v, [])]
            near += [i for i in preds[j] if shapes[i] == shapes[j]]
            for i in sorted(set(near) - {j}):
                a, b = cl.find(i), cl.find(j)
                if a == b or shapes[i] != shapes[j] or nres[a] + nres[b] > MAX_RESULTS:
                    continue
                if cl.can_merge(a, b):
                    a, b = min(a, b), max(a, b)
                    cl.merge(a, b)
                    nres[a] += nres[b]
                    changed = True
    if all(len(m) == 1 for m in cl.members.values()):
        return g
    return _rebuild(g, ops, ret, cl)


def _rebuild(g: Graph, ops: list[Op], ret: Op, cl: _Clusters) -> Graph:
    """A new graph with one op per cluster, in a dependence order (earliest first)."""
    order = []
    indeg = {c: len(cl.preds[c]) for c in cl.members}
    ready = [c for c, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    while ready:
        c = heapq.heappop(ready)
        order.append(c)
        for s in cl.succs[c]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, s)
    if len(order) != len(cl.members):
        raise IRError(f"fuse: @{g.name}: merged groups depend on each other in a cycle")
    uses: dict[Value, set[int]] = {}
    for i, op in enumerate(ops):
        for v in op.operands:
            uses.setdefault(v, set()).add(cl.find(i))
    outside = set(ret.operands)
    ng, vmap = new_graph_like(g)
    for c in order:
        members = sorted(cl.members[c])
        if len(members) == 1:
            clone_op(ops[c], vmap, ng.body)
            continue
        group = [ops[i] for i in members]
        keep = [r for f in group for r in f.results
                if r in outside or uses.get(r, set()) - {c}]
        _merge_into(ng, group, keep or [r for f in group for r in f.results], vmap)
    ng.body.append(Return([vmap[v] for v in ret.operands], [], loc=ret.loc))
    return ng


def _merge_into(ng: Graph, group: list[Op], keep: list[Value], vmap: dict[Value, Value]) -> None:
    """Append one fusion op computing ``group``'s ops once and yielding ``keep``."""
    made = {r for f in group for r in f.results}
    args = list(dict.fromkeys(v for f in group for v in f.operands if v not in made))
    body = Block([a.type for a in args], [vmap[a].hint for a in args])
    inner: dict[Value, Value] = dict(zip(args, body.args))  # outer values -> body values
    seen: dict[tuple, Op] = {}
    for f in group:
        local = {a: inner[v] for a, v in zip(f.regions[0].args, f.operands)}
        for op in f.regions[0].ops[:-1]:
            key = (op.name, repr(sorted(op.attrs.items())),
                   tuple(id(local[v]) for v in op.operands),
                   tuple(str(r.type) for r in op.results))
            hit = None if op.regions else seen.get(key)
            if hit is None:
                hit = clone_op(op, local, body)
                seen[key] = hit
            local.update(zip(op.results, hit.results))
        for r, y in zip(f.results, f.regions[0].ops[-1].operands):
            inner[r] = local[y]
    body.append(FusionYield([inner[r] for r in keep], []))
    last = group[-1]
    merged = Fusion([vmap[a] for a in args], [r.type for r in keep], {"name": last.attrs["name"]},
                    [body], loc=last.loc)
    group_kind(merged)
    ng.body.append(merged)
    vmap.update(zip(keep, merged.results))


# -- what a group is -------------------------------------------------------------------------
def group_kind(f: Op) -> str:
    """``"copy"``, ``"elementwise"``, ``"reduction"``, ``"contraction"`` or ``"opaque"``;
    IRError for a group the lowering does not support (see docs/contracts.md)."""
    body = f.regions[0]
    ops = body.ops[:-1]
    out = body.ops[-1].operands
    if len(out) != 1:
        return _multi_kind(f, ops, out)
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


def _multi_kind(f: Op, ops: list[Op], out: list[Value]) -> str:
    """A group with several results: elementwise prims only, results of one static shape."""
    name = f.attrs.get("name")
    odd = [o.name for o in ops if not is_elementwise_like(o)]
    if odd or not out:
        raise f.error(f"group {name} has {len(out)} results and holds "
                      f"{', '.join(odd) or 'nothing'}; only elementwise groups have several")
    shapes = {v.type.shape for v in out}
    if len(shapes) != 1 or None in next(iter(shapes)):
        raise f.error(f"group {name}: results of shapes "
                      f"{', '.join(str(list(v.type.shape)) for v in out)}; the results of a "
                      "multi-output group have one static shape")
    if any(v in f.regions[0].args for v in out):
        raise f.error(f"group {name}: a multi-output group may not yield its own argument")
    return "elementwise"


@register_pass
@dataclass(frozen=True)
class Fuse(Pass):
    """Partition each func's primitives into prim.fusion groups (see the module docstring)."""

    name = "fuse"

    def run(self, module: Module) -> Module:
        counter = itertools.count()
        return Module([fuse_graph(g, counter) if g.kind == "func" else g for g in module.graphs])
