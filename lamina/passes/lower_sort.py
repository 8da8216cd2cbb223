"""The kernel of ``prim.argsort``: a stable bottom-up merge sort of each line, O(n log n).

Lines along the axis are independent and split over threads. A line starts as
the identity permutation in ``out`` beside a copy of its keys in ``keys``; each
pass merges runs of width ``w`` of (index, key) pairs from one pair of buffers
into the other (``out``/``keys`` -> ``scratch``/``keys_scratch``, then back
with ``2w``), so after every pair of passes the line is back in ``out`` and
runs are four times longer. The second pass of the last pair may find one run
only: it then copies. The scratch buffers have the operand's shape; the
program allocates them for the call. Keys travel with their indices, so every
read is sequential (no gathers through the permutation).

Merging takes the left element unless the right one sorts strictly before it,
which keeps equal elements in their order. Keys are f32 for f16/bf16 and i32
for i1; NaN sorts after every number (first when descending), as in PyTorch.
Every position read is clamped into its run: no address depends on the data.
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
    shape = prim.result.type.shape
    key_t = _key_type(prim.operands[0].type.dtype)
    out = alloc(pb, TensorType(shape, i64), x, fusion)
    buffers = [x, out, alloc(pb, TensorType(shape, i64), x, fusion),
               alloc(pb, TensorType(shape, key_t), x, fusion),
               alloc(pb, TensorType(shape, key_t), x, fusion)]
    kernel, kb = new_kernel(module, fusion, buffers, ["x", "out", "scratch", "keys",
                                                      "keys_scratch"])
    k_x, k_out, k_tmp, k_keys, k_keys_tmp = kernel.args
    sizes = dims(kb, k_out)
    n = sizes[axis]
    one = kb.index(1)

    def line(idx: list[Value | None]) -> None:
        def load(buf: Value, pos: Value) -> Value:
            return kb.load(buf, at(idx, axis, pos), reuse=False)

        def merge_pass(src: tuple[Value, Value], dst: tuple[Value, Value], w: Value) -> None:
            step = kb.emit("loop.add", w, w)
            with kb.loop(kb.index(0), n, step) as blk:
                lo = blk.iv
                mid = kb.emit("loop.min", kb.emit("loop.add", lo, w), n)
                hi = kb.emit("loop.min", kb.emit("loop.add", lo, step), n)
                last = kb.emit("loop.sub", hi, one)
                right = kb.emit("loop.min", mid, last)
                heads = [load(src[0], lo), load(src[1], lo), load(src[0], right),
                         load(src[1], right)]
                # the heads of both runs ride along: one position is read per element
                with kb.loop(lo, hi, one, [lo, mid, *heads]) as m:
                    i, j, a, ka, b, kb_ = m.args
                    right_first = kb.emit("loop.or", kb.emit("loop.ge", i, mid),
                                          _before(kb, kb_, ka, descending))
                    take = kb.emit("loop.and", kb.emit("loop.lt", j, hi), right_first)
                    kb.store(kb.emit("loop.select", take, b, a), dst[0], at(idx, axis, m.iv))
                    kb.store(kb.emit("loop.select", take, kb_, ka), dst[1],
                             at(idx, axis, m.iv))
                    t = cast(kb, take, index)
                    i = kb.emit("loop.add", i, kb.emit("loop.sub", one, t))
                    j = kb.emit("loop.add", j, t)
                    nxt = kb.emit("loop.min", kb.emit("loop.select", take, j, i), last)
                    v, kv = load(src[0], nxt), load(src[1], nxt)
                    m.yield_([i, j, kb.emit("loop.select", take, a, v),
                              kb.emit("loop.select", take, ka, kv),
                              kb.emit("loop.select", take, v, b),
                              kb.emit("loop.select", take, kv, kb_)])

        with kb.loop(kb.index(0), n, one) as lp:
            here = at(idx, axis, lp.iv)
            kb.store(cast(kb, lp.iv, i64), k_out, here)
            kb.store(cast(kb, kb.load(k_x, here), key_t), k_keys, here)
        with kb.loop(kb.index(0), kb.index(MAX_PASS_PAIRS), one, [one]) as pairs:
            (w,) = pairs.args
            with if_(kb, kb.emit("loop.lt", w, n)):
                merge_pass((k_out, k_keys), (k_tmp, k_keys_tmp), w)
                merge_pass((k_tmp, k_keys_tmp), (k_out, k_keys), kb.emit("loop.add", w, w))
            pairs.yield_([kb.emit("loop.mul", w, kb.index(4))])

    lines(kb, sizes, axis, line)
    kb.finish()
    call(pb, kernel, buffers, fusion)
    return out
