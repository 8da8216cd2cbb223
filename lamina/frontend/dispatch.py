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
    knows it, which saves deriving it from the arrays' strides. Device arrays
    (``CudaArray``) run the same signature's program on their GPU; see ``_cuda_target``.
    """
    for a in arrays:
        if type(a) is not np.ndarray:
            break
    else:
        if _state.device is None:
            return _run_cpu(key, build, arrays, irtypes, layouts)
    dev = _cuda_target(str(key[0]), arrays)
    if dev is None:
        return _run_cpu(key, build, arrays, irtypes, layouts)
    return _run_cuda(key, build, arrays, irtypes, layouts, dev)


def _run_cpu(key: tuple, build: Build, arrays: Sequence[np.ndarray],
             irtypes: Sequence[Any], layouts: tuple | None) -> list[np.ndarray]:
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


# -- CUDA ---------------------------------------------------------------------------------------
_cuda_programs: dict[tuple, Any] = {}


def _scalar_like(a: np.ndarray) -> bool:
    """A host array that is one number (0-d, one element, or broadcast with all strides 0):
    PyTorch lets such values meet CUDA tensors, as scalars."""
    return a.size <= 1 or all(s == 0 for s in a.strides)


def _cuda_target(op: str, arrays: Sequence[Any]) -> Any:
    """The CUDA device an op's arrays run on (None: the CPU), or the mixed-device error."""
    from lamina.runtime.cuda.array import CudaArray

    dev = None
    host = False
    for a in arrays:
        if isinstance(a, CudaArray):
            if dev is None:
                dev = a.device
            elif a.device is not dev:
                raise RuntimeError(devices_error(f"cuda:{dev.index}", f"cuda:{a.device.index}",
                                                 op))
        elif not _scalar_like(a):
            host = True
    if dev is None:
        dev = _state.device if not host else None
        return dev
    if host:
        raise RuntimeError(devices_error(f"cuda:{dev.index}", "cpu", op))
    return dev


def devices_error(a: str, b: str, op: str) -> str:
    """PyTorch's mixed-device message, naming the op."""
    return (f"Expected all tensors to be on the same device, but found at least two devices, "
            f"{a} and {b}! (in {op})")


def current_device() -> Any:
    """The CUDA device (driver ``Device``) the running op allocates on; None: the CPU."""
    return _state.device


def check_devices(op: str, args: Sequence[Any]) -> Any:
    """The CUDA device of an op's tensors (None: the CPU), or PyTorch's error when they
    live on different devices (0-d CPU tensors mix with CUDA tensors as scalars)."""
    first: Any = None
    cpu_nd = False
    for x in args:
        if isinstance(x, Tensor) and x._a is not None:
            a = x._a
            if type(a) is np.ndarray:
                cpu_nd = cpu_nd or not _scalar_like(a)
            elif first is None:
                first = a.device
            elif a.device is not first:
                raise RuntimeError(devices_error(f"cuda:{first.index}",
                                                 f"cuda:{a.device.index}", op))
    if first is not None and cpu_nd:
        raise RuntimeError(devices_error(f"cuda:{first.index}", "cpu", op))
    return first


def _run_cuda(key: tuple, build: Build, arrays: Sequence[Any], irtypes: Sequence[Any],
              layouts: tuple | None, dev: Any) -> list[Any]:
    """The op's program compiled for ``dev`` (cached per signature and device); host
    scalars are uploaded as 0-d (or stride-0) device arrays."""
    from lamina.runtime.cuda.array import CudaArray

    arrays = [a if isinstance(a, CudaArray) else CudaArray.upload_scalar(dev, a) for a in arrays]
    if layouts is None:
        layouts = tuple(layout_of(a) for a in arrays)
    full_key = (key, tuple(irtypes), layouts, dev)
    prog = _cuda_programs.get(full_key)
    if prog is None:
        with _compile_lock:
            prog = _cuda_programs.get(full_key)
            if prog is None:
                prog = _compile_cuda(key, build, arrays, irtypes, layouts, dev)
                _cuda_programs[full_key] = prog
    return prog(*arrays)


def _compile_cuda(key: tuple, build: Build, arrays: Sequence[Any], irtypes: Sequence[Any],
                  layouts: tuple, dev: Any) -> Any:
    from lamina.passes.pipeline import lower
    from lamina.runtime.cuda.program import CudaProgram

    name = _kernel_name(key)
    arg_types = [TensorType((None,) * a.ndim, t) for a, t in zip(arrays, irtypes)]
    module = build_graph(name, build, arg_types)
    stages = lower(module, arg_layouts=layouts, target="cuda")
    return CudaProgram(stages.loop, dev, name)


class on_device:  # noqa: N801 - used like a function: ``with on_device(d): ...``
    """Ops whose inputs are all host scalars (creation: ``full``, ``rand``) run on the CUDA
    device ``dev`` (a driver Device; None: the CPU) inside this block."""

    def __init__(self, dev: Any):
        self.dev = dev

    def __enter__(self) -> None:
        self.prev = _state.device
        _state.device = self.dev

    def __exit__(self, *exc: Any) -> None:
        _state.device = self.prev

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
        return tr.apply(build, args, scalar_dtype)
    dev = check_devices(name, args)
    if dev is not None and _state.device is not dev:
        with on_device(dev):  # storage an op allocates itself lives on its tensors' GPU
            return _apply_eager(name, build, args, eager, scalar_dtype)
    return _apply_eager(name, build, args, eager, scalar_dtype)


def _apply_eager(name: str, build: Build, args: Sequence[Any], eager: Callable[[], Any],
                 scalar_dtype: Any) -> Any:
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
    device: Any = None  # see on_device


_state = _State()


def eager_signatures() -> int:
    """How many op signatures this process has compiled (for tests and stats)."""
    return len(_programs)
