"""Run-time sizes of the values of a fusion group, as ``index`` values.

Eager groups have ``?`` sizes everywhere, so a kernel (and the program that
allocates its output) must recover each size from the buffers it is given.
Axes that the prims force to be equal (elementwise operands, permuted axes,
kept axes of a reduction, contraction axes, a ``?`` broadcast onto a ``?``
axis) are merged into classes with union-find; a class gets its size from a
static member, else from ``loop.dim`` of a buffer bound to one of its members
(a group input, or the output in a kernel), else from a size rule (``pad``
adds its padding, ``concat`` sums its pieces).
"""

from __future__ import annotations

from typing import Callable

from lamina.ir.core import Block, IRError, Op, Value
from lamina.ir.dialects import prim as P
from lamina.passes.loop_builder import KernelBuilder

Node = tuple[int, int]  # (id of a region value, axis)


class ShapeSolver:
    """Sizes of every axis of every value in one fusion region."""

    def __init__(self, region: Block, result: Value, kb: KernelBuilder,
                 inputs: dict[int, Value], out: Value | None = None, what: str = "group"):
        self.kb, self.what, self.region = kb, what, region
        self.parent: dict[Node, Node] = {}
        self.buffers: dict[Node, tuple[Value, int]] = {}
        self.rules: dict[Node, Callable[[], Value]] = {}
        self.values: dict[int, Value] = {}
        self.memo: dict[Node, Value] = {}
        self.busy: set[Node] = set()
        self.order: dict[Node, tuple[int, int]] = {}
        for k, a in enumerate(region.args):
            self.values[id(a)] = a
            memref = inputs[id(a)]
            for axis in range(a.type.rank):
                self.buffers[(id(a), axis)] = (memref, axis)
                self.order[(id(a), axis)] = (k, axis)
        for op in region.ops:
            for r in op.results:
                self.values[id(r)] = r
            self._relate(op)
        if out is not None:
            for axis in range(result.type.rank):
                self.buffers[("out", axis)] = (out, axis)  # type: ignore[index]
                self.order[("out", axis)] = (len(region.args), axis)  # type: ignore[index]
                self._union((id(result), axis), ("out", axis))  # type: ignore[arg-type]
        self.members: dict[Node, list[Node]] = {}
        for node in list(self.parent):
            self.members.setdefault(self._find(node), []).append(node)

    # -- union-find ------------------------------------------------------------------
    def _find(self, n: Node) -> Node:
        self.parent.setdefault(n, n)
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def _union(self, a: Node, b: Node) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[rb] = ra

    def _same(self, a: Value, i: int, b: Value, j: int) -> None:
        self._union((id(a), i), (id(b), j))

    # -- what each prim says about sizes -------------------------------------------------
    def _relate(self, op: Op) -> None:
        for r in op.results:
            for axis in range(getattr(r.type, "rank", 0)):
                self._find((id(r), axis))
        if not op.results:
            return
        res = op.results[0]
        if op.has("elementwise"):
            for v in op.operands:
                for axis in range(res.type.rank):
                    self._same(res, axis, v, axis)
        elif isinstance(op, P.Broadcast):
            (x,) = op.operands
            for i, dst in enumerate(op.attrs["dims"]):
                if x.type.shape[i] != 1 and (x.type.shape[i] is not None
                                             or res.type.shape[dst] is None):
                    self._same(res, dst, x, i)
        elif isinstance(op, P.Permute):
            for k, p in enumerate(op.attrs["perm"]):
                self._same(res, k, op.operands[0], p)
        elif isinstance(op, (P.Reduce, P.ArgReduce)):
            x = op.operands[0]
            axes = op.attrs["axes"] if isinstance(op, P.Reduce) else (op.attrs["axis"],)
            kept = [a for a in range(x.type.rank) if a not in axes]
            for k, a in enumerate(kept):
                self._same(res, k, x, a)
        elif isinstance(op, P.DotGeneral):
            self._relate_dot(op, res)
        elif hasattr(op, "size_links"):  # prims declared elsewhere (prim_index) say it
            for k, axis, res_axis in op.size_links():
                self._same(res, res_axis, op.operands[k], axis)
        elif isinstance(op, P.Concat):
            axis = op.attrs["axis"]
            for v in op.operands:
                for a in range(res.type.rank):
                    if a != axis:
                        self._same(res, a, v, a)
            self.rules[(id(res), axis)] = lambda: self._sum(
                [self.dim(v, axis) for v in op.operands])
        elif isinstance(op, P.Pad):
            (x,) = op.operands
            for a, (lo, hi) in enumerate(zip(op.attrs["low"], op.attrs["high"])):
                if lo == hi == 0:
                    self._same(res, a, x, a)
                else:
                    self.rules[(id(res), a)] = (
                        lambda a=a, pad=lo + hi: self.kb.emit(
                            "loop.add", self.dim(x, a), self.kb.index(pad)))

    def _relate_dot(self, op: Op, res: Value) -> None:
        lhs, rhs = op.operands
        lb, rb = op.attrs["lhs_batch"], op.attrs["rhs_batch"]
        lc, rc = op.attrs["lhs_contract"], op.attrs["rhs_contract"]
        for k, (i, j) in enumerate(zip(lb, rb)):
            self._same(res, k, lhs, i)
            self._same(res, k, rhs, j)
        for i, j in zip(lc, rc):
            self._same(lhs, i, rhs, j)
        k = len(lb)
        for operand, skip in ((lhs, lb + lc), (rhs, rb + rc)):
            for a in range(operand.type.rank):
                if a not in skip:
                    self._same(res, k, operand, a)
                    k += 1

    def _sum(self, sizes: list[Value]) -> Value:
        total = self.kb.index(0)
        for s in sizes:
            total = self.kb.emit("loop.add", total, s)
        return total

    # -- queries --------------------------------------------------------------------------
    def dim(self, v: Value, axis: int) -> Value:
        """The size of axis ``axis`` of region value ``v`` as an index value."""
        static = v.type.shape[axis]
        if static is not None:
            return self.kb.index(static)
        root = self._find((id(v), axis))
        hit = self.memo.get(root)
        if hit is not None:
            return hit
        members = self.members.get(root, [root])
        for n in members:
            known = self.values.get(n[0])
            if known is not None and known.type.shape[n[1]] is not None:
                return self._remember(root, self.kb.index(known.type.shape[n[1]]))
        held = sorted((self.order[n], n) for n in members if n in self.buffers)
        if held:  # the first input holding the axis, else the output
            memref, a = self.buffers[held[0][1]]
            return self._remember(root, self.kb.emit("loop.dim", memref, axis=a))
        if root in self.busy:
            raise self._unknown(v, axis)
        self.busy.add(root)
        try:
            for n in members:
                rule = self.rules.get(n)
                if rule is not None:
                    return self._remember(root, rule())
        finally:
            self.busy.discard(root)
        raise self._unknown(v, axis)

    def dims(self, v: Value) -> list[Value]:
        return [self.dim(v, a) for a in range(v.type.rank)]

    def _remember(self, root: Node, size: Value) -> Value:
        self.memo[root] = size
        return size

    def _unknown(self, v: Value, axis: int) -> IRError:
        return IRError(f"lower-loops: {self.what}: cannot tell the run-time size of axis {axis} "
                       f"of a {v.type} value from the group's inputs")
