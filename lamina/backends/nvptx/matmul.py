"""The shared-memory tiled matmul kernel: NVPTX LLVM IR for a ``gpu_matmul``-tagged kernel.

``lower_dot`` (target ``"cuda"``) shapes a float32 product ``C = epilogue(A @ B)``
as a ``loop.parallel`` over 128x128 (or 64x64) output tiles (batch, M tiles, N tiles; N
fastest) whose trip computes its tile element by element, and tags the loop
``gpu_matmul = "a=.. b=.. c=.. batch=.. a_axes=.. b_axes=.. tile=128x128x8"``;
``gpu-map`` turns it into ``loop.gpu_parallel {block = 256, lanes = 256}``. The
loop IR stays the meaning (the CPU backend runs it as written); this module
writes the fast form of the same computation, one block per tile (grid-stride
over tiles):

- the K axis in steps of 8: A's 128x8 and B's 8x128 slices are staged in
  shared memory (A transposed, rows padded to 132 floats so neither the
  transposing stores nor the 16-byte reads conflict on banks), double
  buffered, one ``barrier0`` per step; the next step's slices are loaded
  from global memory into registers while the current one is multiplied;
- each thread loads 4 consecutive elements along an operand's unit-stride
  axis: one ``ld.global.v4.f32`` when the whole chunk is in bounds and the
  layout is 16-byte aligned (checked once per launch), else 4 clamped,
  masked scalar loads (any M, N, K, strides, K = 0);
- each of the 16x16 threads owns an 8x8 register tile: rows ``ty*4 + {0..3}``
  and ``64 + ty*4 + {0..3}``, columns likewise with ``tx``, read from shared
  memory as four 16-byte vectors per K step (64 FMAs); with 64x64 tiles (small
  static products) a 4x4 tile and 2-element staging;
- the epilogue: for each in-bounds element the ops of the loop IR that
  compute the stored value from the accumulated product (bias loads, adds,
  activations, casts) are re-emitted with the element's row, column and
  accumulator bound, then its ``loop.store``.

Argument ABI, trip count and the rest of the kernel (top-level ops) are the
generic NVPTX emitter's (``emit.py``), which calls :func:`emit` for tagged
kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.backends.llvm.builder import LType, ModuleText
from lamina.backends.nvptx.emit import _GpuBody, arg_slots
from lamina.ir.core import Block, Graph, IRError, Op, Return, Value
from lamina.ir.dialects import loop as L

THREADS = 256
TILES = (128, 64)  # square output tiles the emitter knows (lower_dot picks one)
TK = 8
PAD = 4  # floats of padding per shared-memory row (bank-conflict free, 16-byte aligned)
_I64, _I32, _F32, _I1 = LType("i64"), LType("i32"), LType("float"), LType("i1")
_V4 = "<4 x float>"


@dataclass(frozen=True)
class Tag:
    """The parsed ``gpu_matmul`` attribute: argument positions and axis maps."""

    a: int
    b: int
    c: int
    batch: int
    a_axes: tuple[int, ...]  # A's axes for (batch..., m, k)
    b_axes: tuple[int, ...]  # B's axes for (batch..., k, n)
    tile: tuple[int, int, int]


def parse_tag(text: str) -> Tag:
    """Parse ``gpu_matmul``; raises IRError on anything this emitter was not written for."""
    try:
        f = dict(item.split("=", 1) for item in text.split())
        tag = Tag(int(f["a"]), int(f["b"]), int(f["c"]), int(f["batch"]),
                  tuple(int(x) for x in f["a_axes"].split(",")),
                  tuple(int(x) for x in f["b_axes"].split(",")),
                  tuple(int(x) for x in f["tile"].split("x")))  # type: ignore[arg-type]
    except (KeyError, ValueError) as e:
        raise IRError(f"gpu_matmul: malformed tag {text!r} ({e})") from None
    if tag.tile[0] not in TILES or tag.tile != (tag.tile[0], tag.tile[0], TK) \
            or len(tag.a_axes) != tag.batch + 2 or len(tag.b_axes) != tag.batch + 2:
        raise IRError(f"gpu_matmul: unsupported tag {text!r} (tile must be 128x128x{TK} or "
                      f"64x64x{TK})")
    return tag


@dataclass
class _Plan:
    """Where the tagged loop nest keeps its pieces (checked against what lower_dot makes)."""

    par: Op
    rows: Op
    cols: Op
    kloop: Op
    store: Op
    epilogue: list[Op]  # the ops the stored value depends on inside the trip, in order


def _only_loop(block: Block, what: str) -> Op:
    loops = [op for op in block.ops if op.regions]
    if len(loops) != 1 or not isinstance(loops[0], L.For) or loops[0].results:
        raise IRError(f"gpu_matmul: expected one loop.for over {what}")
    return loops[0]


def plan(graph: Graph, par: Op, tag: Tag) -> _Plan:
    """Find rows/cols/K loops, the store and its epilogue slice in ``par``; IRError if odd."""
    rows = _only_loop(par.regions[0], "the tile's rows")
    cols = _only_loop(rows.regions[0], "the tile's columns")
    inner = cols.regions[0]
    kloops = [op for op in inner.ops if op.regions]
    stores = [op for op in inner.ops if isinstance(op, L.Store)]
    if len(kloops) != 1 or not isinstance(kloops[0], L.For) or len(kloops[0].results) != 1 \
            or kloops[0].results[0].type.name != "f32" or len(stores) != 1:
        raise IRError(f"@{graph.name}: gpu_matmul: expected one K loop carrying an f32 "
                      "and one store per output element")
    store = stores[0]
    if store.operands[1] is not graph.args[tag.c]:
        raise IRError(f"@{graph.name}: gpu_matmul: the store does not write argument {tag.c}")
    blocks = (par.regions[0], rows.regions[0], inner)
    bound = {id(b.args[0]) for b in blocks} | {id(kloops[0].results[0])}
    owner = {id(r): op for b in blocks for op in b.ops for r in op.results}
    needed: set[int] = set()
    work: list[Value] = list(store.operands)
    while work:
        v = work.pop()
        op = owner.get(id(v))
        if id(v) in bound or op is None or id(op) in needed:
            continue
        if op.regions or not (op.has("pure") or isinstance(op, L.Load)):
            raise IRError(f"@{graph.name}: gpu_matmul: the epilogue holds {op.where()}, "
                          "which the tiled kernel cannot re-emit")
        needed.add(id(op))
        work.extend(op.operands)
    epilogue = [op for b in blocks for op in b.ops if id(op) in needed]
    return _Plan(par, rows, cols, kloops[0], store, epilogue)


def emit(graph: Graph, mt: ModuleText, par: Op) -> None:
    """Append the tiled ``ptx_kernel`` of ``graph`` (its parallel loop ``par`` tagged) to ``mt``."""
    tag = parse_tag(par.attrs["gpu_matmul"])
    p = plan(graph, par, tag)
    body = _GpuBody(graph, mt)
    tiled = _Tiled(body, graph, tag, p, mt)
    tiled.declare()
    for op in graph.ops:
        if op is par:
            tiled.kernel()
        elif not isinstance(op, Return):
            body.op(op)
    n = max(arg_slots(graph), 1)
    mt.functions.append(body.finish(
        f'define ptx_kernel void @{graph.name}(ptr byval([{n} x i64]) align 8 %args)',
        "ret void").replace(" nounwind {", f' nounwind "nvvm.maxntid"="{THREADS}" {{', 1))


class _Operand:
    """How one input (A or B) is read: its pointer, sizes/strides along (fixed, along) axes."""

    def __init__(self, fixed_size: str, fixed_stride: str, k_size: str, k_stride: str,
                 batch_strides: list[str], data: str, k_contiguous: bool):
        self.fixed_size, self.fixed_stride = fixed_size, fixed_stride
        self.k_size, self.k_stride = k_size, k_stride
        self.batch_strides, self.data = batch_strides, data
        # a thread's 4 elements run along K (else along M or N)
        self.along_k = k_contiguous


class _Tiled:
    """Writes the tile loop into ``body`` (its FnBuilder, argument unpacking and op writer)."""

    def __init__(self, body: _GpuBody, graph: Graph, tag: Tag, p: _Plan, mt: ModuleText):
        self.body, self.b, self.graph, self.tag, self.p, self.mt = body, body.b, graph, tag, p, mt
        self.smem_a = f"@{graph.name}__smem_a"
        self.smem_b = f"@{graph.name}__smem_b"
        self.tile = tag.tile[0]
        self.halves = self.tile // 64  # a thread's rows: ty*4 + {0..3} in each 64-row half
        self.r = 4 * self.halves  # a thread owns r x r outputs
        self.chunk = self.tile * TK // THREADS  # elements a thread stages per operand and step
        self.vec = f"<{self.chunk} x float>"
        self.smem_t = f"[2 x [{TK} x [{self.tile + PAD} x float]]]"

    def declare(self) -> None:
        for g in (self.smem_a, self.smem_b):
            self.mt.define(g, f"{g} = internal addrspace(3) global {self.smem_t} undef, align 16")
        self.mt.declare("llvm.nvvm.barrier0", "declare void @llvm.nvvm.barrier0()")

    # -- small helpers -------------------------------------------------------------------
    def i(self, op: str, a: str, c: str) -> str:
        return self.b.bin(op, _I64, a, c)

    def add(self, a: str, c: str) -> str:
        return self.body.iadd(a, c)

    def mul(self, a: str, c: str) -> str:
        return self.body.imul(a, c)

    def lt(self, a: str, c: str) -> str:
        return self.b.cmp("slt", _I64, a, c)

    def min(self, a: str, c: str) -> str:
        return self.b.intrinsic("smin", _I64, [(_I64, a), (_I64, c)])

    def both(self, x: str, y: str) -> str:
        return self.b.bin("and", _I1, x, y)

    def smem(self, which: str, buf: str, k: str, col: str) -> str:
        return self.b.emit(f"getelementptr inbounds {self.smem_t}, ptr addrspace(3) {which}, "
                           f"i64 0, i64 {buf}, i64 {k}, i64 {col}")

    def aligned(self, x: str, mask: int) -> str:
        return self.b.cmp("eq", _I64, self.i("and", x, str(mask)), "0")

    # -- operands ------------------------------------------------------------------------
    def operands(self) -> tuple[_Operand, _Operand]:
        t, mems, nb = self.tag, self.body.mems, self.tag.batch
        a, bm, c = (mems[id(self.graph.args[k])] for k in (t.a, t.b, t.c))
        self.c = c
        self.m, self.n = c.sizes[nb], c.sizes[nb + 1]
        self.batch_sizes = c.sizes[:nb]
        ax, bx = t.a_axes, t.b_axes

        def unit(s: str) -> bool:
            return s == "1"

        opa = _Operand(self.m, a.strides[ax[nb]], a.sizes[ax[nb + 1]], a.strides[ax[nb + 1]],
                       [a.strides[ax[i]] for i in range(nb)], a.data,
                       unit(a.strides[ax[nb + 1]]) or not unit(a.strides[ax[nb]]))
        opb = _Operand(self.n, bm.strides[bx[nb + 1]], a.sizes[ax[nb + 1]], bm.strides[bx[nb]],
                       [bm.strides[bx[i]] for i in range(nb)], bm.data,
                       unit(bm.strides[bx[nb]]) and not unit(bm.strides[bx[nb + 1]]))
        self.k = opa.k_size
        for o in (opa, opb):
            # 16-byte vector loads: the unit-stride axis is static, the pointer and every
            # other stride keep 4-element chunks 16-byte aligned (checked once per launch)
            contiguous = o.k_stride if o.along_k else o.fixed_stride
            others = [o.fixed_stride if o.along_k else o.k_stride, *o.batch_strides]
            if contiguous != "1":
                o.vec_ok = "false"
                continue
            c = self.chunk
            ok = self.aligned(self.b.conv("ptrtoint", o.data, LType("ptr"), _I64), 4 * c - 1)
            for s in others:
                ok = self.both(ok, self.aligned(s, c - 1))
            o.vec_ok = ok
        return opa, opb

    def load4(self, o: _Operand, base: str, k0: str, tid: str) -> tuple[list[str], str, str]:
        """A thread's ``chunk`` elements of the operand's K-step slice at ``k0``: (values, k,
        fixed) offsets inside the slice of the first element (the others follow along
        o.along_k)."""
        b, c = self.b, self.chunk
        per = TK // c if o.along_k else self.tile // c  # threads per row of the slice
        major = self.i("lshr", tid, str(per.bit_length() - 1))
        minor = self.mul(self.i("and", tid, str(per - 1)), str(c))
        fixed_off, k_off = (major, minor) if o.along_k else (minor, major)
        f = self.add(o.f0, fixed_off)
        k = self.add(k0, k_off)
        if o.along_k:
            f_last, k_last = f, self.add(k, str(c - 1))
        else:
            f_last, k_last = self.add(f, str(c - 1)), k
        inb = self.both(self.lt(f_last, o.fixed_size), self.lt(k_last, o.k_size))
        fast = inb if o.vec_ok == "false" else self.both(inb, o.vec_ok)
        if o.vec_ok == "false":
            fast = "false"
        vec, scl, join = b.new_block("vec"), b.new_block("scl"), b.new_block("got")
        b.cond_br(fast, vec, scl)
        b.start(vec)
        off = self.add(self.mul(f, o.fixed_stride), self.mul(k, o.k_stride))
        p = b.emit(f"getelementptr inbounds float, ptr addrspace(1) {base}, i64 {off}")
        v = b.emit(f"load {self.vec}, ptr addrspace(1) {p}, align {4 * c}")
        fast_vals = [b.emit(f"extractelement {self.vec} {v}, i64 {j}") for j in range(c)]
        vec_end = b.current
        b.br(join)
        b.start(scl)
        f_max, k_max = self.add(o.fixed_size, "-1"), self.add(o.k_size, "-1")
        slow_vals = []
        for j in range(c):
            fj, kj = (f, self.add(k, str(j))) if o.along_k else (self.add(f, str(j)), k)
            ok = self.both(self.lt(fj, o.fixed_size), self.lt(kj, o.k_size))
            fc, kc = self.min(fj, f_max), self.min(kj, k_max)
            off = self.add(self.mul(fc, o.fixed_stride), self.mul(kc, o.k_stride))
            p = b.emit(f"getelementptr inbounds float, ptr addrspace(1) {base}, i64 {off}")
            x = b.emit(f"load float, ptr addrspace(1) {p}, align 4")
            slow_vals.append(b.select(ok, _F32, x, "0.0"))
        scl_end = b.current
        b.br(join)
        b.start(join)
        vals = [b.emit(f"phi float [{x}, %{vec_end}], [{y}, %{scl_end}]")
                for x, y in zip(fast_vals, slow_vals)]
        return vals, k_off, fixed_off

    def stage(self, which: str, o: _Operand, buf: str, vals: list[str], k_off: str,
              f_off: str) -> None:
        """Store a thread's 4 loaded elements into shared buffer ``buf`` (K-major rows)."""
        b = self.b
        if o.along_k:
            for j, x in enumerate(vals):
                p = self.smem(which, buf, self.add(k_off, str(j)), f_off)
                b.do(f"store float {x}, ptr addrspace(3) {p}, align 4")
            return
        v = "poison"
        for j, x in enumerate(vals):
            v = b.emit(f"insertelement {self.vec} {v}, float {x}, i64 {j}")
        p = self.smem(which, buf, k_off, f_off)
        b.do(f"store {self.vec} {v}, ptr addrspace(3) {p}, align {4 * self.chunk}")

    # -- the kernel ------------------------------------------------------------------------
    def kernel(self) -> None:
        b, body, p = self.b, self.body, self.p
        opa, opb = self.operands()
        acc_slots = b.fresh("accs")
        b.lines.insert(0, f"  %{acc_slots} = alloca [{self.r * self.r} x float], align 4")
        self.accs = f"%{acc_slots}"
        tid = body.sreg("tid.x")
        tx, ty = self.i("and", tid, "15"), self.i("lshr", tid, "4")
        trips = body.trip_count(p.par)
        lb, step = body.val(p.par.operands[0]), body.val(p.par.operands[2])
        tm = tn = self.tile
        tiles_m = self.i("sdiv", self.add(self.m, str(tm - 1)), str(tm))
        tiles_n = self.i("sdiv", self.add(self.n, str(tn - 1)), str(tn))
        ntk = self.i("sdiv", self.add(self.k, str(TK - 1)), str(TK))
        base_a = b.emit(f"addrspacecast ptr {opa.data} to ptr addrspace(1)")
        base_b = b.emit(f"addrspacecast ptr {opb.data} to ptr addrspace(1)")

        # grid-stride loop over tiles: t = ctaid.x, ctaid.x + nctaid.x, ...
        pre = b.current
        head, tile, done = b.new_block("tile_head"), b.new_block("tile"), b.new_block("tiles_done")
        first, count = body.sreg("ctaid.x"), body.sreg("nctaid.x")
        b.br(head)
        b.start(head)
        t = "%" + b.fresh("t")
        phi_at = len(b.lines)
        b.lines.append("")
        b.cond_br(self.lt(t, trips), tile, done)
        b.start(tile)
        # the tile's batch index and first row/column, decoded as lower_dot encodes them
        rest = self.i("sdiv", t, tiles_n)
        n0 = self.mul(self.i("srem", t, tiles_n), str(tn))
        m0 = self.mul(self.i("srem", rest, tiles_m), str(tm))
        rest = self.i("sdiv", rest, tiles_m)
        nb = self.tag.batch
        batch = [""] * nb
        for k in reversed(range(nb)):
            batch[k] = rest if k == 0 else self.i("srem", rest, self.batch_sizes[k])
            if k:
                rest = self.i("sdiv", rest, self.batch_sizes[k])
        for o, first_f in ((opa, m0), (opb, n0)):
            off = "0"
            for bi, s in zip(batch, o.batch_strides):
                off = self.add(off, self.mul(bi, s))
            o.f0 = first_f
            o.base = b.emit(f"getelementptr inbounds float, ptr addrspace(1) "
                            f"{base_a if o is opa else base_b}, i64 {off}")
        for j in range(self.r * self.r):
            b.do(f"store float 0.0, ptr {self._acc(j)}, align 4")
        self.k_loop(opa, opb, ntk, tid, tx, ty)
        self.epilogue(t, lb, step, m0, n0, tx, ty)
        nxt = b.bin("add", _I64, t, count, "nsw")
        latch = b.current
        b.br(head)
        b.lines[phi_at] = f"  {t} = phi i64 [{first}, %{pre}], [{nxt}, %{latch}]"
        b.start(done)

    def _acc(self, j: int) -> str:
        n = self.r * self.r
        return self.b.emit(f"getelementptr inbounds [{n} x float], ptr {self.accs}, i64 0, "
                           f"i64 {j}")

    def k_loop(self, opa: _Operand, opb: _Operand, ntk: str, tid: str, tx: str, ty: str) -> None:
        b = self.b
        run, skip = b.new_block("k_run"), b.new_block("k_done")
        b.cond_br(self.b.cmp("sgt", _I64, ntk, "0"), run, skip)
        b.start(run)
        for which, o in ((self.smem_a, opa), (self.smem_b, opb)):
            vals, k_off, f_off = self.load4(o, o.base, "0", tid)
            self.stage(which, o, "0", vals, k_off, f_off)
        b.do("call void @llvm.nvvm.barrier0()")
        pre = b.current
        head, step = b.new_block("k_head"), b.new_block("k_step")
        b.br(head)
        b.start(head)
        kt = "%" + b.fresh("kt")
        phi_at = len(b.lines)
        b.lines.append("")
        b.cond_br(self.lt(kt, ntk), step, skip)
        b.start(step)
        buf = self.i("and", kt, "1")
        nbuf = self.i("xor", buf, "1")
        # the next step's slices (the last step reloads itself: always in bounds, never read)
        nk0 = self.mul(self.min(self.add(kt, "1"), self.add(ntk, "-1")), str(TK))
        staged = [(which, o, *self.load4(o, o.base, nk0, tid))
                  for which, o in ((self.smem_a, opa), (self.smem_b, opb))]
        self.multiply(buf, tx, ty)
        for which, o, vals, k_off, f_off in staged:
            self.stage(which, o, nbuf, vals, k_off, f_off)
        b.do("call void @llvm.nvvm.barrier0()")
        nxt = b.bin("add", _I64, kt, "1", "nsw")
        latch = b.current
        b.br(head)
        b.lines[phi_at] = f"  {kt} = phi i64 [0, %{pre}], [{nxt}, %{latch}]"
        b.start(skip)

    def multiply(self, buf: str, tx: str, ty: str) -> None:
        """8 K steps of the thread's r x r outer products from shared buffer ``buf``."""
        b, r = self.b, self.r
        accs = [self._acc(j) for j in range(r * r)]
        cur = [b.emit(f"load float, ptr {p}, align 4") for p in accs]
        r0, c0 = self.mul(ty, "4"), self.mul(tx, "4")
        rows = [self.add(r0, str(64 * h)) for h in range(self.halves)]
        cols = [self.add(c0, str(64 * h)) for h in range(self.halves)]
        for kk in range(TK):
            a, bb = [], []
            for which, offs, out in ((self.smem_a, rows, a), (self.smem_b, cols, bb)):
                for off in offs:
                    v = b.emit(f"load {_V4}, ptr addrspace(3) "
                               f"{self.smem(which, buf, str(kk), off)}, align 16")
                    out += [b.emit(f"extractelement {_V4} {v}, i64 {j}") for j in range(4)]
            for i in range(r):
                for j in range(r):
                    cur[i * r + j] = b.intrinsic("fma", _F32, [(_F32, a[i]), (_F32, bb[j]),
                                                              (_F32, cur[i * r + j])])
        for p, v in zip(accs, cur):
            b.do(f"store float {v}, ptr {p}, align 4")

    def epilogue(self, t: str, lb: str, step: str, m0: str, n0: str, tx: str, ty: str) -> None:
        """Per in-bounds element of the thread's 8x8 tile: the loop IR's epilogue and store."""
        b, body, p = self.b, self.body, self.p
        env = body.env
        env[id(p.par.regions[0].args[0])] = self.add(lb, self.mul(t, step))
        r = self.r
        for i in range(r):
            row = self.add(m0, self.add(self.mul(ty, "4"), str(i % 4 + 64 * (i // 4))))
            for j in range(r):
                col = self.add(n0, self.add(self.mul(tx, "4"), str(j % 4 + 64 * (j // 4))))
                ok = self.both(self.lt(row, self.m), self.lt(col, self.n))
                do, skip = b.new_block("out"), b.new_block("next")
                acc = b.emit(f"load float, ptr {self._acc(i * r + j)}, align 4")
                b.cond_br(ok, do, skip)
                b.start(do)
                env[id(p.rows.regions[0].args[0])] = row
                env[id(p.cols.regions[0].args[0])] = col
                env[id(p.kloop.results[0])] = acc
                for op in p.epilogue:
                    body.op(op)
                body.op(p.store)
                b.br(skip)
                b.start(skip)
