"""Register-tiled kernels for contraction groups: ``dot_general`` plus an elementwise epilogue.

After canonicalising the contraction to ``batch x M x K @ batch x K x N``
(the operands are read through whatever index maps the group applies, so
permuted or broadcast inputs need no copies), the kernel is:

- ``loop.parallel`` over (batch, column blocks of N, tiles of ``MR`` rows of M),
  row tiles fastest: a column block is sized so its panel of B (K x block,
  about ``PANEL_BYTES``) stays in L2 while the consecutive trips of one thread
  run all row tiles over it, instead of re-streaming all of B per row tile;
- ``loop.for`` over tiles of ``NV`` vectors of ``W`` columns of the block;
- a ``loop.for`` over K carrying ``MR x NV`` vector accumulators: each step
  loads ``NV`` vectors of a row of B and splats ``MR`` elements of A;
- the epilogue applied to the accumulators, stored a vector at a time.

Rows past M in the last tile re-read row M-1 (clamped, so always in bounds)
and their stores are skipped; the columns past the last whole tile are done
one vector, then, when N is static, as one narrower vector of the ``N % W``
remaining columns (all of a small N such as a 10-class head: the row of B, the
accumulators, the epilogue and the store are ``vector<10xf32>``), else one
element at a time. This needs unit stride along N in B.
When B is only contiguous along K (``x @ w.T``), a second form keeps
``MR x NC`` vector accumulators along K and reduces their lanes at the end.
Anything else (several free or contracted axes, strided inner axes, an
epilogue that moves elements) falls back to the scalar loop nest of
``lower_reduce.dot_at``: correct, but not tiled.

For ``target="cuda"`` a float32 product whose operands are kernel arguments
(possibly permuted: transposes are strides) gets a GPU-shaped kernel instead
(``_gpu_tiles``): a ``loop.parallel`` over output tiles of ``GPU_TILE`` (or
``GPU_SMALL_TILE`` for static products too small to fill the GPU) whose
body computes its tile element by element, tagged ``gpu_matmul`` with which
arguments are A, B and C and how their axes map to (batch, M, K, N). Run by the
CPU backend it is a plain (slow) loop nest; the NVPTX backend hands the tagged
kernel to ``backends/nvptx/matmul.py`` (a block of ``GPU_THREADS`` threads per
tile, shared-memory tiles), which re-emits the epilogue per output element.
``LAMINA_GPU_TILED_MATMUL=0`` turns this off (the CPU-tiled form is used).
"""

from __future__ import annotations

import os
from typing import Callable

from lamina.ir.core import IRError, Op, Value
from lamina.ir.dialects import loop as L
from lamina.ir.dialects import prim as P
from lamina.ir.types import ScalarType, VectorType, index
from lamina.passes.loop_builder import NotVectorizable
from lamina.passes.lower_eval import Evaluator, Lane, index_key
from lamina.passes.lower_reduce import accumulator_type

MR = 8  # rows of A per tile (B-row form)
NV = 2  # vectors of B per tile row (B-row form)
NT_ROWS, NT_COLS = 4, 4  # tile of the K-vector form
# A column block of B (K x block columns, a whole number of register tiles wide) is sized
# to about PANEL_BYTES so it stays in L2 (1 MiB per core here) while all row tiles use it.
PANEL_BYTES = 512 << 10
GPU_TILE = (128, 128, 8)  # (M, N, K) of one GPU output tile and of its shared-memory step
# static products with fewer big tiles than this (an SM or so each) use GPU_SMALL_TILE
GPU_SMALL_TILE, GPU_SMALL_BELOW = (64, 64, 8), 128
GPU_THREADS = 256  # threads that cooperate on one GPU tile (block = lanes)
GPU_SWITCH = "LAMINA_GPU_TILED_MATMUL"


def gpu_tiled_enabled() -> bool:
    """Whether the shared-memory tiled matmul is on (``LAMINA_GPU_TILED_MATMUL`` != "0")."""
    return os.environ.get(GPU_SWITCH, "1").strip() != "0"


def gpu_launch(op: Op) -> dict | None:
    """gpu-map's attributes for a tagged top-level parallel loop, or None (map it as usual)."""
    tag = op.attrs.get("gpu_matmul")
    if tag is None or not gpu_tiled_enabled():
        return None
    return {"block": GPU_THREADS, "lanes": GPU_THREADS, "gpu_matmul": tag}


def emit_contraction(ev: Evaluator, ops: list[Op], yielded: Value, out: Value,
                     dims: list[Value]) -> bool:
    """Emit a tiled kernel when the group is a plain (batched) matrix product; else False."""
    dot = _single_dot(ops, yielded)
    if dot is None:
        return False
    if getattr(ev, "target", "cpu") == "cuda" and gpu_tiled_enabled():
        tile = _gpu_tile(ev, dims)
        tag = _gpu_tag(ev, dot, out, tile)
        if tag is not None:
            _gpu_tiles(ev, dot, yielded, out, dims, tag, tile)
            return True
    for form in (_b_rows, _k_vectors):
        try:
            with _Tiling(ev, dot, yielded, out, dims) as tiling:
                form(tiling)
            return True
        except NotVectorizable:
            continue
    return False


def _single_dot(ops: list[Op], yielded: Value) -> Op | None:
    dots = [op for op in ops if isinstance(op, P.DotGeneral)]
    if len(dots) != 1 or any(isinstance(op, (P.Reduce, P.ArgReduce)) for op in ops):
        return None
    dot = dots[0]
    a = dot.attrs
    lhs, rhs = dot.operands
    if len(a["lhs_contract"]) != 1 or lhs.type.rank != len(a["lhs_batch"]) + 2 \
            or rhs.type.rank != len(a["rhs_batch"]) + 2 or dot.result.type.dtype.is_bool:
        return None
    # the epilogue must read the product only elementwise, at the output's own index
    downstream = {id(dot.result)}
    for op in ops:
        if any(id(v) in downstream for v in op.operands):
            if not op.has("elementwise"):
                return None
            downstream.update(id(r) for r in op.results)
    if id(yielded) not in downstream or yielded.type.shape != dot.result.type.shape:
        return None
    return dot


class _Tiling:
    """Shared pieces of both tiled forms: index maps, the parallel loop, guarded stores."""

    def __init__(self, ev: Evaluator, dot: Op, yielded: Value, out: Value, dims: list[Value]):
        self.ev, self.kb, self.dot, self.yielded, self.out = ev, ev.kb, dot, yielded, out
        a = dot.attrs
        self.lb, self.rb = a["lhs_batch"], a["rhs_batch"]
        self.lc, self.rc = a["lhs_contract"][0], a["rhs_contract"][0]
        self.lhs, self.rhs = dot.operands
        self.nb = len(self.lb)
        self.batch_dims = dims[:self.nb]
        self.m, self.n = dims[self.nb], dims[self.nb + 1]
        self.k = ev.shapes.dim(self.lhs, self.lc)
        self.dtype: ScalarType = dot.result.type.dtype
        self.acc_t = accumulator_type(self.dtype)

    def __enter__(self) -> _Tiling:
        return self

    def __exit__(self, *exc) -> None:
        self.ev.overrides.pop(id(self.dot.result), None)

    # -- operands -------------------------------------------------------------------
    def _operand_index(self, rank: int, bdims, cdim: int, batch: list, free, k) -> tuple:
        out = []
        for a in range(rank):
            if a in bdims:
                out.append(batch[bdims.index(a)])
            else:
                out.append(k if a == cdim else free)
        return tuple(out)

    def a_at(self, batch: list, m, k, ev: Evaluator | None = None) -> Value:
        ev = ev or self.ev
        idx = self._operand_index(self.lhs.type.rank, self.lb, self.lc, batch, m, k)
        return ev.cast(ev.at(self.lhs, idx), self.acc_t)

    def b_at(self, batch: list, k, n, ev: Evaluator | None = None) -> Value:
        ev = ev or self.ev
        idx = self._operand_index(self.rhs.type.rank, self.rb, self.rc, batch, n, k)
        return ev.cast(ev.at(self.rhs, idx), self.acc_t)

    def vec(self, v: Value, ev: Evaluator | None = None) -> Value:
        ev = ev or self.ev
        v = ev.splat(v)
        if v.type != VectorType(ev.width, self.acc_t):
            raise NotVectorizable(f"{v.type} in a {self.acc_t} contraction")
        return v

    def narrow(self) -> Evaluator | None:
        """An evaluator whose vectors are the ``N % width`` tail columns, when N is static
        and that tail has at least two columns; else None (the tail stays scalar)."""
        n = self.kb.const_of(self.n)
        tail = n % self.ev.width if n is not None else 0
        if tail < 2:
            return None
        ev = self.ev
        narrow = Evaluator(ev.kb, ev.shapes, ev.inputs, tail, ev.what, ev.target)
        narrow.overrides, narrow.spills = ev.overrides, ev.spills
        narrow.row_divisors = ev.row_divisors
        return narrow

    # -- structure ----------------------------------------------------------------------
    def panel_cols(self, tile_cols: int) -> Value:
        """Columns of one block of B: K x columns is about PANEL_BYTES (at least one tile)."""
        kb = self.kb
        tile_bytes = kb.emit("loop.mul", kb.emit("loop.max", self.k, kb.index(1)),
                             kb.index(tile_cols * self.rhs.type.dtype.itemsize))
        count = kb.emit("loop.div", kb.index(PANEL_BYTES), tile_bytes)
        count = kb.emit("loop.max", count, kb.index(1))
        return kb.emit("loop.mul", count, kb.index(tile_cols))

    def tiles(self, tile_rows: int, block_cols: Value,
              body: Callable[[list[Value], Value, Value, Value], None]) -> None:
        """Parallel over (batch, column blocks, row tiles), row tiles fastest;
        ``body(batch_index, first_row, first_col, end_col)`` for columns ``[first, end)``.

        Consecutive trips share one column block, so the block's panel of B (K x
        ``block_cols``) stays in L2 while the row tiles of A stream past it: each thread
        runs a contiguous range of trips, and B is read from memory about once per
        thread instead of once per row tile.
        """
        kb = self.kb
        tiles = kb.emit("loop.div", kb.emit("loop.add", self.m, kb.index(tile_rows - 1)),
                        kb.index(tile_rows))
        if kb.const_of(self.n) is None or kb.const_of(self.k) is None:
            # `?` sizes (eager kernels): one block, so every column index is a loop index
            # over [0, n) that the runtime's bounds check can verify against the buffers
            blocks = kb.index(1)
        else:
            last = kb.emit("loop.sub", kb.emit("loop.add", self.n, block_cols), kb.index(1))
            blocks = kb.emit("loop.div", last, block_cols)
        trips = kb.emit("loop.mul", tiles, blocks)
        for d in self.batch_dims:
            trips = kb.emit("loop.mul", trips, d)
        with kb.loop(kb.index(0), trips, kb.index(1), parallel=True) as lp:
            rest = kb.emit("loop.div", lp.iv, tiles)
            m0 = kb.emit("loop.mul", kb.emit("loop.rem", lp.iv, tiles), kb.index(tile_rows))
            if kb.const_of(blocks) == 1:  # static bounds let LLVM unroll small products
                n0, n1 = kb.index(0), self.n
            else:
                n0 = kb.emit("loop.mul", kb.emit("loop.rem", rest, blocks), block_cols)
                n1 = kb.emit("loop.min", kb.emit("loop.add", n0, block_cols), self.n)
                rest = kb.emit("loop.div", rest, blocks)
            batch: list[Value] = [None] * self.nb
            for i in reversed(range(self.nb)):
                batch[i] = rest if i == 0 else kb.emit("loop.rem", rest, self.batch_dims[i])
                rest = kb.emit("loop.div", rest, self.batch_dims[i])
            body(batch, m0, n0, n1)

    def clamped(self, first: Value, offset: int, size: Value) -> Value:
        kb = self.kb
        return kb.emit("loop.min", kb.emit("loop.add", first, kb.index(offset)),
                       kb.emit("loop.sub", size, kb.index(1)))

    def valid(self, first: Value, offset: int, size: Value) -> Value:
        kb = self.kb
        return kb.emit("loop.lt", kb.emit("loop.add", first, kb.index(offset)), size)

    def store(self, cond: Value, acc: Value, idx: tuple, at: tuple,
              ev: Evaluator | None = None) -> None:
        """Apply the epilogue to ``acc`` (the product at ``idx``) and store it, if ``cond``."""
        kb, ev = self.kb, ev or self.ev
        with kb.loop(kb.index(0), kb.emit("loop.cast", cond, dtype=index), kb.index(1)):
            def product(at_idx: tuple) -> Value:
                if index_key(at_idx) != index_key(idx):
                    raise NotVectorizable("epilogue reads the product elsewhere")
                return ev.cast(acc, self.dtype)

            ev.overrides[id(self.dot.result)] = product
            v = ev.at(self.yielded, idx)
            if isinstance(acc.type, VectorType):
                v = ev.splat(v)
                kb.vstore(v, self.out, list(at))
            else:
                if ev.is_vec(v):
                    raise NotVectorizable("vector epilogue for a scalar product")
                kb.store(v, self.out, list(at))


def _b_rows(t: _Tiling) -> None:
    """C tile of MR x (NV vectors): splat A elements, load B rows along N.

    Columns past the whole vectors are one narrower vector (``_Tiling.narrow``) when N
    is static, else scalar columns.
    """
    kb, ev, width = t.kb, t.ev, t.ev.width
    zero = kb.const(0, t.acc_t)
    narrow = t.narrow()

    def tile(e: Evaluator, batch: list, m0: Value, n0: Value, nvec: int, rows: list[Value],
             valid: list[Value]) -> None:
        if nvec:
            inits = [e.splat(zero)] * (len(rows) * nvec)
        else:
            inits = [zero] * len(rows)
        with kb.loop(kb.index(0), t.k, kb.index(1), inits) as lp:
            if nvec:
                bs = [t.vec(t.b_at(batch, lp.iv, Lane(kb.emit("loop.add", n0,
                                                                kb.index(j * e.width))), e), e)
                      for j in range(nvec)]
            else:
                bs = [t.b_at(batch, lp.iv, n0)]
            new = []
            for r, row in enumerate(rows):
                a = t.a_at(batch, row, lp.iv, e)
                if e.is_vec(a):
                    raise NotVectorizable("A element is a vector")
                a = e.splat(a) if nvec else a
                for j, b in enumerate(bs):
                    acc = lp.args[r * len(bs) + j]
                    new.append(kb.emit("loop.add", acc, kb.emit("loop.mul", a, b)))
            lp.yield_(new)
        accs = lp.results
        for r in range(len(rows)):
            row = kb.emit("loop.add", m0, kb.index(r))
            for j in range(max(nvec, 1)):
                col = kb.emit("loop.add", n0, kb.index(j * e.width)) if nvec else n0
                ix = (*batch, row, Lane(col) if nvec else col)
                t.store(valid[r], accs[r * max(nvec, 1) + j], ix, (*batch, row, col), e)

    step = kb.index(NV * width)
    n_full = kb.emit("loop.sub", t.n, kb.emit("loop.rem", t.n, step))
    n_vec = kb.emit("loop.sub", t.n, kb.emit("loop.rem", t.n, kb.index(width)))

    def body(batch: list, m0: Value, n0: Value, n1: Value) -> None:
        # blocks start at multiples of NV * width, so only the last one has tail columns
        rows = [t.clamped(m0, r, t.m) for r in range(MR)]
        valid = [t.valid(m0, r, t.m) for r in range(MR)]
        with kb.loop(n0, kb.emit("loop.min", n1, n_full), step) as lp:
            tile(ev, batch, m0, lp.iv, NV, rows, valid)
        with kb.loop(kb.emit("loop.max", n0, n_full), kb.emit("loop.min", n1, n_vec),
                     kb.index(width)) as lp:
            tile(ev, batch, m0, lp.iv, 1, rows, valid)
        tail = kb.emit("loop.max", n0, n_vec)
        if narrow is not None:
            try:  # one trip (the tail columns) in the last block, none in the others
                with kb.loop(tail, n1, kb.index(narrow.width)) as lp:
                    tile(narrow, batch, m0, lp.iv, 1, rows, valid)
                return
            except NotVectorizable:  # e.g. B strided along N: the tail stays scalar
                pass
        with kb.loop(tail, n1, kb.index(1)) as lp:
            tile(ev, batch, m0, lp.iv, 0, rows, valid)

    t.tiles(MR, t.panel_cols(NV * width), body)


def _k_vectors(t: _Tiling) -> None:
    """C tile of NT_ROWS x NT_COLS elements, each a vector accumulator along K."""
    kb, ev, width = t.kb, t.ev, t.ev.width
    zero = kb.const(0, t.acc_t)
    w = kb.index(width)
    k_vec = kb.emit("loop.sub", t.k, kb.emit("loop.rem", t.k, w))

    def body(batch: list, m0: Value, n0: Value, n1: Value) -> None:
        rows = [t.clamped(m0, r, t.m) for r in range(NT_ROWS)]
        row_ok = [t.valid(m0, r, t.m) for r in range(NT_ROWS)]
        first = kb.emit("loop.div", n0, kb.index(NT_COLS))
        end = kb.emit("loop.div", kb.emit("loop.add", n1, kb.index(NT_COLS - 1)),
                      kb.index(NT_COLS))
        with kb.loop(first, end, kb.index(1)) as ct:
            n0 = kb.emit("loop.mul", ct.iv, kb.index(NT_COLS))
            cols = [t.clamped(n0, c, t.n) for c in range(NT_COLS)]
            col_ok = [t.valid(n0, c, t.n) for c in range(NT_COLS)]
            pairs = [(r, c) for r in range(NT_ROWS) for c in range(NT_COLS)]
            with kb.loop(kb.index(0), k_vec, w, [ev.splat(zero)] * len(pairs)) as lp:
                a = [t.vec(t.a_at(batch, row, Lane(lp.iv))) for row in rows]
                b = [t.vec(t.b_at(batch, Lane(lp.iv), col)) for col in cols]
                lp.yield_([kb.emit("loop.add", acc, kb.emit("loop.mul", a[r], b[c]))
                           for acc, (r, c) in zip(lp.args, pairs)])
            vaccs = lp.results
            with kb.loop(k_vec, t.k, kb.index(1), [zero] * len(pairs)) as lp:
                a = [t.a_at(batch, row, lp.iv) for row in rows]
                b = [t.b_at(batch, lp.iv, col) for col in cols]
                if any(ev.is_vec(v) for v in a + b):
                    raise NotVectorizable("vector in the scalar K tail")
                lp.yield_([kb.emit("loop.add", acc, kb.emit("loop.mul", a[r], b[c]))
                           for acc, (r, c) in zip(lp.args, pairs)])
            for (r, c), vacc, tail in zip(pairs, vaccs, lp.results):
                total = kb.emit("loop.add", kb.emit("loop.vreduce", vacc, fn="sum"), tail)
                row = kb.emit("loop.add", m0, kb.index(r))
                col = kb.emit("loop.add", n0, kb.index(c))
                ok = kb.emit("loop.and", row_ok[r], col_ok[c])
                t.store(ok, total, (*batch, row, col), (*batch, row, col))

    t.tiles(NT_ROWS, t.panel_cols(NT_COLS), body)



# -- the GPU form ---------------------------------------------------------------------
def _arg_axes(ev: Evaluator, v: Value) -> tuple[int, list[int]] | None:
    """(kernel argument position, operand axis -> argument axis) when ``v`` is an argument
    read directly or through ``prim.permute``; else None."""
    perm = list(range(v.type.rank))
    while isinstance(v.owner, P.Permute):
        p = v.owner.attrs["perm"]
        perm = [p[a] for a in perm]
        v = v.owner.operands[0]
    buf = ev.inputs.get(id(v))
    if buf is None:
        return None
    args = ev.kb.graph.args
    return next(i for i, a in enumerate(args) if a is buf), perm


def _gpu_tile(ev: Evaluator, dims: list[Value]) -> tuple[int, int, int]:
    """GPU_TILE, or GPU_SMALL_TILE when the output's static sizes give few big tiles."""
    sizes = [ev.kb.const_of(d) for d in dims]
    if any(s is None for s in sizes):
        return GPU_TILE
    tm, tn, _ = GPU_TILE
    tiles = -(-sizes[-2] // tm) * -(-sizes[-1] // tn)
    for s in sizes[:-2]:
        tiles *= s
    return GPU_SMALL_TILE if tiles < GPU_SMALL_BELOW else GPU_TILE


def _gpu_tag(ev: Evaluator, dot: Op, out: Value, tile: tuple[int, int, int]) -> str | None:
    """The ``gpu_matmul`` tag of a contraction the GPU tile kernel handles, else None."""
    lhs, rhs = dot.operands
    if dot.result.type.dtype.name != "f32" or lhs.type.dtype.name != "f32":
        return None
    la, ra = _arg_axes(ev, lhs), _arg_axes(ev, rhs)
    if la is None or ra is None:
        return None
    a = dot.attrs
    lb, rb, lc, rc = a["lhs_batch"], a["rhs_batch"], a["lhs_contract"][0], a["rhs_contract"][0]
    lm = next(i for i in range(lhs.type.rank) if i not in lb and i != lc)
    rn = next(i for i in range(rhs.type.rank) if i not in rb and i != rc)
    out_shape = out.type.shape
    for x, y in zip(lb, range(len(lb))):
        if lhs.type.shape[x] is not None and out_shape[y] is not None \
                and lhs.type.shape[x] != out_shape[y]:
            return None  # a broadcast batch axis: the general form handles it
    for x, y in zip(rb, range(len(rb))):
        if rhs.type.shape[x] is not None and out_shape[y] is not None \
                and rhs.type.shape[x] != out_shape[y]:
            return None
    a_axes = [la[1][i] for i in (*lb, lm, lc)]
    b_axes = [ra[1][i] for i in (*rb, rc, rn)]
    c = len(ev.kb.graph.args) - 1
    tm, tn, tk = tile
    return (f"a={la[0]} b={ra[0]} c={c} batch={len(lb)} "
            f"a_axes={','.join(map(str, a_axes))} b_axes={','.join(map(str, b_axes))} "
            f"tile={tm}x{tn}x{tk}")


def _gpu_tiles(ev: Evaluator, dot: Op, yielded: Value, out: Value, dims: list[Value],
               tag: str, tile: tuple[int, int, int]) -> None:
    """Parallel over (batch, M tiles, N tiles); each trip computes its tile element by element.

    The order of the trip decomposition (N tiles fastest, then M tiles, then the
    batch axes, last fastest) is part of the contract with the NVPTX emitter.
    """
    t = _Tiling(ev, dot, yielded, out, dims)
    kb = t.kb
    tm, tn, _ = tile

    def tiles(size: Value, tile: int) -> Value:
        return kb.emit("loop.div", kb.emit("loop.add", size, kb.index(tile - 1)), kb.index(tile))

    tiles_m, tiles_n = tiles(t.m, tm), tiles(t.n, tn)
    trips = kb.emit("loop.mul", tiles_m, tiles_n)
    for d in t.batch_dims:
        trips = kb.emit("loop.mul", trips, d)
    zero = kb.const(0, t.acc_t)
    with kb.loop(kb.index(0), trips, kb.index(1), parallel=True) as lp:
        rest = kb.emit("loop.div", lp.iv, tiles_n)
        n0 = kb.emit("loop.mul", kb.emit("loop.rem", lp.iv, tiles_n), kb.index(tn))
        m0 = kb.emit("loop.mul", kb.emit("loop.rem", rest, tiles_m), kb.index(tm))
        rest = kb.emit("loop.div", rest, tiles_m)
        batch: list[Value] = [None] * t.nb
        for i in reversed(range(t.nb)):
            batch[i] = rest if i == 0 else kb.emit("loop.rem", rest, t.batch_dims[i])
            rest = kb.emit("loop.div", rest, t.batch_dims[i])
        m_end = kb.emit("loop.min", kb.emit("loop.add", m0, kb.index(tm)), t.m)
        n_end = kb.emit("loop.min", kb.emit("loop.add", n0, kb.index(tn)), t.n)
        with kb.loop(m0, m_end, kb.index(1)) as rows:
            with kb.loop(n0, n_end, kb.index(1)) as cols:
                with kb.loop(kb.index(0), t.k, kb.index(1), [zero]) as ks:
                    a = t.a_at(batch, rows.iv, ks.iv)
                    b = t.b_at(batch, ks.iv, cols.iv)
                    ks.yield_([kb.emit("loop.add", ks.args[0], kb.emit("loop.mul", a, b))])
                idx = (*batch, rows.iv, cols.iv)
                acc = ks.results[0]

                def product(at_idx: tuple) -> Value:
                    if index_key(at_idx) != index_key(idx):
                        raise IRError(f"lower-loops: {ev.what}: the epilogue reads the "
                                      "product at another index")
                    return ev.cast(acc, t.dtype)

                ev.overrides[id(dot.result)] = product
                try:
                    kb.store(ev.at(yielded, idx), out, list(idx))
                finally:
                    ev.overrides.pop(id(dot.result), None)
    if _gpu_shaped(lp.op):
        lp.op.attrs["gpu_matmul"] = tag


def _gpu_shaped(par: Op) -> bool:
    """Whether the tile loop kept the nest the GPU emitter expects (parallel > rows > cols >
    one K loop and a store): loops of static size 0 vanish, and an epilogue with loops of
    its own (guarded loads) is left to the generic mapping."""
    block = par.regions[0]
    for _ in range(2):
        loops = [op for op in block.ops if op.regions]
        if len(loops) != 1 or not isinstance(loops[0], L.For):
            return False
        block = loops[0].regions[0]
    loops = [op for op in block.ops if op.regions]
    return len(loops) == 1 and isinstance(loops[0], L.For) and len(loops[0].results) == 1
