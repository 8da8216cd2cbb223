"""What a kernel's loop IR says about its buffers: which it writes, which sizes it indexes.

Memref types check dtypes, ranks and static sizes, but two ``memref<?xf32>``
arguments can still disagree at run time: a kernel that loops to the size of
its output and loads its input at the loop index would read past a shorter
input. ``derive_bounds`` finds such accesses in the common, analysable form
(an index that is a constant or a loop index plus a constant, in loops whose
bounds are constants or ``loop.dim`` of an argument) and ``BoundsCheck``
verifies them before the call. Accesses it cannot analyse are left to the
code that built the buffers; an access is only checked when every loop around
it would run, so a valid call is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lamina.ir.core import Block, Graph, Op, Value
from lamina.ir.types import MemRefType
from lamina.runtime.errors import ArgumentMismatch

# A loop bound: a constant or the run-time size ``(arg, axis)`` of a kernel argument.
Size = int | tuple[int, int]


@dataclass(frozen=True)
class Range:
    """A loop ``for i in range(lb, ub, step)`` with a constant ``lb`` and ``step > 0``."""

    lb: int
    ub: Size
    step: int


@dataclass(frozen=True)
class Bound:
    """Axis ``axis`` of argument ``arg`` is indexed at ``i + offset`` for every value ``i``
    of loop ``over`` (or at the constant ``offset`` when ``over`` is None), plus ``lanes``
    more elements for a vector access, whenever all ``guards`` loops run at least once."""

    arg: int
    axis: int
    over: Range | None
    offset: int
    lanes: int
    guards: tuple[Range, ...]


_ACCESS = {"loop.load": 0, "loop.vload": 0, "loop.store": 1, "loop.vstore": 1}
_LOOPS = ("loop.for", "loop.parallel")


def written_args(graph: Graph) -> tuple[int, ...]:
    """Indices of the kernel arguments the kernel stores into."""
    args = {id(a): i for i, a in enumerate(graph.args)}
    out = {args[id(op.operands[1])] for op in graph.walk()
           if op.has("writes") and len(op.operands) > 1 and id(op.operands[1]) in args}
    return tuple(sorted(out))


def has_top_level_parallel(graph: Graph) -> bool:
    """Whether the kernel body has a top-level ``loop.parallel`` (so ``__trips`` matters)."""
    return any(op.name == "loop.parallel" for op in graph.ops)


class _Analysis:
    def __init__(self, graph: Graph):
        self.args = {id(a): i for i, a in enumerate(graph.args)}
        self.types: list[MemRefType] = [a.type for a in graph.args]
        # id(value) -> ("c", n) | ("dim", arg, axis) | ("iv", Range, offset)
        self.known: dict[int, tuple] = {}
        self.bounds: set[Bound] = set()

    def size(self, v: Value) -> Size | None:
        d = self.known.get(id(v))
        if d is None:
            return None
        if d[0] == "c":
            return d[1]
        if d[0] == "dim":
            return (d[1], d[2])
        return None

    def const(self, v: Value) -> int | None:
        d = self.known.get(id(v))
        return d[1] if d is not None and d[0] == "c" else None

    def scalar(self, op: Op) -> None:
        """Record what an index-valued op computes, when it is analysable."""
        if len(op.results) != 1:
            return
        r = op.results[0]
        if op.name == "loop.const":
            v = op.attrs.get("value")
            if isinstance(v, int) and not isinstance(v, bool):
                self.known[id(r)] = ("c", v)
        elif op.name == "loop.dim" and id(op.operands[0]) in self.args:
            self.known[id(r)] = ("dim", self.args[id(op.operands[0])], op.attrs["axis"])
        elif op.name in ("loop.add", "loop.sub") and len(op.operands) == 2:
            a, b = (self.known.get(id(v)) for v in op.operands)
            if a is None or b is None:
                return
            sign = 1 if op.name == "loop.add" else -1
            if a[0] == "c" and b[0] == "c":
                self.known[id(r)] = ("c", a[1] + sign * b[1])
            elif a[0] == "iv" and b[0] == "c":
                self.known[id(r)] = ("iv", a[1], a[2] + sign * b[1])
            elif a[0] == "c" and b[0] == "iv" and sign == 1:
                self.known[id(r)] = ("iv", b[1], b[2] + a[1])

    def access(self, op: Op, guards: tuple[Range, ...] | None) -> None:
        pos = _ACCESS[op.name]
        buf = op.operands[pos]
        if guards is None or id(buf) not in self.args:
            return
        arg = self.args[id(buf)]
        t = self.types[arg]
        indices = op.operands[pos + 1:]
        width = op.attrs.get("width", 1) if op.name in ("loop.vload", "loop.vstore") else 1
        for axis, v in enumerate(indices):
            if t.strides is not None and t.strides[axis] == 0:
                continue  # every index reads element 0 of a broadcast axis
            lanes = width - 1 if axis == len(indices) - 1 else 0
            d = self.known.get(id(v))
            if d is None:
                continue
            if d[0] == "c":
                bound = Bound(arg, axis, None, d[1], lanes, guards)
            elif d[0] == "iv":
                bound = Bound(arg, axis, d[1], d[2], lanes, guards)
            else:
                continue
            if not _statically_true(bound, t):
                self.bounds.add(bound)

    def block(self, block: Block, guards: tuple[Range, ...] | None) -> None:
        for op in block.ops:
            if op.name in _ACCESS:
                self.access(op, guards)
            elif op.name in _LOOPS:
                self.loop(op, guards)
            elif op.regions:
                for r in op.regions:  # an unknown region op: nothing inside is checked
                    self.block(r, None)
            else:
                self.scalar(op)

    def loop(self, op: Op, guards: tuple[Range, ...] | None) -> None:
        lb, ub, step = (op.operands[i] for i in range(3))
        rng = None
        lbc, stepc, ubs = self.const(lb), self.const(step), self.size(ub)
        if lbc is not None and stepc is not None and stepc > 0 and ubs is not None:
            rng = Range(lbc, ubs, stepc)
        body = op.regions[0]
        if rng is not None and body.args:
            self.known[id(body.args[0])] = ("iv", rng, 0)
        inner = guards + (rng,) if guards is not None and rng is not None else None
        self.block(body, inner)


def _statically_true(b: Bound, t: MemRefType) -> bool:
    """A bound that always holds: a loop up to this very size, or constants within a
    static size."""
    o, reach = b.over, b.offset + b.lanes
    if o is not None and o.ub == (b.arg, b.axis) and o.lb + b.offset >= 0 and reach <= 0:
        return True
    size = t.shape[b.axis]
    if size is None:
        return False
    if o is None:
        return 0 <= b.offset and reach < size
    return isinstance(o.ub, int) and o.lb + b.offset >= 0 and o.ub - 1 + reach < size


def derive_bounds(graph: Graph) -> tuple[Bound, ...]:
    """The bounds a kernel's accesses imply, in a stable order."""
    a = _Analysis(graph)
    a.block(graph.body, ())
    return tuple(sorted(a.bounds, key=repr))


def _value(s: Size, shapes: Sequence[tuple[int, ...]]) -> int:
    return s if isinstance(s, int) else shapes[s[0]][s[1]]


def _last(r: Range, shapes: Sequence[tuple[int, ...]]) -> int | None:
    """The last index the loop takes, or None when it runs zero times."""
    ub = _value(r.ub, shapes)
    if ub <= r.lb:
        return None
    return r.lb + (ub - r.lb - 1) // r.step * r.step


class BoundsCheck:
    """Checks a kernel's bounds on the buffers of one call; raises before any access."""

    def __init__(self, bounds: Sequence[Bound], kernel: str, types: Sequence[MemRefType]):
        self.kernel = kernel
        self.types = list(types)
        # Bounds "arg axis k up to size of src axis k" hold whenever the two shapes are
        # equal, the common case (elementwise kernels): test the shapes first.
        pairs: dict[tuple[int, int], list[Bound]] = {}
        general: list[Bound] = []
        for b in bounds:
            o = b.over
            if (o is not None and o.lb == 0 and o.step == 1 and b.offset == 0 and b.lanes == 0
                    and isinstance(o.ub, tuple) and o.ub[1] == b.axis):
                pairs.setdefault((b.arg, o.ub[0]), []).append(b)
            else:
                general.append(b)
        self.pairs = tuple((a, s, tuple(bs)) for (a, s), bs in sorted(pairs.items()))
        self.general = tuple(general)

    def __call__(self, arrays: Sequence[Any]) -> None:
        shapes = None
        for a, s, bs in self.pairs:
            if arrays[a].shape == arrays[s].shape:
                continue
            shapes = shapes or [x.shape for x in arrays]
            for b in bs:
                self._check(b, arrays, shapes)
        if self.general:
            self.check_general(arrays, shapes)

    def check_general(self, arrays: Sequence[Any],
                      shapes: Sequence[tuple[int, ...]] | None = None) -> None:
        """Check the bounds that are not of the simple "up to another size" kind."""
        shapes = shapes or [x.shape for x in arrays]
        for b in self.general:
            self._check(b, arrays, shapes)

    def _check(self, b: Bound, arrays: Sequence[Any], shapes: Sequence[tuple[int, ...]]) -> None:
        for g in b.guards:
            if _last(g, shapes) is None:
                return  # some loop around the access runs zero times
        last = 0 if b.over is None else _last(b.over, shapes)
        if last is None:
            return
        low = (0 if b.over is None else b.over.lb) + b.offset
        high = last + b.offset + b.lanes
        size = shapes[b.arg][b.axis]
        a = arrays[b.arg]
        if a.strides[b.axis] == 0 and size >= 1:
            return  # a broadcast view: every index reads element 0
        if 0 <= low and high < size:
            return
        src = ""
        if b.over is not None and isinstance(b.over.ub, tuple):
            src = f" (a loop over the size of argument {b.over.ub[0]} axis {b.over.ub[1]})"
        raise ArgumentMismatch(
            f"kernel @{self.kernel}: argument {b.arg} ({self.types[b.arg]}) has size {size} on "
            f"axis {b.axis} but the kernel indexes it from {low} to {high}{src}; buffer shapes: "
            + ", ".join(str(tuple(s)) for s in shapes)
        )
