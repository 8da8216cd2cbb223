"""The kernel of ``prim.argsort``: a stable bottom-up merge sort of each line, O(n log n).

Lines along the axis are independent and split over threads. A line starts as
the identity permutation in ``out``; each pass merges runs of width ``w`` from
one buffer into the other (``out`` -> ``scratch``, then ``scratch`` -> ``out``
with ``2w``), so after every pair of passes the line is back in ``out`` and
runs are four times longer. The second pass of the last pair may find one run
only: it then copies. ``scratch`` is an i64 buffer of the operand's shape that
the program allocates for the call.

Merging takes the left element unless the right one sorts strictly before it,
which keeps equal elements in their order. Keys are compared in f32 for
f16/bf16 and as i32 for i1; NaN sorts after every number (first when
descending), as in PyTorch. Run positions are clamped into the run and the
permutation's entries into the line before any load.
"""

from __future__ import annotations

from lamina.ir.core import Module, Op, Value
from lamina.ir.types import TensorType, i32, i64, index
from lamina.passes.loop_builder import KernelBuilder
from lamina.passes.lower_index import (
    alloc,
    at,
    call,
    cast,
    custom_kernel,
    dims,
    if_,
    lines,
    new_kernel,
    operand_buffers,
)
from lamina.passes.lower_reduce import accumulator_type

# pairs of passes tried per line: widths 1, 4, 16, ... 4**30 cover any line that fits memory
MAX_PASS_PAIRS = 31


def _key_type(dtype):
    return i32 if dtype.is_bool else accumulator_type(dtype)


def _before(kb: KernelBuilder, p: Value, q: Value, descending: bool) -> Value:
    """Whether key ``p`` sorts strictly before key ``q`` (NaN largest)."""
    strict = kb.emit("loop.gt" if descending else "loop.lt", p, q)
    if not p.type.is_float:
        return strict
    nan_p, nan_q = kb.emit("loop.isnan", p), kb.emit("loop.isnan", q)
    if descending:
        nan_first = kb.emit("loop.and", nan_p, kb.emit("loop.not", nan_q))
    else:
        nan_first = kb.emit("loop.and", nan_q, kb.emit("loop.not", nan_p))
    return kb.emit("loop.or", strict, nan_first)


@custom_kernel("prim.argsort")
def lower_argsort(prim: Op, fusion: Op, inputs: list[Value], pb: KernelBuilder,
                  module: Module) -> Value:
    (x,) = operand_buffers(prim, fusion, inputs)
    axis, descending = prim.attrs["axis"], prim.attrs["descending"]
    out_t = prim.result.type
    out = alloc(pb, out_t, x, fusion)
    scratch = alloc(pb, TensorType(out_t.shape, i64), x, fusion)
    kernel, kb = new_kernel(module, fusion, [x, out, scratch], ["x", "out", "scratch"])
    k_x, k_out, k_tmp = kernel.args
    key_t = _key_type(prim.operands[0].type.dtype)
    sizes = dims(kb, k_out)
    n = sizes[axis]
    one = kb.index(1)

    def line(idx: list[Value | None]) -> None:
        def key(pos: Value) -> Value:
            j = kb.emit("loop.max", kb.emit("loop.min", cast(kb, pos, index),
                                            kb.emit("loop.sub", n, one)), kb.index(0))
            return cast(kb, kb.load(k_x, at(idx, axis, j)), key_t)

        def merge_pass(src: Value, dst: Value, w: Value) -> None:
            step = kb.emit("loop.add", w, w)
            with kb.loop(kb.index(0), n, step) as blk:
                lo = blk.iv
                mid = kb.emit("loop.min", kb.emit("loop.add", lo, w), n)
                hi = kb.emit("loop.min", kb.emit("loop.add", lo, step), n)
                last = kb.emit("loop.sub", hi, one)
                with kb.loop(lo, hi, one, [lo, mid]) as m:
                    i, j = m.args
                    a = kb.load(src, at(idx, axis, kb.emit("loop.min", i, last)), reuse=False)
                    b = kb.load(src, at(idx, axis, kb.emit("loop.min", j, last)), reuse=False)
                    left_done = kb.emit("loop.ge", i, mid)
                    right_first = kb.emit("loop.or", left_done,
                                          _before(kb, key(b), key(a), descending))
                    take = kb.emit("loop.and", kb.emit("loop.lt", j, hi), right_first)
                    kb.store(kb.emit("loop.select", take, b, a), dst, at(idx, axis, m.iv))
                    t = cast(kb, take, index)
                    m.yield_([kb.emit("loop.add", i, kb.emit("loop.sub", one, t)),
                              kb.emit("loop.add", j, t)])

        with kb.loop(kb.index(0), n, one) as lp:
            kb.store(cast(kb, lp.iv, i64), k_out, at(idx, axis, lp.iv))
        with kb.loop(kb.index(0), kb.index(MAX_PASS_PAIRS), one, [one]) as pairs:
            (w,) = pairs.args
            with if_(kb, kb.emit("loop.lt", w, n)):
                merge_pass(k_out, k_tmp, w)
                merge_pass(k_tmp, k_out, kb.emit("loop.add", w, w))
            pairs.yield_([kb.emit("loop.mul", w, kb.index(4))])

    lines(kb, sizes, axis, line)
    kb.finish()
    call(pb, kernel, [x, out, scratch], fusion)
    return out
