"""Loop-dialect kernels to NVPTX LLVM IR: one ``ptx_kernel`` per kernel graph.

The body is the CPU backend's (``backends/llvm/emit._Body``, scalar code and the
polynomial math library are shared; libdevice is not available), only the ABI
and the parallel loop differ:

``kernel @k(%a: memref<...>, ...)`` becomes the CUDA kernel
``k(int64_t args[N])`` where ``args`` is passed *by value* as one kernel
parameter: the same flat array as the CPU ABI (per memref the device data
pointer, its sizes, its strides), so launching a kernel uploads nothing. The
top-level ``loop.parallel`` (or ``loop.gpu_parallel`` made by ``gpu-map``) runs
as a grid-stride loop: global thread ``g`` runs trips ``g, g + G, ...`` with ``G``
the number of launched threads; any launch shape is correct. A kernel without a
top-level parallel loop runs on global thread 0 only. The host computes the
trip count (for the grid size) with the CPU ``k__trips`` of the same kernel.

Cooperative trips (``loop.gpu_parallel {lanes = L}``, docs/gpu.md "Cooperative
reductions"): group ``g`` of ``L`` consecutive threads runs trips ``g, g +
groups, ...``; a ``loop.lane_for`` starts lane ``l`` at ``lb + l*step`` and steps
by ``L*step``, then merges each carried value across the warp with
``llvm.nvvm.shfl.sync.bfly`` butterflies (64-bit values as two 32-bit halves,
narrow ones widened to 32 bits) and, when a block shares the trip, across
warps through a 32-slot ``addrspace(3)`` array between ``llvm.nvvm.barrier0``
calls, so every lane ends up with the whole result; a ``loop.lane0_store``
is guarded by ``lane == 0``. The kernel carries ``"nvvm.maxntid"`` = its block
size so ptxas sizes registers for the launch.

Unrolled elementwise trips (``loop.gpu_parallel {unroll = U}``) need nothing
here: ``gpu-map`` wrote them as plain loop IR whose program order (every load,
then guarded math and stores) LLVM keeps. Loads stay plain ``ld.global``, not
``ld.global.nc``: an input the kernel never stores to may still share memory
with its output at run time (in-place ``out=``), which the non-coherent path
does not allow.
"""

from __future__ import annotations

from lamina.backends.llvm import scalar as S
from lamina.backends.llvm.builder import LType, ModuleText
from lamina.backends.llvm.emit import _IDENT, _Body, _Kernel
from lamina.ir.core import Graph, IRError, Module, Op, Return
from lamina.ir.dialects import gpu as G
from lamina.ir.types import MemRefType, ScalarType

_I64 = LType("i64")
_I32 = LType("i32")
WARP = 32
_BUTTERFLY = (16, 8, 4, 2, 1)


def arg_slots(graph: Graph) -> int:
    """Length of the kernel's flat int64 argument array."""
    return sum(1 + 2 * a.type.rank for a in graph.args)


def emit_module(module: Module) -> str:
    """NVPTX LLVM IR text of every ``kernel`` graph of ``module``."""
    mt = ModuleText()
    for g in module.graphs:
        if g.kind == "kernel":
            _GpuKernel(g, mt).emit()
    return mt.text()


def emit_kernel(graph: Graph) -> str:
    """NVPTX LLVM IR text of one ``kernel`` graph."""
    if graph.kind != "kernel":
        raise IRError(f"@{graph.name}: emit_kernel needs a kernel graph, got a {graph.kind}")
    mt = ModuleText()
    _GpuKernel(graph, mt).emit()
    return mt.text()


class _GpuBody(_Body):
    """The CPU body writer with the GPU's argument array and thread-mapped parallel loop."""

    def sreg(self, name: str) -> str:
        full = f"llvm.nvvm.read.ptx.sreg.{name}"
        self.b.module.declare(full, f"declare i32 @{full}()")
        r = self.b.emit(f"call i32 @{full}()")
        return self.b.conv("zext", r, _I32, _I64)

    def global_thread(self) -> tuple[str, str]:
        """(global thread id, number of launched threads), as i64 operands."""
        block = self.sreg("ntid.x")
        gid = self.b.bin("add", _I64, self.b.bin("mul", _I64, self.sreg("ctaid.x"), block),
                         self.sreg("tid.x"), "nuw nsw")
        total = self.b.bin("mul", _I64, self.sreg("nctaid.x"), block, "nuw nsw")
        return gid, total

    lane: str | None = None  # i64 lane id inside a cooperative trip
    lane0: str | None = None  # i1: this thread is lane 0 of its trip
    lanes: int = 1

    def op(self, op: Op) -> None:
        if isinstance(op, G.LaneFor):
            self._lane_for(op)
        elif isinstance(op, G.Lane0Store):
            self._lane0_store(op)
        else:
            super().op(op)

    def gpu_parallel(self, op: Op) -> None:
        lb, step = self.val(op.operands[0]), self.val(op.operands[2])
        trips = self.trip_count(op)
        lanes = op.attrs.get("lanes", 1) if isinstance(op, G.GpuParallel) else 1
        if lanes == 1:
            group, groups = self.global_thread()
        elif lanes == op.attrs["block"]:  # a block per trip
            self.lane = self.sreg("tid.x")
            group, groups = self.sreg("ctaid.x"), self.sreg("nctaid.x")
        else:  # a warp per trip
            gid, total = self.global_thread()
            self.lane = self.b.bin("and", _I64, gid, str(lanes - 1))
            shift = str(lanes.bit_length() - 1)
            group = self.b.bin("lshr", _I64, gid, shift)
            groups = self.b.bin("lshr", _I64, total, shift)
        if self.lane is not None:
            self.lanes = lanes
            self.lane0 = self.b.cmp("eq", _I64, self.lane, "0")
        self.loop(op, group, lambda t: self.b.cmp("slt", _I64, t, trips), groups,
                  body_iv=lambda t: self.iadd(lb, self.imul(t, step)))

    # -- cooperative trips ------------------------------------------------------------------
    def _lane_for(self, op: Op) -> None:
        if self.lane is None:
            raise op.error(f"in @{self.graph.name}: loop.lane_for outside a cooperative trip")
        lb, ub, step = (self.val(v) for v in op.operands[:3])
        start = self.iadd(lb, self.imul(self.lane, step))
        stride = self.imul(step, str(self.lanes))
        self.loop(op, start, self.cond(op, ub, stride), stride)
        for r, fn in zip(op.results, op.attrs["combine"]):
            self.env[id(r)] = self.lane_combine(self.val(r), fn, r.type)

    def _lane0_store(self, op: Op) -> None:
        if self.lane0 is None:
            self._store(op)
            return
        b = self.b
        run, done = b.new_block("lane0"), b.new_block("stored")
        b.cond_br(self.lane0, run, done)
        b.start(run)
        self._store(op)
        b.br(done)
        b.start(done)

    def lane_combine(self, x: str, fn: str, dtype: ScalarType) -> str:
        """``fn`` of ``x`` over the trip's lanes; every lane gets the result."""
        t = S.compute_type(dtype)
        for off in _BUTTERFLY:
            if off < min(self.lanes, WARP):
                x = S.binary(self.b, fn, dtype, t, x, self.shuffle(x, t, off))
        if self.lanes > WARP:
            x = self.block_combine(x, fn, dtype, t)
        return x

    def _shfl32(self, x: str, elem: str, off: int) -> str:
        ty, suffix = ("float", "f32") if elem == "float" else ("i32", "i32")
        full = f"llvm.nvvm.shfl.sync.bfly.{suffix}"
        self.b.module.declare(full, f"declare {ty} @{full}(i32, {ty}, i32, i32)")
        return self.b.emit(f"call {ty} @{full}(i32 -1, {ty} {x}, i32 {off}, i32 31)")

    def shuffle(self, x: str, t: LType, off: int) -> str:
        """The value ``x`` of lane ``lane ^ off`` (any scalar type, as 32-bit shuffles)."""
        b = self.b
        if t.elem == "float":
            return self._shfl32(x, "float", off)
        bits = t.bits
        it = LType(f"i{bits}")
        xi = b.conv("bitcast", x, t, it) if t.is_float else x
        if bits == 64:
            lo = self._shfl32(b.conv("trunc", xi, it, _I32), "i32", off)
            hi = b.conv("trunc", b.bin("lshr", it, xi, "32"), it, _I32)
            hi = self._shfl32(hi, "i32", off)
            r = b.bin("or", it, b.conv("zext", lo, _I32, it),
                      b.bin("shl", it, b.conv("zext", hi, _I32, it), "32"))
        elif bits == 32:
            r = self._shfl32(xi, "i32", off)
        else:
            r = b.conv("trunc", self._shfl32(b.conv("zext", xi, it, _I32), "i32", off), _I32, it)
        return b.conv("bitcast", r, it, t) if t.is_float else r

    def _barrier(self) -> None:
        self.b.module.declare("llvm.nvvm.barrier0", "declare void @llvm.nvvm.barrier0()")
        self.b.do("call void @llvm.nvvm.barrier0()")

    def block_combine(self, x: str, fn: str, dtype: ScalarType, t: LType) -> str:
        """Warp results of a block-shared trip merged through shared memory."""
        b = self.b
        slots = f"@{self.graph.name}__lanes"
        b.module.define(slots, f"{slots} = internal addrspace(3) global [{WARP} x i64] "
                               "undef, align 8")
        warp = b.bin("lshr", _I64, self.lane, "5")
        first = b.cmp("eq", _I64, b.bin("and", _I64, self.lane, str(WARP - 1)), "0")
        self._barrier()  # the slots' previous readers are done
        run, done = b.new_block("warp0"), b.new_block("slotted")
        b.cond_br(first, run, done)
        b.start(run)
        p = b.emit(f"getelementptr inbounds [{WARP} x i64], ptr addrspace(3) {slots}, "
                   f"i64 0, i64 {warp}")
        b.do(f"store {t} {x}, ptr addrspace(3) {p}, align 8")
        b.br(done)
        b.start(done)
        self._barrier()
        acc = None
        for w in range(self.lanes // WARP):
            p = b.emit(f"getelementptr inbounds [{WARP} x i64], ptr addrspace(3) {slots}, "
                       f"i64 0, i64 {w}")
            v = b.emit(f"load {t}, ptr addrspace(3) {p}, align 8")
            acc = v if acc is None else S.binary(b, fn, dtype, t, acc, v)
        return acc

    def finish(self, head: str, ret: str, attrs: str = "") -> str:
        self.b.do(ret)
        return f"{head} nounwind{attrs} {{\nentry:\n" + "\n".join(self.b.lines) + "\n}"


class _GpuKernel(_Kernel):
    """Checks one kernel (same rules as the CPU ABI) and writes its ``ptx_kernel``."""

    def __init__(self, graph: Graph, mt: ModuleText):
        super().__init__(graph, mt)
        if not _IDENT.match(graph.name):  # pragma: no cover - checked by the base class
            raise IRError(f"@{graph.name}: kernel names must be C identifiers")
        for a in graph.args:
            assert isinstance(a.type, MemRefType)

    def emit(self) -> None:
        # tiled matmul hook: kernels lower_dot tagged gpu_matmul (backends/nvptx/matmul.py)
        if self.parallel is not None and "gpu_matmul" in self.parallel.attrs:
            from lamina.backends.nvptx import matmul

            matmul.emit(self.graph, self.mt, self.parallel)
            return
        name, n = self.graph.name, max(arg_slots(self.graph), 1)
        body = _GpuBody(self.graph, self.mt)
        if self.parallel is None:
            gid, _ = body.global_thread()
            run, skip = body.b.new_block("run"), body.b.new_block("skip")
            body.b.cond_br(body.b.cmp("eq", _I64, gid, "0"), run, skip)
            body.b.start(run)
        for op in self.graph.ops:
            if op is self.parallel:
                body.gpu_parallel(op)
            elif not isinstance(op, Return):
                body.op(op)
        if self.parallel is None:
            body.b.br(skip)
            body.b.start(skip)
        block = self.parallel.attrs.get("block") if self.parallel is not None else None
        self.mt.functions.append(body.finish(
            f"define ptx_kernel void @{name}(ptr byval([{n} x i64]) align 8 %args)",
            "ret void", f' "nvvm.maxntid"="{block}"' if block else ""))
