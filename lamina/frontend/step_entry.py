"""One compiled signature of a ``lamina.compile`` step: trace it, then replay it.

Tracing runs the Python function once with symbolic arguments; what it does to
Python-visible state (``.grad`` of parameters, writes into parameters, buffers
and optimizer state) is recorded, not done, and undone when the trace ends.
The entry keeps where each program input comes from, what each program output
is (a returned value, the new contents of a captured tensor, a new ``.grad``)
and the guards under which it is valid. A replay reads the inputs, runs the
program once and writes the results back into the same tensors (identity kept,
version counters bumped), which is what the eager step would have left.
"""

from __future__ import annotations

import inspect
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from lamina.frontend import trace
from lamina.frontend.dispatch import user_loc
from lamina.frontend.guards import Guard
from lamina.frontend.tensor import Tensor, bump_version
from lamina.ir import Module, TensorType

_LAMINA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DataDependentError(RuntimeError):
    """The traced function needs the value of a symbolic tensor (``item()``, ``bool(t)``)."""


# -- output trees ----------------------------------------------------------------------------------
def flatten(out: Any, leaves: list[Tensor]) -> Any:
    """A picklable-free template of ``out`` with tensors replaced by their leaf index."""
    if isinstance(out, Tensor):
        leaves.append(out)
        return ("t", len(leaves) - 1)
    if isinstance(out, (tuple, list)):
        return (type(out), [flatten(o, leaves) for o in out])
    if isinstance(out, dict):
        return (dict, {k: flatten(v, leaves) for k, v in out.items()})
    if out is None or isinstance(out, (bool, int, float, str)):
        return ("c", out)
    raise TypeError("lamina.compile: the function must return tensors, tuples/lists/dicts of "
                    f"them, Python numbers or None, got {type(out).__name__}")


def unflatten(tree: Any, values: Sequence[Any]) -> Any:
    kind, body = tree
    if kind == "t":
        return values[body]
    if kind == "c":
        return body
    if kind is dict:
        return {k: unflatten(v, values) for k, v in body.items()}
    return kind(unflatten(v, values) for v in body)


# -- what a trace reaches -------------------------------------------------------------------------
def reachable(fn: Any, args: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Modules and optimizers the function can reach directly: itself, its bound ``self``,
    its closure, the globals it names, its defaults and its arguments (one level into
    lists, tuples and dicts)."""
    objs: list[Any] = [fn, *args]
    f = fn
    if hasattr(f, "__self__") and hasattr(f, "__func__"):
        objs.append(f.__self__)
        objs += list(getattr(f.__self__, "__dict__", {}).values())  # a trainer's model, opt
        f = f.__func__
    code = getattr(f, "__code__", None)
    if code is not None:
        objs += [c.cell_contents for c in (f.__closure__ or ()) if _filled(c)]
        g = getattr(f, "__globals__", {})
        objs += [g[n] for n in code.co_names if n in g]
        objs += list(f.__defaults__ or ())
    flat: list[Any] = []
    for o in objs:
        if isinstance(o, (list, tuple)):
            flat += list(o)
        elif isinstance(o, dict):
            flat += list(o.values())
        else:
            flat.append(o)
    modules, optimizers, seen = [], [], set()
    for o in flat:
        if id(o) in seen:
            continue
        seen.add(id(o))
        try:
            if hasattr(o, "training") and callable(getattr(o, "modules", None)):
                modules.append(o)
            elif isinstance(getattr(o, "param_groups", None), list):
                optimizers.append(o)
        except Exception:  # noqa: BLE001, S112 - an object whose attributes raise: not ours
            continue
    return modules, optimizers


def number_guards(fn: Any) -> list[Guard]:
    """Guards on the Python numbers the function reads from its globals and closure: they
    become constants of the traced program, so a new value must recompile."""
    f = getattr(fn, "__func__", fn)
    code = getattr(f, "__code__", None)
    if code is None:
        return []
    out = []
    g = getattr(f, "__globals__", {})
    for name in code.co_names:
        v = g.get(name)
        if isinstance(v, (bool, int, float)):
            out.append(Guard(f"global {name}", lambda n=name: g.get(n), v))
    for name, cell in zip(code.co_freevars, f.__closure__ or ()):
        if _filled(cell) and isinstance(cell.cell_contents, (bool, int, float)):
            out.append(Guard(f"closure variable {name}",
                             lambda c=cell: c.cell_contents if _filled(c) else None,
                             cell.cell_contents))
    return out


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def user_frame(tb: Any) -> str:
    """``file:line`` of the innermost frame of a traceback outside the lamina package."""
    where = "<unknown>"
    for fr in traceback.extract_tb(tb):
        if not fr.filename.startswith(_LAMINA_DIR):
            where = f"{fr.filename}:{fr.lineno}"
    return where


# -- the entry ------------------------------------------------------------------------------------
@dataclass
class Entry:
    """A traced and compiled signature (see the module docstring)."""

    module: Module
    sources: list[trace.Source]
    out_tree: Any
    n_user: int
    writes: list[tuple[trace.Source, int]]  # (target, output index)
    grads: list[tuple[Tensor, str, Any]]  # (tensor, "none"|"set"|"new", object or index)
    guards: list[Guard]
    prepare: list[Callable[[dict], None]]
    result_dtypes: list[Any] = field(default_factory=list)
    lowered: Any = None  # compile.Lowered
    eager_reason: str | None = None  # set: this signature runs eagerly
    on_abort: list[Callable[[], None]] = field(default_factory=list)
    _out_ok: bool | None = None  # whether the program takes out= (checked once)
    _checks: list[tuple[Callable[[], Any], Any]] | None = None  # (get, expected) per guard
    device: Any = None  # the CUDA device (driver Device) the program runs on; None: CPU
    # Compute new values of captured tensors straight into their memory with the
    # runtime's out= (they alias the program's inputs). Off: today the runtime's
    # aliasing checks cost more than the copies they save (MLP 64-128-128-10 step:
    # 522 us with out= against 261 us plus ~15 us of copies without).
    write_in_place: ClassVar[bool] = False

    def undo(self) -> None:
        """Undo what tracing did to Python state (optimizer state it created) when the
        entry will not run (``lower`` only, or a failed compile)."""
        for f in reversed(self.on_abort):
            f()

    def failure(self) -> str | None:
        """The first failing guard's message, or None when the entry applies. Every call
        of a compiled step checks its guards, so the passing case is one tight loop; the
        messages are built only when one fails."""
        checks = self._checks
        if checks is None or len(checks) != len(self.guards):
            checks = self._checks = [(g.get, g.expected) for g in self.guards]
        try:
            for get, expected in checks:
                if get() != expected:
                    break
            else:
                return None
        except (KeyError, AttributeError, IndexError):
            pass
        for g in self.guards:
            msg = g.failure()
            if msg is not None:
                return msg
        return None

    def inputs(self, args: Sequence[Any]) -> list[np.ndarray]:
        """The program's input arrays for this call (hyperparameters and random state are
        computed now; the random generators advance as the eager step would)."""
        from lamina.frontend.ops import contiguous

        ctx: dict = {"args": args}  # trace.batch_of: the batch size of random draws
        for f in self.prepare:
            f(ctx)
        arrays = []
        for src in self.sources:
            if isinstance(src, trace.DynamicSource):
                value = src.fn(ctx)
                if self.device is not None:  # hyperparameters, random state: uploaded
                    from lamina.runtime.cuda.array import CudaArray

                    value = CudaArray.from_numpy(self.device, value)
                arrays.append(value)
                continue
            t = args[src.index] if isinstance(src, trace.ArgSource) else src.get()
            a = t._a
            if self.device is not None and isinstance(a, np.ndarray):  # a host scalar
                from lamina.runtime.cuda.array import CudaArray

                arrays.append(CudaArray.from_numpy(self.device, a))
                continue
            arrays.append(a if a.flags.c_contiguous else contiguous(t)._a)
        return arrays

    def finish(self, results: Sequence[np.ndarray]) -> Any:
        """Write the step's results back into Python-visible state; the returned value."""
        from lamina.frontend import dtypes as dt

        for src, i in self.writes:
            t = src.get()
            if results[i] is t._a:  # computed in place when the runtime took out=
                pass
            elif self.device is not None:
                from lamina.frontend.transfer import device_write

                device_write(t, Tensor._wrap(results[i], t.dtype))
            else:
                np.copyto(t._a, results[i], casting="no")
            bump_version(t._a)
        for t, kind, obj in self.grads:
            if kind == "none":
                t.grad = None
            elif kind == "set":
                t.grad = obj
            else:
                t.grad = Tensor._wrap(results[obj], dt.from_ir(self.result_dtypes[obj]))
        outs = [Tensor._wrap(results[i], dt.from_ir(self.result_dtypes[i]))
                for i in range(self.n_user)]
        return unflatten(self.out_tree, outs)

    def run(self, args: Sequence[Any]) -> Any:
        program = self.lowered.program
        arrays = self.inputs(args)
        if self._out_ok is None:
            self._out_ok = Entry.write_in_place and _takes_out(program)
        if not self._out_ok:
            return self.finish(program(*arrays))
        # the new values of captured tensors are computed straight into their memory
        out: list[np.ndarray | None] = [None] * len(self.result_dtypes)
        for src, i in self.writes:
            a = src.get()._a
            if a.flags.c_contiguous and a.flags.writeable:
                out[i] = a
        return self.finish(program(*arrays, out=out))


def _takes_out(program: Any) -> bool:
    """Whether the runtime's program accepts ``out=`` (results written into given arrays)."""
    try:
        return "out" in inspect.signature(program).parameters
    except (TypeError, ValueError):
        return False


def eager_entry(reason: str) -> Entry:
    """A marker entry: calls with this signature run the function eagerly."""
    return Entry(Module([]), [], None, 0, [], [], [], [], eager_reason=reason)


def trace_step(fn: Callable[..., Any], name: str, args: Sequence[Any],
               input_types: list[TensorType] | None = None) -> Entry:
    """Trace ``fn(*args)`` into an entry (not yet lowered); Python state is left as it was."""
    from lamina.autograd import grad_mode
    from lamina.frontend.tensor import AutogradMeta

    tensors = [a for a in args if isinstance(a, Tensor)]
    tr = trace.Trace(name, tensors, input_types)
    tr.builder.loc = user_loc()
    modules, optimizers = reachable(fn, args)
    guards: list[Guard] = number_guards(fn)
    guards.append(Guard("grad mode enabled", grad_mode.is_grad_enabled,
                        grad_mode.is_grad_enabled()))
    for m in modules:
        for sub_name, sub in m.named_modules():
            guards.append(Guard(f"{type(sub).__name__} {sub_name or 'module'}.training",
                                lambda s=sub: s.training, sub.training))
        for p in m.parameters():
            tr.note_leaf(p)
    for o in optimizers:
        for group in o.param_groups:
            for p in group["params"]:
                tr.note_leaf(p)
    symbolic: list[Any] = []
    arg_leaf: dict[int, Tensor] = {}
    k = 0
    for a in args:
        if not isinstance(a, Tensor):
            symbolic.append(a)
            continue
        v = tr.graph.args[k]
        k += 1
        s = tr.wrap(v, False)
        if a.requires_grad:
            s._ag = AutogradMeta(requires_grad=True)
            s._ag.grad = a.grad
            tr.requires_grad.add(v)
            tr.leaf_of[v] = s
            tr.leaves[id(s)] = s
            tr.grad_snapshot[id(s)] = a.grad
            if a.grad is not None:
                tr.bind(a.grad, trace.GradSource(a))
            arg_leaf[id(s)] = a
        symbolic.append(s)
    try:
        with trace.tracing(tr):
            out = fn(*symbolic)
        leaves: list[Tensor] = []
        tree = flatten(out, leaves)
        values = [tr.value_of(t) for t in leaves]
        n_user = len(values)
        writes = []
        for key, (src, _) in tr.writes.items():
            writes.append((src, len(values)))
            values.append(tr.written_value(key))
        grads = []
        for lid, leaf in tr.leaves.items():
            target = arg_leaf.get(lid, leaf)
            final = leaf._ag.grad if leaf._ag is not None else None
            before = tr.grad_snapshot[lid]
            if tr.grad_guarded(leaf):
                guards.append(_grad_guard(target, before))
            if final is None:
                if before is not None:
                    grads.append((target, "none", None))
            elif final._a is None:
                grads.append((target, "new", len(values)))
                values.append(tr.value_of(final))
            elif final is not before:
                grads.append((target, "set", final))
    except RuntimeError as e:
        _abort(tr)
        if "is symbolic inside lamina.compile" in str(e):
            raise DataDependentError(
                f"lamina.compile({name}): {user_frame(e.__traceback__)}: {e}; use "
                "lamina.where, move it out of the step, or pass fallback='eager'") from e
        raise
    except BaseException:
        _abort(tr)
        raise
    finally:
        _restore(tr)
    for i, src in enumerate(tr.sources):
        if isinstance(src, (trace.TensorSource, trace.ItemSource)):
            guards.append(Guard(f"{src.describe()} (input {i}) shape/dtype",
                                lambda s=src: _meta(s.get()), _meta(src.get())))
    guards += tr.guards
    tr.finish(values)
    result_types = [v.type.dtype for v in values]
    return Entry(Module([tr.graph]), tr.sources, tree, n_user, writes, grads, guards,
                 tr.prepare, result_types, on_abort=tr.on_abort)


def _meta(t: Any) -> Any:
    return (tuple(t.shape), t.dtype.name) if isinstance(t, Tensor) else type(t).__name__


def _grad_guard(t: Tensor, before: Any) -> Guard:
    what = f"grad of tensor of shape {tuple(t.shape)}"
    if before is None:
        return Guard(f"{what} is None:", lambda: t.grad is None, True)
    shape = tuple(before.shape)
    return Guard(f"{what}:", lambda: None if t.grad is None else tuple(t.grad.shape), shape)


def _restore(tr: trace.Trace) -> None:
    for lid, leaf in tr.leaves.items():
        if leaf._ag is not None:
            leaf._ag.grad = tr.grad_snapshot[lid]


def _abort(tr: trace.Trace) -> None:
    for undo in reversed(tr.on_abort):
        undo()


__all__ = ["DataDependentError", "Entry", "trace_step", "unflatten"]
