"""Loop-dialect kernels to LLVM IR text, following the Kernel ABI of docs/contracts.md.

``kernel @k(%a: memref<...>, ...)`` becomes ``void k(i64* args, i64 begin, i64 end)``
running trips ``[begin, end)`` of its top-level ``loop.parallel``, and
``i64 k__trips(i64* args)``. ``args`` holds, per memref, the data pointer, the
sizes and the strides (in elements). Sizes and strides that the memref type
fixes are constants in the code, never read from ``args``: a static unit last
stride is what lets LLVM vectorize, a static stride 0 makes a broadcast load
loop-invariant. Buffers are not marked ``noalias`` (eager in-place ops pass the
same storage twice); the loop vectorizer adds run-time overlap checks instead.
"""

from __future__ import annotations

import re

from lamina.backends.llvm import scalar as S
from lamina.backends.llvm.builder import FnBuilder, LType, ModuleText
from lamina.backends.llvm.target import host_target
from lamina.ir.core import Block, Graph, IRError, Module, Op, Return, Value
from lamina.ir.dialects import loop as L
from lamina.ir.types import MemRefType, VectorType, element_type
from lamina.ir.verifier import verify

_I64 = LType("i64")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def emit_module(module: Module) -> str:
    """LLVM IR text of every ``kernel`` graph of ``module`` (``func`` graphs are skipped)."""
    mt = ModuleText()
    for g in module.graphs:
        if g.kind == "kernel":
            _Kernel(g, mt).emit()
    return mt.text()


def emit_kernel(graph: Graph) -> str:
    """LLVM IR text of one ``kernel`` graph: its two ABI functions and their helpers."""
    if graph.kind != "kernel":
        raise IRError(f"@{graph.name}: emit_kernel needs a kernel graph, got a {graph.kind}")
    mt = ModuleText()
    _Kernel(graph, mt).emit()
    return mt.text()


def _fn_attrs() -> str:
    # Wide vectors pay for the math-heavy kernels; LLVM defaults to 256 bits.
    wide = "+avx512f" in host_target().features.split(",")
    return 'nounwind "prefer-vector-width"="512"' if wide else "nounwind"


class _Kernel:
    """Checks one kernel against the ABI's rules and writes its two functions."""

    def __init__(self, graph: Graph, mt: ModuleText):
        verify(graph)
        if not _IDENT.match(graph.name):
            raise IRError(f"@{graph.name}: kernel names must be C identifiers")
        for i, a in enumerate(graph.args):
            if not isinstance(a.type, MemRefType):
                raise IRError(f"@{graph.name}: argument {i} has type {a.type}; kernel "
                              "arguments must be memrefs")
        self.graph, self.mt = graph, mt
        tops = [op for op in graph.ops if isinstance(op, L.Parallel)]
        if len(tops) > 1:
            raise IRError(f"@{graph.name}: a kernel may have one top-level loop.parallel, "
                          f"found {len(tops)}")
        self.parallel = tops[0] if tops else None
        if self.parallel is not None:
            after = graph.ops[graph.ops.index(self.parallel) + 1:]
            for op in after:
                if any(o.has("writes") for o in op.walk()):
                    raise op.error(f"in @{graph.name}: nothing that writes memory may follow "
                                   "the top-level loop.parallel")

    def emit(self) -> None:
        name = self.graph.name
        body = _Body(self.graph, self.mt)
        for op in self.graph.ops:
            if op is self.parallel:
                body.parallel_range(op, "%begin", "%end")
            elif not isinstance(op, Return):
                body.op(op)
        self.mt.functions.append(body.finish(
            f"define void @{name}(ptr noalias readonly %args, i64 %begin, i64 %end)",
            "ret void"))
        trips = _Body(self.graph, self.mt)
        result = "1"
        if self.parallel is not None:
            needed = _slice(self.graph.body, self.parallel.operands[:3])
            for op in self.graph.ops:
                if id(op) in needed:
                    trips.op(op)
            result = trips.trip_count(self.parallel)
        self.mt.functions.append(trips.finish(
            f"define i64 @{name}__trips(ptr noalias readonly %args)", f"ret i64 {result}"))


def _slice(block: Block, values: list[Value]) -> set[int]:
    """ids of the top-level ops of ``block`` that ``values`` depend on."""
    owner = {id(r): op for op in block.ops for r in op.results}
    needed: set[int] = set()
    work = list(values)
    while work:
        v = work.pop()
        op = owner.get(id(v))
        if op is None or id(op) in needed:
            continue
        needed.add(id(op))
        for inner in op.walk():
            work.extend(inner.operands)
    return needed


class _MemRef:
    """A memref argument unpacked from ``args``: data pointer, sizes, strides as operands."""

    def __init__(self, t: MemRefType, data: str, sizes: list[str], strides: list[str]):
        self.type, self.data, self.sizes, self.strides = t, data, sizes, strides


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


class _Body:
    """Emits the ops of one function; values map to LLVM operands (constants stay literals)."""

    def __init__(self, graph: Graph, mt: ModuleText):
        self.graph = graph
        self.b = FnBuilder(mt)
        self.env: dict[int, str] = {}
        self.mems: dict[int, _MemRef] = {}
        self.reductions: set[int] = set()
        slot = 0
        for a in graph.args:
            t = a.type
            data = self._arg(slot, "ptr")
            sizes = [str(d) if d is not None else self._arg(slot + 1 + k)
                     for k, d in enumerate(t.shape)]
            strides = self._strides(t, sizes, slot)
            self.mems[id(a)] = _MemRef(t, data, sizes, strides)
            slot += 1 + 2 * t.rank

    def _arg(self, slot: int, ty: str = "i64") -> str:
        p = self.b.emit(f"getelementptr inbounds i64, ptr %args, i64 {slot}", "p")
        return self.b.emit(f"load {ty}, ptr {p}, align 8", "a")

    def _strides(self, t: MemRefType, sizes: list[str], slot: int) -> list[str]:
        if t.strides is not None:
            return [str(s) if s is not None else self._arg(slot + 1 + t.rank + k)
                    for k, s in enumerate(t.strides)]
        out = ["1"] * t.rank
        for k in range(t.rank - 2, -1, -1):
            out[k] = self.imul(out[k + 1], sizes[k + 1])
        return out

    def finish(self, head: str, ret: str) -> str:
        self.b.do(ret)
        return f"{head} {_fn_attrs()} {{\nentry:\n" + "\n".join(self.b.lines) + "\n}"

    # -- index arithmetic, folded where operands are constants -----------------------
    def imul(self, a: str, c: str) -> str:
        x, y = _int(a), _int(c)
        if x is not None and y is not None:
            return str(x * y)
        if x == 1 or y == 0:
            return c
        if y == 1 or x == 0:
            return a
        return self.b.bin("mul", _I64, a, c, "nsw")

    def iadd(self, a: str, c: str) -> str:
        x, y = _int(a), _int(c)
        if x is not None and y is not None:
            return str(x + y)
        if x == 0:
            return c
        if y == 0:
            return a
        return self.b.bin("add", _I64, a, c, "nsw")

    def address(self, op: Op, m: Value, idx: list[Value]) -> tuple[_MemRef, str]:
        mem = self.mems.get(id(m))
        if mem is None:
            raise op.error("loads and stores need a kernel argument memref")
        off = "0"
        for i, s in zip(idx, mem.strides):
            off = self.iadd(off, self.imul(self.env[id(i)], s))
        st = S.storage_type(mem.type.dtype)
        p = self.b.emit(f"getelementptr inbounds {st}, ptr {mem.data}, i64 {off}", "p")
        return mem, p

    # -- ops ---------------------------------------------------------------------------
    def op(self, op: Op) -> None:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            if isinstance(op, L.SUnary):
                handler = _Body._unary
            elif isinstance(op, L.SBinary):
                handler = _Body._binary
            else:
                raise op.error(f"in @{self.graph.name}: the LLVM backend cannot emit this op")
        handler(self, op)

    def val(self, v: Value) -> str:
        return self.env[id(v)]

    def _unary(self, op: Op) -> None:
        x = op.operands[0]
        t = S.compute_type(x.type)
        self.env[id(op.result)] = S.unary(self.b, op.fn, element_type(x.type), t, self.val(x))

    def _binary(self, op: Op) -> None:
        x, y = op.operands
        dtype, t = element_type(x.type), S.compute_type(x.type)
        if op.predicate:
            r = S.compare(self.b, op.fn, dtype, t, self.val(x), self.val(y))
        else:
            r = S.binary(self.b, op.fn, dtype, t, self.val(x), self.val(y),
                         reduction=id(op) in self.reductions)
        self.env[id(op.result)] = r

    def _const(self, op: Op) -> None:
        self.env[id(op.result)] = S.constant(op.result.type, op.attrs["value"])

    def _select(self, op: Op) -> None:
        c, x, y = op.operands
        t = S.compute_type(x.type)
        self.env[id(op.result)] = self.b.select(self.val(c), t, self.val(x), self.val(y))

    def _cast(self, op: Op) -> None:
        x = op.operands[0]
        width = x.type.width if isinstance(x.type, VectorType) else 0
        self.env[id(op.result)] = S.cast(self.b, self.val(x), element_type(x.type),
                                         op.attrs["dtype"], width)

    def _splat(self, op: Op) -> None:
        x = op.operands[0]
        vt = S.compute_type(op.result.type)
        t = LType(vt.elem)
        one = self.b.emit(f"insertelement {vt} poison, {t} {self.val(x)}, i64 0")
        self.env[id(op.result)] = self.b.emit(
            f"shufflevector {vt} {one}, {vt} poison, <{vt.width} x i32> zeroinitializer")

    def _vreduce(self, op: Op) -> None:
        x = op.operands[0]
        self.env[id(op.result)] = S.vreduce(self.b, op.attrs["fn"], x.type.dtype,
                                            S.compute_type(x.type), self.val(x))

    def _dim(self, op: Op) -> None:
        mem = self.mems[id(op.operands[0])]
        self.env[id(op.result)] = mem.sizes[op.attrs["axis"]]

    def _load(self, op: Op, width: int = 0) -> None:
        mem, p = self.address(op, op.operands[0], op.operands[1:])
        dtype = mem.type.dtype
        st = S.storage_type(dtype, width)
        raw = self.b.emit(f"load {st}, ptr {p}, align {dtype.itemsize}")
        self.env[id(op.result)] = S.from_storage(self.b, raw, dtype, width)

    def _vload(self, op: Op) -> None:
        self._load(op, op.attrs["width"])

    def _store(self, op: Op) -> None:
        v = op.operands[0]
        mem, p = self.address(op, op.operands[1], op.operands[2:])
        dtype = mem.type.dtype
        width = v.type.width if isinstance(v.type, VectorType) else 0
        raw = S.to_storage(self.b, self.val(v), dtype, width)
        self.b.do(f"store {S.storage_type(dtype, width)} {raw}, ptr {p}, align {dtype.itemsize}")

    # -- loops -----------------------------------------------------------------------------
    def _for(self, op: Op) -> None:
        lb, ub, step = (self.val(v) for v in op.operands[:3])
        self.loop(op, lb, self.cond(op, ub, step), step)

    def cond(self, op: Op, ub: str, step: str):
        """A function of the induction variable giving the loop's continue condition."""
        k = _int(step)
        if k == 0:
            raise op.error(f"in @{self.graph.name}: loop step is the constant 0")
        if k is not None:
            pred = "slt" if k > 0 else "sgt"
            return lambda iv: self.b.cmp(pred, _I64, iv, ub)

        def dynamic(iv: str) -> str:
            b, m = self.b, LType("i1")
            up = b.bin("and", m, b.cmp("sgt", _I64, step, "0"), b.cmp("slt", _I64, iv, ub))
            down = b.bin("and", m, b.cmp("slt", _I64, step, "0"), b.cmp("sgt", _I64, iv, ub))
            return b.bin("or", m, up, down)

        return dynamic

    def loop(self, op: Op, start: str, cond, step: str, body_iv=None) -> None:
        """``for (iv = start; cond(iv); iv += step)`` around ``op``'s region.

        ``body_iv`` maps the loop counter to the region's index argument (the
        top-level parallel loop counts trips, its body sees lb + t*step).
        """
        b = self.b
        region = op.regions[0]
        carried = op.operands[3:]
        pre = b.current
        head, body, done = b.new_block("loop"), b.new_block("body"), b.new_block("done")
        b.br(head)
        b.start(head)
        phi_at = len(b.lines)
        b.lines.append("")
        iv = "%" + b.fresh("iv")
        phis = ["%" + b.fresh("acc") for _ in carried]
        b.cond_br(cond(iv), body, done)
        b.start(body)
        self.env[id(region.args[0])] = body_iv(iv) if body_iv else iv
        for a, phi in zip(region.args[1:], phis):
            self.env[id(a)] = phi
        self.reductions |= _reduction_updates(region)
        ops = region.ops
        end = ops[-1] if ops and isinstance(ops[-1], L.Yield) else None
        for inner in ops[:-1] if end is not None else ops:
            self.op(inner)
        yielded = [self.val(v) for v in end.operands] if end is not None else []
        nxt = b.bin("add", _I64, iv, step, "nsw")
        latch = b.current
        b.br(head)
        lines = [f"  {iv} = phi i64 [{start}, %{pre}], [{nxt}, %{latch}]"]
        for phi, init, new in zip(phis, carried, yielded):
            t = S.compute_type(init.type)
            lines.append(f"  {phi} = phi {t} [{self.val(init)}, %{pre}], [{new}, %{latch}]")
        b.lines[phi_at] = "\n".join(lines)
        b.start(done)
        for r, phi in zip(op.results, phis):
            self.env[id(r)] = phi

    def trip_count(self, op: Op) -> str:
        """Iterations of a loop ``range(lb, ub, step)``, 0 when empty; an i64 operand."""
        lb, ub, step = (self.val(v) for v in op.operands[:3])
        b = self.b
        k = _int(step)
        if k == 0:
            raise op.error(f"in @{self.graph.name}: loop step is the constant 0")
        if k is not None:
            span = self.iadd(ub, f"{-_int(lb)}") if _int(lb) is not None else \
                b.bin("sub", _I64, ub, lb)
            if k < 0:
                span = b.bin("sub", _I64, "0", span)
            n = self.iadd(span, str(abs(k) - 1))
            n = n if abs(k) == 1 else b.bin("sdiv", _I64, n, str(abs(k)))
        else:
            neg = b.cmp("slt", _I64, step, "0")
            span = b.bin("sub", _I64, ub, lb)
            span = b.select(neg, _I64, b.bin("sub", _I64, "0", span), span)
            mag = b.select(neg, _I64, b.bin("sub", _I64, "0", step), step)
            safe = b.select(b.cmp("eq", _I64, mag, "0"), _I64, "1", mag)
            n = b.bin("sdiv", _I64, b.bin("add", _I64, span, b.bin("sub", _I64, safe, "1")), safe)
            n = b.select(b.cmp("eq", _I64, mag, "0"), _I64, "0", n)
        if _int(n) is not None:
            return str(max(_int(n), 0))
        return b.intrinsic("smax", _I64, [(_I64, n), (_I64, "0")])

    def parallel_range(self, op: Op, begin: str, end: str) -> None:
        """The top-level parallel loop, trips [max(begin, 0), min(end, trips))."""
        lb, step = self.val(op.operands[0]), self.val(op.operands[2])
        trips = self.trip_count(op)
        first = self.b.intrinsic("smax", _I64, [(_I64, begin), (_I64, "0")])
        last = self.b.intrinsic("smin", _I64, [(_I64, end), (_I64, trips)])
        self.loop(op, first, lambda t: self.b.cmp("slt", _I64, t, last), "1",
                  body_iv=lambda t: self.iadd(lb, self.imul(t, step)))


def _reduction_updates(region: Block) -> set[int]:
    """ids of float add/mul ops that update a carried value: ``acc' = acc + x``."""
    ops = region.ops
    if not ops or not isinstance(ops[-1], L.Yield):
        return set()
    out = set()
    for k, v in enumerate(ops[-1].operands):
        op = v.owner
        if (isinstance(op, L.SBinary) and op.fn in ("add", "mul") and op.parent is region
                and element_type(v.type).is_float and region.args[k + 1] in op.operands):
            out.add(id(op))
    return out


_HANDLERS = {
    L.SConst: _Body._const, L.Select: _Body._select, L.SCast: _Body._cast,
    L.Splat: _Body._splat, L.VReduce: _Body._vreduce, L.Dim: _Body._dim,
    L.Load: _Body._load, L.VLoad: _Body._vload, L.Store: _Body._store,
    L.VStore: _Body._store, L.For: _Body._for, L.Parallel: _Body._for,
}
