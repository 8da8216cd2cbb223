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

from typing import Any, Callable

import numpy as np

from lamina.ir.core import Graph, Module, Op, SymbolRef, Value
from lamina.ir.types import MemRefType, ScalarType
from lamina.ir.verifier import verify
from lamina.runtime.argcheck import ArgSpec, fast_path
from lamina.runtime.buffers import alloc
from lamina.runtime.cache import CompiledModule, compile_module
from lamina.runtime.kernel import Kernel


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

    def __init__(self, func: Graph, compiled: CompiledModule):
        self.func = func
        self.compiled = compiled
        self.names: dict[int, str] = {}
        self.env: dict[str, Any] = {"div": _div, "rem": _rem, "alloc": alloc,
                                    "negative": _negative}
        self.lines: list[str] = []
        self.kernel_order: list[str] = []

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

    def translate(self) -> None:
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
        self.lines.append(f"return [{', '.join(self.use(ret, v) for v in ret.operands)}]")

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
        self.lines.append(f"{k}({', '.join(self.use(op, v) for v in op.operands)})")

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
    **{name: _Translator.arith for name in _ARITH},
}


class Program:
    """A compiled loop-stage program: ``program(*arrays) -> list of arrays``.

    The arguments are checked against the func's memref types (count, dtype,
    rank, static sizes, layout) before anything runs; results are new
    64-byte-aligned buffers, or the argument itself where the func returns one.
    """

    def __init__(self, module: Module, func: Graph, compiled: CompiledModule):
        self.module = module
        self.func = func
        self.compiled = compiled
        self.arg_types = tuple(a.type for a in func.args)
        specs = [ArgSpec(a.type, f"func @{func.name}: argument {i}"
                         + (f" (%{a.hint})" if a.hint else ""))
                 for i, a in enumerate(func.args)]
        tr = _Translator(func, compiled)
        tr.env["check"] = fast_path(specs, f"func @{func.name}", pack=False)
        tr.translate()
        self.kernels: tuple[str, ...] = tuple(tr.kernel_order)
        self.source = "def run(*xs):\n    check(*xs)\n" + "".join(
            f"    {line}\n" for line in tr.lines)
        exec(compile(self.source, f"<lamina program @{func.name}>", "exec"), tr.env)
        self._run: Callable[..., list[np.ndarray]] = tr.env["run"]

    @property
    def name(self) -> str:
        return self.func.name

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR of the program's kernels (for dumps)."""
        return self.compiled.llvm_ir

    def __repr__(self) -> str:
        sig = ", ".join(str(t) for t in self.arg_types)
        return f"Program(@{self.name}({sig}), kernels={list(self.kernels)})"

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self._run(*arrays)


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


def compile_program(loop_module: Module, func_name: str | None = None) -> Program:
    """Compile a loop-stage module's kernels (through the cache) and its program func."""
    verify(loop_module)
    func = _pick_func(loop_module, func_name)
    for i, a in enumerate(func.args):
        if not isinstance(a.type, MemRefType):
            raise ProgramError(f"func @{func.name}: argument {i} has type {a.type}; program "
                               "arguments must be memrefs")
    for i, v in enumerate(func.returned):
        if not isinstance(v.type, MemRefType):
            raise ProgramError(f"func @{func.name}: result {i} has type {v.type}; program "
                               "results must be memrefs")
    return Program(loop_module, func, compile_module(loop_module))
