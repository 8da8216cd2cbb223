"""Lowering of the index primitives (``lamina.ir.dialects.prim_index``).

``gather`` and ``reverse`` are movement prims: rules of the evaluator
(``lower_eval``) compute them at an index inside elementwise groups. ``gather``
reads its index tensor, clamps the index into the operand's axis and loads
there (the frontend has refused out-of-range indices already; the clamp only
keeps a bad index from reaching memory), guarded when the axis may be empty.

The ``opaque`` prims get kernels of their own, registered in
``lower_loops.CUSTOM_KERNELS``: the scatters (here: a copy kernel, then one
that adds or stores each element, parallel over the axes where two elements
can never meet, skipping indices out of range), ``compact`` (here: one
sequential pass), ``cumulative`` (``lower_scan``) and ``argsort``
(``lower_sort``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lamina.ir.core import Graph, Module, Op, SymbolRef, Value
from lamina.ir.dialects import loop as L
from lamina.ir.dialects import prim_index as PI
from lamina.ir.types import MemRefType, TensorType, i64, index
from lamina.passes import lower_eval
from lamina.passes.loop_builder import KernelBuilder, NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane
from lamina.passes.lower_loops import CUSTOM_KERNELS, _unique_name


# -- movement rules --------------------------------------------------------------------------
def _reverse_at(ev: Evaluator, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    kb = ev.kb
    src = list(idx)
    for a in op.attrs["axes"]:
        last = kb.emit("loop.sub", ev.shapes.dim(x, a), kb.index(1))
        src[a] = kb.emit("loop.sub", last, ev.scalar(idx[a]))
    return ev.at(x, tuple(src))


def _gather_at(ev: Evaluator, op: Op, idx: tuple) -> Value:
    x, ind = op.operands
    axis = op.attrs["axis"]
    kb = ev.kb
    j = ev.at(ind, idx)
    if ev.is_vec(j):
        raise NotVectorizable("gather at a vector of indices")
    n = ev.shapes.dim(x, axis)
    j = ev.clamp(kb.emit("loop.cast", j, dtype=index), True, n)
    src = tuple(j if a == axis else i for a, i in enumerate(idx))
    if x.type.shape[axis] is not None and x.type.shape[axis] >= 1:
        return ev.at(x, src)
    vector = any(isinstance(i, Lane) for i in idx)
    zero = ev.const_like(0, x.type.dtype, vector)
    return ev.guarded(kb.emit("loop.gt", n, kb.index(0)), zero, lambda: ev.at(x, src))


lower_eval.register_rule(PI.Reverse, _reverse_at)
lower_eval.register_rule(PI.Gather, _gather_at)


# -- building custom kernels -----------------------------------------------------------------
Lowering = Callable[[Op, Op, list[Value], KernelBuilder, Module], Value]


def custom_kernel(name: str) -> Callable[[Lowering], Lowering]:
    """Register the lowering of groups holding the opaque prim ``name``."""

    def deco(fn: Lowering) -> Lowering:
        CUSTOM_KERNELS[name] = fn
        return fn

    return deco


def operand_buffers(prim: Op, fusion: Op, inputs: list[Value]) -> list[Value]:
    """The program buffer of each operand of ``prim`` (a group arg of ``fusion``)."""
    args = fusion.regions[0].args
    return [inputs[next(k for k, a in enumerate(args) if a is v)] for v in prim.operands]


def alloc(pb: KernelBuilder, t: TensorType, like: Value | None, fusion: Op) -> Value:
    """A fresh buffer of type ``t`` in the program; its ``?`` sizes are ``like``'s."""
    sizes = [pb.emit("loop.dim", like, axis=a) for a, d in enumerate(t.shape) if d is None]
    op = pb.append(L.Alloc(sizes, [MemRefType(t.shape, t.dtype)], loc=fusion.loc))
    return op.result


def new_kernel(module: Module, fusion: Op, buffers: Sequence[Value], hints: Sequence[str],
               suffix: str = "") -> tuple[Graph, KernelBuilder]:
    """An empty kernel over memrefs of the types of ``buffers``, named after the group."""
    name = _unique_name(module, fusion.attrs["name"] + suffix)
    kernel = Graph(name, [b.type for b in buffers], list(hints), kind="kernel")
    module.add(kernel)
    return kernel, KernelBuilder(kernel, fusion.loc)


def call(pb: KernelBuilder, kernel: Graph, buffers: Sequence[Value], fusion: Op) -> None:
    pb.append(L.Call(list(buffers), [], {"kernel": SymbolRef(kernel.name)}, loc=fusion.loc))


def dims(kb: KernelBuilder, m: Value) -> list[Value]:
    """The sizes of memref ``m`` as index values (constants where static)."""
    return [kb.index(d) if d is not None else kb.emit("loop.dim", m, axis=a)
            for a, d in enumerate(m.type.shape)]


def cast(kb: KernelBuilder, v: Value, dtype) -> Value:
    return kb.emit("loop.cast", v, dtype=dtype)


def if_(kb: KernelBuilder, cond: Value) -> object:
    """``with if_(kb, cond):`` a loop of one trip when ``cond`` holds, else none."""
    return kb.loop(kb.index(0), cast(kb, cond, index), kb.index(1))


def lines(kb: KernelBuilder, sizes: list[Value], axis: int,
          body: Callable[[list[Value | None]], None]) -> None:
    """``body(idx)`` for every line along ``axis`` (``idx[axis]`` is None), the lines split
    over threads: one parallel loop over all of them, unravelled by div/rem."""
    others = [a for a in range(len(sizes)) if a != axis]
    if not others:
        body([None])
        return
    total = sizes[others[0]]
    for a in others[1:]:
        total = kb.emit("loop.mul", total, sizes[a])
    with kb.loop(kb.index(0), total, kb.index(1), parallel=True) as lp:
        idx: list[Value | None] = [None] * len(sizes)
        rest = lp.iv
        for a in reversed(others[1:]):
            idx[a] = kb.emit("loop.rem", rest, sizes[a])
            rest = kb.emit("loop.div", rest, sizes[a])
        idx[others[0]] = rest
        body(idx)


def at(idx: list[Value | None], axis: int, i: Value) -> list[Value]:
    """``idx`` with position ``i`` on ``axis``."""
    return [i if a == axis else v for a, v in enumerate(idx)]


def copy_nest(kb: KernelBuilder, src: Value, dst: Value) -> None:
    """``dst[...] = src[...]`` over ``dst``'s shape, parallel over its first axis."""
    sizes = dims(kb, dst)
    if not sizes:
        kb.store(kb.load(src, []), dst, [])
        return

    def nest(ivs: list[Value]) -> None:
        if len(ivs) == len(sizes):
            kb.store(kb.load(src, ivs), dst, ivs)
            return
        with kb.loop(kb.index(0), sizes[len(ivs)], kb.index(1), parallel=not ivs) as lp:
            nest([*ivs, lp.iv])

    nest([])


# -- scatters ---------------------------------------------------------------------------------
def _scatter(prim: Op, fusion: Op, inputs: list[Value], pb: KernelBuilder,
             module: Module) -> Value:
    base, ind, src = operand_buffers(prim, fusion, inputs)
    axis = prim.attrs["axis"]
    out = alloc(pb, prim.result.type, base, fusion)
    copy, kb = new_kernel(module, fusion, [base, out], ["base", "out"], "_copy")
    copy_nest(kb, copy.args[0], copy.args[1])
    kb.finish()
    call(pb, copy, [base, out], fusion)

    kernel, kb = new_kernel(module, fusion, [ind, src, out], ["index", "src", "out"])
    k_ind, k_src, k_out = kernel.args
    add = prim.name == "prim.scatter_add"
    # index and src share a shape, which is out's off the axis; the smallest of their run-time
    # sizes keeps every access in bounds even if the caller broke that
    sizes = []
    for a, (d_ind, d_src, d_out) in enumerate(zip(dims(kb, k_ind), dims(kb, k_src),
                                                  dims(kb, k_out))):
        d = kb.emit("loop.min", d_ind, d_src)
        sizes.append(d if a == axis else kb.emit("loop.min", d, d_out))
    n_out = dims(kb, k_out)[axis]

    def line(idx: list[Value | None]) -> None:
        with kb.loop(kb.index(0), sizes[axis], kb.index(1)) as lp:
            here = at(idx, axis, lp.iv)
            j = cast(kb, kb.load(k_ind, here), index)
            inside = kb.emit("loop.and", kb.emit("loop.ge", j, kb.index(0)),
                             kb.emit("loop.lt", j, n_out))
            with if_(kb, inside):
                there = at(idx, axis, j)
                value = kb.load(k_src, here)
                if add:
                    value = kb.emit("loop.add", kb.load(k_out, there, reuse=False), value)
                kb.store(value, k_out, there)

    lines(kb, sizes, axis, line)
    kb.finish()
    call(pb, kernel, [ind, src, out], fusion)
    return out


custom_kernel("prim.scatter_add")(_scatter)
custom_kernel("prim.scatter")(_scatter)


# -- compaction ---------------------------------------------------------------------------------
@custom_kernel("prim.compact")
def _compact(prim: Op, fusion: Op, inputs: list[Value], pb: KernelBuilder,
             module: Module) -> Value:
    mask, like = operand_buffers(prim, fusion, inputs)
    out = alloc(pb, prim.result.type, like, fusion)
    kernel, kb = new_kernel(module, fusion, [mask, out], ["mask", "out"])
    k_mask, k_out = kernel.args
    (n,), (m,) = dims(kb, k_mask), dims(kb, k_out)
    with kb.loop(kb.index(0), n, kb.index(1), [kb.index(0)]) as lp:
        (r,) = lp.args
        flag = kb.load(k_mask, [lp.iv])
        with if_(kb, kb.emit("loop.and", flag, kb.emit("loop.lt", r, m))):
            kb.store(cast(kb, lp.iv, i64), k_out, [r])
        lp.yield_([kb.emit("loop.add", r, cast(kb, flag, index))])
    with kb.loop(kb.emit("loop.min", lp.results[0], m), m, kb.index(1)) as rest:
        kb.store(kb.const(0, i64), k_out, [rest.iv])
    kb.finish()
    call(pb, kernel, [mask, out], fusion)
    return out


from lamina.passes import lower_scan, lower_sort  # noqa: E402, F401  (their kernels)
