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
"""

from __future__ import annotations

from lamina.backends.llvm.builder import LType, ModuleText
from lamina.backends.llvm.emit import _IDENT, _Body, _Kernel
from lamina.ir.core import Graph, IRError, Module, Op, Return
from lamina.ir.dialects import gpu as G  # noqa: F401  (registers loop.gpu_parallel)
from lamina.ir.types import MemRefType

_I64 = LType("i64")
_I32 = LType("i32")


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

    def gpu_parallel(self, op: Op) -> None:
        lb, step = self.val(op.operands[0]), self.val(op.operands[2])
        trips = self.trip_count(op)
        gid, total = self.global_thread()
        self.loop(op, gid, lambda t: self.b.cmp("slt", _I64, t, trips), total,
                  body_iv=lambda t: self.iadd(lb, self.imul(t, step)))

    def finish(self, head: str, ret: str) -> str:
        self.b.do(ret)
        return f"{head} nounwind {{\nentry:\n" + "\n".join(self.b.lines) + "\n}"


class _GpuKernel(_Kernel):
    """Checks one kernel (same rules as the CPU ABI) and writes its ``ptx_kernel``."""

    def __init__(self, graph: Graph, mt: ModuleText):
        super().__init__(graph, mt)
        if not _IDENT.match(graph.name):  # pragma: no cover - checked by the base class
            raise IRError(f"@{graph.name}: kernel names must be C identifiers")
        for a in graph.args:
            assert isinstance(a.type, MemRefType)

    def emit(self) -> None:
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
        self.mt.functions.append(body.finish(
            f"define ptx_kernel void @{name}(ptr byval([{n} x i64]) align 8 %args)",
            "ret void"))
