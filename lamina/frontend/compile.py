"""``lamina.compile``: trace a function of tensors into one graph, fuse and compile it.

The function runs once per input signature with symbolic tensors; the ops it
calls record a tensor-dialect graph, which the pass pipeline fuses and lowers
into one program of kernels. Concrete tensors the function reads (weights,
constants) become extra inputs, read afresh on every call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lamina.frontend import trace
from lamina.frontend.dispatch import user_loc
from lamina.frontend.tensor import Tensor
from lamina.ir import Module

STAGES = ("tensor", "prim", "loop", "llvm", "ptx")


@dataclass
class Lowered:
    """The IR of one compiled signature at every stage."""

    stages: Any  # lamina.passes.pipeline.Stages
    program: Any = None  # lamina.runtime Program, once compiled
    target: str = "cpu"  # "cpu" or "cuda": what "llvm" shows
    arch: str = "sm_90"  # the PTX target of "ptx" (and of "llvm" for cuda)

    def as_text(self, stage: str = "loop") -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        if stage == "ptx" or stage == "llvm" and self.target == "cuda":
            from lamina.backends import nvptx

            mapped = nvptx.gpu_module(self.stages.loop)
            if stage == "llvm":
                return nvptx.emit_module(mapped)
            return nvptx.compile_ptx(nvptx.emit_module(mapped), self.arch)
        if stage == "llvm":
            from lamina.backends.llvm.emit import emit_module

            return emit_module(self.stages.loop)
        return self.stages.as_text(stage)


@dataclass
class _Entry:
    lowered: Lowered
    captured: list[Tensor]
    out_tree: Any


def _signature(args: tuple) -> tuple:
    sig = []
    for a in args:
        if not isinstance(a, Tensor):
            raise TypeError(f"lamina.compile: arguments must be tensors, got {type(a).__name__}")
        sig.append((tuple(a.shape), a.dtype.name))
    return tuple(sig)


def _flatten(out: Any) -> tuple[list[Tensor], Any]:
    if isinstance(out, Tensor):
        return [out], None
    if isinstance(out, (tuple, list)) and all(isinstance(o, Tensor) for o in out):
        return list(out), type(out)
    raise TypeError("lamina.compile: the function must return a tensor or a tuple/list of "
                    f"tensors, got {type(out).__name__}")


class CompiledFunction:
    """A function compiled per input signature, cached in memory (and its kernels on disk)."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None):
        self.fn = fn
        self.name = _c_name(name or getattr(fn, "__name__", "fn"))
        self._entries: dict[tuple, _Entry] = {}
        self.compiles = 0
        functools.update_wrapper(self, fn)

    def _trace(self, args: tuple) -> tuple[Module, list[Tensor], Any]:
        tr = trace.Trace(self.name, list(args))
        tr.builder.loc = user_loc()
        symbolic = [Tensor._symbolic(v, tr) for v in tr.graph.args]
        with trace.tracing(tr):
            out = self.fn(*symbolic)
        outs, tree = _flatten(out)
        values = [tr.value_of(o) for o in outs]
        return Module([tr.finish(values)]), tr.captured, tree

    def _lower_module(self, module: Module, target: str = "cpu") -> Any:
        """The pipeline from the traced module to loops (``lamina.grad`` adds autodiff)."""
        from lamina.passes.pipeline import lower

        return lower(module, target=target)

    def lower(self, *args: Tensor, target: str = "cpu", arch: str = "sm_90") -> Lowered:
        """Trace and lower for these inputs (no machine code yet).

        ``target="cuda"`` makes ``as_text("llvm")`` the NVPTX LLVM IR; ``as_text("ptx")``
        is PTX for ``arch`` whatever the target (no GPU needed).
        """
        if target not in ("cpu", "cuda"):
            raise ValueError(f"lamina.compile: unknown target {target!r}; expected 'cpu' or "
                             "'cuda'")
        module, _, _ = self._trace(args)
        return Lowered(self._lower_module(module, target), target=target, arch=arch)

    def _entry(self, args: tuple) -> _Entry:
        sig = _signature(args)
        entry = self._entries.get(sig)
        if entry is None:
            from lamina.runtime import compile_program

            module, captured, tree = self._trace(args)
            stages = self._lower_module(module)
            lowered = Lowered(stages, compile_program(stages.loop, self.name))
            entry = _Entry(lowered, captured, tree)
            self._entries[sig] = entry
            self.compiles += 1
        return entry

    def __call__(self, *args: Tensor) -> Any:
        entry = self._entry(args)
        arrays = [_contiguous_array(t) for t in (*args, *entry.captured)]
        outs = [Tensor._wrap(a, t) for a, t in
                zip(entry.lowered.program(*arrays), _out_dtypes(entry))]
        return outs[0] if entry.out_tree is None else entry.out_tree(outs)


def _out_dtypes(entry: _Entry) -> list[Any]:
    from lamina.frontend import dtypes as dt

    g = entry.lowered.stages.tensor.graphs[0]
    return [dt.from_ir(t.dtype) for t in g.result_types]


def _contiguous_array(t: Tensor) -> np.ndarray:
    from lamina.frontend.ops import contiguous

    return contiguous(t)._a


def _c_name(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return s if s and not s[0].isdigit() else f"f_{s}"


def compile(fn: Callable[..., Any] | None = None, **options: Any) -> Any:  # noqa: A001
    """``lamina.compile(fn)`` or ``@lamina.compile``: trace, fuse and compile ``fn``."""
    if options:
        raise TypeError(f"lamina.compile: unsupported options {sorted(options)}")
    if fn is None:
        return lambda f: CompiledFunction(f)
    return CompiledFunction(fn)
