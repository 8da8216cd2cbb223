"""Tensor methods and Python operators, bound to the functions of ``ops`` and ``views``."""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.frontend import dtypes as dt
from lamina.frontend import (
    inplace,
    ops,
    ops_conv,
    ops_creation,
    ops_index,
    ops_linalg,
    ops_math,
    ops_reduce,
    ops_shape,
    ops_softmax,
    transfer,
    views,
)
from lamina.frontend.tensor import Tensor

# Modules that add functions and methods for the full Tensor API.
EXTRA_MODULES = (ops_creation, ops_index, ops_linalg, ops_math, ops_reduce, ops_shape, inplace)
EXTRA_MODULES += (ops_conv,)
EXTRA_MODULES += (ops_softmax,)


def _rev(fn):
    return lambda self, other: fn(other, self)


def _to(self: Tensor, *args: Any, **kwargs: Any) -> Tensor:
    """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``."""
    from lamina.frontend.device import check_device, device

    dtype = kwargs.pop("dtype", None)
    dev = kwargs.pop("device", None)
    kwargs.pop("non_blocking", None)
    copy = kwargs.pop("copy", False)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, dt.dtype):
            dtype = a
        elif isinstance(a, (str, device)):
            dev = a
        elif isinstance(a, Tensor):
            dtype, dev = a.dtype, a.device
        else:
            raise TypeError(f"to() received an invalid combination of arguments: {a!r}")
    if dev is not None and check_device(dev, "to") != self.device:
        moved = transfer.to_device(self, dev)
        return moved if dtype is None or dtype is self.dtype else ops.cast(moved, dtype)
    if dtype is None or dtype is self.dtype:
        return ops.clone(self) if copy else self
    return ops.cast(self, dtype)


def _dtype_method(d: dt.dtype):
    return lambda self: self if self.dtype is d else ops.cast(self, d)


def _type(self: Tensor, dtype: dt.dtype | None = None) -> Any:
    if dtype is None:
        return {dt.float32: "lamina.FloatTensor", dt.float64: "lamina.DoubleTensor",
                dt.int64: "lamina.LongTensor", dt.int32: "lamina.IntTensor",
                dt.bool_: "lamina.BoolTensor"}.get(self.dtype, f"lamina.{self.dtype.name}Tensor")
    return _to(self, dtype)


def _compare(fn):
    """``==``/``!=``: NotImplemented for operands that are not tensors or numbers, so Python
    falls back to identity (``t == None`` is False), as with PyTorch."""
    def op(self: Tensor, other: Any) -> Any:
        if not isinstance(other, (Tensor, bool, int, float, np.generic)):
            return NotImplemented
        return fn(self, other)

    return op


def _size_args(args: tuple) -> tuple:
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


METHODS = {
    "__add__": ops.add, "__radd__": _rev(ops.add), "__sub__": ops.sub, "__rsub__": _rev(ops.sub),
    "__mul__": ops.mul, "__rmul__": _rev(ops.mul), "__truediv__": ops.div,
    "__rtruediv__": ops.rdiv, "__pow__": ops.pow, "__rpow__": _rev(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _rev(ops.matmul), "__neg__": ops.neg,
    "__pos__": lambda self: self, "__abs__": ops.abs, "__invert__": ops.logical_not,
    "__and__": ops.logical_and, "__or__": ops.logical_or, "__xor__": ops.logical_xor,
    "__eq__": _compare(ops.eq), "__ne__": _compare(ops.ne), "__lt__": ops.lt,
    "__le__": ops.le, "__gt__": ops.gt, "__ge__": ops.ge, "__getitem__": views.getitem,
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow,
    "maximum": ops.maximum, "minimum": ops.minimum, "eq": ops.eq, "ne": ops.ne, "lt": ops.lt,
    "le": ops.le, "gt": ops.gt, "ge": ops.ge, "matmul": ops.matmul, "mm": ops.mm,
    "bmm": ops.bmm, "where": lambda self, cond, other: ops.where(cond, self, other),
    "sum": ops.sum, "mean": ops.mean, "prod": ops.prod, "amax": ops.amax, "amin": ops.amin,
    "max": ops.max, "min": ops.min, "argmax": ops.argmax, "argmin": ops.argmin,
    "clone": ops.clone, "contiguous": ops.contiguous,
    "view": views.view, "reshape": views.reshape, "permute": views.permute,
    "transpose": views.transpose, "t": views.t, "expand": views.expand,
    "expand_as": views.expand_as, "unsqueeze": views.unsqueeze, "squeeze": views.squeeze,
    "flatten": views.flatten, "to": _to, "type": _type,
    "float": _dtype_method(dt.float32), "double": _dtype_method(dt.float64),
    "half": _dtype_method(dt.float16), "bfloat16": _dtype_method(dt.bfloat16),
    "int": _dtype_method(dt.int32), "long": _dtype_method(dt.int64),
    "bool": _dtype_method(dt.bool_), "cpu": transfer.cpu_method, "cuda": transfer.cuda_method,
    "is_floating_point": lambda self: self.dtype.is_floating_point,
}
for _name in ("neg", "abs", "exp", "exp2", "expm1", "log", "log2", "log1p", "sqrt", "rsqrt",
              "sin", "cos", "tan", "tanh", "sigmoid", "erf", "floor", "ceil", "round", "trunc",
              "sign", "relu", "isnan", "logical_not", "logical_and", "logical_or",
              "logical_xor"):
    METHODS.setdefault(_name, getattr(ops, _name))

for _module in EXTRA_MODULES:
    METHODS.update(_module.TENSOR_METHODS)

for _name, _fn in METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: views.permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(lambda self: views.transpose(self, -2, -1))
