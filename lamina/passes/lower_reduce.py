"""Reductions, arg-reductions and contractions at an index: accumulation loops.

A reduced value is computed where it is needed: ``loop.for`` nests over the
reduced axes carry the accumulator, the operand's DAG is evaluated inside
(inlined), and the result is cast back to the element type. Accumulators of
f16/bf16 are f32 (the dialect's rule for reductions and contractions).

When the innermost reduced axis is the operand's last axis, the innermost
loop runs on ``vector<W x T>`` accumulators (two of them, unrolled, then one,
then a scalar tail), reduced across lanes once at the end with
``loop.vreduce``, so a row sum streams at memory bandwidth. For
``target="cuda"`` the loop stays a scalar accumulating ``loop.for``: ``gpu-map``
strides it across a warp and combines the lanes with shuffles. In vector mode
(the output's last axis in lanes) the accumulator itself is a vector.
``Evaluator.spills`` may ask for every element a reduction reads (a kernel
keeps softmax's exps in its output instead of computing them twice).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.ir.core import IRError, Op, Value
from lamina.ir.types import ScalarType, VectorType, f32, i32, i64
from lamina.passes.loop_builder import NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane

UNROLL = 2  # vector accumulators in the main loop of a last-axis reduction


def accumulator_type(dtype: ScalarType) -> ScalarType:
    """The type reductions and contractions of ``dtype`` accumulate in."""
    return f32 if dtype.name in ("f16", "bf16") else dtype


def init_value(fn: str, t: ScalarType) -> Any:
    """The identity of ``fn`` in type ``t`` (the result of reducing nothing)."""
    if fn == "sum":
        return 0
    if fn == "prod":
        return 1
    if t.is_bool:
        return fn == "min"
    if t.is_float:
        return float("-inf") if fn == "max" else float("inf")
    info = np.iinfo(t.numpy)
    return int(info.min) if fn == "max" else int(info.max)


def combine_op(fn: str, t: ScalarType) -> str:
    if t.is_bool:
        return {"max": "loop.or", "min": "loop.and"}[fn]
    return {"sum": "loop.add", "prod": "loop.mul", "max": "loop.max", "min": "loop.min"}[fn]


def _has_lane(idx: tuple) -> bool:
    return any(isinstance(i, Lane) for i in idx)


def reduce_at(ev: Evaluator, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    rank = x.type.rank
    axes = sorted(op.attrs["axes"])
    kept = [a for a in range(rank) if a not in axes]
    dtype = x.type.dtype
    acc_t = accumulator_type(dtype)
    fn = op.fn
    if fn in ("sum", "prod") and dtype.is_bool:
        raise IRError(f"lower-loops: {op.where()}: cannot {fn} i1 values")

    def full(ivs: list) -> tuple:
        out: list = [None] * rank
        for a, i in zip(kept, idx):
            out[a] = i
        for a, i in zip(axes, ivs):
            out[a] = i
        return tuple(out)

    sizes = [ev.shapes.dim(x, a) for a in axes]
    lane = _has_lane(idx)
    spill = ev.spills.get(id(x))
    if not lane and axes and axes[-1] == rank - 1 and not acc_t.is_bool \
            and ev.target != "cuda":
        try:
            return ev.cast(_last_axis_vectorized(ev, x, fn, acc_t, full, sizes, spill), dtype)
        except NotVectorizable:
            pass
    combine = combine_op(fn, acc_t)

    def body(ivs: list, accs: list) -> list:
        e = ev.at(x, full(ivs))
        if spill is not None:
            spill(full(ivs), e)
        return [ev.ew(combine, accs[0], ev.cast(e, acc_t))]

    init = ev.const_like(init_value(fn, acc_t), acc_t, lane)
    (acc,) = ev.nest(sizes, [init], body)
    return ev.cast(acc, dtype)


def _last_axis_vectorized(ev: Evaluator, x: Value, fn: str, acc_t: ScalarType, full,
                          sizes: list[Value], spill=None) -> Value:
    kb, width = ev.kb, ev.width
    combine = combine_op(fn, acc_t)
    init = kb.const(init_value(fn, acc_t), acc_t)
    vinit = ev.splat(init)
    vec_t = VectorType(width, acc_t)

    def element(ivs: list, base: Value) -> Value:
        e = ev.splat(ev.at(x, full([*ivs, Lane(base)])))
        if spill is not None:
            spill(full([*ivs, Lane(base)]), e)
        v = ev.splat(ev.cast(e, acc_t))
        if v.type != vec_t:
            raise NotVectorizable(f"vector of {v.type} in a {vec_t} reduction")
        return v

    def body(ivs: list, accs: list) -> list:
        vaccs, sacc = list(accs[:UNROLL]), accs[UNROLL]
        n = sizes[-1]
        big = kb.index(UNROLL * width)
        n_main = kb.emit("loop.sub", n, kb.emit("loop.rem", n, big))
        n_vec = kb.emit("loop.sub", n, kb.emit("loop.rem", n, kb.index(width)))
        with kb.loop(kb.index(0), n_main, big, vaccs) as lp:
            new = []
            for u in range(UNROLL):
                base = kb.emit("loop.add", lp.iv, kb.index(u * width))
                new.append(kb.emit(combine, lp.args[u], element(ivs, base)))
            lp.yield_(new)
        vaccs = list(lp.results)
        with kb.loop(n_main, n_vec, kb.index(width), [vaccs[0]]) as lp:
            lp.yield_([kb.emit(combine, lp.args[0], element(ivs, lp.iv))])
        vaccs[0] = lp.results[0]
        with kb.loop(n_vec, n, kb.index(1), [sacc]) as lp:
            e = ev.at(x, full([*ivs, lp.iv]))
            if ev.is_vec(e):
                raise NotVectorizable("vector in the scalar tail")
            if spill is not None:
                spill(full([*ivs, lp.iv]), e)
            lp.yield_([kb.emit(combine, lp.args[0], ev.cast(e, acc_t))])
        return [*vaccs, lp.results[0]]

    accs = ev.nest(sizes[:-1], [vinit] * UNROLL + [init],
                   lambda ivs, c: body(ivs, c))
    vacc = accs[0]
    for other in accs[1:UNROLL]:
        vacc = kb.emit(combine, vacc, other)
    total = kb.emit("loop.vreduce", vacc, fn=fn)
    return kb.emit(combine, total, accs[UNROLL])


def argreduce_at(ev: Evaluator, op: Op, idx: tuple) -> Value:
    """First index of the max (min); NaN counts as the extreme value, like PyTorch."""
    (x,) = op.operands
    axis = op.attrs["axis"]
    kb = ev.kb
    dtype = x.type.dtype
    cmp_t = i32 if dtype.is_bool else accumulator_type(dtype)
    lane = _has_lane(idx)
    best0 = ev.const_like(init_value(op.fn, cmp_t), cmp_t, lane)
    pos0 = ev.const_like(0, i64, lane)
    before = "loop.gt" if op.fn == "max" else "loop.lt"
    with kb.loop(kb.index(0), ev.shapes.dim(x, axis), kb.index(1), [best0, pos0]) as lp:
        best, pos = lp.args
        src = tuple(lp.iv if a == axis else i for a, i in
                    zip(range(x.type.rank), _insert(idx, axis)))
        v = ev.cast(ev.at(x, src), cmp_t)
        v = ev.splat(v) if lane else v
        take = kb.emit(before, v, best)
        if cmp_t.is_float:
            first_nan = kb.emit("loop.and", kb.emit("loop.isnan", v),
                                kb.emit("loop.not", kb.emit("loop.isnan", best)))
            take = kb.emit("loop.or", take, first_nan)
        k = ev.cast(lp.iv, i64)
        k = ev.splat(k) if lane else k
        lp.yield_([kb.emit("loop.select", take, v, best), kb.emit("loop.select", take, k, pos)])
    return lp.results[1]


def _insert(idx: tuple, axis: int) -> tuple:
    """The result index with a placeholder where the reduced axis goes."""
    return idx[:axis] + (None,) + idx[axis:]


def dot_at(ev: Evaluator, op: Op, idx: tuple) -> Value:
    """One element of a ``dot_general``: a sum of products over the contracted axes
    (for i1, an or of ands)."""
    lhs, rhs = op.operands
    lb, rb = op.attrs["lhs_batch"], op.attrs["rhs_batch"]
    lc, rc = op.attrs["lhs_contract"], op.attrs["rhs_contract"]
    dtype = op.result.type.dtype
    acc_t = accumulator_type(dtype)
    add, mul = ("loop.or", "loop.and") if dtype.is_bool else ("loop.add", "loop.mul")
    nb = len(lb)
    lfree = [a for a in range(lhs.type.rank) if a not in lb + lc]
    rfree = [a for a in range(rhs.type.rank) if a not in rb + rc]
    batch, li, ri = idx[:nb], idx[nb:nb + len(lfree)], idx[nb + len(lfree):]

    def operand_index(rank: int, bdims, cdims, free, free_idx, ivs) -> tuple:
        out = []
        for a in range(rank):
            if a in bdims:
                out.append(batch[bdims.index(a)])
            elif a in cdims:
                out.append(ivs[cdims.index(a)])
            else:
                out.append(free_idx[free.index(a)])
        return tuple(out)

    def body(ivs: list, accs: list) -> list:
        a = ev.cast(ev.at(lhs, operand_index(lhs.type.rank, lb, lc, lfree, li, ivs)), acc_t)
        b = ev.cast(ev.at(rhs, operand_index(rhs.type.rank, rb, rc, rfree, ri, ivs)), acc_t)
        return [ev.ew(add, accs[0], ev.ew(mul, a, b))]

    init = ev.const_like(0, acc_t, _has_lane(idx))
    (acc,) = ev.nest([ev.shapes.dim(lhs, a) for a in lc], [init], body)
    return ev.cast(acc, dtype)
