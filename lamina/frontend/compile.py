"""``lamina.compile``: trace a function of tensors into one graph, fuse and compile it.

The function runs once per input signature with symbolic tensors; the ops it
calls record a tensor-dialect graph, which the pass pipeline fuses and lowers
into one program of kernels. Concrete tensors the function reads (weights,
constants) become extra inputs, read afresh on every call.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lamina.frontend import guards, step_entry, trace
from lamina.frontend.tensor import Tensor
from lamina.ir import Module, TensorType

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


def _signature(args: tuple) -> tuple:
    """The shapes and dtypes of tensor arguments (``lamina.grad``'s per-signature key)."""
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
    """A function (or module) compiled per input signature and guards, cached in memory (and
    its kernels on disk). See the module docstring and docs/user-guide.md."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dynamic: bool = False,
                 fallback: str | None = None, warn: bool = True):
        if fallback not in (None, "eager"):
            raise ValueError(f"lamina.compile: fallback must be None or 'eager', got "
                             f"{fallback!r}")
        self.fn = fn
        default = getattr(fn, "__name__", None) or type(fn).__name__
        self.name = _c_name(name or default)
        self.dynamic = bool(dynamic)
        self.fallback = fallback
        self.warn = warn  # library-internal kernels (optimizer rules) recompile per shape
        self._entries: dict[tuple, list[step_entry.Entry]] = {}
        self._last: tuple[tuple, step_entry.Entry] | None = None
        self.compiles = 0
        self.recompiles = 0
        self.compile_time_s = 0.0
        self.hits = 0  # calls that found their compiled entry
        self.kernel_cache_hits = 0  # compiled modules found in the kernel cache (memory/disk)
        self.llvm_compiles = 0  # ... and the ones LLVM had to compile
        self._warned_eager: set[tuple] = set()
        if not callable(getattr(fn, "modules", None)):  # a module keeps its own attributes
            functools.update_wrapper(self, fn)

    # -- tracing -------------------------------------------------------------------------------
    def _trace(self, args: tuple) -> tuple[Module, list[Tensor], Any]:
        """``(module, captured tensors, output tree)`` of a pure forward function: what
        ``lamina.export`` and ``lamina compile`` (AOT) package. The tree is ``None`` for one
        tensor, else ``tuple`` or ``list``."""
        entry = self._trace_entry(args)
        entry.undo()
        n = sum(isinstance(a, Tensor) for a in args)
        captured = []
        for src in entry.sources[n:]:
            if not isinstance(src, trace.TensorSource):
                raise ValueError(f"lamina.compile({self.name}): the function reads "
                                 f"{src.describe()} afresh at every call; it cannot be "
                                 "packaged ahead of time")
            captured.append(src.tensor)
        if entry.writes or entry.grads:
            raise ValueError(f"lamina.compile({self.name}): the function writes tensors or "
                             "gradients in place; it cannot be packaged ahead of time")
        kind, body = entry.out_tree
        if kind == "t":
            tree = None
        elif kind in (tuple, list) and all(k == "t" for k, _ in body):
            tree = kind
        else:
            raise TypeError(f"lamina.compile({self.name}): the function must return a tensor "
                            "or a tuple/list of tensors to be packaged")
        return entry.module, captured, tree

    def _trace_entry(self, args: tuple) -> step_entry.Entry:
        types = None
        if self.dynamic and guards.one_batch(args):
            types = [TensorType((None, *a.shape[1:]) if a.ndim else (), a.dtype.ir)
                     for a in args if isinstance(a, Tensor)]
        return step_entry.trace_step(self.fn, self.name, args, types)

    def _lower_module(self, module: Module, target: str = "cpu") -> Any:
        """The pipeline from the traced module to loops (``lamina.grad`` adds autodiff)."""
        from lamina.passes.pipeline import lower

        return lower(module, target=target)

    def lower(self, *args: Any, target: str = "cpu", arch: str = "sm_90") -> Lowered:
        """Trace and lower for these inputs (no machine code yet).

        ``target="cuda"`` makes ``as_text("llvm")`` the NVPTX LLVM IR; ``as_text("ptx")``
        is PTX for ``arch`` whatever the target (no GPU needed).
        """
        if target not in ("cpu", "cuda"):
            raise ValueError(f"lamina.compile: unknown target {target!r}; expected 'cpu' or "
                             "'cuda'")
        entry = self._trace_entry(args)
        entry.undo()
        return Lowered(self._lower_module(entry.module, target), target=target, arch=arch)

    def _compile(self, args: tuple, key: tuple) -> step_entry.Entry:
        from lamina.runtime import cache_stats, compile_program

        start = time.perf_counter()
        if self.dynamic:
            entry = None
            try:
                entry = self._trace_entry(args)
                stages = self._lower_module(entry.module)
            except step_entry.DataDependentError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: specialise instead
                if entry is not None:
                    entry.undo()
                self.dynamic = False
                where = step_entry.user_frame(e.__traceback__)
                warnings.warn(f"lamina.compile({self.name}): dynamic=True: the step cannot be "
                              f"traced with a symbolic batch size ({where}: "
                              f"{type(e).__name__}: {e}); specialising on input shapes",
                              RuntimeWarning, stacklevel=4)
                key = guards.signature(args)
        if not self.dynamic:
            entry = self._trace_entry(args)
            try:
                stages = self._lower_module(entry.module)
            except BaseException:
                entry.undo()
                raise
        before = cache_stats()
        entry.device = _device_of(entry, args, self.name)
        if entry.device is None:
            entry.lowered = Lowered(stages, compile_program(stages.loop, self.name))
        else:
            from lamina.runtime.cuda.program import CudaProgram

            stages = self._lower_module(entry.module, "cuda")
            entry.lowered = Lowered(stages, CudaProgram(stages.loop, entry.device, self.name),
                                    target="cuda", arch=entry.device.arch)
        after = cache_stats()
        self.kernel_cache_hits += after["hits"] - before["hits"]
        self.llvm_compiles += after["compiles"] - before["compiles"]
        self.compile_time_s += time.perf_counter() - start
        self.compiles += 1
        self._entries.setdefault(key, []).append(entry)
        return entry

    def _lookup(self, args: tuple) -> tuple[tuple, step_entry.Entry | None, str | None]:
        """(key, the entry whose guards pass or None, why the last-used entry failed)."""
        key = guards.signature(args, self.dynamic)
        why = None
        for entry in reversed(self._entries.get(key, ())):
            msg = None if entry.eager_reason is not None else entry.failure()
            if msg is None:
                return key, entry, None
            why = why or msg
        if why is None and self._last is not None:
            why = guards.explain(self._last[0], key)
        return key, None, why

    def _entry(self, args: tuple) -> step_entry.Entry:
        """The entry for these arguments: found, or traced and compiled (warning on a
        recompile), or an eager marker under ``fallback="eager"``."""
        key, entry, why = self._lookup(args)
        if entry is None:
            if self.compiles:
                self.recompiles += 1
            if self.compiles and self.warn:
                warnings.warn(f"lamina.compile({self.name}): recompiling ({self.recompiles}): "
                              f"{why}", RuntimeWarning, stacklevel=3)
            try:
                entry = self._compile(args, key)
            except step_entry.DataDependentError as e:
                if self.fallback != "eager":
                    raise
                entry = step_entry.eager_entry(str(e))
                self._entries.setdefault(key, []).append(entry)
                warnings.warn(f"{e}; running this call eagerly (and later calls with the same "
                              "signature)", RuntimeWarning, stacklevel=3)
        else:
            self.hits += 1
        self._last = (key, entry)
        return entry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"lamina.compile({self.name}): keyword arguments are not supported "
                            f"({', '.join(sorted(kwargs))})")
        if trace.current() is not None:  # called inside another compiled step: inline it
            return self.fn(*args)
        entry = self._entry(args)
        if entry.eager_reason is not None:
            return self.fn(*args)
        return entry.run(args)

    # -- reporting -----------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Compiles, recompiles, compile time, entry hits, kernel-cache hits and LLVM
        compiles while compiling, and for the last compiled entry: kernels, tensor-level
        ops, fused ops per kernel and the program's buffer bytes (planned vs naive)."""
        out: dict[str, Any] = {"compiles": self.compiles, "recompiles": self.recompiles,
                               "compile_time_s": self.compile_time_s, "hits": self.hits,
                               "kernel_cache_hits": self.kernel_cache_hits,
                               "llvm_compiles": self.llvm_compiles}
        entries = [e for es in self._entries.values() for e in es if e.lowered is not None]
        if not entries:
            return out
        last = self._last[1] if self._last and self._last[1].lowered else entries[-1]
        out.update(_program_stats(last.lowered))
        return out


def _program_stats(lowered: Lowered) -> dict[str, Any]:
    from lamina.ir.core import Return

    stages = lowered.stages
    tensor_ops = sum(1 for op in stages.tensor.graphs[0].ops if not isinstance(op, Return))
    kernels = sum(1 for g in stages.loop.graphs if g.kind == "kernel")
    fused = [sum(1 for _ in op.regions[0].ops) - 1 for g in stages.prim.graphs
             for op in g.ops if op.regions]
    out: dict[str, Any] = {"kernels": kernels, "tensor_ops": tensor_ops,
                           "fused_ops": fused, "planned_bytes": None, "naive_bytes": None}
    prog_stats = getattr(lowered.program, "stats", None)
    if callable(prog_stats):
        try:
            ps = prog_stats()
        except Exception:  # noqa: BLE001 - a runtime without stats yet: report what we have
            ps = {}
        for k in ("kernels", "planned_bytes", "naive_bytes"):
            if k in ps:
                out[k] = ps[k]
    return out


def _contiguous_array(t: Tensor) -> Any:
    """The tensor's values as a C-contiguous array (its own when it already is one)."""
    from lamina.frontend.ops import contiguous

    a = t._a
    return a if a.flags.c_contiguous else contiguous(t)._a


def is_compiling() -> bool:
    """Whether a ``lamina.compile`` trace is recording (``torch.compiler.is_compiling``):
    code that checks tensor values on the host skips those checks in a trace."""
    return trace.current() is not None


def _c_name(name: str) -> str:
    s = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return s if s and not s[0].isdigit() else f"f_{s}"


def compile(fn: Callable[..., Any] | None = None, *, dynamic: bool = False,  # noqa: A001
            fallback: str | None = None, **options: Any) -> Any:
    """``lamina.compile(fn)`` or ``@lamina.compile``: trace, fuse and compile ``fn``.

    ``fn`` may be a whole training step (forward, ``loss.backward()``,
    ``optimizer.step()``) or an ``nn.Module``. ``dynamic=True`` compiles with a
    symbolic leading (batch) size; ``fallback="eager"`` runs calls that cannot be
    traced (data-dependent Python control flow) eagerly instead of raising.
    """
    if options:
        raise TypeError(f"lamina.compile: unsupported options {sorted(options)}")
    if fn is None:
        return lambda f: CompiledFunction(f, dynamic=dynamic, fallback=fallback)
    return CompiledFunction(fn, dynamic=dynamic, fallback=fallback)


def _device_of(entry: step_entry.Entry, args: tuple, name: str) -> Any:
    """The CUDA device every tensor of the step lives on (None: all on the CPU), or
    PyTorch's mixed-device error naming the compiled function."""
    from lamina.frontend import trace as tr
    from lamina.frontend.dispatch import devices_error

    seen: dict[str, Any] = {}
    for src in entry.sources:
        if isinstance(src, tr.DynamicSource):
            continue
        t = args[src.index] if isinstance(src, tr.ArgSource) else src.get()
        if not isinstance(t, Tensor) or t._a is None:
            continue
        a = t._a
        if isinstance(a, np.ndarray):
            if a.ndim and a.size > 1:  # 0-d / one-element host tensors mix as scalars
                seen.setdefault("cpu", src.describe())
        else:
            seen.setdefault(f"cuda:{a.device.index}", a.device)
    if len(seen) > 1:
        a, b = sorted(seen, reverse=True)[:2]
        entry.undo()
        raise RuntimeError(devices_error(a, b, f"lamina.compile({name}), {seen['cpu']}"))
    return next((d for k, d in seen.items() if k != "cpu"), None)
