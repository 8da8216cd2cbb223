"""What a kernel's loop IR says about its buffers: which it writes, which sizes it indexes.

Memref types check dtypes, ranks and static sizes, but two ``memref<?xf32>``
arguments can still disagree at run time: a kernel that loops to the size of
its output and loads its input at the loop index would read past a shorter
input. ``derive_bounds`` finds the accesses whose index range is known from the
sizes alone, and ``BoundsCheck`` evaluates those ranges on the buffers of a
call (with a generated function) before the kernel runs.

The analysis tracks three kinds of index values:

- *size expressions*: constants, ``loop.dim`` of an argument, and index
  arithmetic, comparisons, casts and selects over them; evaluated exactly per
  call, so tiled loops (``n - n % 32``, ``(n + 5) / 6``) are handled;
- *loop indices plus a size expression* (``%i``, ``%i + 16``) of loops whose
  bounds are size expressions and whose step is a positive constant;
- anything else, remembering which loops it depends on.

An access is checked only when its index is one of the first two kinds; it is
skipped when a loop around it has unknown bounds that depend on the index's own
loop (a guard like ``for _ in range(i + 1 < n)`` narrows the index range in a
way the check cannot see), and it is waived when some loop around it runs zero
times. So a call that the kernel can run safely is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lamina.ir.core import Block, Graph, Op, Value
from lamina.ir.types import MemRefType
from lamina.runtime.errors import ArgumentMismatch

# A size expression: ("c", n) | ("dim", arg, axis) | (op, x, y) | ("select", c, x, y).
Expr = tuple

_ARITH = {"loop.add": "add", "loop.sub": "sub", "loop.mul": "mul", "loop.div": "div",
          "loop.rem": "rem", "loop.max": "max", "loop.min": "min", "loop.lt": "lt",
          "loop.le": "le", "loop.gt": "gt", "loop.ge": "ge", "loop.eq": "eq", "loop.ne": "ne"}
_PY = {"add": "({} + {})", "sub": "({} - {})", "mul": "({} * {})", "div": "cdiv({}, {})",
       "rem": "crem({}, {})", "max": "max({}, {})", "min": "min({}, {})",
       "lt": "int({} < {})", "le": "int({} <= {})", "gt": "int({} > {})",
       "ge": "int({} >= {})", "eq": "int({} == {})", "ne": "int({} != {})"}
_ACCESS = {"loop.load": 0, "loop.vload": 0, "loop.store": 1, "loop.vstore": 1}
_LOOPS = ("loop.for", "loop.parallel")
_ZERO: Expr = ("c", 0)


@dataclass(frozen=True)
class Loop:
    """A loop ``for i in range(lb, ub, step)`` whose bounds are size expressions."""

    key: int  # identifies the loop op within its kernel
    lb: Expr
    ub: Expr
    step: int


@dataclass(frozen=True)
class Bound:
    """Axis ``axis`` of argument ``arg`` is indexed at ``i + offset`` for every index ``i``
    of loop ``over`` (at ``offset`` alone when ``over`` is None), and ``lanes`` more
    elements for a vector access, whenever every loop of ``guards`` runs."""

    arg: int
    axis: int
    over: Loop | None
    offset: Expr
    lanes: int
    guards: tuple[Loop, ...]

    @property
    def simple_source(self) -> tuple[int, int] | None:
        """``(arg, axis)`` when the bound is just "size >= that size" (``for i < n: x[i]``)."""
        o = self.over
        if (o is not None and o.lb == _ZERO and o.step == 1 and self.offset == _ZERO
                and self.lanes == 0 and o.ub[0] == "dim"):
            return (o.ub[1], o.ub[2])
        return None


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
        # id(value) -> ("exact", Expr) | ("iv", Loop, Expr) | ("?", frozenset of loop keys)
        self.known: dict[int, tuple] = {}
        self.bounds: set[Bound] = set()

    def get(self, v: Value) -> tuple:
        return self.known.get(id(v), ("?", frozenset()))

    @staticmethod
    def deps(d: tuple) -> frozenset:
        if d[0] == "iv":
            return frozenset({d[1].key})
        return d[1] if d[0] == "?" else frozenset()

    def scalar(self, op: Op) -> None:
        """Record what an op computes, as a size expression when it is one."""
        ds = [self.get(v) for v in op.operands]
        out: tuple | None = None
        if op.name == "loop.const":
            v = op.attrs.get("value")
            if isinstance(v, int) and not isinstance(v, bool):
                out = ("exact", ("c", v))
        elif op.name == "loop.dim" and id(op.operands[0]) in self.args:
            out = ("exact", ("dim", self.args[id(op.operands[0])], op.attrs["axis"]))
        elif op.name == "loop.cast" and len(ds) == 1 and ds[0][0] == "exact":
            out = ds[0]
        elif op.name == "loop.select" and all(d[0] == "exact" for d in ds):
            out = ("exact", ("select", ds[0][1], ds[1][1], ds[2][1]))
        elif op.name in _ARITH and len(ds) == 2:
            (ka, a), (kb, b) = (d[:2] for d in ds)
            fn = _ARITH[op.name]
            if ka == "exact" and kb == "exact":
                out = ("exact", _fold(fn, a, b))
            elif fn in ("add", "sub") and ka == "iv" and kb == "exact":
                out = ("iv", a, _fold(fn, ds[0][2], b))
            elif fn == "add" and ka == "exact" and kb == "iv":
                out = ("iv", b, _fold("add", ds[1][2], a))
        if out is None:
            deps = frozenset().union(*(self.deps(d) for d in ds)) if ds else frozenset()
            out = ("?", deps)
        for r in op.results:
            self.known[id(r)] = out

    def access(self, op: Op, guards: tuple[Loop, ...], unknown: tuple[frozenset, ...]) -> None:
        pos = _ACCESS[op.name]
        buf = op.operands[pos]
        if id(buf) not in self.args:
            return
        arg = self.args[id(buf)]
        t = self.types[arg]
        indices = op.operands[pos + 1:]
        width = op.attrs.get("width", 1) if op.name in ("loop.vload", "loop.vstore") else 1
        for axis, v in enumerate(indices):
            if t.strides is not None and t.strides[axis] == 0:
                continue  # every index reads element 0 of a broadcast axis
            lanes = width - 1 if axis == len(indices) - 1 else 0
            d = self.get(v)
            if d[0] == "exact":
                if unknown:
                    continue  # a guard we cannot evaluate may be what keeps it in range
                bound = Bound(arg, axis, None, d[1], lanes, guards)
            elif d[0] == "iv":
                if any(d[1].key in deps for deps in unknown):
                    continue  # a guard narrows this loop's range in a way we cannot see
                bound = Bound(arg, axis, d[1], d[2], lanes, guards)
            else:
                continue
            if not _always_true(bound, t):
                self.bounds.add(bound)

    def block(self, block: Block, guards: tuple[Loop, ...], unknown: tuple[frozenset, ...],
              around: tuple[int, ...]) -> None:
        for op in block.ops:
            if op.name in _ACCESS:
                self.access(op, guards, unknown)
            elif op.name in _LOOPS:
                self.loop(op, guards, unknown, around)
            elif op.regions:  # an op with regions we do not know: nothing inside is checked
                for r in op.results:
                    self.known[id(r)] = ("?", frozenset(around))
            else:
                self.scalar(op)

    def loop(self, op: Op, guards: tuple[Loop, ...], unknown: tuple[frozenset, ...],
             around: tuple[int, ...]) -> None:
        lb, ub, step = (self.get(op.operands[i]) for i in range(3))
        key = id(op)
        body = op.regions[0]
        inner_around = around + (key,)
        if (lb[0] == "exact" and ub[0] == "exact" and step[0] == "exact"
                and step[1][0] == "c" and step[1][1] > 0):
            loop = Loop(key, lb[1], ub[1], step[1][1])
            self.known[id(body.args[0])] = ("iv", loop, _ZERO)
            inner_guards, inner_unknown = guards + (loop,), unknown
        else:
            deps = self.deps(lb) | self.deps(ub) | self.deps(step) | {key}
            self.known[id(body.args[0])] = ("?", deps)
            inner_guards, inner_unknown = guards, unknown + (deps,)
        for a in body.args[1:]:  # values carried from iteration to iteration
            self.known[id(a)] = ("?", frozenset(inner_around))
        self.block(body, inner_guards, inner_unknown, inner_around)
        for r in op.results:
            self.known[id(r)] = ("?", frozenset(inner_around))


def _fold(fn: str, a: Expr, b: Expr) -> Expr:
    """``(fn, a, b)``, computed now when both are constants (``i + 0`` stays ``i``)."""
    if a[0] == "c" and b[0] == "c" and fn in ("add", "sub", "mul"):
        x, y = a[1], b[1]
        return ("c", x + y if fn == "add" else x - y if fn == "sub" else x * y)
    if fn in ("add", "sub") and b == _ZERO:
        return a
    if fn == "add" and a == _ZERO:
        return b
    return (fn, a, b)


def _always_true(b: Bound, t: MemRefType) -> bool:
    """A bound that holds for every call: a loop up to this very size, or constants inside
    a static size."""
    o = b.over
    if (o is not None and o.ub == ("dim", b.arg, b.axis) and b.offset == _ZERO
            and b.lanes == 0 and o.lb[0] == "c" and o.lb[1] >= 0):
        return True
    size = t.shape[b.axis]
    if size is None or b.offset[0] != "c":
        return False
    if o is None:
        return 0 <= b.offset[1] and b.offset[1] + b.lanes < size
    return (o.lb[0] == "c" and o.ub[0] == "c" and o.lb[1] + b.offset[1] >= 0
            and o.ub[1] - 1 + b.offset[1] + b.lanes < size)


def derive_bounds(graph: Graph) -> tuple[Bound, ...]:
    """The bounds a kernel's accesses imply, in a stable order."""
    a = _Analysis(graph)
    a.block(graph.body, (), (), ())
    return tuple(sorted(a.bounds, key=repr))


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _crem(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _py(e: Expr) -> str:
    """Python source computing size expression ``e`` from shapes ``s<arg>``."""
    if e[0] == "c":
        return str(e[1])
    if e[0] == "dim":
        return f"s{e[1]}[{e[2]}]"
    if e[0] == "select":
        return f"({_py(e[2])} if {_py(e[1])} else {_py(e[3])})"
    return _PY[e[0]].format(_py(e[1]), _py(e[2]))


def describe_expr(e: Expr) -> str:
    """A size expression in words, for error messages."""
    if e[0] == "c":
        return str(e[1])
    if e[0] == "dim":
        return f"size(arg {e[1]}, axis {e[2]})"
    if e[0] == "select":
        return f"({describe_expr(e[2])} if {describe_expr(e[1])} else {describe_expr(e[3])})"
    return f"{e[0]}({describe_expr(e[1])}, {describe_expr(e[2])})"


class BoundsCheck:
    """Checks a kernel's bounds on the buffers of one call; raises before any access.

    ``simple`` lists ``(arg, axis, src_arg, src_axis)``: "size(arg, axis) >=
    size(src_arg, src_axis)" suffices for those bounds, the common elementwise
    case that the generated argument check tests inline; ``check_general`` does
    the others and ``__call__`` evaluates all of them exactly.
    """

    def __init__(self, bounds: Sequence[Bound], kernel: str, types: Sequence[MemRefType]):
        self.kernel = kernel
        self.types = list(types)
        self.bounds = tuple(bounds)
        simple, general = [], []
        for b in self.bounds:
            src = b.simple_source
            if src is not None:
                simple.append((b.arg, b.axis) + src)
            else:
                general.append(b)
        self.simple = tuple(simple)
        self.general = tuple(general)
        self._all = self._generate(self.bounds)
        self.check_general = self._generate(self.general)

    def __call__(self, arrays: Sequence[Any]) -> None:
        self._all(arrays)

    def _generate(self, bounds: Sequence[Bound]):
        """A function of the buffers that checks ``bounds`` (straight-line Python)."""
        used = sorted({b.arg for b in bounds} | {int(x) for b in bounds for x in _dims(b)})
        lines = [f"s{i} = xs[{i}].shape" for i in used]
        for k, b in enumerate(bounds):
            runs = [f"{_py(g.ub)} > {_py(g.lb)}" for g in b.guards]
            if b.over is None:
                lo = hi_base = _py(b.offset)
            else:
                o = b.over
                lo = f"{_py(o.lb)} + {_py(b.offset)}"
                hi_base = (f"{_py(o.lb)} + ({_py(o.ub)} - {_py(o.lb)} - 1) // {o.step} * {o.step}"
                           f" + {_py(b.offset)}")
            size = f"s{b.arg}[{b.axis}]"
            lines += ["try:",
                      f"    if {' and '.join(runs) or 'True'}:",
                      f"        lo = {lo}",
                      f"        hi = {hi_base} + {b.lanes}",
                      f"        if not (0 <= lo and hi < {size}) and not ("
                      f"xs[{b.arg}].strides[{b.axis}] == 0 and {size} >= 1):",
                      f"            fail({k}, lo, hi, xs)",
                      "except ZeroDivisionError:",
                      "    pass"]
        src = "def check(xs):\n" + "".join(f"    {line}\n" for line in lines or ["pass"])
        env = {"cdiv": _cdiv, "crem": _crem, "fail": self._failer(bounds)}
        exec(compile(src, f"<lamina bounds @{self.kernel}>", "exec"), env)
        fn = env["check"]
        fn.source = src
        return fn

    def _failer(self, bounds: Sequence[Bound]):
        def fail(k: int, lo: int, hi: int, arrays: Sequence[Any]) -> None:
            b = bounds[k]
            how = ""
            if b.over is not None:
                how = (f" (a loop from {describe_expr(b.over.lb)} to "
                       f"{describe_expr(b.over.ub)} step {b.over.step})")
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ArgumentMismatch(
                f"kernel @{self.kernel}: argument {b.arg} ({self.types[b.arg]}) has size "
                f"{arrays[b.arg].shape[b.axis]} on axis {b.axis} but the kernel indexes it from "
                f"{lo} to {hi}{how}; buffer shapes: {shapes}")
        return fail


def _dims(b: Bound) -> set[int]:
    """The arguments whose sizes a bound's expressions read."""
    out: set[int] = set()

    def walk(e: Expr) -> None:
        if e[0] == "dim":
            out.add(e[1])
        elif e[0] != "c":
            for x in e[1:]:
                walk(x)

    walk(b.offset)
    for g in b.guards + ((b.over,) if b.over is not None else ()):
        walk(g.lb)
        walk(g.ub)
    return out
