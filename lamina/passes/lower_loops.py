"""``lower-loops``: prim-stage funcs -> one kernel per fusion group plus the program that runs them.

Each ``prim.fusion`` becomes ``kernel @<group name>(inputs..., out)``: memref
arguments for the group's distinct inputs, then its output, which the kernel
writes. The func becomes a program of ``loop.dim`` (for the ``?`` sizes of its
buffers), ``loop.alloc`` (each group's output, contiguous), ``loop.call`` and
``return`` (see docs/contracts.md, "Stages"). A multi-output group (``fuse``'s
merged elementwise groups) becomes one kernel with one output argument per
result, written in one loop nest.

Kernel shapes: the outermost loop is a ``loop.parallel`` over the first output
axis, inner ``loop.for`` loops cover the others, the innermost one runs along
the last (contiguous) axis. Values are computed by index remapping
(``lower_eval``); reductions inline their accumulation loops
(``lower_reduce``); a ``dot_general`` with a plain matrix product structure
gets a register-tiled kernel (``lower_dot``). Groups whose reductions keep the
last axis store whole vectors along it, since LLVM cannot turn the reduction
loop inside out to vectorize there itself.

Program arguments take their layouts from ``arg_layouts`` (eager
specialisation): per argument, a stride pattern of 0 (broadcast axis), 1 (unit
stride) or None (known at run time); None for an argument, or no
``arg_layouts``, means a contiguous buffer.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable

from lamina.ir.core import Block, Graph, IRError, Module, Op, Return, SymbolRef, Value
from lamina.ir.dialects import loop as L
from lamina.ir.dialects import prim as P
from lamina.ir.types import MemRefType, TensorType
from lamina.passes import lower_dot
from lamina.passes.loop_builder import KernelBuilder, NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane, index_key
from lamina.passes.lower_shapes import ShapeSolver
from lamina.passes.manager import Pass, register_pass
from lamina.passes.output_nest import emit_gpu_nest, emit_output_nest, vectorize_output

Layout = tuple[int | None, ...] | None
OUTPUT_VECTORS = 16  # registers of lanes per step when a reduction keeps the last axis
ROW_INLINE = True  # target="cpu": row reductions computed by the kernels reading them
# target="cpu": short trailing static axes of plain kernels run as one loop (output_nest)
FLATTEN = True


@register_pass
@dataclass(frozen=True)
class LowerLoops(Pass):
    """Lower every prim-stage func of a module to kernels and a program."""

    name = "lower-loops"
    arg_layouts: tuple[Layout, ...] | None = None
    target: str = "cpu"  # "cuda": GPU-shaped loops (see module docstring)

    def __post_init__(self) -> None:
        if self.target not in ("cpu", "cuda"):
            raise ValueError(f"lower-loops: unknown target {self.target!r}; expected 'cpu' "
                             "or 'cuda'")
        if self.arg_layouts is not None:
            object.__setattr__(self, "arg_layouts", tuple(
                None if p is None else tuple(p) for p in self.arg_layouts))

    def run(self, module: Module) -> Module:
        out = Module()
        programs = []
        for g in module.graphs:
            if g.kind == "kernel":
                out.add(g)
                continue
            programs.append(lower_func(g, self.arg_layouts, out, self.target))
        for p in programs:
            out.add(p)
        return out


# -- the program ---------------------------------------------------------------------
def memref_for(t: TensorType, layout: Layout, what: str) -> MemRefType:
    """The buffer type of a program argument of tensor type ``t`` with stride pattern ``layout``."""
    if not isinstance(t, TensorType):
        raise IRError(f"lower-loops: {what} must be a tensor, got {t}")
    if layout is None:
        return MemRefType(t.shape, t.dtype)
    if len(layout) != t.rank or any(s not in (0, 1, None) for s in layout):
        raise IRError(f"lower-loops: {what} of type {t} has stride pattern {layout}; expected "
                      f"{t.rank} entries each 0, 1 or None")
    return MemRefType(t.shape, t.dtype, tuple(layout))


def lower_func(g: Graph, arg_layouts: tuple[Layout, ...] | None, module: Module,
               target: str = "cpu") -> Graph:
    """Add the kernels of func ``g`` to ``module`` and return its program func."""
    if arg_layouts is not None and len(arg_layouts) != len(g.args):
        raise IRError(f"lower-loops: @{g.name} has {len(g.args)} arguments but arg_layouts "
                      f"gives {len(arg_layouts)} stride patterns")
    layouts = arg_layouts or (None,) * len(g.args)
    types = [memref_for(a.type, lay, f"argument {i} of @{g.name}")
             for i, (a, lay) in enumerate(zip(g.args, layouts))]
    program = Graph(g.name, types, [a.hint for a in g.args], kind="func")
    pb = KernelBuilder(program)
    buffers: dict[int, Value] = {id(a): b for a, b in zip(g.args, program.args)}
    rows = _RowInliner(g, buffers, pb, module, target)
    for op in g.ops:
        if isinstance(op, Return):
            program.body.append(Return([_buffer(buffers, v, g) for v in op.operands], [],
                                       loc=op.loc))
            break
        if not isinstance(op, P.Fusion):
            raise IRError(f"lower-loops: @{g.name} must hold only prim.fusion ops and return "
                          f"(run decompose and fuse first), found {op.where()}")
        if len(op.results) > 1:
            for r, buf in zip(op.results, rows.lower_multi(op)):
                buffers[id(r)] = buf
            continue
        if rows.defer(op):
            continue
        buffers[id(op.result)] = rows.lower(op)
    else:
        raise IRError(f"lower-loops: @{g.name} does not end with return")
    return program


class _InlineFailed(Exception):
    """A consumer read a row-inlined reduction somewhere else than once per row."""


class _RowInliner:
    """Row reductions computed inside the kernels that read them (target="cpu").

    A group whose result is a reduction over its operand's last axis (a row
    max, sum, mean, variance), static-shaped and not returned, gets no kernel of
    its own at first: each kernel reading it computes it once per row, at the
    top of its row loop, where the row still sits in L1 for the pass that
    follows. Softmax and LayerNorm become one kernel and one sweep over memory
    instead of three. When a consumer reads the value anywhere else (another
    index, inside its inner loop), that consumer is lowered again with the
    reduction materialized as before: inlining never multiplies work.
    """

    def __init__(self, g: Graph, buffers: dict[int, Value], pb: KernelBuilder,
                 module: Module, target: str):
        self.g, self.buffers, self.pb, self.module, self.target = g, buffers, pb, module, target
        ret = g.ops[-1] if g.ops and isinstance(g.ops[-1], Return) else None
        self.returned = {id(v) for v in ret.operands} if ret is not None else set()
        self.pending: dict[int, Op] = {}  # result id -> its deferred group
        self.order = {id(op): k for k, op in enumerate(g.ops)}

    def defer(self, op: Op) -> bool:
        if (not ROW_INLINE or self.target != "cpu" or id(op.result) in self.returned
                or not _row_reduction(op)):
            return False
        self.pending[id(op.result)] = op
        return True

    def lower(self, op: Op) -> Value:
        """The buffer of group ``op``: its kernel, alloc and call added now."""
        producers = self._reachable(op)
        if producers:
            try:
                return _lower_group(op, self._sources(op), self.pb, self.module, self.target,
                                    [(p, self._sources(p)) for p in producers])
            except _InlineFailed:
                pass
        for v in op.operands:
            if id(v) in self.pending and id(v) not in self.buffers:
                self.buffers[id(v)] = self.lower(self.pending[id(v)])
        return _lower_group(op, self._sources(op), self.pb, self.module, self.target)

    def lower_multi(self, op: Op) -> list[Value]:
        """The buffers of multi-output group ``op``: deferred inputs materialized first."""
        for v in op.operands:
            if id(v) in self.pending and id(v) not in self.buffers:
                self.buffers[id(v)] = self.lower(self.pending[id(v)])
        return _lower_multi_group(op, self._sources(op), self.pb, self.module, self.target)

    def _sources(self, op: Op) -> list[Value | Op]:
        """Per operand of ``op``: its buffer, or the deferred group computing it."""
        out: list[Value | Op] = []
        for v in op.operands:
            if id(v) in self.buffers:
                out.append(self.buffers[id(v)])
            elif id(v) in self.pending:
                out.append(self.pending[id(v)])
            else:
                out.append(_buffer(self.buffers, v, self.g))
        return out

    def _reachable(self, op: Op) -> list[Op]:
        """Deferred groups ``op`` would compute itself, producers first."""
        if any(o.has("opaque") for o in op.regions[0].ops):
            return []
        found: dict[int, Op] = {}
        stack = [op]
        while stack:
            for v in stack.pop().operands:
                if id(v) in self.pending and id(v) not in self.buffers and id(v) not in found:
                    found[id(v)] = self.pending[id(v)]
                    stack.append(found[id(v)])
        return sorted(found.values(), key=lambda p: self.order[id(p)])


class _Structure:
    """Structural keys of region values: equal keys compute equal elements."""

    def __init__(self, binding: dict[int, Value | Op]):
        self.binding = binding
        self.memo: dict[int, tuple] = {}

    def key(self, v: Value) -> tuple:
        k = self.memo.get(id(v))
        if k is None:
            if id(v) in self.binding:
                k = ("arg", id(self.binding[id(v)]))
            elif isinstance(v.owner, Op) and not v.owner.regions and len(v.owner.results) == 1:
                op = v.owner
                k = (op.name, repr(sorted(op.attrs.items())), str(v.type),
                     tuple(self.key(o) for o in op.operands))
            else:
                k = ("value", id(v))
            self.memo[id(v)] = k
        return k


def _size(key: tuple) -> int:
    """How many ops a structural key describes."""
    if key[0] in ("arg", "value"):
        return 0
    return 1 + sum(_size(k) for k in key[3])


def _row_reduction(op: Op) -> bool:
    """A group reducing over its operand's last axis into a static, non-scalar result."""
    region = op.regions[0]
    if len(op.results) != 1 or any(o.has("opaque") for o in region.ops):
        return False
    t = op.result.type
    if not isinstance(t, TensorType) or t.rank == 0 or None in t.shape:
        return False
    reds = [o for o in region.ops if isinstance(o, (P.Reduce, P.ArgReduce, P.DotGeneral))]
    if len(reds) != 1 or not isinstance(reds[0], P.Reduce):
        return False
    red = reds[0]
    return red.operands[0].type.rank - 1 in red.attrs["axes"]


def _buffer(buffers: dict[int, Value], v: Value, g: Graph) -> Value:
    try:
        return buffers[id(v)]
    except KeyError:
        raise IRError(f"lower-loops: @{g.name}: value of type {v.type} is not a func argument "
                      "or a fusion result") from None


def _unique_name(module: Module, name: str) -> str:
    taken = {g.name for g in module.graphs}
    if name not in taken:
        return name
    k = 1
    while f"{name}_{k}" in taken:
        k += 1
    return f"{name}_{k}"


# Kernels of groups holding one ``opaque`` prim, by prim name (``lower_index`` fills it):
# lowering(prim op, fusion op, input buffers, program builder, module) -> output buffer;
# it adds its kernels to the module and their allocs and calls to the program.
LOWERING_TARGET: ContextVar[str] = ContextVar("lowering_target", default="cpu")
CUSTOM_KERNELS: dict[str, Callable[[Op, Op, list[Value], KernelBuilder, Module], Value]] = {}


def _lower_group(op: Op, inputs: list[Value | Op], pb: KernelBuilder, module: Module,
                 target: str = "cpu",
                 producers: list[tuple[Op, list[Value | Op]]] = ()) -> Value:
    """Emit the kernel of one fusion group, and its alloc + call into the program.

    ``producers``: deferred row-reduction groups (``_RowInliner``) that the kernel
    computes itself, producers first, each with its sources (buffers or other
    such groups); an input given as such a group's op rather than a buffer is
    read through it, and the kernel takes the producers' own input buffers.
    """
    region = op.regions[0]
    inner = [o for o in region.ops if o.has("opaque")]
    if inner:
        lowering = CUSTOM_KERNELS.get(inner[0].name)
        if lowering is None:
            raise IRError(f"lower-loops: no kernel for {inner[0].where()}")
        token = LOWERING_TARGET.set(target)  # custom kernels may specialise for the CPU
        try:
            return lowering(inner[0], op, inputs, pb, module)
        finally:
            LOWERING_TARGET.reset(token)
    (result,) = _results(op)
    yielded = region.ops[-1].operands[0]
    name = _unique_name(module, op.attrs["name"])
    distinct: list[Value] = []
    for v in [*inputs, *(v for _, srcs in producers for v in srcs)]:
        if isinstance(v, Value) and all(v is not d for d in distinct):
            distinct.append(v)
    if producers and not distinct:
        raise _InlineFailed("nothing to read")
    out_type = MemRefType(result.type.shape, result.type.dtype)
    hints = [f"in{k}" for k in range(len(distinct))] + ["out"]
    kernel = Graph(name, [v.type for v in distinct] + [out_type], hints, kind="kernel")

    def bind(values: list[Value | Op]) -> list[Value | Op]:
        return [kernel.args[_position(distinct, v)] if isinstance(v, Value) else v
                for v in values]

    binding = {id(a): v for a, v in zip(region.args, bind(inputs))}
    emit_kernel(kernel, region, yielded, binding, kernel.args[-1], op, target,
                [(p, bind(srcs)) for p, srcs in producers])
    module.add(kernel)

    # a row-inlined input has a static shape: the solver never asks its buffer for a size
    solver = ShapeSolver(region, yielded, pb,
                         {id(a): v if isinstance(v, Value) else distinct[0]
                          for a, v in zip(region.args, inputs)}, what=f"@{name}")
    sizes = [solver.dim(yielded, a) for a, d in enumerate(result.type.shape) if d is None]
    alloc = pb.append(L.Alloc(sizes, [out_type], loc=op.loc))
    pb.append(L.Call([*distinct, alloc.result], [], {"kernel": SymbolRef(name)}, loc=op.loc))
    return alloc.result


def _lower_multi_group(op: Op, inputs: list[Value], pb: KernelBuilder, module: Module,
                       target: str = "cpu") -> list[Value]:
    """One kernel writing every result of a multi-output group (``fuse``'s merged
    elementwise groups: results of one static shape), its allocs and its call."""
    region = op.regions[0]
    yields = list(region.ops[-1].operands)
    shapes = {r.type.shape for r in op.results}
    if len(shapes) != 1 or None in next(iter(shapes)):
        raise IRError(f"lower-loops: {op.where()}: the results of a multi-output group must "
                      f"have one static shape, got {', '.join(str(r.type) for r in op.results)}")
    name = _unique_name(module, op.attrs["name"])
    distinct: list[Value] = []
    for v in inputs:
        if all(v is not d for d in distinct):
            distinct.append(v)
    out_types = [MemRefType(r.type.shape, r.type.dtype) for r in op.results]
    hints = [f"in{k}" for k in range(len(distinct))] + [f"out{k}" for k in range(len(out_types))]
    kernel = Graph(name, [v.type for v in distinct] + out_types, hints, kind="kernel")
    binding = {id(a): kernel.args[_position(distinct, v)] for a, v in zip(region.args, inputs)}
    emit_multi_kernel(kernel, region, yields, binding, list(kernel.args[len(distinct):]), op,
                      target)
    module.add(kernel)
    allocs = [pb.append(L.Alloc([], [t], loc=op.loc)).result for t in out_types]
    pb.append(L.Call([*distinct, *allocs], [], {"kernel": SymbolRef(name)}, loc=op.loc))
    return allocs


def _results(op: Op) -> list[Value]:
    if len(op.results) != 1:
        raise IRError(f"lower-loops: {op.where()} has {len(op.results)} results; groups have "
                      "exactly one in this version")
    return op.results


def _position(values: list[Value], v: Value) -> int:
    return next(k for k, d in enumerate(values) if d is v)


# -- kernels ---------------------------------------------------------------------------
def vector_width(region: Block) -> int:
    """Lanes per vector: 512 bits over the widest element type of the group (>= 32 bits)."""
    widest = 32
    for v in list(region.args) + [r for op in region.walk() for r in op.results]:
        t = v.type
        if isinstance(t, TensorType):
            widest = max(widest, t.dtype.bits)
    return 512 // widest


def emit_kernel(kernel: Graph, region: Block, yielded: Value, binding: dict[int, Value | Op],
                out: Value, fusion: Op, target: str = "cpu",
                producers: list[tuple[Op, list[Value | Op]]] = ()) -> None:
    """Fill ``kernel`` with the loop nest computing ``yielded`` into ``out``.

    ``target`` is recorded on the evaluator (``ev.target``) for the lowering rules.
    ``binding`` maps region args to kernel args, or to one of ``producers``: row
    reductions computed in this kernel once per row (``_RowInliner``);
    ``_InlineFailed`` when the kernel would need one elsewhere.
    """
    what = f"kernel @{kernel.name}"
    kb = KernelBuilder(kernel, fusion.loc)
    rows = _RowPlan(kb, producers, out, what, target) if producers else None
    loads = {k: v for k, v in binding.items() if isinstance(v, Value)}
    shapes = ShapeSolver(region, yielded, kb, {k: v if isinstance(v, Value) else out
                                               for k, v in binding.items()}, out, what=what)
    ev = Evaluator(kb, shapes, loads, vector_width(region), what, target)
    if rows is not None:
        rows.attach(ev, binding)
        rows.keep_elements(ev, region, binding)
        rows.divisors = ev.row_divisors  # the output's divisions only, not the reductions'
    ops = [op for op in region.ops if not isinstance(op, P.FusionYield)]
    for op in ops:
        if isinstance(op, (P.Fusion, L.LoopOp)) or op.name.startswith("tensor."):
            raise IRError(f"lower-loops: {what}: {op.where()} cannot be part of a fusion group")
    dims = [kb.emit("loop.dim", out, axis=a) if d is None else kb.index(d)
            for a, d in enumerate(out.type.shape)]
    if lower_dot.emit_contraction(ev, ops, yielded, out, dims):
        pass
    elif target == "cuda":
        emit_gpu_nest(ev, [(yielded, out)], dims)
    elif vectorize_output(ops):
        # many registers of lanes: each step of the reduction then reads a long
        # contiguous run of every row it visits, which the hardware prefetches well
        wide = Evaluator(kb, shapes, loads, ev.width * OUTPUT_VECTORS, what, target)
        wide.overrides, wide.row_divisors = ev.overrides, ev.row_divisors
        emit_output_nest([wide, ev, ev], [(yielded, out)], dims, rows)
    else:
        emit_output_nest([ev], [(yielded, out)], dims, rows, flatten=FLATTEN)
    kb.finish()


def emit_multi_kernel(kernel: Graph, region: Block, yields: list[Value],
                      binding: dict[int, Value], outs: list[Value], fusion: Op,
                      target: str = "cpu") -> None:
    """Fill ``kernel`` with one loop nest storing each of ``yields`` into its ``outs`` entry.

    The group is elementwise and its results share one static shape, so every
    result is computed at the same index of the same nest; values they share are
    computed once per index (the builder's memo).
    """
    what = f"kernel @{kernel.name}"
    kb = KernelBuilder(kernel, fusion.loc)
    shapes = ShapeSolver(region, yields[0], kb, binding, outs[0], what=what)
    ev = Evaluator(kb, shapes, binding, vector_width(region), what, target)
    for op in region.ops[:-1]:
        if op.regions or op.has("reduction") or op.has("contraction") or op.has("opaque") \
                or op.name.startswith("tensor."):
            raise IRError(f"lower-loops: {what}: {op.where()} cannot be part of a "
                          "multi-output group")
    dims = [kb.index(d) for d in outs[0].type.shape]
    pairs = list(zip(yields, outs))
    if target == "cuda":
        emit_gpu_nest(ev, pairs, dims)
    else:
        emit_output_nest([ev], pairs, dims, flatten=FLATTEN)
    kb.finish()


class _RowPlan:
    """The row reductions one kernel computes itself, and when it may compute them.

    ``at_row(ivs)`` runs at the top of each loop level of the output nest: each
    reduction whose shape is the output's leading sizes is computed there for
    index ``ivs`` (producers first, so a variance finds its mean). Any other
    read of one of them must find that value (the builder's memo), else
    ``_InlineFailed``: the caller then materializes the reductions instead.
    """

    def __init__(self, kb: KernelBuilder, producers: list[tuple[Op, list[Value | Op]]],
                 out: Value, what: str, target: str):
        self.kb, self.out, self.open = kb, out, False
        self.cursor: tuple | None = None  # the output index being computed, if any
        self.divisors: set[int] = set()  # row values the output may divide by reciprocal
        self.order = [p for p, _ in producers]
        self.evs: dict[int, tuple[Evaluator, Value]] = {}
        self.bindings: dict[int, dict[int, Value | Op]] = {}
        for p, srcs in producers:
            region = p.regions[0]
            y = region.ops[-1].operands[0]
            binding = {id(a): s for a, s in zip(region.args, srcs)}
            shapes = ShapeSolver(region, y, kb, {k: v if isinstance(v, Value) else out
                                                 for k, v in binding.items()},
                                 what=f"{what} (row {p.attrs['name']})")
            sub = Evaluator(kb, shapes, {k: v for k, v in binding.items()
                                         if isinstance(v, Value)},
                            vector_width(region), what, target)
            self.attach(sub, binding)
            self.evs[id(p)] = (sub, y)
            self.bindings[id(p)] = binding

    def keep_elements(self, ev: Evaluator, region: Block, binding: dict[int, Value | Op]) -> None:
        """Compute softmax's exps once: when a row reduction sums (maxes...) values that
        the output also needs at its own index, the reduction stores them into the
        output row as it reads them, and the output's pass loads them back."""
        t = self.out.type
        if None in t.shape:
            return
        want = TensorType(t.shape, t.dtype)
        mine = _Structure(binding)
        ours = {mine.key(v): v for op in region.ops for v in op.results if v.type == want}
        best: tuple[int, Evaluator, Value, Value] | None = None
        for p in self.order:
            sub, _ = self.evs[id(p)]
            reds = [o for o in p.regions[0].ops if isinstance(o, P.Reduce)]
            x = reds[0].operands[0]
            if tuple(reds[0].attrs["axes"]) != (x.type.rank - 1,) or x.type != want \
                    or not isinstance(x.owner, Op):
                continue
            key = _Structure(self.bindings[id(p)]).key(x)
            if key in ours and (best is None or _size(key) > best[0]):
                best = (_size(key), sub, x, ours[key])  # the costliest one to recompute
        if best is not None:
            _, sub, x, target = best
            sub.spills[id(x)] = self._store
            ev.overrides[id(target)] = self._kept(ev, target)

    def _store(self, idx: tuple, e: Value) -> None:
        plain = [i.base if isinstance(i, Lane) else i for i in idx]
        if any(isinstance(i, Lane) for i in idx):
            self.kb.vstore(e, self.out, plain)
        else:
            self.kb.store(e, self.out, plain)

    def _kept(self, ev: Evaluator, v: Value) -> Callable[[tuple], Value]:
        def read(idx: tuple) -> Value:
            if self.cursor is None or index_key(idx) != index_key(self.cursor):
                return ev._rule(v.owner)(ev, v.owner, idx)
            if any(isinstance(i, Lane) for i in idx):
                raise NotVectorizable("kept elements are read back one by one")
            return self.kb.load(self.out, list(idx), reuse=False)
        return read

    def attach(self, ev: Evaluator, binding: dict[int, Value | Op]) -> None:
        """Read the region args bound to producers through this plan."""
        for k, v in binding.items():
            if isinstance(v, Op):
                ev.overrides[k] = self._reader(v)

    def _reader(self, p: Op) -> Callable[[tuple], Value]:
        def read(idx: tuple) -> Value:
            if any(isinstance(i, Lane) for i in idx):
                raise _InlineFailed(f"{p.attrs['name']} read in vector lanes")
            # a size-1 axis is read at 0 (broadcast) or at an index known to be 0
            idx = tuple(self.kb.index(0) if d == 1 else i
                        for i, d in zip(idx, p.result.type.shape))
            key = ("row-inline", id(p), index_key(idx))
            hit = self.kb.memo_get(key)
            if hit is not None:
                return hit[0]
            if not self.open:
                raise _InlineFailed(f"{p.attrs['name']} read inside a row")
            sub, y = self.evs[id(p)]
            r = sub.at(y, idx)
            self.kb.memo_put(key, r, tuple(idx))
            self.divisors.add(id(r))
            return r
        return read

    def at_row(self, ivs: list[Value]) -> None:
        prefix = self.out.type.shape[:len(ivs)]
        self.open = True
        try:
            for p in self.order:
                if p.result.type.shape == prefix:
                    self._reader(p)(tuple(ivs))
        finally:
            self.open = False


from lamina.passes import lower_conv  # noqa: E402, F401, I001  (the conv/pool kernels)
from lamina.passes import lower_index  # noqa: E402, F401  (registers the index prims' kernels)
