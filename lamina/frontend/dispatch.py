"""Runs one frontend op: eagerly through a cached generated kernel, or into a trace.

Eager: each op is a tiny tensor-dialect graph over arguments whose sizes are
all ``?``, so the compiled program depends only on the op's *signature* (op,
attributes, dtypes, ranks, stride pattern) — never on sizes. The first call
with a signature lowers and compiles it (the kernel cache makes that a disk
hit in a warm process); later calls are a dict lookup and one kernel call.

Tracing: inside ``lamina.compile`` the same ``build`` functions append their
ops to one graph instead, so eager and compiled code share one definition of
every op.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Sequence

import numpy as np

from lamina.frontend import trace
from lamina.frontend.tensor import Tensor
from lamina.ir import Builder, Graph, Loc, Module, TensorType, Value
from lamina.ir.core import Return

Build = Callable[..., "Value | Sequence[Value]"]

_programs: dict[tuple, Any] = {}
_LAMINA_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_loc() -> Loc | None:
    """The innermost stack frame outside the lamina package: the user's line."""
    f = sys._getframe(1)
    while f is not None:
        if not f.f_code.co_filename.startswith(_LAMINA_DIR):
            return Loc(f.f_code.co_filename, f.f_lineno)
        f = f.f_back
    return None


def layout_of(a: np.ndarray) -> tuple[int | None, ...]:
    """The stride pattern of an argument (see docs/contracts.md, eager specialisation)."""
    item = a.itemsize
    n = a.ndim
    return tuple(
        0 if s == 0 else (1 if i == n - 1 and s == item else None)
        for i, s in enumerate(a.strides)
    )


def build_graph(name: str, build: Build, arg_types: Sequence[TensorType],
                loc: Loc | None = None) -> Module:
    """A one-function module: ``build`` applied to the function's arguments."""
    g = Graph(name, list(arg_types), [f"a{i}" for i in range(len(arg_types))])
    b = Builder(g.body, loc)
    out = build(b, *g.args)
    outs = [out] if isinstance(out, Value) else list(out)
    g.body.append(Return(outs, []))
    return Module([g])


def compile_eager(key: tuple, build: Build, arrays: Sequence[np.ndarray],
                  irtypes: Sequence[Any], layouts: tuple) -> Any:
    """Lower and compile the program of one op signature (a cache miss)."""
    from lamina.passes.pipeline import lower
    from lamina.runtime import compile_program

    name = _kernel_name(key)
    arg_types = [TensorType((None,) * a.ndim, t) for a, t in zip(arrays, irtypes)]
    module = build_graph(name, build, arg_types)
    stages = lower(module, arg_layouts=layouts)
    return compile_program(stages.loop, name)


def _kernel_name(key: tuple) -> str:
    op = str(key[0]).replace(".", "_")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in op)


def run_eager(key: tuple, build: Build, arrays: Sequence[np.ndarray],
              irtypes: Sequence[Any], layouts: tuple | None = None) -> list[np.ndarray]:
    """Run ``build`` on concrete arrays through the compiled program of its signature.

    ``layouts`` (the stride pattern of each array) may be passed when the caller
    knows it, which saves deriving it from the arrays' strides.
    """
    if layouts is None:
        layouts = tuple(layout_of(a) for a in arrays)
    full_key = (key, tuple(irtypes), layouts)
    prog = _programs.get(full_key)
    if prog is None:
        with _compile_lock:
            prog = _programs.get(full_key)
            if prog is None:
                prog = compile_eager(key, build, arrays, irtypes, layouts)
                _programs[full_key] = prog
    return prog(*arrays)


_compile_lock = threading.Lock()

# Installed by lamina.autograd: hook(name, build, args, out, scalar_dtype) records a
# tape node when gradients are needed. dispatch never imports autograd (layering).
autograd_hook: Callable[..., None] | None = None


def apply(name: str, build: Build, args: Sequence[Any], eager: Callable[[], Any],
          scalar_dtype: Any = None) -> Any:
    """The single entry point of every op of the frontend.

    ``build(builder, *values)`` states the op in the tensor dialect over the
    op's own arguments (numbers included, as ``scalar_dtype`` constants); it is
    what a trace records and what autograd differentiates. ``eager()``
    computes the result with generated kernels (possibly through a cheaper
    specialised path).
    """
    tr = trace.current()
    if tr is not None:
        vals = [tr.value_of(x) if isinstance(x, Tensor) else
                tr.builder("tensor.full", value=x, shape=(), dtype=scalar_dtype.ir)
                for x in args]
        out = build(tr.builder, *vals)
        if isinstance(out, Value):
            return Tensor._symbolic(out, tr)
        return tuple(Tensor._symbolic(v, tr) for v in out)
    hook = autograd_hook
    if hook is None or _state.inside:
        return eager()
    # ops used inside eager() are implementation details: only this op is recorded
    _state.inside = True
    try:
        out = eager()
    finally:
        _state.inside = False
    hook(name, build, args, out, scalar_dtype)
    return out


class _State(threading.local):
    inside = False


_state = _State()


def eager_signatures() -> int:
    """How many op signatures this process has compiled (for tests and stats)."""
    return len(_programs)
