"""Building loop-dialect code: scoped CSE, index constant folding and loop-invariant placement.

The lowering emits code by asking for values ("the sum of these two", "the
element of this buffer at that index"); the builder decides where the op goes.
A pure op is placed in the outermost open loop where all its operands exist
(so index math and constants leave inner loops by construction) and reused
when the same op on the same operands was already built in a visible scope.
Loads are treated the same way with one restriction: they never leave a loop
that may run zero times, and never reach the kernel's top level while a loop
is open there, so a hoisted load can never read out of bounds and the ops
before the top-level ``loop.parallel`` stay pure (the kernel ABI requires it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from lamina.ir.core import OPS, Block, Graph, IRError, Loc, Op, Value
from lamina.ir.dialects import loop as L
from lamina.ir.types import ScalarType, Type, VectorType, index


class NotVectorizable(Exception):
    """Raised while emitting vector code for something that has no vector form."""


@dataclass
class _Scope:
    block: Block
    nonempty: bool  # the loop owning this block is known to run at least once
    anchor: Op | None = None  # the loop op of this block that is being filled
    cse: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)


@dataclass
class LoopHandle:
    """An open loop: its induction variable, carried values and (after exit) results."""

    op: Op
    iv: Value
    args: list[Value]
    yielded: list[Value] | None = None
    skipped: list[Value] | None = None  # the initial values, when the loop never runs

    @property
    def results(self) -> list[Value]:
        return self.op.results if self.skipped is None else self.skipped

    def yield_(self, values: list[Value]) -> None:
        self.yielded = list(values)


def trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero; 0 for a zero divisor (the dialect's rule)."""
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


_FOLD = {
    "loop.add": lambda a, b: a + b, "loop.sub": lambda a, b: a - b,
    "loop.mul": lambda a, b: a * b, "loop.div": trunc_div,
    "loop.rem": lambda a, b: 0 if b == 0 else a - trunc_div(a, b) * b,
    "loop.min": min, "loop.max": max,
    "loop.lt": lambda a, b: a < b, "loop.le": lambda a, b: a <= b,
    "loop.gt": lambda a, b: a > b, "loop.ge": lambda a, b: a >= b,
    "loop.eq": lambda a, b: a == b, "loop.ne": lambda a, b: a != b,
}


def _attr_key(attrs: dict[str, Any]) -> tuple:
    return tuple(sorted(attrs.items()))


class KernelBuilder:
    """Appends loop-dialect ops to a graph, placing and reusing them as described above."""

    def __init__(self, graph: Graph, loc: Loc | None = None):
        self.graph = graph
        self.loc = loc
        self.scopes: list[_Scope] = [_Scope(graph.body, True)]
        self.depth: dict[int, int] = {id(a): 0 for a in graph.args}
        self.consts: dict[int, Any] = {}
        self._prelude = 0  # constants sit at the top of the body, in creation order
        self._keep: list[Value] = []  # keeps ids in the maps above from being reused

    # -- placement -------------------------------------------------------------
    @property
    def level(self) -> int:
        return len(self.scopes) - 1

    def _place(self, op: Op, depth: int) -> None:
        scope = self.scopes[depth]
        op.parent = scope.block
        if depth == self.level:
            scope.block.ops.append(op)
        else:
            scope.block.ops.insert(scope.block.ops.index(scope.anchor), op)
        for r in op.results:
            self.depth[id(r)] = depth
            self._keep.append(r)

    def _operand_depth(self, operands: tuple[Value, ...]) -> int:
        return max((self.depth[id(v)] for v in operands), default=0)

    def _load_depth(self, operands: tuple[Value, ...]) -> int:
        depth = self._operand_depth(operands)
        if self.level >= 1:
            depth = max(depth, 1)
        for d in range(self.level, depth, -1):
            if not self.scopes[d].nonempty:
                return d
        return depth

    def _lookup(self, table: str, key: Any) -> Any:
        for scope in reversed(self.scopes):
            hit = getattr(scope, table).get(key)
            if hit is not None:
                return hit
        return None

    # -- constants and pure ops -----------------------------------------------------
    def const(self, value: Any, dtype: ScalarType) -> Value:
        """A ``loop.const`` of ``dtype`` (shared by the whole kernel)."""
        if dtype.is_float:
            value = float(value)
        elif dtype.is_bool:
            value = bool(value)
        else:
            value = int(value)
        key = ("loop.const", repr(value), dtype)
        hit = self.scopes[0].cse.get(key)
        if hit is not None:
            return hit
        op = L.SConst([], [dtype], {"value": value}, loc=self.loc)
        op.parent = self.graph.body
        self.graph.body.ops.insert(self._prelude, op)
        self._prelude += 1
        v = op.result
        self.depth[id(v)] = 0
        self.consts[id(v)] = value
        self._keep.append(v)
        self.scopes[0].cse[key] = v
        return v

    def index(self, value: int) -> Value:
        return self.const(value, index)

    def const_of(self, v: Value) -> Any:
        """The constant a value holds, or None."""
        return self.consts.get(id(v))

    def emit(self, name: str, *operands: Value, **attrs: Any) -> Value:
        """A pure single-result op, folded, reused or hoisted where possible."""
        folded = self._fold(name, operands, attrs)
        if folded is not None:
            return folded
        key = (name, tuple(id(v) for v in operands), _attr_key(attrs))
        hit = self._lookup("cse", key)
        if hit is not None:
            return hit
        cls = OPS[name]
        try:
            op = cls.build(*operands, loc=self.loc, **attrs)
        except IRError as e:
            raise IRError(f"lower-loops: cannot build {name} on "
                          f"{', '.join(str(v.type) for v in operands)}: {e}") from None
        depth = self._operand_depth(operands)
        self._place(op, depth)
        self.scopes[depth].cse[key] = op.result
        return op.result

    def _fold(self, name: str, operands: tuple[Value, ...], attrs: dict) -> Value | None:
        consts = [self.consts.get(id(v)) for v in operands]
        if name == "loop.select" and consts[0] is not None:
            return operands[1] if consts[0] else operands[2]
        if name == "loop.cast":
            if operands[0].type == attrs["dtype"]:
                return operands[0]
            if consts[0] is not None and attrs["dtype"] == index:
                return self.index(int(consts[0]))
            return None
        if len(operands) != 2 or operands[0].type != index or name not in _FOLD:
            return None
        a, b = consts
        x, y = operands
        if a is not None and b is not None:
            r = _FOLD[name](a, b)
            return self.const(r, ScalarType("i1")) if isinstance(r, bool) else self.index(r)
        if name == "loop.add":
            return y if a == 0 else x if b == 0 else None
        if name == "loop.sub":
            return x if b == 0 else self.index(0) if x is y else None
        if name == "loop.mul":
            if a == 0 or b == 0:
                return self.index(0)
            return y if a == 1 else x if b == 1 else None
        if name == "loop.div":
            return x if b == 1 else None
        if name == "loop.rem":
            return self.index(0) if b == 1 else None
        if name in ("loop.min", "loop.max") and x is y:
            return x
        return None

    # -- memory ------------------------------------------------------------------------
    def load(self, memref: Value, idx: list[Value], reuse: bool = True) -> Value:
        """``loop.load``; reused and hoisted unless ``reuse`` is False (buffers being written)."""
        return self._read(L.Load, memref, idx, {}, memref.type.dtype, reuse)

    def vload(self, memref: Value, idx: list[Value], width: int) -> Value:
        return self._read(L.VLoad, memref, idx, {"width": width},
                          VectorType(width, memref.type.dtype), True)

    def _read(self, cls: type[Op], memref: Value, idx: list[Value], attrs: dict, rtype: Type,
              reuse: bool) -> Value:
        operands = (memref, *idx)
        key = (cls.name, tuple(id(v) for v in operands), _attr_key(attrs))
        if reuse:
            hit = self._lookup("cse", key)
            if hit is not None:
                return hit
        op = cls(list(operands), [rtype], attrs, loc=self.loc)
        depth = self._load_depth(operands) if reuse else self.level
        self._place(op, depth)
        if reuse:
            self.scopes[depth].cse[key] = op.result
        return op.result

    def append(self, op: Op) -> Op:
        """Add an op with side effects (a program's alloc or call) at the current position."""
        self._place(op, self.level)
        return op

    def store(self, value: Value, memref: Value, idx: list[Value]) -> None:
        self._place(L.Store([value, memref, *idx], [], loc=self.loc), self.level)

    def vstore(self, value: Value, memref: Value, idx: list[Value]) -> None:
        self._place(L.VStore([value, memref, *idx], [], loc=self.loc), self.level)

    # -- memo of values computed at an index (used by the evaluator) ----------------------
    def memo_get(self, key: Any) -> Value | None:
        return self._lookup("memo", key)

    def memo_put(self, key: Any, value: Value, keys: tuple[Value, ...]) -> None:
        """Remember ``value`` in the innermost scope where it and ``keys`` are all alive."""
        depth = max([self.depth.get(id(value), self.level)]
                    + [self.depth.get(id(k), self.level) for k in keys])
        self.scopes[depth].memo[key] = (value, keys)

    # -- loops ----------------------------------------------------------------------------
    def loop(self, lb: Value, ub: Value, step: Value, inits: list[Value] = (),
             parallel: bool = False) -> _LoopContext:
        """``with kb.loop(...) as lp:`` fill the body, ``lp.yield_(...)``, then ``lp.results``."""
        return _LoopContext(self, lb, ub, step, list(inits), parallel)

    def static_trips(self, lb: Value, ub: Value, step: Value) -> int | None:
        a, b, s = (self.consts.get(id(v)) for v in (lb, ub, step))
        if a is None or b is None or s is None or s <= 0:
            return None
        return max(0, -(-(b - a) // s))

    def nonempty(self, lb: Value, ub: Value, step: Value) -> bool:
        return (self.static_trips(lb, ub, step) or 0) >= 1

    def finish(self) -> None:
        """Drop ops whose results nobody uses (left by abandoned vector attempts)."""
        dead_code_elimination(self.graph.body)


class _LoopContext:
    def __init__(self, kb: KernelBuilder, lb: Value, ub: Value, step: Value,
                 inits: list[Value], parallel: bool):
        self.kb, self.parallel = kb, parallel
        self.operands = [lb, ub, step, *inits]
        self.nonempty = kb.nonempty(lb, ub, step)
        self.empty = kb.static_trips(lb, ub, step) == 0  # built, then dropped

    def __enter__(self) -> LoopHandle:
        kb = self.kb
        types = [v.type for v in self.operands[3:]]
        body = Block([index, *types])
        cls = L.Parallel if self.parallel else L.For
        op = cls(self.operands, types, {}, [body], loc=kb.loc)
        kb._place(op, kb.level)
        kb.scopes[-1].anchor = op
        kb.scopes.append(_Scope(body, self.nonempty))
        for a in body.args:
            kb.depth[id(a)] = kb.level
            kb._keep.append(a)
        self.handle = LoopHandle(op, body.args[0], body.args[1:])
        return self.handle

    def __exit__(self, exc_type, exc, tb) -> None:
        kb, h = self.kb, self.handle
        kb.scopes.pop()
        kb.scopes[-1].anchor = None
        if exc_type is not None or self.empty:
            kb.scopes[-1].block.ops.remove(h.op)
            h.skipped = self.operands[3:]
            return
        if h.args or h.yielded:
            if h.yielded is None or len(h.yielded) != len(h.args):
                raise IRError("lower-loops: a loop carrying values must yield one per value")
            h.op.regions[0].append(L.Yield(h.yielded, [], loc=kb.loc))


def _removable(op: Op) -> bool:
    return not op.regions and (op.has("pure") or isinstance(op, (L.Load, L.VLoad)))


def dead_code_elimination(block: Block) -> int:
    """Remove unused pure ops and loads anywhere under ``block``; returns how many."""
    removed = 0
    while True:
        used: set[int] = set()
        for op in block.walk():
            used.update(id(v) for v in op.operands)
        dropped = _drop_unused(block, used)
        removed += dropped
        if not dropped:
            return removed


def _drop_unused(block: Block, used: set[int]) -> int:
    dropped = 0
    kept = []
    for op in block.ops:
        if _removable(op) and not any(id(r) in used for r in op.results):
            dropped += 1
            continue
        for r in op.regions:
            dropped += _drop_unused(r, used)
        kept.append(op)
    block.ops[:] = kept
    return dropped


def walk_blocks(block: Block) -> Iterator[Block]:
    yield block
    for op in block.ops:
        for r in op.regions:
            yield from walk_blocks(r)
