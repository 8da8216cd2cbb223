"""``softmax`` and ``log_softmax`` as one tensor-dialect op each.

``tensor.softmax``/``tensor.log_softmax`` decompose into the max-shifted form
(``passes/decompose.py``), so one call is one program (a max reduction, a sum of
exponentials and the elementwise normalisation) and one autograd node, instead of
five separate ops. float16/bfloat16 inputs are computed in float32 and rounded once.
"""

from __future__ import annotations

from lamina.frontend import dispatch, ops, views
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import Tensor, _dim
from lamina.ir import Builder, Value

__all__ = ["log_softmax", "softmax"]

_HALF = (dt.float16, dt.bfloat16)


def _softmax(name: str, input: Tensor, dim: int, dtype: dt.dtype | None) -> Tensor:
    ops._check_tensor(input, name)
    x = input if dtype is None or dtype is input.dtype else ops.cast(input, dtype)
    if not x.dtype.is_floating_point:
        raise RuntimeError(f'"{name}_lastdim_kernel_impl" not implemented for '
                           f"'{x.dtype.name.capitalize()}'")
    if x.ndim == 0:  # a single element: computed as a 1-element vector
        _dim(dim, 0, name)
        return views.reshape(_softmax(name, views.reshape(x, (1,)), 0, None), ())
    d = _dim(dim, x.ndim, name)
    out_dtype = x.dtype
    compute = dt.float32 if out_dtype in _HALF else out_dtype

    def build(b: Builder, v: Value) -> Value:
        if compute is not out_dtype:
            v = b("tensor.cast", v, dtype=compute.ir)
        r = b(f"tensor.{name}", v, dim=d)
        return r if compute is out_dtype else b("tensor.cast", r, dtype=out_dtype.ir)

    def eager() -> Tensor:
        if x.numel() == 0:
            return ops.clone(x)
        (res,) = dispatch.run_eager((name, d, out_dtype.name), build,
                                    [x._concrete(name)], [x.dtype.ir])
        return Tensor._wrap(res, out_dtype)

    return dispatch.apply(name, build, (x,), eager, out_dtype)


def softmax(input: Tensor, dim: int, dtype: dt.dtype | None = None) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim`` (computed max-shifted: never overflows)."""
    return _softmax("softmax", input, dim, dtype)


def log_softmax(input: Tensor, dim: int, dtype: dt.dtype | None = None) -> Tensor:
    """``x - log(sum(exp(x)))`` along ``dim`` (computed max-shifted: never overflows)."""
    return _softmax("log_softmax", input, dim, dtype)


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {"softmax": softmax, "log_softmax": log_softmax}
