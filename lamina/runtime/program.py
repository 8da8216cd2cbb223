"""Running a loop-stage program: sizes, allocations and kernel calls as a list of closures.

A program ``func`` at the loop stage is straight-line code over buffers and
index scalars (``loop.dim``, ``loop.const``, index arithmetic, ``loop.alloc``,
``loop.call``, ``return``). ``compile_program`` turns it once into a register
file (one slot per SSA value, constants pre-filled) and one closure per op, so
a call does no IR work: check the arguments, run the closures, return buffers.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import numpy as np

from lamina.ir.core import Graph, Module, Op, SymbolRef, Value
from lamina.ir.types import MemRefType, ScalarType
from lamina.ir.verifier import verify
from lamina.runtime.buffers import empty
from lamina.runtime.cache import CompiledModule, compile_module
from lamina.runtime.errors import ArgumentMismatch
from lamina.runtime.kernel import ArgSpec, Kernel, make_checker

Step = Callable[[list], None]


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _trunc_rem(a: int, b: int) -> int:
    return a - b * _trunc_div(a, b)


# Index arithmetic with the semantics of the generated code (C-style division).
_INDEX_OPS: dict[str, Callable[[int, int], int]] = {
    "loop.add": operator.add, "loop.sub": operator.sub, "loop.mul": operator.mul,
    "loop.div": _trunc_div, "loop.rem": _trunc_rem, "loop.max": max, "loop.min": min,
}
_INT_SCALARS = ("index", "i64", "i32")


class ProgramError(ValueError):
    """A program func that the runtime cannot run (an op it does not know, a bad call)."""


class _Builder:
    """Assigns register slots and turns each op of the func into a step."""

    def __init__(self, func: Graph, compiled: CompiledModule, module: Module):
        self.func = func
        self.compiled = compiled
        self.module = module
        self.slots: dict[int, int] = {}
        self.template: list[Any] = []
        self.steps: list[Step] = []
        self.kernel_order: list[str] = []

    def slot(self, v: Value) -> int:
        s = self.slots.get(id(v))
        if s is None:
            s = self.slots[id(v)] = len(self.template)
            self.template.append(None)
        return s

    def use(self, op: Op, v: Value) -> int:
        s = self.slots.get(id(v))
        if s is None:
            raise ProgramError(f"@{self.func.name}: {op.where()} uses a value defined nowhere")
        return s

    def where(self, op: Op) -> str:
        return f"@{self.func.name}: {op.where()}"

    def build(self) -> None:
        for a in self.func.args:
            self.slot(a)
        ops = self.func.ops
        for op in ops[:-1]:
            handler = _HANDLERS.get(op.name)
            if handler is None:
                raise ProgramError(f"{self.where(op)}: a program may hold only "
                                   f"{', '.join(sorted(_HANDLERS))} and return")
            handler(self, op)

    # -- one method per op -----------------------------------------------------
    def const(self, op: Op) -> None:
        v = op.attrs["value"]
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProgramError(f"{self.where(op)}: program constants must be integers, got {v!r}")
        self.template[self.slot(op.result)] = v

    def dim(self, op: Op) -> None:
        buf, out, axis = self.use(op, op.operands[0]), self.slot(op.result), op.attrs["axis"]

        def step(r: list) -> None:
            r[out] = r[buf].shape[axis]

        self.steps.append(step)

    def arith(self, op: Op) -> None:
        if any(not isinstance(v.type, ScalarType) or v.type.name not in _INT_SCALARS
               for v in op.operands):
            raise ProgramError(f"{self.where(op)}: program arithmetic is on index values only")
        fn = _INDEX_OPS[op.name]
        a, b, out = self.use(op, op.operands[0]), self.use(op, op.operands[1]), self.slot(op.result)
        where = self.where(op)
        if op.name in ("loop.div", "loop.rem"):
            def step(r: list) -> None:
                if r[b] == 0:
                    raise ZeroDivisionError(f"{where}: division by zero ({r[a]} / 0)")
                r[out] = fn(r[a], r[b])
        else:
            def step(r: list) -> None:
                r[out] = fn(r[a], r[b])

        self.steps.append(step)

    def alloc(self, op: Op) -> None:
        t = op.result.type
        assert isinstance(t, MemRefType)  # the verifier checked it
        dtype, out = t.dtype.numpy, self.slot(op.result)
        if all(d is not None for d in t.shape):
            shape = tuple(t.shape)

            def step(r: list) -> None:
                r[out] = empty(shape, dtype)

            self.steps.append(step)
            return
        dyn = iter([self.use(op, v) for v in op.operands])
        # Each axis: a static size or the register slot of its run-time size.
        axes = tuple((False, d) if d is not None else (True, next(dyn)) for d in t.shape)
        where = self.where(op)

        def step_dyn(r: list) -> None:
            shape = tuple(r[v] if is_dyn else v for is_dyn, v in axes)
            if min(shape) < 0:
                raise ValueError(f"{where}: negative size in {shape} for {t}")
            r[out] = empty(shape, dtype)

        self.steps.append(step_dyn)

    def call(self, op: Op) -> None:
        ref = op.attrs["kernel"]
        name = ref.name if isinstance(ref, SymbolRef) else str(ref)
        kernel = self.compiled.kernels.get(name)
        if kernel is None:
            raise ProgramError(f"{self.where(op)}: the module has no kernel @{name}")
        self.check_call(op, kernel)
        if name not in self.kernel_order:
            self.kernel_order.append(name)
        regs = [self.use(op, v) for v in op.operands]
        if len(regs) == 1:
            (x,) = regs

            def step(r: list) -> None:
                kernel(r[x])
        else:
            get = operator.itemgetter(*regs)

            def step(r: list) -> None:
                kernel(*get(r))

        self.steps.append(step)

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


_HANDLERS: dict[str, Callable[[_Builder, Op], None]] = {
    "loop.const": _Builder.const, "loop.dim": _Builder.dim, "loop.alloc": _Builder.alloc,
    "loop.call": _Builder.call, **{name: _Builder.arith for name in _INDEX_OPS},
}


class Program:
    """A compiled loop-stage program: ``program(*arrays) -> list of arrays``."""

    def __init__(self, module: Module, func: Graph, compiled: CompiledModule):
        self.module = module
        self.func = func
        self.compiled = compiled
        b = _Builder(func, compiled, module)
        b.build()
        self.kernels: tuple[str, ...] = tuple(b.kernel_order)
        self.arg_types = tuple(a.type for a in func.args)
        self._nargs = len(func.args)
        self._template = b.template
        self._steps = tuple(b.steps)
        self._checks = tuple(
            make_checker(ArgSpec(a.type, f"func @{func.name}: argument {i}"
                                 + (f" (%{a.hint})" if a.hint else "")))
            for i, a in enumerate(func.args)
        )
        self._results = tuple(b.use(func.ops[-1], v) for v in func.returned)

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
        if len(arrays) != self._nargs:
            raise ArgumentMismatch(f"func @{self.name}: expected {self._nargs} arguments "
                                   f"({', '.join(str(t) for t in self.arg_types)}), got "
                                   f"{len(arrays)}")
        for a, check in zip(arrays, self._checks):
            check(a)
        regs = self._template.copy()
        regs[: self._nargs] = arrays
        for step in self._steps:
            step(regs)
        return [regs[i] for i in self._results]


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

