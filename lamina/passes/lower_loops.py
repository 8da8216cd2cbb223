"""``lower-loops``: prim-stage funcs -> one kernel per fusion group plus the program that runs them.

Each ``prim.fusion`` becomes ``kernel @<group name>(inputs..., out)``: memref
arguments for the group's distinct inputs, then its output, which the kernel
writes. The func becomes a program of ``loop.dim`` (for the ``?`` sizes of its
buffers), ``loop.alloc`` (each group's output, contiguous), ``loop.call`` and
``return`` (see docs/contracts.md, "Stages").

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

from dataclasses import dataclass
from typing import Callable

from lamina.ir.core import Block, Graph, IRError, Module, Op, Return, SymbolRef, Value
from lamina.ir.dialects import loop as L
from lamina.ir.dialects import prim as P
from lamina.ir.types import MemRefType, TensorType
from lamina.passes import lower_dot
from lamina.passes.loop_builder import KernelBuilder, NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane
from lamina.passes.lower_shapes import ShapeSolver
from lamina.passes.manager import Pass, register_pass

Layout = tuple[int | None, ...] | None
OUTPUT_VECTORS = 16  # registers of lanes per step when a reduction keeps the last axis


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
    for op in g.ops:
        if isinstance(op, Return):
            program.body.append(Return([_buffer(buffers, v, g) for v in op.operands], [],
                                       loc=op.loc))
            break
        if not isinstance(op, P.Fusion):
            raise IRError(f"lower-loops: @{g.name} must hold only prim.fusion ops and return "
                          f"(run decompose and fuse first), found {op.where()}")
        inputs = [_buffer(buffers, v, g) for v in op.operands]
        buffers[id(op.result)] = _lower_group(op, inputs, pb, module, target)
    else:
        raise IRError(f"lower-loops: @{g.name} does not end with return")
    return program


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
CUSTOM_KERNELS: dict[str, Callable[[Op, Op, list[Value], KernelBuilder, Module], Value]] = {}


def _lower_group(op: Op, inputs: list[Value], pb: KernelBuilder, module: Module,
                 target: str = "cpu") -> Value:
    """Emit the kernel of one fusion group, and its alloc + call into the program."""
    region = op.regions[0]
    inner = [o for o in region.ops if o.has("opaque")]
    if inner:
        lowering = CUSTOM_KERNELS.get(inner[0].name)
        if lowering is None:
            raise IRError(f"lower-loops: no kernel for {inner[0].where()}")
        return lowering(inner[0], op, inputs, pb, module)
    (result,) = _results(op)
    yielded = region.ops[-1].operands[0]
    name = _unique_name(module, op.attrs["name"])
    distinct: list[Value] = []
    for v in inputs:
        if all(v is not d for d in distinct):
            distinct.append(v)
    out_type = MemRefType(result.type.shape, result.type.dtype)
    hints = [f"in{k}" for k in range(len(distinct))] + ["out"]
    kernel = Graph(name, [v.type for v in distinct] + [out_type], hints, kind="kernel")
    binding = {id(a): kernel.args[_position(distinct, v)] for a, v in zip(region.args, inputs)}
    emit_kernel(kernel, region, yielded, binding, kernel.args[-1], op, target)
    module.add(kernel)

    solver = ShapeSolver(region, yielded, pb,
                         {id(a): v for a, v in zip(region.args, inputs)}, what=f"@{name}")
    sizes = [solver.dim(yielded, a) for a, d in enumerate(result.type.shape) if d is None]
    alloc = pb.append(L.Alloc(sizes, [out_type], loc=op.loc))
    pb.append(L.Call([*distinct, alloc.result], [], {"kernel": SymbolRef(name)}, loc=op.loc))
    return alloc.result


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


def emit_kernel(kernel: Graph, region: Block, yielded: Value, binding: dict[int, Value],
                out: Value, fusion: Op, target: str = "cpu") -> None:
    """Fill ``kernel`` with the loop nest computing ``yielded`` into ``out``.

    ``target`` is recorded on the evaluator (``ev.target``) for the lowering rules.
    """
    what = f"kernel @{kernel.name}"
    kb = KernelBuilder(kernel, fusion.loc)
    shapes = ShapeSolver(region, yielded, kb, binding, out, what=what)
    ev = Evaluator(kb, shapes, binding, vector_width(region), what, target)
    ops = [op for op in region.ops if not isinstance(op, P.FusionYield)]
    for op in ops:
        if isinstance(op, (P.Fusion, L.LoopOp)) or op.name.startswith("tensor."):
            raise IRError(f"lower-loops: {what}: {op.where()} cannot be part of a fusion group")
    dims = [kb.emit("loop.dim", out, axis=a) if d is None else kb.index(d)
            for a, d in enumerate(out.type.shape)]
    if lower_dot.emit_contraction(ev, ops, yielded, out, dims):
        pass
    elif target == "cuda":
        emit_gpu_nest(ev, yielded, out, dims)
    elif _vectorize_output(ops):
        # many registers of lanes: each step of the reduction then reads a long
        # contiguous run of every row it visits, which the hardware prefetches well
        wide = Evaluator(kb, shapes, binding, ev.width * OUTPUT_VECTORS, what, target)
        emit_output_nest([wide, ev, ev], yielded, out, dims)
    else:
        emit_output_nest([ev], yielded, out, dims)
    kb.finish()


def emit_gpu_nest(ev: Evaluator, yielded: Value, out: Value, dims: list[Value]) -> None:
    """The GPU shape: scalar code, one trip per output row (or element), no vector tiers.

    Consecutive trips (threads) then touch consecutive addresses, and reductions
    stay plain accumulating ``loop.for`` loops that ``gpu-map`` spreads over the
    lanes of a warp or block. A rank-0 output gets a parallel loop of one trip,
    so its reduction still becomes one cooperative trip.
    """
    kb = ev.kb
    if dims:
        emit_output_nest([ev], yielded, out, dims)
        return
    with kb.loop(kb.index(0), kb.index(1), kb.index(1), parallel=True):
        kb.store(ev.at(yielded, ()), out, [])


def _vectorize_output(ops: list[Op]) -> bool:
    """Store whole vectors along the output's last axis: for reductions that keep it."""
    found = False
    for op in ops:
        if isinstance(op, P.Reduce):
            if op.operands[0].type.rank - 1 in op.attrs["axes"]:
                return False
            found = True
        elif isinstance(op, P.ArgReduce):
            if op.attrs["axis"] == op.operands[0].type.rank - 1:
                return False
            found = True
    return found


def emit_output_nest(evs: list[Evaluator], yielded: Value, out: Value,
                     dims: list[Value]) -> None:
    """``out[i...] = yielded[i...]``: parallel over axis 0, sequential inside.

    ``evs`` ends with the evaluator for scalar code; any before it are vector
    tiers, widest first: the last axis is then stored a vector of each width at a
    time, as far as whole vectors go, then element by element.
    """
    ev = evs[-1]
    kb = ev.kb
    if not dims:
        kb.store(ev.at(yielded, ()), out, [])
        return
    if len(dims) == 1 and len(evs) > 1:
        try:
            _chunked_vector_nest(evs, yielded, out, dims[0])
            return
        except NotVectorizable:
            pass
    with kb.loop(kb.index(0), dims[0], kb.index(1), parallel=True) as lp:
        _inner_nest(evs, yielded, out, dims, [lp.iv])


def _inner_nest(evs: list[Evaluator], yielded: Value, out: Value, dims: list[Value],
                ivs: list[Value]) -> None:
    ev = evs[-1]
    kb = ev.kb
    if len(ivs) == len(dims):
        kb.store(ev.at(yielded, tuple(ivs)), out, ivs)
        return
    if len(evs) > 1 and len(ivs) == len(dims) - 1:
        try:
            _vector_row(evs, yielded, out, ivs, kb.index(0), dims[-1])
            return
        except NotVectorizable:
            pass
    with kb.loop(kb.index(0), dims[len(ivs)], kb.index(1)) as lp:
        _inner_nest([ev], yielded, out, dims, [*ivs, lp.iv])


def _vector_row(evs: list[Evaluator], yielded: Value, out: Value, ivs: list[Value],
                start: Value, end: Value) -> None:
    """``[start, end)`` of the last axis: whole vectors of each width, then a scalar tail."""
    kb = evs[0].kb
    lo = start
    for ev in evs[:-1]:
        w = kb.index(ev.width)
        span = kb.emit("loop.sub", end, lo)
        hi = kb.emit("loop.sub", end, kb.emit("loop.rem", span, w))
        with kb.loop(lo, hi, w) as lp:
            v = ev.splat(ev.at(yielded, (*ivs, Lane(lp.iv))))
            kb.vstore(v, out, [*ivs, lp.iv])
        lo = hi
    scalar = evs[-1]
    with kb.loop(lo, end, kb.index(1)) as lp:
        kb.store(scalar.at(yielded, (*ivs, lp.iv)), out, [*ivs, lp.iv])


def _chunked_vector_nest(evs: list[Evaluator], yielded: Value, out: Value, n: Value) -> None:
    """A 1-d output in parallel chunks of the widest vector."""
    kb, width = evs[0].kb, evs[0].width
    w = kb.index(width)
    chunks = kb.emit("loop.div", kb.emit("loop.add", n, kb.index(width - 1)), w)
    with kb.loop(kb.index(0), chunks, kb.index(1), parallel=True) as lp:
        start = kb.emit("loop.mul", lp.iv, w)
        end = kb.emit("loop.min", kb.emit("loop.add", start, w), n)
        _vector_row(evs, yielded, out, [], start, end)


from lamina.passes import lower_conv  # noqa: E402, F401, I001  (the conv/pool kernels)
from lamina.passes import lower_index  # noqa: E402, F401  (registers the index prims' kernels)
