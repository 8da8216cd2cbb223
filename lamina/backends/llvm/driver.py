"""A C-ABI driver for a whole loop-stage program, for deployment without Python.

The runtime runs a program func from Python (``runtime/program.py``). For a
shared library or object file the same straight-line program becomes one
generated C function that needs nothing but libc::

    int32_t NAME(const T0 *in0, ..., U0 *out0, ...);

* every input and output is a dense, row-major buffer of the static shape and
  dtype the program was compiled for (the generated header states them);
  outputs must not overlap inputs or each other;
* the function returns 0 on success, 1 when allocating the intermediates
  failed, 2 when a pointer is NULL (outputs are untouched then);
* intermediates live in one 64-byte-aligned arena (``malloc``/``free`` once per
  call, every offset fixed at compile time); a result computed by one kernel
  is written straight into its output buffer, any other result is copied;
* kernels run serially over their full range (``k(args, 0, k__trips(args))``);
  they are internal symbols, so two models link into one program;
* the weights (captured tensors of an ``nn.Module`` or function) are constants
  in the object's read-only data, 64-byte aligned: one file to ship.

All sizes are static: the program's ``loop.dim`` and index arithmetic are
evaluated here, so the driver is straight-line code with constant offsets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np

from lamina.backends.llvm.emit import emit_module
from lamina.ir.core import Graph, IRError, Module, Op, SymbolRef, Value
from lamina.ir.types import MemRefType, ScalarType
from lamina.ir.verifier import verify

ALIGN = 64
C_TYPES = {"f32": "float", "f64": "double", "f16": "uint16_t", "bf16": "uint16_t",
           "i1": "uint8_t", "i8": "int8_t", "i32": "int32_t", "i64": "int64_t"}
TRIPLES = {"aarch64": "aarch64-unknown-linux-gnu"}
_INIT = threading.Lock()
_ARITH = {"loop.add": lambda a, b: a + b, "loop.sub": lambda a, b: a - b,
          "loop.mul": lambda a, b: a * b, "loop.max": max, "loop.min": min}


@dataclass(frozen=True)
class Port:
    """One input or output of the driver: its C name, static shape and scalar type."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # IR scalar name: f32, i64, ...

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def c_type(self) -> str:
        return C_TYPES[self.dtype]


@dataclass(frozen=True)
class Signature:
    """The C function the driver defines."""

    symbol: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    def c_prototype(self) -> str:
        params = [f"const {p.c_type} *{p.name}" for p in self.inputs]
        params += [f"{p.c_type} *{p.name}" for p in self.outputs]
        return f"int32_t {self.symbol}({', '.join(params) or 'void'})"


def _where(func: Graph, op: Op) -> str:
    return f"lamina compile: func @{func.name}: {op.where()}"


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


class _Buffer:
    """A memref of the program: where it lives (param, weight, arena) and its shape."""

    def __init__(self, kind: str, index: int, shape: tuple[int, ...], dtype: ScalarType):
        self.kind, self.index, self.shape, self.dtype = kind, index, shape, dtype
        self.offset = 0  # in the arena
        self.output: int | None = None  # written straight into this output

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _static_shape(func: Graph, t: MemRefType, what: str) -> tuple[int, ...]:
    if any(d is None for d in t.shape):
        raise IRError(f"lamina compile: func @{func.name}: {what} has dynamic sizes ({t}); "
                      "compiled libraries need static shapes")
    shape = tuple(int(d) for d in t.shape)
    if t.strides is not None and tuple(t.strides) != _contiguous(shape):
        raise IRError(f"lamina compile: func @{func.name}: {what} has strides {t.strides}; "
                      "driver buffers are dense row-major")
    return shape


class _Plan:
    """The program evaluated at compile time: buffers, arena offsets and kernel calls."""

    def __init__(self, module: Module, func: Graph, n_weights: int, replay: bool = False):
        from lamina.runtime.bounds import written_args

        self.func = func
        self.replay = replay  # inputs may be written (in-place programs run by the runtime)
        self.alloc_ops: list[Op] = []
        n_in = len(func.args) - n_weights
        if n_in < 0:
            raise IRError(f"lamina compile: func @{func.name} has {len(func.args)} arguments, "
                          f"fewer than the {n_weights} weights")
        self.buffers: dict[int, _Buffer] = {}
        self.index: dict[int, int] = {}
        self.calls: list[tuple[str, list[_Buffer]]] = []
        self.allocs: list[_Buffer] = []
        kernels = {g.name: g for g in module.graphs if g.kind == "kernel"}
        for i, a in enumerate(func.args):
            if not isinstance(a.type, MemRefType):
                raise IRError(f"lamina compile: func @{func.name}: argument {i} is not a memref")
            kind, k = ("input", i) if i < n_in else ("weight", i - n_in)
            shape = _static_shape(func, a.type, f"argument {i}")
            self.buffers[id(a)] = _Buffer(kind, k, shape, a.type.dtype)
        for op in func.ops[:-1]:
            self._op(op, kernels, written_args)
        self.results = [self._buf(func.ops[-1], v) for v in func.returned]

    def _buf(self, op: Op, v: Value) -> _Buffer:
        b = self.buffers.get(id(v))
        if b is None:
            raise IRError(f"{_where(self.func, op)}: operand is not a known buffer")
        return b

    def _int(self, op: Op, v: Value) -> int:
        if id(v) not in self.index:
            raise IRError(f"{_where(self.func, op)}: index operand is not a compile-time value")
        return self.index[id(v)]

    def _op(self, op: Op, kernels: dict[str, Graph], written_args) -> None:
        name = op.name
        if name == "loop.const":
            self.index[id(op.result)] = int(op.attrs["value"])
        elif name == "loop.dim":
            self.index[id(op.result)] = self._buf(op, op.operands[0]).shape[op.attrs["axis"]]
        elif name in _ARITH:
            a, b = (self._int(op, v) for v in op.operands)
            self.index[id(op.result)] = _ARITH[name](a, b)
        elif name in ("loop.div", "loop.rem"):
            a, b = (self._int(op, v) for v in op.operands)
            if b == 0:
                raise IRError(f"{_where(self.func, op)}: division by zero")
            q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
            self.index[id(op.result)] = q if name == "loop.div" else a - b * q
        elif name == "loop.alloc":
            t = op.result.type
            dyn = iter(self._int(op, v) for v in op.operands)
            shape = tuple(int(d) if d is not None else next(dyn) for d in t.shape)
            if any(d < 0 for d in shape):
                raise IRError(f"{_where(self.func, op)}: negative size in {shape}")
            buf = _Buffer("arena", len(self.allocs), shape, t.dtype)
            self.allocs.append(buf)
            self.alloc_ops.append(op)
            self.buffers[id(op.result)] = buf
        elif name == "loop.call":
            ref = op.attrs["kernel"]
            kname = ref.name if isinstance(ref, SymbolRef) else str(ref)
            g = kernels.get(kname)
            if g is None:
                raise IRError(f"{_where(self.func, op)}: the module has no kernel @{kname}")
            bufs = [self._buf(op, v) for v in op.operands]
            for i in written_args(g):
                if bufs[i].kind != "arena" and not self.replay:
                    raise IRError(f"{_where(self.func, op)}: kernel @{kname} writes a program "
                                  f"{bufs[i].kind}, which a compiled library keeps read-only")
            self.calls.append((kname, bufs))
        elif name != "loop.arena":  # a memory plan: compile's layout() places buffers itself
            raise IRError(f"{_where(self.func, op)}: a compiled program cannot hold {name}")

    def layout(self) -> int:
        """Route results into outputs where possible; place the rest in the arena."""
        returned = [id(b) for b in self.results]
        for k, b in enumerate(self.results):
            if b.kind == "arena" and returned.count(id(b)) == 1:
                b.output = k
        total = 0
        for b in self.allocs:
            if b.output is None:
                b.offset = total
                total += -(-b.nbytes // ALIGN) * ALIGN
        return total


def _ir_type(t: ScalarType) -> str:
    return f"i{8 * t.itemsize}"


def _bytes_literal(data: bytes) -> str:
    return "c\"" + "".join(chr(c) if 32 <= c < 127 and c not in (34, 92) else f"\\{c:02X}"
                           for c in data) + "\""


def emit_driver(module: Module, func_name: str, weights: Sequence[np.ndarray],
                symbol: str) -> tuple[str, Signature]:
    """LLVM IR text of the driver function ``symbol`` for ``module``'s func ``func_name``.

    ``weights`` are the values of the func's last ``len(weights)`` arguments.
    """
    verify(module)
    func = module.get(func_name)
    plan = _Plan(module, func, len(weights))
    total = plan.layout()
    n_in = len(func.args) - len(weights)
    inputs = tuple(Port(f"in{i}", plan.buffers[id(a)].shape, a.type.dtype.name)
                   for i, a in enumerate(func.args[:n_in]))
    outputs = tuple(Port(f"out{k}", b.shape, b.dtype.name) for k, b in enumerate(plan.results))
    sig = Signature(symbol, inputs, outputs)
    lines: list[str] = []
    for j, (a, w) in enumerate(zip(func.args[n_in:], weights)):
        buf = plan.buffers[id(a)]
        arr = np.ascontiguousarray(w)
        if tuple(arr.shape) != buf.shape or arr.dtype.itemsize != buf.dtype.itemsize:
            raise IRError(f"lamina compile: weight {j} has shape {arr.shape} and dtype "
                          f"{arr.dtype}; the program expects {buf.shape} {buf.dtype}")
        data = arr.tobytes()
        lines.append(f"@lamina_w{j} = private unnamed_addr constant [{len(data)} x i8] "
                     f"{_bytes_literal(data)}, align {ALIGN}")
    lines += ["declare ptr @malloc(i64)", "declare void @free(ptr)",
              "declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)"]
    for k in dict.fromkeys(name for name, _ in plan.calls):
        lines += [f"declare void @{k}(ptr, i64, i64)", f"declare i64 @{k}__trips(ptr)"]
    params = [f"ptr %in{i}" for i in range(len(inputs))] + \
        [f"ptr %out{k}" for k in range(len(outputs))]
    body = _Body()
    ptr = _pointers(body, plan, total)
    for n, (kname, bufs) in enumerate(plan.calls):
        words = sum(1 + 2 * len(b.shape) for b in bufs)
        slot = body.entry(f"%args{n} = alloca [{max(words, 1)} x i64], align 8")
        w = 0
        for b in bufs:
            p = body.emit(f"ptrtoint ptr {ptr(b)} to i64")
            for value in (p, *map(str, b.shape), *map(str, _contiguous(b.shape))):
                at = body.emit(f"getelementptr inbounds i64, ptr {slot}, i64 {w}")
                body.do(f"store i64 {value}, ptr {at}, align 8")
                w += 1
        trips = body.emit(f"call i64 @{kname}__trips(ptr {slot})")
        body.do(f"call void @{kname}(ptr {slot}, i64 0, i64 {trips})")
    for k, b in enumerate(plan.results):
        if b.output is None and b.nbytes:
            body.do(f"call void @llvm.memcpy.p0.p0.i64(ptr %out{k}, ptr {ptr(b)}, "
                    f"i64 {b.nbytes}, i1 false)")
    if total:
        body.do("call void @free(ptr %arena_raw)")
    body.do("ret i32 0")
    lines.append(f"define i32 @{symbol}({', '.join(params)}) nounwind {{\n"
                 + body.text() + "\n}")
    return "\n".join(lines) + "\n", sig


class _Body:
    """The driver's instructions: allocas in the entry block, the rest after the checks."""

    def __init__(self) -> None:
        self.allocas: list[str] = []
        self.checks: list[str] = []
        self.lines: list[str] = []
        self.n = 0

    def entry(self, line: str) -> str:
        self.allocas.append("  " + line)
        return line.split(" = ")[0]

    def emit(self, rhs: str) -> str:
        name = f"%t{self.n}"
        self.n += 1
        self.lines.append(f"  {name} = {rhs}")
        return name

    def do(self, line: str) -> None:
        self.lines.append("  " + line)

    def text(self) -> str:
        out = ["entry:", *self.allocas]
        out += self.checks
        return "\n".join(out + self.lines)


def _pointers(body: _Body, plan: _Plan, total: int):
    """NULL checks, the arena, and a function giving each buffer's pointer operand."""
    names = [f"%in{i}" for i in range(sum(1 for a in plan.buffers.values()
                                          if a.kind == "input"))]
    names += [f"%out{k}" for k in range(len(plan.results))]
    c = body.checks
    bad = "false"
    for i, p in enumerate(names):
        c.append(f"  %null{i} = icmp eq ptr {p}, null")
        c.append(f"  %anynull{i} = or i1 {bad}, %null{i}")
        bad = f"%anynull{i}"
    c += [f"  br i1 {bad}, label %badptr, label %checked", "badptr:", "  ret i32 2", "checked:"]
    if total:
        c += [f"  %arena_raw = call ptr @malloc(i64 {total + ALIGN})",
              "  %arena_null = icmp eq ptr %arena_raw, null",
              "  br i1 %arena_null, label %nomem, label %run", "nomem:", "  ret i32 1", "run:",
              "  %arena_i = ptrtoint ptr %arena_raw to i64",
              f"  %arena_up = add i64 %arena_i, {ALIGN - 1}",
              f"  %arena_al = and i64 %arena_up, {-ALIGN}",
              "  %arena = inttoptr i64 %arena_al to ptr"]

    def ptr(b: _Buffer) -> str:
        if b.kind == "input":
            return f"%in{b.index}"
        if b.kind == "weight":
            return f"@lamina_w{b.index}"
        if b.output is not None:
            return f"%out{b.output}"
        return body.emit(f"getelementptr inbounds i8, ptr %arena, i64 {b.offset}")

    return ptr


def header_text(sig: Signature, note: str = "") -> str:
    """The C header declaring the driver, with the ABI and shapes spelled out."""
    guard = f"LAMINA_{sig.symbol.upper()}_H"
    up = sig.symbol.upper()
    lines = [f"/* Generated by Lamina{': ' + note if note else ''}. Do not edit. */",
             f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
             "/* ABI: every buffer is dense and row-major, with the static shape below.",
             " * Outputs must not overlap inputs or each other. Returns 0 on success,",
             " * 1 when allocating intermediates failed, 2 when a pointer is NULL.",
             " * Reentrant: each call uses its own scratch memory; weights are read-only. */",
             f"#define {up}_NUM_INPUTS {len(sig.inputs)}",
             f"#define {up}_NUM_OUTPUTS {len(sig.outputs)}"]
    for p in (*sig.inputs, *sig.outputs):
        dims = ", ".join(map(str, p.shape)) or "1"
        lines.append(f"#define {up}_{p.name.upper()}_SIZE {p.size}  "
                     f"/* {p.c_type}[{']['.join(map(str, p.shape)) or ''}] ({p.dtype}) */")
        lines.append(f"#define {up}_{p.name.upper()}_DIMS {{{dims}}}")
        lines.append(f"#define {up}_{p.name.upper()}_RANK {len(p.shape)}")
    lines += ["", "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
              f"{sig.c_prototype()};", "", "#ifdef __cplusplus", "}", "#endif", "",
              f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _target_machine(triple: str, cpu: str, features: str) -> llvm.TargetMachine:
    from lamina.backends.llvm import target as T

    with _INIT:
        T._init()
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
    try:
        tgt = llvm.Target.from_triple(triple)
    except RuntimeError as e:
        raise ValueError(f"lamina compile: LLVM has no target for {triple!r}: {e}") from None
    # Position-independent code for a shared library; the small code model suffices.
    return tgt.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic",
                                     codemodel="default")


def target_for(name: str) -> tuple[str, str, str]:
    """(triple, cpu, features) for ``cpu`` (this host) or ``aarch64``."""
    if name == "cpu":
        from lamina.backends.llvm.target import host_target

        info = host_target()
        return info.triple, info.cpu, info.features
    if name in TRIPLES:
        return TRIPLES[name], "generic", ""
    raise ValueError(f"unknown target {name!r}; targets: cpu, {', '.join(TRIPLES)}")


def build_object(module: Module, func_name: str, weights: Sequence[np.ndarray], symbol: str,
                 target: str = "cpu") -> tuple[bytes, Signature]:
    """Object code of the kernels plus the driver for ``target``, and the driver's signature.

    Only ``symbol`` is exported; kernels become internal to the object.
    """
    from lamina.backends.llvm.target import _LOCK

    driver_ir, sig = emit_driver(module, func_name, weights, symbol)
    kernels_ir = emit_module(module)
    triple, cpu, features = target_for(target)
    tm = _target_machine(triple, cpu, features)
    with _LOCK:
        try:
            mod = llvm.parse_assembly(kernels_ir)
            mod.link_in(llvm.parse_assembly(driver_ir))
            mod.verify()
        except RuntimeError as e:
            raise RuntimeError(f"lamina compile: generated LLVM IR is invalid: {e}") from None
        for fn in mod.functions:
            if not fn.is_declaration and fn.name != symbol:
                fn.linkage = "internal"
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return tm.emit_object(mod), sig


# -- in-process replay -----------------------------------------------------------------


@dataclass(frozen=True)
class ReplayCall:
    """One kernel launch of a replay driver: the kernel, its table index, how it runs."""

    kernel: str
    table: int  # index into the kernel table (k at 2*table, k__trips at 2*table+1)
    parallel: bool  # launched through the parallel-for callback


def emit_replay(module: Module, func_name: str, symbol: str, parallel: Callable[[str, int], bool]
                ) -> tuple[str, list[str], list[ReplayCall]]:
    """LLVM IR of a driver that runs a planned static program in one call.

    ``void symbol(int64_t *bufs, void **ktab, void (*pfor)(void *, void *, int64_t *, int64_t),
    void *pool)``:
    ``bufs`` holds the input pointers, then one pointer per returned buffer (in
    result order, first return of each), then the 64-byte-aligned arena;
    ``ktab`` holds ``k, k__trips`` of each kernel (the runtime's loaded kernels, so
    the driver is small and compiled apart from them). Buffers with an ``offset``
    live in the arena. A call for which ``parallel(kernel, largest buffer elements)``
    holds goes through ``pfor(pool, kernel, args, trips)`` (the native pool's
    ``lamina_pool_pfor``, or a Python callback), which splits it over the
    runtime's threads; the others run inline. Returns the IR, the kernel
    table's names and the launches.
    """
    from lamina.runtime.bounds import has_top_level_parallel

    verify(module)
    func = module.get(func_name)
    plan = _Plan(module, func, 0, replay=True)
    kernels = {g.name: g for g in module.graphs if g.kind == "kernel"}
    first = {}
    for k, v in enumerate(func.returned):
        first.setdefault(id(v), k)
    works = [k for k, v in enumerate(func.returned)
             if first[id(v)] == k and plan.buffers[id(v)].kind == "arena"]
    for buf, op in zip(plan.allocs, plan.alloc_ops):
        if id(op.result) in first:
            buf.kind, buf.index = "work", works.index(first[id(op.result)])
        elif "offset" in op.attrs:
            buf.offset = int(op.attrs["offset"])
        else:
            raise IRError(f"{_where(func, op)}: replay needs every intermediate planned "
                          "(run memory-plan)")
    n_in = len(func.args)
    table = list(dict.fromkeys(name for name, _ in plan.calls))
    body = _Body()
    ptrs: dict[tuple[str, int], str] = {}

    def word(i: int) -> str:
        at = body.emit(f"getelementptr inbounds i64, ptr %bufs, i64 {i}")
        return body.emit(f"load ptr, ptr {at}, align 8")

    for j in range(n_in):
        ptrs["input", j] = word(j)
    for w in range(len(works)):
        ptrs["work", w] = word(n_in + w)
    arena = word(n_in + len(works))
    def entry(i: int) -> str:
        at = body.emit(f"getelementptr inbounds ptr, ptr %ktab, i64 {i}")
        return body.emit(f"load ptr, ptr {at}, align 8")

    fns = {name: (entry(2 * t), entry(2 * t + 1)) for t, name in enumerate(table)}

    def ptr(b: _Buffer) -> str:
        if b.kind in ("input", "work"):
            return ptrs[b.kind, b.index]
        return body.emit(f"getelementptr inbounds i8, ptr {arena}, i64 {b.offset}")

    launches = []
    for n, (kname, bufs) in enumerate(plan.calls):
        words = sum(1 + 2 * len(b.shape) for b in bufs)
        slot = body.entry(f"%args{n} = alloca [{max(words, 1)} x i64], align 8")
        w = 0
        for b in bufs:
            p = body.emit(f"ptrtoint ptr {ptr(b)} to i64")
            for value in (p, *map(str, b.shape), *map(str, _contiguous(b.shape))):
                at = body.emit(f"getelementptr inbounds i64, ptr {slot}, i64 {w}")
                body.do(f"store i64 {value}, ptr {at}, align 8")
                w += 1
        fn, trips_fn = fns[kname]
        has_par = has_top_level_parallel(kernels[kname])
        biggest = max((int(np.prod(b.shape, dtype=np.int64)) for b in bufs), default=0)
        par = has_par and parallel(kname, biggest)
        t = table.index(kname)
        if has_par:
            trips = body.emit(f"call i64 {trips_fn}(ptr {slot})")
            if par:
                body.do(f"call void %pfor(ptr %pool, ptr {fn}, ptr {slot}, i64 {trips})")
            else:
                body.do(f"call void {fn}(ptr {slot}, i64 0, i64 {trips})")
        else:
            body.do(f"call void {fn}(ptr {slot}, i64 0, i64 1)")
        launches.append(ReplayCall(kname, t, par))
    body.do("ret void")
    body.checks = []
    text = (f"define void @{symbol}(ptr %bufs, ptr %ktab, ptr %pfor, ptr %pool) nounwind {{\n"
            + body.text() + "\n}\n")
    return text, table, launches
