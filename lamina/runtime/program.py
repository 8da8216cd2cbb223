"""Running a loop-stage program: the func becomes one straight-line Python function.

A program ``func`` at the loop stage is straight-line code over buffers and
index scalars (``loop.dim``, ``loop.const``, index arithmetic, ``loop.alloc``,
``loop.call``, ``return``). ``compile_program`` translates it once, op by op,
into the source of a Python function (one local per SSA value, kernels and
dtypes bound as globals), so a call does no IR work and no dispatch: check the
arguments, compute sizes, allocate, call the kernels, return the buffers.
``Program.source`` shows the generated function.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence

import numpy as np

from lamina.ir.core import Graph, Module, Op, SymbolRef, Value
from lamina.ir.types import MemRefType, ScalarType
from lamina.ir.verifier import verify
from lamina.passes import memory_plan
from lamina.passes.rewrite import clone_graph
from lamina.runtime import buffers, outputs, replay
from lamina.runtime.argcheck import ArgSpec, fast_path
from lamina.runtime.cache import CompiledModule, compile_module
from lamina.runtime.kernel import Kernel

log = logging.getLogger(__name__)

# Programs with at least this many kernel calls are memory-planned (and replayed
# natively when static); one-op eager programs are not, to keep their call cheap.
PLAN_MIN_CALLS = 2


class ProgramError(ValueError):
    """A program func that the runtime cannot run (an op it does not know, a bad call)."""


def _div(a: int, b: int, where: str) -> int:
    """Index division as the generated code does it (truncating, C-style)."""
    if b == 0:
        raise ZeroDivisionError(f"{where}: division by zero ({a} / 0)")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _rem(a: int, b: int, where: str) -> int:
    return a - b * _div(a, b, where)


def _negative(shape: tuple[int, ...], t: MemRefType, where: str) -> None:
    raise ValueError(f"{where}: negative size in {shape} for {t}")


# Index arithmetic: a Python expression per op ({a}, {b}: operands; {w}: the op's name).
_ARITH = {
    "loop.add": "{a} + {b}", "loop.sub": "{a} - {b}", "loop.mul": "{a} * {b}",
    "loop.max": "max({a}, {b})", "loop.min": "min({a}, {b})",
    "loop.div": "div({a}, {b}, {w})", "loop.rem": "rem({a}, {b}, {w})",
}
_INT_SCALARS = ("index", "i64", "i32")


class _Translator:
    """Turns the ops of a program func into lines of Python."""

    def __init__(self, func: Graph, compiled: CompiledModule, general: bool = False):
        self.func = func
        self.compiled = compiled
        # general: ``run(xs, A, take)``: planned allocs are the arena views ``A[i]`` and
        # returned allocs come from ``take(k, shape, dtype)`` (out= buffers); otherwise
        # ``run(*xs)`` allocates every buffer.
        self.general = general
        self.names: dict[int, str] = {}
        self.env: dict[str, Any] = {"div": _div, "rem": _rem, "alloc": buffers.alloc,
                                    "negative": _negative}
        self.lines: list[str] = []
        self.calls: list[str] = []
        self.kernel_order: list[str] = []
        self.planned: list[Op] = []
        self.first_result: dict[int, int] = {}
        for k, v in enumerate(func.returned):
            self.first_result.setdefault(id(v), k)

    def define(self, v: Value) -> str:
        name = self.names[id(v)] = f"v{len(self.names)}"
        return name

    def use(self, op: Op, v: Value) -> str:
        name = self.names.get(id(v))
        if name is None:
            raise ProgramError(f"{self.where(op)} uses a value defined nowhere")
        return name

    def bind(self, prefix: str, obj: Any) -> str:
        """Make ``obj`` a global of the generated function; return its name."""
        name = f"{prefix}{len(self.env)}"
        self.env[name] = obj
        return name

    def where(self, op: Op) -> str:
        return f"@{self.func.name}: {op.where()}"

    def translate(self) -> str:
        """The source of ``run``: sizes and buffers first (so every error is raised before
        any kernel runs; they depend on arguments and each other only), then the calls."""
        args = [self.define(a) for a in self.func.args]
        if args:
            self.lines.append(f"{', '.join(args)}{',' if len(args) == 1 else ''} = xs")
        for op in self.func.ops[:-1]:
            handler = _HANDLERS.get(op.name)
            if handler is None:
                raise ProgramError(f"{self.where(op)}: a program may hold only "
                                   f"{', '.join(sorted(_HANDLERS))} and return")
            handler(self, op)
        ret = self.func.ops[-1]
        self.calls.append(f"return [{', '.join(self.use(ret, v) for v in ret.operands)}]")
        head = "def run(xs, A, take):\n" if self.general else "def run(*xs):\n    check(*xs)\n"
        return head + "".join(f"    {line}\n" for line in self.lines + self.calls)

    def arena(self, op: Op) -> None:
        """The arena is the Program's (allocated once); nothing to do per call."""

    # -- one method per op -----------------------------------------------------
    def const(self, op: Op) -> None:
        v = op.attrs["value"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProgramError(f"{self.where(op)}: program constants must be integers, got {v!r}")
        self.lines.append(f"{self.define(op.result)} = {v}")

    def dim(self, op: Op) -> None:
        buf = self.use(op, op.operands[0])
        self.lines.append(f"{self.define(op.result)} = {buf}.shape[{int(op.attrs['axis'])}]")

    def arith(self, op: Op) -> None:
        if any(not isinstance(v.type, ScalarType) or v.type.name not in _INT_SCALARS
               for v in op.operands):
            raise ProgramError(f"{self.where(op)}: program arithmetic is on index values only")
        a, b = (self.use(op, v) for v in op.operands)
        expr = _ARITH[op.name].format(a=a, b=b, w=self.bind("w", self.where(op)))
        self.lines.append(f"{self.define(op.result)} = {expr}")

    def alloc(self, op: Op) -> None:
        t = op.result.type
        assert isinstance(t, MemRefType)  # the verifier checked it
        dtype = self.bind("dt", t.dtype.numpy)
        dyn = iter([self.use(op, v) for v in op.operands])
        dims = [str(d) if d is not None else next(dyn) for d in t.shape]
        shape = f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"
        out = self.define(op.result)
        if op.operands:
            sizes = " or ".join(f"{self.use(op, v)} < 0" for v in op.operands)
            self.lines.append(f"if {sizes}: negative({shape}, {self.bind('t', t)}, "
                              f"{self.bind('w', self.where(op))})")
        if self.general and "offset" in op.attrs:
            self.lines.append(f"{out} = A[{len(self.planned)}]")
            self.planned.append(op)
        elif self.general and id(op.result) in self.first_result:
            self.lines.append(f"{out} = take({self.first_result[id(op.result)]}, {shape}, "
                              f"{dtype})")
        else:
            self.lines.append(f"{out} = alloc({shape}, {dtype})")

    def call(self, op: Op) -> None:
        ref = op.attrs["kernel"]
        name = ref.name if isinstance(ref, SymbolRef) else str(ref)
        kernel = self.compiled.kernels.get(name)
        if kernel is None:
            raise ProgramError(f"{self.where(op)}: the module has no kernel @{name}")
        self.check_call(op, kernel)
        if name not in self.kernel_order:
            self.kernel_order.append(name)
        k = self.bind(f"k_{name}_", kernel)
        self.calls.append(f"{k}({', '.join(self.use(op, v) for v in op.operands)})")

    def check_call(self, op: Op, kernel: Kernel) -> None:
        """Operand types must agree with the kernel's in count, dtype and rank."""
        if len(op.operands) != len(kernel.arg_types):
            raise ProgramError(f"{self.where(op)}: @{kernel.name} takes "
                               f"{len(kernel.arg_types)} buffers, got {len(op.operands)}")
        for i, (v, t) in enumerate(zip(op.operands, kernel.arg_types)):
            got = v.type
            if (not isinstance(got, MemRefType) or got.dtype != t.dtype
                    or got.rank != t.rank):
                raise ProgramError(f"{self.where(op)}: operand {i} of type {got} does not fit "
                                   f"@{kernel.name}'s argument {t}")


_HANDLERS: dict[str, Callable[[_Translator, Op], None]] = {
    "loop.const": _Translator.const, "loop.dim": _Translator.dim,
    "loop.alloc": _Translator.alloc, "loop.call": _Translator.call,
    "loop.arena": _Translator.arena,
    **{name: _Translator.arith for name in _ARITH},
}


class Program:
    """A compiled loop-stage program: ``program(*arrays, out=None) -> list of arrays``.

    The arguments are checked against the func's memref types (count, dtype,
    rank, static sizes, layout) before anything runs; results are new
    64-byte-aligned buffers, the argument itself where the func returns one, or
    the caller's ``out[k]`` buffers.

    A planned program (``memory-plan``: see ``compile_program`` for when) keeps
    its intermediates in one arena, allocated at the first call and reused, and,
    when every size is static, replays from its second call on through one
    native driver call (``runtime/replay.py``).
    """

    def __init__(self, module: Module, func: Graph, compiled: CompiledModule,
                 native: bool | None = None):
        self.module = module
        self.func = func
        self.compiled = compiled
        self.arg_types = tuple(a.type for a in func.args)
        specs = [ArgSpec(a.type, f"func @{func.name}: argument {i}"
                         + (f" (%{a.hint})" if a.hint else ""))
                 for i, a in enumerate(func.args)]
        self._check = fast_path(specs, f"func @{func.name}", pack=False)
        plain = _Translator(func, compiled)
        plain.env["check"] = self._check
        self.source = plain.translate()
        self.kernels: tuple[str, ...] = tuple(plain.kernel_order)
        exec(compile(self.source, f"<lamina program @{func.name}>", "exec"), plain.env)
        gen = _Translator(func, compiled, general=True)
        self.general_source = gen.translate()
        exec(compile(self.general_source, f"<lamina program @{func.name} (general)>", "exec"),
             gen.env)
        self._general: Callable[..., list[np.ndarray]] = gen.env["run"]
        self._alloc = buffers.alloc
        self._copyto = np.copyto
        plan = memory_plan.planned(func)
        self.arena_bytes = plan[0] if plan is not None else 0
        self._planned_allocs = [(tuple(op.result.type.shape), op.result.type.dtype.numpy,
                                 int(op.attrs["offset"])) for op in gen.planned]
        self._arena: tuple[np.ndarray, tuple[np.ndarray, ...]] | None = None
        self._lock = threading.Lock()
        self._scratches: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
        kernel_graphs = {g.name: g for g in module.graphs if g.kind == "kernel"}
        self._hazards = outputs.hazards(func, kernel_graphs)
        self._result_kinds = _result_kinds(func)
        self.calls = sum(1 for op in func.ops if op.name == "loop.call")
        self._ran = False
        self.native: replay.NativeReplay | None = None
        self._native_wanted = (plan is not None if native is None else native) \
            and replay.eligible(func)
        # The fast path of a call without out=: unplanned programs run the plain function.
        self._fast: Callable[..., list[np.ndarray]] = (
            plain.env["run"] if plan is None else self._call_planned)

    @property
    def name(self) -> str:
        return self.func.name

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR of the program's kernels (for dumps)."""
        return self.compiled.llvm_ir

    def as_text(self) -> str:
        """The program func as run (with its memory plan, if any)."""
        return str(self.func)

    def __repr__(self) -> str:
        sig = ", ".join(str(t) for t in self.arg_types)
        return f"Program(@{self.name}({sig}), kernels={list(self.kernels)})"

    def __call__(self, *arrays: np.ndarray, out: Sequence[np.ndarray | None] | None = None
                 ) -> list[np.ndarray]:
        if out is None:
            return self._fast(*arrays)
        return self._execute(arrays, self._out_call(arrays, out))

    def stats(self) -> dict[str, Any]:
        """Kernels per call, bytes allocated per call with the plan and without it.

        ``planned_bytes`` counts the arena plus the buffers a call hands back
        fresh; allocations whose sizes are ``?`` are not counted in either figure
        (``dynamic_allocs`` says how many there are).
        """
        naive = planned = dynamic = 0
        returned = {id(v) for v in self.func.returned}
        for op in self.func.ops:
            if op.name != "loop.alloc":
                continue
            n = memory_plan.nbytes(op.result.type)
            if n is None:
                dynamic += 1
                continue
            naive += n
            if "offset" not in op.attrs or id(op.result) in returned:
                planned += n
        return {"kernels": self.calls, "planned_bytes": planned + self.arena_bytes,
                "naive_bytes": naive, "arena_bytes": self.arena_bytes,
                "dynamic_allocs": dynamic, "native": self.native is not None}

    # -- calls ---------------------------------------------------------------------
    def _call_planned(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self._execute(arrays, None)

    def _fresh(self, k: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._alloc(shape, dtype)

    def _execute(self, xs: Sequence[np.ndarray], oc: outputs.OutCall | None
                 ) -> list[np.ndarray]:
        self._check(*xs)
        take = self._fresh if oc is None else oc.take
        if self.native is None and self._ran and self._native_wanted:
            self._start_native()
        # One call at a time uses the program's arena; a concurrent one gets its own.
        mine = self._lock.acquire(blocking=False)
        try:
            arena, views = self._arena if mine and self._arena is not None else \
                self._new_arena(mine)
            if self.native is not None:
                results = self.native.run(xs, take, arena)
            else:
                results = self._general(xs, views, take)
                self._ran = True
        finally:
            if mine:
                self._lock.release()
        return results if oc is None else oc.finish(results, self._copyto)

    def _new_arena(self, keep: bool) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        raw = self._alloc((self.arena_bytes,), np.dtype(np.uint8))
        views = tuple(np.ndarray(shape, dtype, raw, off)
                      for shape, dtype, off in self._planned_allocs)
        if keep:
            self._arena = (raw, views)
        return raw, views

    def _start_native(self) -> None:
        """Build (or load from the cache) the native driver; keep the Python path on failure."""
        self._native_wanted = False
        try:
            self.native = replay.NativeReplay(self.module, self.func, self.compiled,
                                              self._result_kinds)
        except Exception as e:  # noqa: BLE001 - the Python path still runs the program
            log.warning("func @%s: native replay unavailable (%s); running from Python",
                        self.name, e)

    # -- out= ------------------------------------------------------------------------
    def _scratch(self, k: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A buffer for result ``k`` when it cannot be written into ``out[k]`` directly."""
        key = (k, shape)
        buf = self._scratches.get(key)
        if buf is None:
            buf = self._scratches[key] = self._alloc(shape, dtype)
        return buf

    def _out_error(self, k: int, o: Any, why: str) -> ProgramError:
        t = self.func.returned[k].type
        got = (f"an array of shape {tuple(o.shape)} and dtype {o.dtype}"
               if isinstance(o, np.ndarray) else type(o).__name__)
        return ProgramError(f"func @{self.name}: out[{k}] must be a contiguous, writable array "
                            f"of {t} ({t.dtype.numpy}); got {got}: {why}")

    def _out_call(self, xs: Sequence[np.ndarray], out: Sequence[Any]) -> outputs.OutCall:
        """Validate ``out`` (before any kernel runs) and prepare the call's copies."""
        results = self.func.returned
        if not isinstance(out, (list, tuple)) or len(out) != len(results):
            raise ProgramError(f"func @{self.name}: out must be a list of {len(results)} "
                               f"arrays or None (one per result), got {out!r:.80}")
        spans = []
        for k, (o, v) in enumerate(zip(out, results)):
            if o is None:
                continue
            t = v.type
            if not isinstance(o, np.ndarray):
                raise self._out_error(k, o, "not a numpy array")
            if o.dtype != t.dtype.numpy:
                raise self._out_error(k, o, f"dtype {o.dtype} is not {t.dtype.numpy}")
            if o.ndim != t.rank or any(d is not None and d != n for d, n in zip(t.shape,
                                                                                o.shape)):
                raise self._out_error(k, o, f"shape {tuple(o.shape)} does not fit {t}")
            flags = o.flags
            if not (flags.c_contiguous and flags.writeable and flags.aligned):
                raise self._out_error(k, o, "not contiguous, writable and aligned")
            kind, src = self._result_kinds[k]
            if kind == "arg" and len(xs) > src and isinstance(xs[src], np.ndarray) \
                    and o.shape != xs[src].shape:
                raise self._out_error(k, o, f"shape {o.shape} is not {xs[src].shape}")
            spans.append((outputs.extent(o), k))
        spans.sort()
        for (a, ka), (b, kb) in zip(spans, spans[1:]):
            if a[1] > b[0] and a[0] != a[1] and b[0] != b[1]:
                raise ProgramError(f"func @{self.name}: out[{ka}] and out[{kb}] overlap; "
                                   "each result needs memory of its own")
        return outputs.OutCall(self, xs, list(out))


def _result_kinds(func: Graph) -> list[tuple[str, int]]:
    """Per result: ("alloc", k) first return of a buffer, ("dup", k0) returned again,
    ("arg", j) the program's argument j."""
    args = {id(a): j for j, a in enumerate(func.args)}
    first: dict[int, int] = {}
    out = []
    for k, v in enumerate(func.returned):
        if id(v) in args:
            out.append(("arg", args[id(v)]))
        elif id(v) in first:
            out.append(("dup", first[id(v)]))
        else:
            first[id(v)] = k
            out.append(("alloc", k))
    return out


def _pick_func(module: Module, func_name: str | None) -> Graph:
    funcs = [g for g in module.graphs if g.kind == "func"]
    if func_name is not None:
        for g in funcs:
            if g.name == func_name:
                return g
        raise ProgramError(f"the module has no func @{func_name} (funcs: "
                           f"{', '.join('@' + g.name for g in funcs) or 'none'})")
    if len(funcs) != 1:
        raise ProgramError(f"the module has {len(funcs)} funcs "
                           f"({', '.join('@' + g.name for g in funcs)}); name the one to run")
    return funcs[0]


def compile_program(loop_module: Module, func_name: str | None = None, *,
                    plan: bool | None = None, native: bool | None = None) -> Program:
    """Compile a loop-stage module's kernels (through the cache) and its program func.

    ``plan`` (default: when the func makes ``PLAN_MIN_CALLS`` or more kernel calls)
    runs ``memory-plan`` on a copy of the func; ``native`` (default: planned and
    all sizes static) replays the program through one native driver call from
    its second call on. One-kernel programs (the eager path) stay unplanned.
    """
    verify(loop_module)
    func = _pick_func(loop_module, func_name)
    calls = sum(1 for op in func.ops if op.name == "loop.call")
    if plan is None:
        plan = calls >= PLAN_MIN_CALLS
    if plan:
        func = clone_graph(func)
        memory_plan.plan_func(func)
        loop_module = Module([func if g.kind == "func" and g.name == func.name else g
                              for g in loop_module.graphs])
    for i, a in enumerate(func.args):
        if not isinstance(a.type, MemRefType):
            raise ProgramError(f"func @{func.name}: argument {i} has type {a.type}; program "
                               "arguments must be memrefs")
    for i, v in enumerate(func.returned):
        if not isinstance(v.type, MemRefType):
            raise ProgramError(f"func @{func.name}: result {i} has type {v.type}; program "
                               "results must be memrefs")
    return Program(loop_module, func, compile_module(loop_module), native=native)
