"""Moving tensors between host and GPU memory: ``Tensor.to(device)``, ``.cuda()``, ``.cpu()``.

A CUDA tensor's storage is a ``CudaArray`` (``lamina/runtime/cuda/array.py``);
moves are driver copies (host -> device, device -> host), never kernels.
A move of a tensor that requires grad is recorded on the tape: its backward
moves the gradient back to the source device, as in PyTorch.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from lamina.frontend import dispatch
from lamina.frontend.device import check_device, cpu, device, of_array, runtime_device
from lamina.frontend.tensor import Tensor


def host_array(t: Tensor) -> np.ndarray:
    """The tensor's values in host memory: its own storage on the CPU, a copy from a GPU."""
    a = t._concrete("cpu")
    return a if isinstance(a, np.ndarray) else a.numpy()


def move(t: Tensor, d: device) -> Tensor:
    """``t``'s values on ``d`` (``t`` itself when already there); no autograd history."""
    a = t._concrete("to")
    if of_array(a) == d:
        return t
    if d.type == "cpu":
        return Tensor._wrap(a.numpy(), t._dtype)
    from lamina.runtime.cuda.array import CudaArray

    host = a if isinstance(a, np.ndarray) else a.numpy()
    return Tensor._wrap(CudaArray.from_numpy(runtime_device(d), host), t._dtype)


def to_device(t: Tensor, spec: Any, copy: bool = False) -> Tensor:
    """``t.to(device)``: a copy on the device (differentiable), or ``t`` when it is there."""
    from lamina.frontend import ops

    d = check_device(spec, "to")
    if t._a is None:  # traced: the whole program runs on the device of its inputs
        return ops.clone(t) if copy else t
    if of_array(t._a) == d:
        return ops.clone(t) if copy else t
    if t.requires_grad:
        from lamina.autograd import grad_mode

        if grad_mode.is_grad_enabled():
            return _ToDevice().apply(t, d)
    return move(t, d)


class _ToDevice:
    """The autograd Function of a move (built on first use: autograd imports the frontend)."""

    _cls: Any = None

    def apply(self, t: Tensor, d: device) -> Tensor:
        if _ToDevice._cls is None:
            from lamina.autograd.function import Function

            class ToDevice(Function):
                @staticmethod
                def forward(ctx: Any, x: Tensor, dst: device) -> Tensor:
                    ctx.src = of_array(x._a)
                    return move(x, dst)

                @staticmethod
                def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None]:
                    return move(g, ctx.src), None

            _ToDevice._cls = ToDevice
        return _ToDevice._cls.apply(t, d)


def create(spec: Any, op: str, make: Callable[[], Tensor]) -> Tensor:
    """Run a creation function's CPU definition for device ``spec``: kernels with only
    host-scalar inputs (fills, random bits) run on the GPU; host-made values are uploaded."""
    d = check_device(spec, op)
    if d.type == "cpu":
        return make()
    with dispatch.on_device(runtime_device(d)):
        t = make()
    return move(t, d)


def device_of(t: Tensor) -> device:
    return cpu if t._a is None else of_array(t._a)


def cuda_method(self: Tensor, device: Any = None, non_blocking: bool = False) -> Tensor:
    """``Tensor.cuda(device=None)``."""
    if device is None:
        spec: Any = "cuda"
    elif isinstance(device, int):
        spec = f"cuda:{device}"
    else:
        spec = device
    return to_device(self, spec)


def cpu_method(self: Tensor) -> Tensor:
    """``Tensor.cpu()``."""
    return to_device(self, "cpu")


__all__ = ["create", "cpu_method", "cuda_method", "device_of", "host_array", "move",
           "to_device"]


# -- copy_ into or out of GPU memory --------------------------------------------------------------
_copy_programs: dict[tuple, Any] = {}


def device_write(dst: Tensor, src: Tensor) -> None:
    """``dst.copy_(src)`` where either side is a CUDA tensor (``inplace.write``'s GPU half):
    host sources are uploaded, host destinations receive a host copy, and the copy with
    broadcasting and casting is the same loop kernel as on the CPU, run on the GPU."""
    from lamina.frontend import inplace, ops
    from lamina.runtime.cuda.array import CudaArray

    d, s = dst._a, src._a
    if isinstance(d, np.ndarray):  # GPU -> host: copy the values down, then a CPU copy
        inplace.write(dst, Tensor._wrap(s.numpy(), src._dtype))
        return
    if isinstance(s, np.ndarray):
        s = CudaArray.from_numpy(d.device, s)
    elif s.device is not d.device:
        s = CudaArray.from_numpy(d.device, s.numpy())
    elif s.mem is d.mem and not (s.shape == d.shape and s.strides == d.strides
                                 and s.offset == d.offset):
        # the same memory seen differently (x.copy_(x.t())): read from a copy
        s = ops.clone(Tensor._wrap(s, src._dtype))._a
    shape = d.shape
    src_strides = ops._expand_strides(s, shape)
    cshape, (cs, cd) = ops._collapse(shape, [src_strides, d.strides])
    sv, dv = s.as_strided(cshape, cs), d.as_strided(cshape, cd)
    key = (len(cshape), src._dtype.ir, dst._dtype.ir, dispatch.layout_of(sv),
           dispatch.layout_of(dv), d.device)
    prog = _copy_programs.get(key)
    if prog is None:
        from lamina.passes.prepare_loops import PrepareLoops
        from lamina.runtime.cuda.program import CudaProgram

        name = f"copy_{key[1]}_{key[2]}_r{key[0]}"
        module = PrepareLoops().run(inplace.copy_module(name, *key[:5]))
        prog = _copy_programs[key] = CudaProgram(module, d.device, name)
    prog(sv, dv)
