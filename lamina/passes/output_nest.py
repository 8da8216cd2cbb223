"""The output loop nests of a fusion kernel: ``out[i...] = value[i...]`` over the output's axes.

``lower_loops`` builds a group's values as index remappings (``lower_eval``);
these helpers open the loops that store them: ``loop.parallel`` over the first
axis, ``loop.for`` inside, the last axis a whole vector of each width at a
time where an evaluator tier allows (then a scalar tail), and the GPU shape
(scalar, one trip per row). Every value of a multi-output group is computed
at an index before any is stored, so a kernel writing an output over one of
its inputs reads each element first. ``rows`` is ``lower_loops``' row-reduction
plan (``at_row``/``cursor``), when the kernel computes row reductions inline.
"""

from __future__ import annotations

from typing import Any

from lamina.ir.core import Op, Value
from lamina.ir.dialects import prim as P
from lamina.passes.loop_builder import NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane


def emit_gpu_nest(ev: Evaluator, pairs: list[tuple[Value, Value]], dims: list[Value]) -> None:
    """The GPU shape: scalar code, one trip per output row (or element), no vector tiers.

    Consecutive trips (threads) then touch consecutive addresses, and reductions
    stay plain accumulating ``loop.for`` loops that ``gpu-map`` spreads over the
    lanes of a warp or block. A rank-0 output gets a parallel loop of one trip,
    so its reduction still becomes one cooperative trip.
    """
    kb = ev.kb
    if dims:
        emit_output_nest([ev], pairs, dims)
        return
    with kb.loop(kb.index(0), kb.index(1), kb.index(1), parallel=True):
        _store_all(ev, pairs, ())


def vectorize_output(ops: list[Op]) -> bool:
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


Pairs = list[tuple[Value, Value]]  # (region value, kernel output it is stored into)


def _store_all(ev: Evaluator, pairs: Pairs, idx: tuple, vector: bool = False) -> None:
    """Store every value of ``pairs`` at ``idx``: all computed first, then stored, so a kernel
    writing an output over one of its inputs (runtime/outputs.pointwise) reads each element
    before any store to it."""
    values = [ev.at(y, idx) for y, _ in pairs]
    plain = [i.base if isinstance(i, Lane) else i for i in idx]
    for v, (_, out) in zip(values, pairs):
        if vector:
            ev.kb.vstore(ev.splat(v), out, plain)
        else:
            ev.kb.store(v, out, plain)


def emit_output_nest(evs: list[Evaluator], pairs: Pairs, dims: list[Value],
                     rows: Any = None, flatten: bool = False) -> None:
    """``out[i...] = yielded[i...]`` for each pair: parallel over axis 0, sequential inside.

    ``evs`` ends with the evaluator for scalar code; any before it are vector
    tiers, widest first: the last axis is then stored a vector of each width at a
    time, as far as whole vectors go, then element by element.

    ``flatten`` (scalar code, no row plan): trailing static axes too short to
    vectorize well (``flat_axes``) run as one loop over their product, each
    index recovered by division and remainder by constants. Same elements in the
    same order; LLVM vectorizes the long loop, where on a nest of 8-trip loops
    it chose gathers and scatters (a 64x16x8x8 elementwise kernel: 33 -> 5 us).
    """
    ev = evs[-1]
    kb = ev.kb
    if not dims:
        _store_all(ev, pairs, ())
        return
    if len(dims) == 1 and len(evs) > 1:
        try:
            _chunked_vector_nest(evs, pairs, dims[0])
            return
        except NotVectorizable:
            pass
    flat = flat_axes(dims) if flatten and rows is None and len(evs) == 1 else 0
    with kb.loop(kb.index(0), dims[0], kb.index(1), parallel=True) as lp:
        _inner_nest(evs, pairs, dims, [lp.iv], rows, flat)


FLAT_BELOW = 16  # a last axis shorter than this is flattened with the axes before it
FLAT_SPAN = 64  # ... until the flattened loop has at least this many trips


def _static(v: Value) -> int | None:
    op = v.owner
    if getattr(op, "name", None) == "loop.const":
        value = op.attrs.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def flat_axes(dims: list[Value]) -> int:
    """How many trailing axes (>= 2, never axis 0) to run as one loop; 0 for none. A unit
    axis 0 keeps the nest as it is: ``prepare-loops`` then moves the parallel loop to the
    first axis longer than 1."""
    sizes = [_static(d) for d in dims]
    if len(sizes) < 3 or sizes[0] == 1 or sizes[-1] is None or sizes[-1] >= FLAT_BELOW:
        return 0
    span, k = 1, 0
    for size in reversed(sizes[1:]):
        if size is None:
            break
        span, k = span * size, k + 1
        if span >= FLAT_SPAN:
            break
    return k if k >= 2 else 0


def _flat_loop(ev: Evaluator, pairs: Pairs, dims: list[Value], ivs: list[Value]) -> None:
    kb = ev.kb
    sizes = [_static(d) for d in dims[len(ivs):]]
    total = 1
    for size in sizes:
        total *= size
    with kb.loop(kb.index(0), kb.index(total), kb.index(1)) as lp:
        idx: list[Value] = []
        rest = lp.iv
        for k in range(len(sizes) - 1, 0, -1):
            n = kb.index(sizes[k])
            idx.append(kb.emit("loop.rem", rest, n))
            rest = kb.emit("loop.div", rest, n)
        idx.append(rest)
        _store_all(ev, pairs, (*ivs, *reversed(idx)))


def _inner_nest(evs: list[Evaluator], pairs: Pairs, dims: list[Value], ivs: list[Value],
                rows: Any = None, flat: int = 0) -> None:
    ev = evs[-1]
    kb = ev.kb
    if flat and len(dims) - len(ivs) == flat:
        _flat_loop(ev, pairs, dims, ivs)
        return
    if rows is not None:
        rows.at_row(ivs)
    if len(ivs) == len(dims):
        if rows is not None:
            rows.cursor = tuple(ivs)
        _store_all(ev, pairs, tuple(ivs))
        if rows is not None:
            rows.cursor = None
        return
    if len(evs) > 1 and len(ivs) == len(dims) - 1:
        try:
            _vector_row(evs, pairs, ivs, kb.index(0), dims[-1])
            return
        except NotVectorizable:
            pass
    with kb.loop(kb.index(0), dims[len(ivs)], kb.index(1)) as lp:
        _inner_nest([ev], pairs, dims, [*ivs, lp.iv], rows, flat)


def _vector_row(evs: list[Evaluator], pairs: Pairs, ivs: list[Value], start: Value,
                end: Value) -> None:
    """``[start, end)`` of the last axis: whole vectors of each width, then a scalar tail."""
    kb = evs[0].kb
    lo = start
    for ev in evs[:-1]:
        w = kb.index(ev.width)
        span = kb.emit("loop.sub", end, lo)
        hi = kb.emit("loop.sub", end, kb.emit("loop.rem", span, w))
        with kb.loop(lo, hi, w) as lp:
            _store_all(ev, pairs, (*ivs, Lane(lp.iv)), vector=True)
        lo = hi
    scalar = evs[-1]
    with kb.loop(lo, end, kb.index(1)) as lp:
        _store_all(scalar, pairs, (*ivs, lp.iv))


def _chunked_vector_nest(evs: list[Evaluator], pairs: Pairs, n: Value) -> None:
    """A 1-d output in parallel chunks of the widest vector."""
    kb, width = evs[0].kb, evs[0].width
    w = kb.index(width)
    chunks = kb.emit("loop.div", kb.emit("loop.add", n, kb.index(width - 1)), w)
    with kb.loop(kb.index(0), chunks, kb.index(1), parallel=True) as lp:
        start = kb.emit("loop.mul", lp.iv, w)
        end = kb.emit("loop.min", kb.emit("loop.add", start, w), n)
        _vector_row(evs, pairs, [], start, end)
