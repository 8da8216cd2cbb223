"""``lamina.Tensor``: an n-d view over aligned CPU storage, or a symbolic value in a trace.

Storage is a 64-byte-aligned numpy byte array; a tensor is a numpy view of it
(shape, strides, offset), so views share storage exactly like PyTorch's and
``.numpy()`` never copies. All arithmetic goes through ``lamina.frontend.ops``,
which runs generated kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.frontend import dtypes as dt
from lamina.frontend.device import cpu, device


class Size(tuple):
    """``torch.Size``: a tuple of ints with PyTorch's repr."""

    def __repr__(self) -> str:
        return f"lamina.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


class Tensor:
    """A tensor with PyTorch's API. Concrete (``_a`` is a numpy view) or symbolic."""

    __slots__ = ("_a", "_dtype", "_shape", "_value", "_trace", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError("use lamina.tensor(...), lamina.empty(...) or another factory")

    @classmethod
    def _wrap(cls, a: np.ndarray, dtype: dt.dtype | None = None) -> Tensor:
        t = object.__new__(cls)
        t._a = a
        t._dtype = dtype if dtype is not None else dt.from_numpy(a.dtype)
        t._shape = a.shape
        t._value = None
        t._trace = None
        return t

    @classmethod
    def _symbolic(cls, value: Any, trace: Any) -> Tensor:
        t = object.__new__(cls)
        t._a = None
        t._dtype = dt.from_ir(value.type.dtype)
        t._shape = tuple(value.type.shape)
        t._value = value
        t._trace = trace
        return t

    # -- metadata -------------------------------------------------------------
    @property
    def shape(self) -> Size:
        return Size(self._shape)

    def size(self, dim: int | None = None) -> Size | int:
        if dim is None:
            return Size(self._shape)
        return self._shape[_dim(dim, len(self._shape), "size")]

    @property
    def dtype(self) -> dt.dtype:
        return self._dtype

    @property
    def device(self) -> device:
        return cpu

    @property
    def is_cuda(self) -> bool:
        return False

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def dim(self) -> int:
        return len(self._shape)

    def numel(self) -> int:
        n = 1
        for d in self._shape:
            n *= d
        return n

    def element_size(self) -> int:
        return self._dtype.itemsize

    def stride(self, dim: int | None = None) -> tuple[int, ...] | int:
        if self._a is None:
            strides, acc = [], 1
            for d in reversed(self._shape):
                strides.append(acc)
                acc *= max(d, 1)
            s = tuple(reversed(strides))
        else:
            item = self._a.itemsize
            s = tuple(x // item for x in self._a.strides)
        return s if dim is None else s[_dim(dim, len(self._shape), "stride")]

    def is_contiguous(self) -> bool:
        return self._a is None or self._a.flags.c_contiguous

    def data_ptr(self) -> int:
        self._concrete("data_ptr")
        return int(self._a.ctypes.data)

    def _concrete(self, what: str) -> np.ndarray:
        if self._a is None:
            raise RuntimeError(
                f"{what}() needs a concrete value, but this tensor is symbolic inside "
                "lamina.compile (data-dependent Python control flow cannot be traced)"
            )
        return self._a

    # -- interop ------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A numpy view sharing memory (no copy)."""
        a = self._concrete("numpy")
        if self._dtype is dt.bfloat16:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return a

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def item(self) -> bool | int | float:
        a = self._concrete("item")
        if a.size != 1:
            raise RuntimeError(
                f"a Tensor with {a.size} elements cannot be converted to Scalar"
            )
        return _to_python(a.reshape(()), self._dtype)

    def tolist(self) -> Any:
        a = self._concrete("tolist")
        if self._dtype is dt.bfloat16:
            from lamina.frontend import ops

            return ops.cast(self, dt.float32).tolist()
        return a.tolist()

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __iter__(self):
        if not self._shape:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._shape[0]))

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self.numel()} elements is ambiguous"
            )
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._dtype.category != 1 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        from lamina.frontend.printing import tensor_repr

        return tensor_repr(self)


def _dim(d: int, ndim: int, what: str) -> int:
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not isinstance(d, int) or not lo <= d <= hi:
        raise IndexError(
            f"{what}: Dimension out of range (expected to be in range of [{lo}, {hi}], "
            f"but got {d})"
        )
    return d + ndim if d < 0 else d


def _to_python(a: np.ndarray, dtype: dt.dtype) -> bool | int | float:
    v = a.item()
    if dtype is dt.bfloat16:
        return float(np.array(int(v) << 16, dtype=np.uint32).view(np.float32))
    return v
