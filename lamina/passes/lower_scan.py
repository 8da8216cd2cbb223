"""The kernel of ``prim.cumulative``: an inclusive scan along one axis.

Every line along the axis is independent: the lines are split over threads
(one parallel loop over all of them) and each is scanned sequentially, the
accumulator carried by a ``loop.for`` in the type reductions accumulate in
(f32 for f16/bf16) and each running value stored, cast back, as it goes.
"""

from __future__ import annotations

from lamina.ir.core import Module, Op, Value
from lamina.passes.loop_builder import KernelBuilder
from lamina.passes.lower_index import (
    alloc,
    at,
    call,
    cast,
    custom_kernel,
    dims,
    lines,
    new_kernel,
    operand_buffers,
)
from lamina.passes.lower_reduce import accumulator_type, combine_op, init_value


@custom_kernel("prim.cumulative")
def lower_cumulative(prim: Op, fusion: Op, inputs: list[Value], pb: KernelBuilder,
                     module: Module) -> Value:
    (x,) = operand_buffers(prim, fusion, inputs)
    axis, fn = prim.attrs["axis"], prim.attrs["fn"]
    out = alloc(pb, prim.result.type, x, fusion)
    kernel, kb = new_kernel(module, fusion, [x, out], ["x", "out"])
    k_x, k_out = kernel.args
    dtype = prim.result.type.dtype
    acc_t = accumulator_type(dtype)
    combine = combine_op(fn, acc_t)
    sizes = dims(kb, k_out)

    def line(idx: list[Value | None]) -> None:
        init = kb.const(init_value(fn, acc_t), acc_t)
        with kb.loop(kb.index(0), sizes[axis], kb.index(1), [init]) as lp:
            here = at(idx, axis, lp.iv)
            acc = kb.emit(combine, lp.args[0], cast(kb, kb.load(k_x, here), acc_t))
            kb.store(cast(kb, acc, dtype), k_out, here)
            lp.yield_([acc])

    lines(kb, sizes, axis, line)
    kb.finish()
    call(pb, kernel, [x, out], fusion)
    return out
