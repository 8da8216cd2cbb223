"""Kernels of the convolution and pooling primitives (``lamina.ir.dialects.prim_conv``).

Each prim is ``opaque``: a group of its own whose kernel is registered in
``lower_loops.CUSTOM_KERNELS``. Output sizes are computed in the program from
the operands' run-time sizes (index arithmetic only), so one kernel serves
every size; every loop bound inside a kernel derives from the same sizes, so
no access leaves its buffer.

``conv`` (and its transposed form) is a register-tiled kernel in the spirit of
``lower_dot``'s B-row form, with the im2col matrix never built:

- ``loop.parallel`` over (batch, group, tiles of ``OT`` output channels of the
  group, pairs of output rows: every spatial axis but the last, the last of them
  in pairs);
- along a wide row (at least ``VT`` vectors of ``W`` columns), tiles of ``VT``
  vectors, then single vectors, the last one moved back to end at the row's end
  (it recomputes a few columns rather than leaving a scalar tail); narrower rows
  are tiled two rows at a time, one vector (of ``W``, else ``W/2``, else single
  columns) of each;
- a ``loop.for`` nest over (input channels of the group, kernel taps) carrying
  ``OT x VT`` vector accumulators: each step loads ``VT`` input vectors
  (contiguous along the row) and ``OT`` weights, splatted.

Channel tiles need ``OT`` channels in a group; groups with fewer (depthwise
convolutions) take a one-channel variant, chosen at run time. The input is first
copied into a buffer of its own when it is padded, dilated, strided along its
last axis (split into phases there, so strided windows read contiguous vectors)
or without unit inner stride. ``conv_weight_grad`` keeps vector accumulators for
a tile of (output channel, input channel, tap of the last kernel axis) triples
(4 x 2 x 3 for 3x3 kernels: the taps of a row read shifted copies of one input
row, which stay in L1), vectorised along the reduction over the last axis and
reduced across lanes at the end. The pools are scalar loop nests over clipped
windows, one output (or, for the adjoints, one input) element at a time;
``max_pool_grad`` owns a whole plane per parallel iteration, so the scattered
additions into it never race.

Small static outputs (rows narrower than half a vector, at least 4 output channels per
group) would leave the column vectors above scalar, so on the CPU (``LOWERING_TARGET``)
``conv`` and ``conv_weight_grad`` vectorise along output channels instead
(``_channel_conv``, ``_channel_wgrad``): the weight (or the output gradient) is copied
channels-last first so a vector of channels is one contiguous load, and the result, built
channels-last, is copied back; the copies are small next to the arithmetic they vectorise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lamina.ir.core import Module, Op, Value
from lamina.ir.dialects import loop as L
from lamina.ir.dialects.prim_conv import prepared_size
from lamina.ir.types import MemRefType, ScalarType, TensorType, i1, i64, index
from lamina.passes.loop_builder import KernelBuilder
from lamina.passes.lower_index import (
    call,
    cast,
    custom_kernel,
    dims,
    if_,
    new_kernel,
    operand_buffers,
)
from lamina.passes.lower_loops import LOWERING_TARGET
from lamina.passes.lower_reduce import accumulator_type

OT = 8  # output channels per conv tile
VT = 2  # vectors of columns per conv tile
WT_O, WT_C = 4, 4  # (output, input) channels per weight-gradient tile of 1x1 kernels

Body = Callable[[list[Value], list[Value]], list[Value]]


# -- helpers ------------------------------------------------------------------------------
def _prod(kb: KernelBuilder, values: Sequence[Value]) -> Value:
    out = kb.index(1)
    for v in values:
        out = kb.emit("loop.mul", out, v)
    return out


def _ceil_div(kb: KernelBuilder, a: Value, b: int | Value) -> Value:
    """``ceil(a / b)`` for ``a >= 0``."""
    b = kb.index(b) if isinstance(b, int) else b
    return kb.emit("loop.div", kb.emit("loop.add", a, kb.emit("loop.sub", b, kb.index(1))), b)


def _unravel(kb: KernelBuilder, t: Value, sizes: Sequence[Value]) -> list[Value]:
    """Row-major coordinates of the flat index ``t`` over ``sizes``."""
    out: list[Value] = [t] * len(sizes)
    for a in reversed(range(1, len(sizes))):
        out[a] = kb.emit("loop.rem", t, sizes[a])
        t = kb.emit("loop.div", t, sizes[a])
    if sizes:
        out[0] = t
    return out


def _nest(kb: KernelBuilder, bounds: Sequence[tuple[Value, Value]], inits: list[Value],
          body: Body) -> list[Value]:
    """Sequential loops over ``[lo, hi)`` ranges carrying ``inits``; ``body(ivs, carried)``."""
    if not bounds:
        return body([], list(inits))
    lo, hi = bounds[0]
    with kb.loop(lo, hi, kb.index(1), inits) as lp:
        outer = lp.iv
        lp.yield_(_nest(kb, bounds[1:], lp.args, lambda ivs, c: body([outer, *ivs], c)))
    return lp.results


def _ranges(kb: KernelBuilder, sizes: Sequence[Value]) -> list[tuple[Value, Value]]:
    return [(kb.index(0), s) for s in sizes]


def _parallel(kb: KernelBuilder, sizes: Sequence[Value],
              body: Callable[[list[Value]], None]) -> None:
    """One ``loop.parallel`` over the product of ``sizes``; ``body(coordinates)``."""
    with kb.loop(kb.index(0), _prod(kb, sizes), kb.index(1), parallel=True) as lp:
        body(_unravel(kb, lp.iv, sizes))


def _alloc(pb: KernelBuilder, t: TensorType, sizes: Sequence[Value], fusion: Op) -> Value:
    dynamic = [s for s, d in zip(sizes, t.shape) if d is None]
    return pb.append(L.Alloc(dynamic, [MemRefType(t.shape, t.dtype)], loc=fusion.loc)).result


def _unit_inner(m: Value) -> bool:
    t = m.type
    return t.rank > 0 and (t.strides is None or t.strides[-1] == 1)


Special = Callable[[Op, Op, list[Value], Value, KernelBuilder, Module], bool]


def _kernel(name: str, sizes: Callable[[KernelBuilder, Op, list[Value]], list[Value]],
            emit: Callable[[KernelBuilder, Op, list[Value], Value], None],
            prepare: bool = False, special: Special | None = None) -> None:
    """Register prim ``name``: ``sizes`` gives the output sizes from the operand buffers
    (in the program), ``emit`` fills the kernel over (operands..., out). With ``prepare``
    the first operand is first dilated, padded and split into phases in a buffer of its
    own (``conv``, see ``_prepared_input``). ``special(prim, fusion, buffers, out, pb,
    module)`` may fill ``out`` with kernels of its own (and return True) instead."""

    def lowering(prim: Op, fusion: Op, inputs: list[Value], pb: KernelBuilder,
                 module: Module) -> Value:
        buffers = operand_buffers(prim, fusion, inputs)
        out_sizes = sizes(pb, prim, buffers)
        if prepare:
            buffers[0] = _prepared_input(prim, fusion, buffers[0], pb, module)
        out = _alloc(pb, prim.result.type, out_sizes, fusion)
        if special is not None and special(prim, fusion, buffers, out, pb, module):
            return out
        hints = [f"in{k}" for k in range(len(buffers))] + ["out"]
        kernel, kb = new_kernel(module, fusion, [*buffers, out], hints)
        emit(kb, prim, kernel.args[:-1], kernel.args[-1])
        kb.finish()
        call(pb, kernel, [*buffers, out], fusion)
        return out

    custom_kernel(name)(lowering)


# -- the prepared input of a convolution -------------------------------------------------------
def prepared_sizes(kb: KernelBuilder, op: Op, xd: Sequence[Value]) -> list[Value]:
    """The spatial sizes of ``conv``'s dilated, padded input (0 when cropped away)."""
    a = op.attrs
    out = []
    for n, d, lo, hi in zip(xd[2:], a["input_dilation"], a["low"], a["high"]):
        size = kb.emit("loop.add", kb.emit("loop.mul", kb.emit("loop.sub", n, kb.index(1)),
                                           kb.index(d)), kb.index(1 + lo + hi))
        out.append(kb.emit("loop.max", size, kb.index(0)))
    return out


def _prepared_input(prim: Op, fusion: Op, x: Value, pb: KernelBuilder, module: Module
                    ) -> Value:
    """``x`` dilated by ``input_dilation`` and padded (or cropped) by ``low``/``high``, in a
    new buffer; ``x`` itself when there is nothing to do and its rows are unit-stride.

    With a stride ``s > 1`` along the last axis, that axis is split into ``s`` phases:
    the buffer is ``(N, C, *rows, s, ceil(W / s))`` and element ``w`` sits at
    ``(w % s, w / s)``, so the columns a strided window reads are contiguous again
    (tap ``k`` of output column ``j`` is at phase ``k*d % s``, index ``j + k*d / s``).
    """
    a = prim.attrs
    spread, low, high = a["input_dilation"], a["low"], a["high"]
    phases = a["stride"][-1]
    if (not any(low) and not any(high) and all(d == 1 for d in spread) and phases == 1
            and _unit_inner(x)):
        return x
    xd = dims(pb, x)
    spatial = prepared_sizes(pb, prim, xd)
    sizes = [*xd[:2], *spatial]
    static = tuple(None if n is None or prepared_size(n, d, lo, hi) < 0
                   else prepared_size(n, d, lo, hi)
                   for n, d, lo, hi in zip(x.type.shape[2:], spread, low, high))
    shape = tuple(x.type.shape[:2]) + static
    if phases > 1:
        sizes[-1:] = [pb.index(phases), _ceil_div(pb, spatial[-1], phases)]
        last = static[-1]
        shape = shape[:-1] + (phases, None if last is None else -(-last // phases))
    buf = _alloc(pb, TensorType(shape, x.type.dtype), sizes, fusion)
    kernel, kb = new_kernel(module, fusion, [x, buf], ["x", "out"], "_pad")
    _emit_prepare(kb, spread, low, high, kernel.args[0], kernel.args[1], phases)
    kb.finish()
    call(pb, kernel, [x, buf], fusion)
    return buf


def _emit_prepare(kb: KernelBuilder, spread: Sequence[int], low: Sequence[int],
                  high: Sequence[int], x: Value, out: Value, phases: int) -> None:
    """``out[n, c, i] = x[n, c, (i - low) / a]`` where that is a whole index inside ``x``,
    else 0: parallel over rows; along a row, zeros, a vectorised copy, zeros (or, with
    phases, element by element into the phase-split row)."""
    xd, od = dims(kb, x), dims(kb, out)
    dtype = out.type.dtype
    zero = kb.const(0, dtype)
    width = 512 // max(32, dtype.bits)
    nonempty = kb.const(True, i1)
    for n in xd[2:]:
        nonempty = kb.emit("loop.and", nonempty, kb.emit("loop.gt", n, kb.index(0)))

    def source(i: Value, axis: int) -> tuple[Value, Value]:
        """(whether output index ``i`` holds an input element, that element's index)."""
        t = kb.emit("loop.sub", i, kb.index(low[axis]))
        a = kb.index(spread[axis])
        q = kb.emit("loop.div", t, a)
        ok = kb.emit("loop.and", kb.emit("loop.ge", t, kb.index(0)),
                     kb.emit("loop.lt", q, xd[2 + axis]))
        if spread[axis] > 1:
            ok = kb.emit("loop.and", ok, kb.emit("loop.eq", kb.emit("loop.rem", t, a),
                                                 kb.index(0)))
        return ok, q

    def fill(lo: Value, hi: Value, at: list[Value]) -> None:
        with kb.loop(lo, hi, kb.index(1)) as lp:
            kb.store(zero, out, [*at, lp.iv])

    def row(ix: list[Value]) -> None:
        n, c, *rows = ix
        ok = nonempty
        src = []
        for axis, i in enumerate(rows):
            inside, q = source(i, axis)
            ok = kb.emit("loop.and", ok, inside)
            src.append(q)
        at = [n, c, *rows]
        cols, last = od[-1], len(spread) - 1
        if phases > 1:
            size = kb.emit("loop.add", kb.emit("loop.mul", kb.emit("loop.sub", xd[-1],
                                                                   kb.index(1)),
                                               kb.index(spread[-1])),
                           kb.index(1 + low[-1] + high[-1]))
            _phase_row(kb, x, out, at, [n, c, *src], ok, lambda i: source(i, last), phases,
                       size, zero, low[-1], spread[-1])
            return
        with if_(kb, kb.emit("loop.not", ok)):
            fill(kb.index(0), cols, at)
        with if_(kb, ok):
            if spread[-1] == 1:
                lo = kb.emit("loop.min", kb.emit("loop.max", kb.index(low[-1]), kb.index(0)),
                             cols)
                hi = kb.emit("loop.min", kb.emit("loop.max", kb.emit(
                    "loop.add", kb.index(low[-1]), xd[-1]), lo), cols)
                fill(kb.index(0), lo, at)
                copy_end = lo
                if _unit_inner(x):
                    span = kb.emit("loop.sub", hi, lo)
                    copy_end = kb.emit("loop.sub", hi, kb.emit("loop.rem", span,
                                                               kb.index(width)))
                    with kb.loop(lo, copy_end, kb.index(width)) as lp:
                        j = kb.emit("loop.sub", lp.iv, kb.index(low[-1]))
                        kb.vstore(kb.vload(x, [n, c, *src, j], width), out, [*at, lp.iv])
                with kb.loop(copy_end, hi, kb.index(1)) as lp:
                    j = kb.emit("loop.sub", lp.iv, kb.index(low[-1]))
                    kb.store(kb.load(x, [n, c, *src, j]), out, [*at, lp.iv])
                fill(hi, cols, at)
            else:
                with kb.loop(kb.index(0), cols, kb.index(1)) as lp:
                    inside, q = source(lp.iv, last)
                    flag = cast(kb, inside, index)
                    with kb.loop(kb.index(0), flag, kb.index(1), [zero]) as pick:
                        pick.yield_([kb.load(x, [n, c, *src, q])])
                    kb.store(pick.results[0], out, [*at, lp.iv])

    _parallel(kb, od[:-1 if phases == 1 else -2], row)


def _phase_row(kb: KernelBuilder, x: Value, out: Value, at: list[Value], src: list[Value],
               row_ok: Value, source: Callable[[Value], tuple[Value, Value]], phases: int,
               length: Value, zero: Value, low: int, spread: int) -> None:
    """One phase-split row: ``out[..., p, q]`` holds prepared element ``q * phases + p``
    (zero past the prepared row's ``length``). Without input dilation each phase is a
    strided copy between two runs of zeros; with it, element by element."""
    count = dims(kb, out)[-1]
    step = kb.index(phases)

    def fill(p: Value, lo: Value, hi: Value) -> None:
        with kb.loop(lo, hi, kb.index(1)) as lp:
            kb.store(zero, out, [*at, p, lp.iv])

    if spread == 1:
        width = dims(kb, x)[-1]
        first = kb.emit("loop.min", kb.index(max(low, 0)), length)
        end = kb.emit("loop.min", kb.emit("loop.max", kb.emit("loop.add", width,
                                                               kb.index(low)), first), length)
        with kb.loop(kb.index(0), step, kb.index(1)) as ph:
            with if_(kb, kb.emit("loop.not", row_ok)):
                fill(ph.iv, kb.index(0), count)
            with if_(kb, row_ok):
                q_lo = _ceil_div(kb, kb.emit("loop.max", kb.emit("loop.sub", first, ph.iv),
                                             kb.index(0)), phases)
                q_hi = kb.emit("loop.max", _ceil_div(kb, kb.emit(
                    "loop.max", kb.emit("loop.sub", end, ph.iv), kb.index(0)), phases), q_lo)
                fill(ph.iv, kb.index(0), q_lo)
                with kb.loop(q_lo, q_hi, kb.index(1)) as lp:
                    i = kb.emit("loop.add", kb.emit("loop.mul", lp.iv, step), ph.iv)
                    kb.store(kb.load(x, [*src, kb.emit("loop.sub", i, kb.index(low))]), out,
                             [*at, ph.iv, lp.iv])
                fill(ph.iv, q_hi, count)
        return
    with kb.loop(kb.index(0), step, kb.index(1)) as ph:
        with kb.loop(kb.index(0), count, kb.index(1)) as lp:
            i = kb.emit("loop.add", kb.emit("loop.mul", lp.iv, step), ph.iv)
            inside, q = source(i)
            take = kb.emit("loop.and", row_ok, kb.emit("loop.and", inside,
                                                       kb.emit("loop.lt", i, length)))
            with kb.loop(kb.index(0), cast(kb, take, index), kb.index(1), [zero]) as pick:
                pick.yield_([kb.load(x, [*src, q])])
            kb.store(pick.results[0], out, [*at, ph.iv, lp.iv])


def _valid_size(kb: KernelBuilder, n: Value, k: Value, s: int, d: int) -> Value:
    """``(n - (k-1)*d - 1) // s + 1``, or 0 when the window does not fit (program-safe)."""
    span = kb.emit("loop.add", kb.emit("loop.mul", kb.emit("loop.sub", k, kb.index(1)),
                                       kb.index(d)), kb.index(1))
    t = kb.emit("loop.max", kb.emit("loop.sub", n, span), kb.index(-s))
    return kb.emit("loop.div", kb.emit("loop.add", t, kb.index(s)), kb.index(s))


def _pool_size(kb: KernelBuilder, n: Value, k: int, s: int, d: int, p: int, ceil: bool
               ) -> Value:
    """PyTorch's pooling output size, with program arithmetic only (0 when nothing fits)."""
    num = kb.emit("loop.add", n, kb.index(2 * p - (k - 1) * d - 1 + (s - 1 if ceil else 0)))
    out = kb.emit("loop.div", kb.emit("loop.add", kb.emit("loop.max", num, kb.index(-s)),
                                      kb.index(s)), kb.index(s))
    if ceil:  # drop a last window that would start in the high padding
        over = kb.emit("loop.sub", kb.emit("loop.mul", kb.emit("loop.sub", out, kb.index(1)),
                                           kb.index(s)), kb.emit("loop.add", n, kb.index(p)))
        drop = kb.emit("loop.min", kb.index(1),
                       kb.emit("loop.max", kb.index(0), kb.emit("loop.add", over, kb.index(1))))
        out = kb.emit("loop.max", kb.emit("loop.sub", out, drop), kb.index(0))
    return out


# -- convolution --------------------------------------------------------------------------
def _conv_sizes(pb: KernelBuilder, op: Op, bufs: list[Value]) -> list[Value]:
    a = op.attrs
    x, w = (dims(pb, b) for b in bufs)
    channels = pb.emit("loop.mul", w[1], pb.index(a["groups"])) if a["transposed"] else w[0]
    spatial = [_valid_size(pb, n, k, s, d) for n, k, s, d in
               zip(prepared_sizes(pb, op, x), w[2:], a["stride"], a["dilation"])]
    return [x[0], channels, *spatial]


def row_position(kb: KernelBuilder, j: Value, tap: Value, s: int, d: int, phased: bool
                 ) -> list[Value]:
    """The index, along the prepared input's last axis (two axes when split into phases),
    of tap ``tap`` of output column ``j``: ``j*s + tap*d``, or its (phase, offset)."""
    off = kb.emit("loop.mul", tap, kb.index(d))
    if not phased:
        return [kb.emit("loop.add", kb.emit("loop.mul", j, kb.index(s)), off)]
    return [kb.emit("loop.rem", off, kb.index(s)),
            kb.emit("loop.add", j, kb.emit("loop.div", off, kb.index(s)))]


class _ConvTiles:
    """The pieces of one ``conv`` kernel shared by its tile variants."""

    def __init__(self, kb: KernelBuilder, op: Op, x: Value, w: Value, out: Value):
        a = op.attrs
        self.kb, self.x, self.w, self.out = kb, x, w, out
        self.stride, self.dilation = a["stride"], a["dilation"]
        self.transposed = a["transposed"]
        groups = kb.index(a["groups"])
        xd, wd = dims(kb, x), dims(kb, w)
        if self.transposed:
            self.og = wd[1]
            cg = kb.emit("loop.div", wd[0], groups)
        else:
            self.og = kb.emit("loop.div", wd[0], groups)
            cg = wd[1]
        self.cg = kb.emit("loop.min", cg, kb.emit("loop.div", xd[1], groups))
        self.kernel = wd[2:]
        self.dtype: ScalarType = out.type.dtype
        self.acc_t = accumulator_type(self.dtype)
        self.width = 512 // max(32, self.dtype.bits)
        # the last axis is read with vector loads: unit stride, or split into phases
        self.phased = x.type.rank == len(self.stride) + 3
        self.groups = groups
        self.od = dims(kb, out)

    def run(self) -> None:
        kb = self.kb
        big = kb.emit("loop.ge", self.og, kb.index(OT))
        tiles = kb.emit("loop.select", big, _ceil_div(kb, self.og, OT), self.og)
        rows = self.od[2:-1]
        # rows come in pairs: a narrow row (one vector wide) is tiled with its neighbour
        pairs = [*rows[:-1], _ceil_div(kb, rows[-1], 2)] if rows else []

        def body(ix: list[Value]) -> None:
            n, grp, tile, *pair = ix
            if rows:
                first = kb.emit("loop.mul", pair[-1], kb.index(2))
                second = kb.emit("loop.add", first, kb.index(1))
                last = kb.emit("loop.sub", rows[-1], kb.index(1))
                rowset = [([*pair[:-1], first], kb.const(True, i1)),
                          ([*pair[:-1], kb.emit("loop.min", second, last)],
                           kb.emit("loop.lt", second, rows[-1]))]
            else:
                rowset = [([], kb.const(True, i1))]
            with if_(kb, big):
                self.channel_tile(n, grp, tile, rowset, OT)
            with if_(kb, kb.emit("loop.not", big)):
                self.channel_tile(n, grp, tile, rowset, 1)

        _parallel(kb, [self.od[0], self.groups, tiles, *pairs], body)

    def channel_tile(self, n: Value, grp: Value, tile: Value, rowset: list, ot: int) -> None:
        """All output columns of the rows ``rowset`` ((row index, real) pairs) for ``ot``
        output channels: wide rows one at a time in tiles of ``VT`` vectors, narrow rows
        together, one vector (or single column) of each row per tile."""
        kb = self.kb
        first = kb.emit("loop.mul", tile, kb.index(ot))
        chans = []
        for i in range(ot):
            local = kb.emit("loop.add", first, kb.index(i))
            clamped = kb.emit("loop.min", local, kb.emit("loop.sub", self.og, kb.index(1)))
            chans.append((kb.emit("loop.add", kb.emit("loop.mul", grp, self.og), clamped),
                          clamped, kb.emit("loop.lt", local, self.og)))
        cbase = kb.emit("loop.mul", grp, self.cg)
        cols = self.od[-1]
        width, half = self.width, self.width // 2

        def columns(rows: list, lo: Value, step: int, nv: int, lanes: int) -> Value:
            hi = kb.emit("loop.sub", cols, kb.emit("loop.rem", kb.emit("loop.sub", cols, lo),
                                                   kb.index(step)))
            with kb.loop(lo, hi, kb.index(step)) as lp:
                self.tile(n, cbase, chans, rows, lp.iv, nv, lanes)
            return hi

        def overlapping(rows: list, lo: Value, lanes: int) -> None:
            # single vectors over [lo, cols), the last one moved back to end at cols: it
            # recomputes a few columns (and stores the same values) instead of a scalar tail
            last = kb.emit("loop.sub", cols, kb.index(lanes))
            with kb.loop(lo, cols, kb.index(lanes)) as lp:
                self.tile(n, cbase, chans, rows, kb.emit("loop.min", lp.iv, last), 1, lanes)

        wide = kb.emit("loop.ge", cols, kb.index(VT * width))
        with if_(kb, wide):
            # the rows of the pair one after the other (a loop, not two copies of the code)
            count = kb.emit("loop.add", kb.index(1), cast(kb, rowset[-1][1], index))
            with kb.loop(kb.index(0), count, kb.index(1)) as rl:
                row = [*rowset[0][0][:-1], kb.emit("loop.add", rowset[0][0][-1], rl.iv)] \
                    if rowset[0][0] else []
                one = [(row, kb.const(True, i1))]
                overlapping(one, columns(one, kb.index(0), VT * width, VT, width), width)
        narrow = kb.emit("loop.not", wide)
        with if_(kb, kb.emit("loop.and", narrow, kb.emit("loop.ge", cols, kb.index(width)))):
            overlapping(rowset, kb.index(0), width)
        with if_(kb, kb.emit("loop.and", kb.emit("loop.lt", cols, kb.index(width)),
                             kb.emit("loop.ge", cols, kb.index(half)))):
            overlapping(rowset, kb.index(0), half)
        with if_(kb, kb.emit("loop.lt", cols, kb.index(half))):
            columns(rowset, kb.index(0), 1, 1, 1)

    def weight_at(self, chan: tuple[Value, Value, Value], c: Value, cbase: Value,
                  taps: list[Value]) -> Value:
        kb = self.kb
        if not self.transposed:
            return kb.load(self.w, [chan[0], c, *taps])
        flipped = [kb.emit("loop.sub", kb.emit("loop.sub", k, kb.index(1)), t)
                   for k, t in zip(self.kernel, taps)]
        return kb.load(self.w, [kb.emit("loop.add", cbase, c), chan[1], *flipped])

    def tile(self, n: Value, cbase: Value, chans: list, rows: list, col: Value, nv: int,
             lanes: int) -> None:
        """Accumulators for (channel, row, vector) triples, through (channel, taps) loops."""
        kb = self.kb
        vec = lanes > 1
        zero = kb.const(0, self.acc_t)
        if vec:
            zero = kb.emit("loop.splat", zero, width=lanes)
        starts = [kb.emit("loop.add", col, kb.index(v * lanes)) for v in range(nv)]
        spots = [(r, start) for r in range(len(rows)) for start in starts]

        def body(ivs: list[Value], accs: list[Value]) -> list[Value]:
            c, *taps = ivs
            ch = kb.emit("loop.add", cbase, c)
            xs = []
            for r, start in spots:
                pos = [kb.emit("loop.add", kb.emit("loop.mul", i, kb.index(s)),
                               kb.emit("loop.mul", t, kb.index(d)))
                       for i, t, s, d in zip(rows[r][0], taps, self.stride, self.dilation)]
                idx = [n, ch, *pos, *row_position(kb, start, taps[-1], self.stride[-1],
                                                  self.dilation[-1], self.phased)]
                v = kb.vload(self.x, idx, lanes) if vec else kb.load(self.x, idx)
                xs.append(self._acc(v, lanes))
            new = []
            for i, chan in enumerate(chans):
                wt = self._acc(self.weight_at(chan, c, cbase, taps), 1)
                if vec:
                    wt = kb.emit("loop.splat", wt, width=lanes)
                for j, xv in enumerate(xs):
                    new.append(kb.emit("loop.add", accs[i * len(spots) + j],
                                       kb.emit("loop.mul", wt, xv)))
            return new

        accs = _nest(kb, _ranges(kb, [self.cg, *self.kernel]), [zero] * (len(chans) * len(spots)),
                     body)
        for i, (o, _, ok) in enumerate(chans):
            for j, (r, start) in enumerate(spots):
                real = ok if kb.const_of(rows[r][1]) is True else \
                    kb.emit("loop.and", ok, rows[r][1])
                with if_(kb, real):
                    v = accs[i * len(spots) + j]
                    if self.acc_t != self.dtype:
                        v = kb.emit("loop.cast", v, dtype=self.dtype)
                    (kb.vstore if vec else kb.store)(v, self.out, [n, o, *rows[r][0], start])

    def _acc(self, v: Value, lanes: int) -> Value:
        return v if self.acc_t == self.dtype else self.kb.emit("loop.cast", v, dtype=self.acc_t)


def _emit_conv(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    _ConvTiles(kb, op, ins[0], ins[1], out).run()


# -- small spatial outputs: vectors of output channels ----------------------------------------
def _channel_lanes(prim: Op, x: Value) -> int:
    """The output channels per vector of the channel-vectorised ``conv`` (0: not taken).

    Taken when every size is static, the output rows are narrower than half a vector (the
    column-vectorised form would run scalar) and a group has at least 4 output channels:
    then a vector of consecutive output channels (of a transposed weight) fills its lanes.
    """
    a = prim.attrs
    t, w = prim.result.type, prim.operands[1].type
    shapes = (t.shape, w.shape, x.type.shape)
    if t.rank < 3 or any(d is None for s in shapes for d in s):
        return 0
    groups = a["groups"]
    if a["transposed"]:
        og, cg = w.shape[1], w.shape[0] // groups
    else:
        og, cg = w.shape[0] // groups, w.shape[1]
    width = 512 // max(32, t.dtype.bits)
    if (cg * groups != x.type.shape[1] or og * groups != t.shape[1] or og < 4
            or t.shape[-1] >= width // 2 or 0 in t.shape
            or not _windows_fit(x.type.shape, t.shape[2:], w.shape[2:], a["stride"],
                                a["dilation"])):
        return 0
    lanes = width
    while lanes > og:
        lanes //= 2
    return lanes


def _channel_conv(prim: Op, fusion: Op, buffers: list[Value], out: Value, pb: KernelBuilder,
                  module: Module) -> bool:
    """``conv`` with vectors along output channels: the weight is first copied to
    ``(G, C/G, *kernel, O/G)`` (contiguous along output channels, taps flipped for the
    transposed form), the kernel accumulates, for each output row, one vector of ``lanes``
    channels per column (at most ``width/2`` columns) over (input channel, taps), into a
    channels-last buffer ``(N, *spatial, O)``, which a last kernel transposes into ``out``.
    """
    x, w = buffers
    lanes = _channel_lanes(prim, x)
    if not lanes or LOWERING_TARGET.get() != "cpu":
        return False
    a = prim.attrs
    t = prim.result.type
    groups, kernel = a["groups"], tuple(w.type.shape[2:])
    og = t.shape[1] // groups
    cg = x.type.shape[1] // groups
    wt = _alloc(pb, TensorType((groups, cg, *kernel, og), t.dtype), [], fusion)
    k1, kb = new_kernel(module, fusion, [w, wt], ["w", "out"], "_wt")
    _emit_weight_t(kb, a["transposed"], og, cg, kernel, k1.args[0], k1.args[1])
    kb.finish()
    call(pb, k1, [w, wt], fusion)
    outt = _alloc(pb, TensorType((t.shape[0], *t.shape[2:], t.shape[1]), t.dtype), [], fusion)
    k2, kb = new_kernel(module, fusion, [x, wt, outt], ["in0", "w", "out"])
    _emit_channel_conv(kb, prim, lanes, og, cg, *k2.args)
    kb.finish()
    call(pb, k2, [x, wt, outt], fusion)
    k3, kb = new_kernel(module, fusion, [outt, out], ["x", "out"], "_t")
    src, dst = k3.args
    od = dims(kb, dst)

    def plane(ix: list[Value]) -> None:
        n, o, *rows = ix
        for j in range(t.shape[-1]):
            kb.store(kb.load(src, [n, *rows, kb.index(j), o]), dst, [n, o, *rows, kb.index(j)])

    _parallel(kb, od[:-1], plane)
    kb.finish()
    call(pb, k3, [outt, out], fusion)
    return True


def _emit_weight_t(kb: KernelBuilder, transposed: bool, og: int, cg: int,
                   kernel: tuple[int, ...], w: Value, out: Value) -> None:
    """``out[g, c, taps, o]``: the weight of output channel ``o`` of group ``g`` at input
    channel ``c`` (flipped taps in the transposed layout ``(C, O/G, *kernel)``)."""
    groups = dims(kb, out)[0]

    def body(ix: list[Value]) -> None:
        g, c, *taps = ix
        with kb.loop(kb.index(0), kb.index(og), kb.index(1)) as lp:
            o = lp.iv
            if transposed:
                flipped = [kb.emit("loop.sub", kb.index(k - 1), tap)
                           for k, tap in zip(kernel, taps)]
                at = [kb.emit("loop.add", kb.emit("loop.mul", g, kb.index(cg)), c), o,
                      *flipped]
            else:
                at = [kb.emit("loop.add", kb.emit("loop.mul", g, kb.index(og)), o), c, *taps]
            kb.store(kb.load(w, at), out, [g, c, *taps, o])

    _parallel(kb, [groups, kb.index(cg), *(kb.index(k) for k in kernel)], body)


def _emit_channel_conv(kb: KernelBuilder, prim: Op, lanes: int, og: int, cg: int, x: Value,
                       wt: Value, out: Value) -> None:
    """The channels-last ``conv`` kernel of ``_channel_conv``: parallel over (batch, group,
    channel vector, rows); the last channel vector is moved back to end at the group's
    last channel (it recomputes a few channels rather than leaving a scalar tail)."""
    a = prim.attrs
    stride, dilation = a["stride"], a["dilation"]
    phased = x.type.rank == len(stride) + 3
    dtype: ScalarType = out.type.dtype
    acc_t = accumulator_type(dtype)
    od = dims(kb, out)
    cols = out.type.shape[-2]
    kernel = dims(kb, wt)[2:-1]
    groups = a["groups"]

    def to_acc(v: Value) -> Value:
        return v if acc_t == dtype else kb.emit("loop.cast", v, dtype=acc_t)

    def body(ix: list[Value]) -> None:
        n, g, ct, *rows = ix
        o0 = kb.emit("loop.min", kb.emit("loop.mul", ct, kb.index(lanes)),
                     kb.index(og - lanes))
        cbase = kb.emit("loop.mul", g, kb.index(cg))

        def step(ivs: list[Value], accs: list[Value]) -> list[Value]:
            c, *taps = ivs
            wv = to_acc(kb.vload(wt, [g, c, *taps, o0], lanes))
            ch = kb.emit("loop.add", cbase, c)
            pos = [kb.emit("loop.add", kb.emit("loop.mul", i, kb.index(s)),
                           kb.emit("loop.mul", tp, kb.index(d)))
                   for i, tp, s, d in zip(rows, taps, stride, dilation)]
            new = []
            for j, acc in enumerate(accs):
                idx = [n, ch, *pos, *row_position(kb, kb.index(j), taps[-1], stride[-1],
                                                  dilation[-1], phased)]
                xv = kb.emit("loop.splat", to_acc(kb.load(x, idx)), width=lanes)
                new.append(kb.emit("loop.add", acc, kb.emit("loop.mul", wv, xv)))
            return new

        zero = kb.emit("loop.splat", kb.const(0, acc_t), width=lanes)
        accs = _nest(kb, _ranges(kb, [kb.index(cg), *kernel]), [zero] * cols, step)
        ochan = kb.emit("loop.add", kb.emit("loop.mul", g, kb.index(og)), o0)
        for j, v in enumerate(accs):
            if acc_t != dtype:
                v = kb.emit("loop.cast", v, dtype=dtype)
            kb.vstore(v, out, [n, *rows, kb.index(j), ochan])

    _parallel(kb, [od[0], kb.index(groups), kb.index(-(-og // lanes)), *od[1:-2]], body)


_kernel("prim.conv", _conv_sizes, _emit_conv, prepare=True, special=_channel_conv)


# -- weight gradient ------------------------------------------------------------------------
def _wgrad_sizes(pb: KernelBuilder, op: Op, bufs: list[Value]) -> list[Value]:
    a = op.attrs
    x, g = (dims(pb, b) for b in bufs)
    groups = pb.index(a["groups"])
    if a["transposed"]:
        lead = [x[1], pb.emit("loop.div", g[1], groups)]
    else:
        lead = [g[1], pb.emit("loop.div", x[1], groups)]
    return [*lead, *(pb.index(k) for k in a["kernel"])]


def _wgrad_tiles(k_last: int) -> tuple[int, int, int]:
    """(output channels, input channels, taps of the last kernel axis) per weight-gradient
    tile: taps of one row share their input loads (shifted reads of one row), so a tile
    takes a whole short row of taps and fewer input channels."""
    kt = k_last if k_last <= 3 else -(-k_last // -(-k_last // 3))
    return WT_O, {1: WT_C, 2: 3}.get(kt, 2), kt


def _emit_wgrad(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    a = op.attrs
    x, g = ins
    stride, dilation, kernel = a["stride"], a["dilation"], a["kernel"]
    groups = kb.index(a["groups"])
    xd, gd = dims(kb, x), dims(kb, g)
    batch = kb.emit("loop.min", xd[0], gd[0])
    og = kb.emit("loop.div", gd[1], groups)
    cg = kb.emit("loop.div", xd[1], groups)
    dtype: ScalarType = out.type.dtype
    acc_t = accumulator_type(dtype)
    width = 512 // max(32, dtype.bits)
    phased = x.type.rank == len(stride) + 3
    vector = (phased or stride[-1] == 1) and _unit_inner(x) and _unit_inner(g)
    lanes = width if vector else 1
    spatial = gd[2:]
    o_tile, c_tile, k_tile = _wgrad_tiles(kernel[-1])

    def cast_acc(v: Value) -> Value:
        return v if acc_t == dtype else kb.emit("loop.cast", v, dtype=acc_t)

    def clamped(first: Value, count: int, size: Value) -> tuple[list[Value], list[Value]]:
        """Indices ``first + i`` clamped into ``[0, size)``, and whether each is real."""
        idx = [kb.emit("loop.min", kb.emit("loop.add", first, kb.index(i)),
                       kb.emit("loop.sub", size, kb.index(1))) for i in range(count)]
        ok = [kb.emit("loop.lt", kb.emit("loop.add", first, kb.index(i)), size)
              for i in range(count)]
        return idx, ok

    def body(ix: list[Value]) -> None:
        grp, ot, ct, *lead_taps, kt = ix
        os, o_ok = clamped(kb.emit("loop.mul", ot, kb.index(o_tile)), o_tile, og)
        cs, c_ok = clamped(kb.emit("loop.mul", ct, kb.index(c_tile)), c_tile, cg)
        kws, k_ok = clamped(kb.emit("loop.mul", kt, kb.index(k_tile)), k_tile,
                            kb.index(kernel[-1]))
        o_abs = [kb.emit("loop.add", kb.emit("loop.mul", grp, og), o) for o in os]
        c_abs = [kb.emit("loop.add", kb.emit("loop.mul", grp, cg), c) for c in cs]
        tiles = [(i, j, t) for i in range(o_tile) for j in range(c_tile) for t in range(k_tile)]

        def x_at(n: Value, c: Value, pos: list[Value], last: Value, kw: Value) -> list[Value]:
            at = [kb.emit("loop.add", kb.emit("loop.mul", p, kb.index(s)),
                          kb.emit("loop.mul", t, kb.index(d)))
                  for p, t, s, d in zip(pos, lead_taps, stride, dilation)]
            return [n, c, *at, *row_position(kb, last, kw, stride[-1], dilation[-1], phased)]

        def step(n: Value, pos: list[Value], col: Value, accs: list[Value], w: int
                 ) -> list[Value]:
            read = (lambda m, idx: kb.vload(m, idx, w)) if w > 1 else kb.load
            gs = [cast_acc(read(g, [n, o, *pos, col])) for o in o_abs]
            xs = {(j, t): cast_acc(read(x, x_at(n, c, pos, col, kw)))
                  for j, c in enumerate(c_abs) for t, kw in enumerate(kws)}
            return [kb.emit("loop.add", acc, kb.emit("loop.mul", gs[i], xs[(j, t)]))
                    for acc, (i, j, t) in zip(accs, tiles)]

        zero = kb.const(0, acc_t)
        vzero = kb.emit("loop.splat", zero, width=lanes) if lanes > 1 else zero
        cols = spatial[-1]
        vec_end = kb.emit("loop.sub", cols, kb.emit("loop.rem", cols, kb.index(lanes)))
        outer = _ranges(kb, [batch, *spatial[:-1]])

        def main_rows(ivs: list[Value], carried: list[Value]) -> list[Value]:
            n, *pos = ivs
            with kb.loop(kb.index(0), vec_end, kb.index(lanes), carried) as lp:
                lp.yield_(step(n, pos, lp.iv, lp.args, lanes))
            return lp.results

        accs = _nest(kb, outer, [vzero] * len(tiles), main_rows)
        if lanes > 1:
            accs = [kb.emit("loop.vreduce", v, fn="sum") for v in accs]

            def tail_rows(ivs: list[Value], carried: list[Value]) -> list[Value]:
                n, *pos = ivs
                with kb.loop(vec_end, cols, kb.index(1), carried) as lp:
                    lp.yield_(step(n, pos, lp.iv, lp.args, 1))
                return lp.results

            has_tail = cast(kb, kb.emit("loop.lt", vec_end, cols), index)
            with kb.loop(kb.index(0), has_tail, kb.index(1), accs) as lp:
                lp.yield_(_nest(kb, outer, lp.args, tail_rows))
            accs = lp.results
        for (i, j, t), total in zip(tiles, accs):
            if acc_t != dtype:
                total = kb.emit("loop.cast", total, dtype=dtype)
            ok = kb.emit("loop.and", kb.emit("loop.and", o_ok[i], c_ok[j]), k_ok[t])
            with if_(kb, ok):
                taps = [*lead_taps, kws[t]]
                if a["transposed"]:  # the transposed weight layout, flipped in space
                    flipped = [kb.emit("loop.sub", kb.index(k - 1), tap)
                               for k, tap in zip(kernel, taps)]
                    at = [c_abs[j], os[i], *flipped]
                else:
                    at = [o_abs[i], cs[j], *taps]
                kb.store(total, out, at)

    _parallel(kb, [groups, _ceil_div(kb, og, o_tile), _ceil_div(kb, cg, c_tile),
                   *(kb.index(k) for k in kernel[:-1]),
                   kb.index(-(-kernel[-1] // k_tile))], body)


def _channel_wgrad(prim: Op, fusion: Op, buffers: list[Value], out: Value, pb: KernelBuilder,
                   module: Module) -> bool:
    """``conv_weight_grad`` with vectors along output channels, for the same small static
    outputs as ``_channel_conv`` (there the column-vectorised reduction runs scalar): the
    output gradient is first copied channels-last ``(N, *spatial, O)``; the kernel, parallel
    over (group, input channel, channel vector, leading taps), carries one vector per tap of
    the last kernel axis through the reduction over (batch, output positions), into
    ``(G, C/G, *kernel, O/G)``, which a last kernel moves into the weight's layout."""
    x, g = buffers
    if LOWERING_TARGET.get() != "cpu":
        return False
    a = prim.attrs
    gt_, dtype = g.type, out.type.dtype
    groups, kernel = a["groups"], tuple(a["kernel"])
    shapes = (gt_.shape, x.type.shape, out.type.shape)
    if gt_.rank < 3 or any(d is None for s in shapes for d in s) or 0 in gt_.shape:
        return False
    og, cg = gt_.shape[1] // groups, x.type.shape[1] // groups
    width = 512 // max(32, dtype.bits)
    if og * groups != gt_.shape[1] or cg * groups != x.type.shape[1] or og < 4 \
            or gt_.shape[-1] >= width // 2 or gt_.shape[0] != x.type.shape[0]:
        return False
    spatial = tuple(gt_.shape[2:])
    if not _windows_fit(x.type.shape, spatial, kernel, a["stride"], a["dilation"]):
        return False
    lanes = width
    while lanes > og:
        lanes //= 2
    glast = _alloc(pb, TensorType((gt_.shape[0], *spatial, gt_.shape[1]), dtype), [], fusion)
    k1, kb = new_kernel(module, fusion, [g, glast], ["g", "out"], "_gt")
    src, dst = k1.args

    def plane(ix: list[Value]) -> None:
        n, o, *rows = ix
        with kb.loop(kb.index(0), kb.index(spatial[-1]), kb.index(1)) as lp:
            kb.store(kb.load(src, [n, o, *rows, lp.iv]), dst, [n, *rows, lp.iv, o])

    _parallel(kb, dims(kb, src)[:-1], plane)
    kb.finish()
    call(pb, k1, [g, glast], fusion)
    wt = _alloc(pb, TensorType((groups, cg, *kernel, og), dtype), [], fusion)
    k2, kb = new_kernel(module, fusion, [x, glast, wt], ["in0", "g", "out"])
    _emit_channel_wgrad(kb, prim, lanes, og, cg, spatial, *k2.args)
    kb.finish()
    call(pb, k2, [x, glast, wt], fusion)
    k3, kb = new_kernel(module, fusion, [wt, out], ["w", "out"], "_w")
    _emit_weight_back(kb, a["transposed"], og, cg, kernel, *k3.args)
    kb.finish()
    call(pb, k3, [wt, out], fusion)
    return True


def _windows_fit(xs: Sequence[int], spatial: Sequence[int], kernel: Sequence[int],
                 stride: Sequence[int], dilation: Sequence[int]) -> bool:
    """Whether every window of the outputs ``spatial`` lies inside the prepared input of
    shape ``xs`` (its last axis possibly split into ``stride[-1]`` phases)."""
    phased = len(xs) == len(spatial) + 3
    for i, (n, k, s, d) in enumerate(zip(spatial, kernel, stride, dilation)):
        if i == len(spatial) - 1 and phased:
            if n - 1 + (k - 1) * d // s >= xs[-1]:
                return False
        elif (n - 1) * s + (k - 1) * d >= xs[2 + i]:
            return False
    return True


def _emit_channel_wgrad(kb: KernelBuilder, prim: Op, lanes: int, og: int, cg: int,
                        spatial: tuple[int, ...], x: Value, g: Value, out: Value) -> None:
    a = prim.attrs
    stride, dilation, kernel = a["stride"], a["dilation"], tuple(a["kernel"])
    phased = x.type.rank == len(stride) + 3
    dtype: ScalarType = out.type.dtype
    acc_t = accumulator_type(dtype)
    groups = a["groups"]
    batch = g.type.shape[0]

    def to_acc(v: Value) -> Value:
        return v if acc_t == dtype else kb.emit("loop.cast", v, dtype=acc_t)

    def body(ix: list[Value]) -> None:
        grp, c, ct, *lead = ix
        o0 = kb.emit("loop.min", kb.emit("loop.mul", ct, kb.index(lanes)),
                     kb.index(og - lanes))
        ochan = kb.emit("loop.add", kb.emit("loop.mul", grp, kb.index(og)), o0)
        ch = kb.emit("loop.add", kb.emit("loop.mul", grp, kb.index(cg)), c)

        def step(ivs: list[Value], accs: list[Value]) -> list[Value]:
            n, *pos = ivs
            gv = to_acc(kb.vload(g, [n, *pos, ochan], lanes))
            at = [kb.emit("loop.add", kb.emit("loop.mul", p, kb.index(s)),
                          kb.emit("loop.mul", t, kb.index(d)))
                  for p, t, s, d in zip(pos[:-1], lead, stride, dilation)]
            new = []
            for kw, acc in enumerate(accs):
                idx = [n, ch, *at, *row_position(kb, pos[-1], kb.index(kw), stride[-1],
                                                 dilation[-1], phased)]
                xv = kb.emit("loop.splat", to_acc(kb.load(x, idx)), width=lanes)
                new.append(kb.emit("loop.add", acc, kb.emit("loop.mul", gv, xv)))
            return new

        zero = kb.emit("loop.splat", kb.const(0, acc_t), width=lanes)
        accs = _nest(kb, _ranges(kb, [kb.index(batch), *(kb.index(s) for s in spatial)]),
                     [zero] * kernel[-1], step)
        for kw, v in enumerate(accs):
            if acc_t != dtype:
                v = kb.emit("loop.cast", v, dtype=dtype)
            kb.vstore(v, out, [grp, c, *lead, kb.index(kw), o0])

    _parallel(kb, [kb.index(groups), kb.index(cg), kb.index(-(-og // lanes)),
                   *(kb.index(k) for k in kernel[:-1])], body)


def _emit_weight_back(kb: KernelBuilder, transposed: bool, og: int, cg: int,
                      kernel: tuple[int, ...], wt: Value, out: Value) -> None:
    """The inverse of ``_emit_weight_t``: ``(G, C/G, *kernel, O/G)`` into the weight's
    layout (``(O, C/G, *kernel)``, or ``(C, O/G, *kernel)`` flipped when transposed)."""
    groups = dims(kb, wt)[0]

    def body(ix: list[Value]) -> None:
        g, c, *taps = ix
        with kb.loop(kb.index(0), kb.index(og), kb.index(1)) as lp:
            o = lp.iv
            if transposed:
                flipped = [kb.emit("loop.sub", kb.index(k - 1), tap)
                           for k, tap in zip(kernel, taps)]
                at = [kb.emit("loop.add", kb.emit("loop.mul", g, kb.index(cg)), c), o,
                      *flipped]
            else:
                at = [kb.emit("loop.add", kb.emit("loop.mul", g, kb.index(og)), o), c, *taps]
            kb.store(kb.load(wt, [g, c, *taps, o]), out, at)

    _parallel(kb, [groups, kb.index(cg), *(kb.index(k) for k in kernel)], body)


_kernel("prim.conv_weight_grad", _wgrad_sizes, _emit_wgrad, prepare=True,
        special=_channel_wgrad)


# -- pooling ------------------------------------------------------------------------------
class _Windows:
    """Index arithmetic of a pool's windows over the last ``nd`` axes of its input."""

    def __init__(self, kb: KernelBuilder, op: Op, x: Value, pooled: Value):
        a = op.attrs
        self.kb = kb
        self.window = a["window"]
        nd = len(self.window)
        self.stride = a["stride"]
        self.dilation = a.get("dilation", (1,) * nd)
        self.padding = a["padding"]
        xd, pd = dims(kb, x), dims(kb, pooled)
        self.lead = xd[:len(xd) - nd]
        self.spatial = xd[len(xd) - nd:]
        self.pooled = pd[len(pd) - nd:]

    def start(self, a: int, j: Value) -> Value:
        """First input position of window ``j`` along axis ``a`` (may be negative)."""
        kb = self.kb
        return kb.emit("loop.sub", kb.emit("loop.mul", j, kb.index(self.stride[a])),
                       kb.index(self.padding[a]))

    def taps(self, a: int, j: Value) -> tuple[Value, Value]:
        """The taps ``[lo, hi)`` of window ``j`` along axis ``a`` that fall inside the input."""
        kb = self.kb
        d = self.dilation[a]
        first = self.start(a, j)
        lo = _ceil_div(kb, kb.emit("loop.max", kb.emit("loop.sub", kb.index(0), first),
                                   kb.index(0)), d)
        room = kb.emit("loop.max", kb.emit("loop.sub", self.spatial[a], first), kb.index(0))
        hi = kb.emit("loop.min", kb.index(self.window[a]), _ceil_div(kb, room, d))
        return lo, kb.emit("loop.max", hi, lo)

    def position(self, a: int, j: Value, t: Value) -> Value:
        kb = self.kb
        return kb.emit("loop.add", self.start(a, j),
                       kb.emit("loop.mul", t, kb.index(self.dilation[a])))

    def covering(self, a: int, i: Value) -> tuple[Value, Value]:
        """The windows ``[lo, hi)`` along axis ``a`` that hold input position ``i``
        (dilation 1: the average pools)."""
        kb = self.kb
        shifted = kb.emit("loop.add", i, kb.index(self.padding[a]))
        first = kb.emit("loop.sub", shifted, kb.index(self.window[a] - 1))
        lo = _ceil_div(kb, kb.emit("loop.max", first, kb.index(0)), self.stride[a])
        hi = kb.emit("loop.min", self.pooled[a],
                     kb.emit("loop.add", kb.emit("loop.div", shifted, kb.index(self.stride[a])),
                             kb.index(1)))
        return lo, kb.emit("loop.max", hi, lo)

    def flat(self, positions: Sequence[Value]) -> Value:
        """The row-major index of ``positions`` in the input plane, as i64."""
        kb = self.kb
        f = kb.index(0)
        for p, n in zip(positions, self.spatial):
            f = kb.emit("loop.add", kb.emit("loop.mul", f, n), p)
        return cast(kb, f, i64)


def _over(kb: KernelBuilder, sizes: list[Value], body: Callable[[list[Value]], None]) -> None:
    """``body(index)`` for every index of ``sizes``: parallel over all axes but the last."""
    if not sizes:
        body([])
        return

    def inner(outer: list[Value]) -> None:
        with kb.loop(kb.index(0), sizes[-1], kb.index(1)) as lp:
            body([*outer, lp.iv])

    _parallel(kb, sizes[:-1], inner)


def _pool_sizes(pb: KernelBuilder, op: Op, bufs: list[Value]) -> list[Value]:
    a = op.attrs
    x = dims(pb, bufs[0])
    nd = len(a["window"])
    dil = a.get("dilation", (1,) * nd)
    spatial = [_pool_size(pb, n, k, s, d, p, a["ceil_mode"]) for n, k, s, d, p in
               zip(x[len(x) - nd:], a["window"], a["stride"], dil, a["padding"])]
    return [*x[:len(x) - nd], *spatial]


def _like_first(pb: KernelBuilder, op: Op, bufs: list[Value]) -> list[Value]:
    return dims(pb, bufs[0])


def _max_scan(w: _Windows, x: Value, lead: list[Value], j: list[Value]) -> tuple[Value, Value]:
    """(maximum, flat index of the maximum) of window ``j``: the first maximum or the last
    NaN in row-major order; index -1 when the window holds no input element."""
    kb = w.kb
    t = x.type.dtype
    cmp_t = accumulator_type(t)
    init = [kb.const(float("-inf"), cmp_t), kb.const(-1, i64)]

    def body(taps: list[Value], carried: list[Value]) -> list[Value]:
        best, idx = carried
        pos = [w.position(a, ja, ta) for a, (ja, ta) in enumerate(zip(j, taps))]
        v = kb.load(x, [*lead, *pos])
        v = v if cmp_t == t else kb.emit("loop.cast", v, dtype=cmp_t)
        take = kb.emit("loop.or", kb.emit("loop.lt", idx, kb.const(0, i64)),
                       kb.emit("loop.or", kb.emit("loop.gt", v, best), kb.emit("loop.isnan", v)))
        return [kb.emit("loop.select", take, v, best),
                kb.emit("loop.select", take, w.flat(pos), idx)]

    best, idx = _nest(kb, [w.taps(a, ja) for a, ja in enumerate(j)], init, body)
    return (best if cmp_t == t else kb.emit("loop.cast", best, dtype=t)), idx


def _emit_max(index_result: bool) -> Callable[[KernelBuilder, Op, list[Value], Value], None]:
    def emit(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
        x = ins[0]
        w = _Windows(kb, op, x, out)
        nl = len(w.lead)

        def at(ix: list[Value]) -> None:
            best, idx = _max_scan(w, x, ix[:nl], ix[nl:])
            kb.store(idx if index_result else best, out, ix)

        _over(kb, dims(kb, out), at)

    return emit


def _emit_max_grad(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    x, g = ins
    w = _Windows(kb, op, x, g)
    dtype = out.type.dtype

    def plane(lead: list[Value]) -> None:
        def clear(ivs: list[Value], _: list[Value]) -> list[Value]:
            kb.store(kb.const(0, dtype), out, [*lead, *ivs])
            return []

        _nest(kb, _ranges(kb, w.spatial), [], clear)

        def route(j: list[Value], _: list[Value]) -> list[Value]:
            _, idx = _max_scan(w, x, lead, j)
            with if_(kb, kb.emit("loop.ge", idx, kb.const(0, i64))):
                pos = _unravel(kb, cast(kb, idx, index), w.spatial)
                old = kb.load(out, [*lead, *pos], reuse=False)
                kb.store(kb.emit("loop.add", old, kb.load(g, [*lead, *j])), out, [*lead, *pos])
            return []

        _nest(kb, _ranges(kb, w.pooled), [], route)

    _parallel(kb, w.lead, plane)


def _avg_divisor(w: _Windows, op: Op, j: list[Value], acc_t: ScalarType) -> Value:
    kb = w.kb
    if op.attrs["divisor"]:
        return kb.const(op.attrs["divisor"], acc_t)
    count = kb.index(1)
    for a, ja in enumerate(j):
        lo = w.start(a, ja)
        hi = kb.emit("loop.min", kb.emit("loop.add", lo, kb.index(w.window[a])),
                     kb.emit("loop.add", w.spatial[a], kb.index(w.padding[a])))
        if not op.attrs["count_include_pad"]:
            lo = kb.emit("loop.max", lo, kb.index(0))
            hi = kb.emit("loop.min", hi, w.spatial[a])
        count = kb.emit("loop.mul", count, kb.emit("loop.sub", hi, lo))
    return cast(kb, count, acc_t)


def _to_acc(kb: KernelBuilder, v: Value, acc_t: ScalarType) -> Value:
    return v if v.type == acc_t else kb.emit("loop.cast", v, dtype=acc_t)


def _emit_avg(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    x = ins[0]
    w = _Windows(kb, op, x, out)
    nl = len(w.lead)
    dtype = out.type.dtype
    acc_t = accumulator_type(dtype)

    def at(ix: list[Value]) -> None:
        lead, j = ix[:nl], ix[nl:]

        def body(taps: list[Value], carried: list[Value]) -> list[Value]:
            pos = [w.position(a, ja, ta) for a, (ja, ta) in enumerate(zip(j, taps))]
            return [kb.emit("loop.add", carried[0], _to_acc(kb, kb.load(x, [*lead, *pos]),
                                                            acc_t))]

        (total,) = _nest(kb, [w.taps(a, ja) for a, ja in enumerate(j)],
                         [kb.const(0, acc_t)], body)
        mean = kb.emit("loop.div", total, _avg_divisor(w, op, j, acc_t))
        kb.store(_to_acc(kb, mean, dtype), out, ix)

    _over(kb, dims(kb, out), at)


def _emit_avg_grad(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    x, g = ins
    w = _Windows(kb, op, x, g)
    nl = len(w.lead)
    dtype = out.type.dtype
    acc_t = accumulator_type(dtype)

    def at(ix: list[Value]) -> None:
        lead, i = ix[:nl], ix[nl:]

        def body(j: list[Value], carried: list[Value]) -> list[Value]:
            share = kb.emit("loop.div", _to_acc(kb, kb.load(g, [*lead, *j]), acc_t),
                            _avg_divisor(w, op, j, acc_t))
            return [kb.emit("loop.add", carried[0], share)]

        (total,) = _nest(kb, [w.covering(a, ia) for a, ia in enumerate(i)],
                         [kb.const(0, acc_t)], body)
        kb.store(_to_acc(kb, total, dtype), out, ix)

    _over(kb, dims(kb, out), at)


def _adaptive_range(kb: KernelBuilder, i: Value, n_out: Value, n_in: Value
                    ) -> tuple[Value, Value]:
    """PyTorch's adaptive window ``[floor(i*n_in/n_out), ceil((i+1)*n_in/n_out))``."""
    lo = kb.emit("loop.div", kb.emit("loop.mul", i, n_in), n_out)
    hi = _ceil_div(kb, kb.emit("loop.mul", kb.emit("loop.add", i, kb.index(1)), n_in), n_out)
    return lo, hi


def _adaptive_sizes(pb: KernelBuilder, op: Op, bufs: list[Value]) -> list[Value]:
    x = dims(pb, bufs[0])
    nd = len(op.attrs["output"])
    return [*x[:len(x) - nd], *(pb.index(o) for o in op.attrs["output"])]


def _adaptive_count(kb: KernelBuilder, ranges: list[tuple[Value, Value]]) -> Value:
    return _prod(kb, [kb.emit("loop.sub", hi, lo) for lo, hi in ranges])


def _emit_adaptive(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    x = ins[0]
    nd = len(op.attrs["output"])
    xd, od = dims(kb, x), dims(kb, out)
    nl = len(xd) - nd
    dtype = out.type.dtype
    acc_t = accumulator_type(dtype)

    def at(ix: list[Value]) -> None:
        lead, i = ix[:nl], ix[nl:]
        ranges = [_adaptive_range(kb, ia, od[nl + a], xd[nl + a]) for a, ia in enumerate(i)]

        def body(pos: list[Value], carried: list[Value]) -> list[Value]:
            return [kb.emit("loop.add", carried[0], _to_acc(kb, kb.load(x, [*lead, *pos]),
                                                            acc_t))]

        (total,) = _nest(kb, ranges, [kb.const(0, acc_t)], body)
        mean = kb.emit("loop.div", total, cast(kb, _adaptive_count(kb, ranges), acc_t))
        kb.store(_to_acc(kb, mean, dtype), out, ix)

    _over(kb, od, at)


def _emit_adaptive_grad(kb: KernelBuilder, op: Op, ins: list[Value], out: Value) -> None:
    x, g = ins
    nd = len(op.attrs["output"])
    xd, gd = dims(kb, x), dims(kb, g)
    nl = len(xd) - nd
    dtype = out.type.dtype
    acc_t = accumulator_type(dtype)

    def at(ix: list[Value]) -> None:
        lead, h = ix[:nl], ix[nl:]
        covering = []
        for a, ha in enumerate(h):
            n_in, n_out = xd[nl + a], gd[nl + a]
            lo = kb.emit("loop.div", kb.emit("loop.mul", ha, n_out), n_in)
            last = kb.emit("loop.div", kb.emit("loop.sub", kb.emit(
                "loop.mul", kb.emit("loop.add", ha, kb.index(1)), n_out), kb.index(1)), n_in)
            hi = kb.emit("loop.min", kb.emit("loop.add", last, kb.index(1)), n_out)
            covering.append((lo, kb.emit("loop.max", hi, lo)))

        def body(i: list[Value], carried: list[Value]) -> list[Value]:
            ranges = [_adaptive_range(kb, ia, gd[nl + a], xd[nl + a]) for a, ia in enumerate(i)]
            share = kb.emit("loop.div", _to_acc(kb, kb.load(g, [*lead, *i]), acc_t),
                            cast(kb, _adaptive_count(kb, ranges), acc_t))
            return [kb.emit("loop.add", carried[0], share)]

        (total,) = _nest(kb, covering, [kb.const(0, acc_t)], body)
        kb.store(_to_acc(kb, total, dtype), out, ix)

    _over(kb, dims(kb, out), at)


_kernel("prim.max_pool", _pool_sizes, _emit_max(False))
_kernel("prim.max_pool_index", _pool_sizes, _emit_max(True))
_kernel("prim.max_pool_grad", _like_first, _emit_max_grad)
_kernel("prim.avg_pool", _pool_sizes, _emit_avg)
_kernel("prim.avg_pool_grad", _like_first, _emit_avg_grad)
_kernel("prim.adaptive_avg_pool", _adaptive_sizes, _emit_adaptive)
_kernel("prim.adaptive_avg_pool_grad", _like_first, _emit_adaptive_grad)
