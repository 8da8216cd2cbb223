"""``CudaArray``: a strided view of device memory that looks like a numpy ndarray to the frontend.

A CUDA tensor's storage (``Tensor._a``) is a ``CudaArray``. It carries what
the frontend reads from ``_a`` - ``shape``, byte ``strides``, ``dtype``,
``itemsize``, ``ndim``, ``size``, ``nbytes``, ``flags.c_contiguous``, ``base``
- and the *metadata-only* operations views need (``view()``, assigning
``shape``, ``reshape`` when no copy is needed, ``transpose``, basic slicing,
``as_strided``, ``np.broadcast_to``). Nothing here computes on the data:
every computation is a kernel launched by ``CudaProgram``, and any numpy
function other than ``broadcast_to`` raises instead of silently reading a
device pointer as host memory.

Views keep ``base`` pointing at the array they were made from, so the end of
the ``base`` chain identifies the storage (version counters, aliasing checks).
Every view is checked to stay inside its allocation, so a kernel given a
``CudaArray`` never reads or writes outside the memory it owns.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Flags:
    __slots__ = ("_a",)

    def __init__(self, a: CudaArray):
        self._a = a

    @property
    def c_contiguous(self) -> bool:
        return self._a.is_contiguous

    @property
    def writeable(self) -> bool:
        return True


def contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Row-major byte strides of ``shape``."""
    out, s = [], itemsize
    for n in reversed(shape):
        out.append(s)
        s *= max(n, 1)
    return tuple(reversed(out))


def _nocopy_strides(shape: tuple[int, ...], strides: tuple[int, ...],
                    new: tuple[int, ...]) -> tuple[int, ...] | None:
    """Byte strides that show the same elements with shape ``new``, or None when the
    elements are not laid out evenly enough (then a reshape must copy)."""
    old = [(n, s) for n, s in zip(shape, strides) if n != 1]
    out = [0] * len(new)
    oi = ni = 0
    while ni < len(new) and oi < len(old):
        # the smallest runs of old and new axes with equal element counts
        nprod, oprod, nj, oj = new[ni], old[oi][0], ni + 1, oi + 1
        while nprod != oprod:
            if nprod < oprod:
                nprod *= new[nj]
                nj += 1
            else:
                oprod *= old[oj][0]
                oj += 1
        if any(old[k][1] != old[k + 1][0] * old[k + 1][1] for k in range(oi, oj - 1)):
            return None
        out[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            out[k - 1] = out[k] * new[k]
        ni, oi = nj, oj
    if ni < len(new):  # trailing size-1 axes
        last = out[ni - 1] if ni else 0
        for k in range(ni, len(new)):
            out[k] = last
    return tuple(out)


class CudaArray:
    """Shape, byte strides and dtype over a block of device memory (``mem``, kept alive)."""

    __slots__ = ("device", "mem", "offset", "shape", "strides", "dtype", "base", "__weakref__")
    # numpy defers binary operators to the frontend's tensors, never to this array
    __array_priority__ = -1

    def __init__(self, device: Any, mem: Any, shape: tuple[int, ...], dtype: Any,
                 strides: tuple[int, ...] | None = None, offset: int = 0,
                 base: CudaArray | None = None):
        self.device, self.mem, self.offset, self.base = device, mem, int(offset), base
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        object.__setattr__(self, "strides", tuple(int(s) for s in strides) if strides is not None
                           else contiguous_strides(self.shape, self.dtype.itemsize))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def empty(cls, device: Any, shape: tuple[int, ...], dtype: Any) -> CudaArray:
        """Uninitialised contiguous memory from the device's pool."""
        shape = tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return cls(device, device.alloc(max(n, 1)), shape, dtype)

    @classmethod
    def from_numpy(cls, device: Any, a: np.ndarray) -> CudaArray:
        """A contiguous device copy of a host array (0-d stays 0-d: np.ascontiguousarray
        would make it 1-d)."""
        h = np.ascontiguousarray(a).reshape(np.shape(a))
        out = cls.empty(device, h.shape, h.dtype)
        device.htod(out.ptr, h.ctypes.data, h.nbytes)
        return out

    @classmethod
    def upload_scalar(cls, device: Any, a: np.ndarray) -> CudaArray:
        """A host array that is one number repeated (all strides 0) as one uploaded element
        seen with the same stride-0 layout (a kernel argument, read only)."""
        if a.size > 1 and all(s == 0 for s in a.strides):
            one = cls.from_numpy(device, np.array(a.reshape(-1)[0]))
            return one.as_strided(a.shape, (0,) * a.ndim)
        return cls.from_numpy(device, a)

    # -- ndarray protocol (metadata) --------------------------------------------------------
    @property
    def ptr(self) -> int:
        """The device address of element 0."""
        return int(self.mem) + self.offset

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def flags(self) -> _Flags:
        return _Flags(self)

    @property
    def is_contiguous(self) -> bool:
        want = contiguous_strides(self.shape, self.itemsize)
        return all(s == w for s, w, n in zip(self.strides, want, self.shape) if n != 1)

    @property
    def element_strides(self) -> tuple[int, ...]:
        """Strides in elements (the kernel ABI's unit)."""
        return tuple(s // self.itemsize for s in self.strides)

    @property
    def T(self) -> CudaArray:  # noqa: N802 - numpy's name
        return self.transpose()

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "strides" and hasattr(self, "strides"):
            raise AttributeError("CudaArray strides are fixed; use as_strided()")
        if name == "shape" and hasattr(self, "strides"):
            # like ndarray.shape = ...: a view in place, AttributeError when it would copy
            new = tuple(int(s) for s in value)
            st = self._reshaped_strides(new)
            if st is None:
                raise AttributeError("Incompatible shape for in-place modification. Use "
                                     "`.reshape()` to make a copy with the desired shape.")
            object.__setattr__(self, "shape", new)
            object.__setattr__(self, "strides", st)
            return
        object.__setattr__(self, name, value)

    def _reshaped_strides(self, new: tuple[int, ...]) -> tuple[int, ...] | None:
        n = 1
        for d in new:
            n *= d
        if n != self.size:
            raise ValueError(f"cannot reshape array of size {self.size} into shape {new}")
        if self.is_contiguous:
            return contiguous_strides(new, self.itemsize)
        return _nocopy_strides(self.shape, self.strides, new)

    def _derive(self, shape: tuple[int, ...], strides: tuple[int, ...],
                offset: int) -> CudaArray:
        out = CudaArray(self.device, self.mem, shape, self.dtype, strides, offset, base=self)
        out._check_inside()
        return out

    def _check_inside(self) -> None:
        if self.size == 0:
            return
        lo = self.offset + sum(s * (n - 1) for s, n in zip(self.strides, self.shape) if s < 0)
        hi = self.offset + sum(s * (n - 1) for s, n in zip(self.strides, self.shape) if s > 0)
        cap = getattr(self.mem, "nbytes", None)
        if lo < 0 or (cap is not None and hi + self.itemsize > cap):
            raise ValueError(f"CudaArray view shape={self.shape} strides={self.strides} "
                             f"offset={self.offset} leaves its allocation of {cap} bytes")

    def view(self, dtype: Any = None) -> CudaArray:
        """A new array object over the same memory (same dtype only)."""
        if dtype is not None and np.dtype(dtype) != self.dtype:
            raise NotImplementedError("CudaArray.view(dtype): reinterpreting the bytes of a "
                                      "cuda tensor as another dtype is not supported yet")
        return self._derive(self.shape, self.strides, self.offset)

    def reshape(self, *shape: Any) -> CudaArray:
        """A view with a new shape; raises when the layout would need a copy (use a kernel)."""
        new = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
            else tuple(shape)
        if -1 in new:
            known = 1
            for d in new:
                if d != -1:
                    known *= d
            new = tuple(self.size // max(known, 1) if d == -1 else d for d in new)
        st = self._reshaped_strides(new)
        if st is None:
            raise NotImplementedError(f"CudaArray.reshape: shape {self.shape} with strides "
                                      f"{self.strides} cannot be viewed as {new} without a copy; "
                                      "make it contiguous with a kernel first")
        return self._derive(new, st, self.offset)

    def transpose(self, *axes: Any) -> CudaArray:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"axes {axes} don't match array of {self.ndim} dimensions")
        return self._derive(tuple(self.shape[a] for a in axes),
                            tuple(self.strides[a] for a in axes), self.offset)

    def as_strided(self, shape: tuple[int, ...], strides: tuple[int, ...],
                   offset: int = 0) -> CudaArray:
        """A view with explicit shape and byte strides, ``offset`` bytes from this view's start;
        checked to stay inside the allocation."""
        if any(s % self.itemsize for s in strides):
            raise ValueError(f"CudaArray.as_strided: byte strides {strides} are not multiples "
                             f"of the item size {self.itemsize}")
        return self._derive(tuple(shape), tuple(strides), self.offset + offset)

    def __getitem__(self, key: Any) -> CudaArray:
        """Basic indexing (ints, slices with positive steps, None, Ellipsis): a view."""
        items = key if isinstance(key, tuple) else (key,)
        n_axes = sum(1 for k in items if k is not None and k is not Ellipsis)
        if any(k is Ellipsis for k in items):
            i = next(i for i, k in enumerate(items) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - n_axes)
            items = items[:i] + fill + tuple(k for k in items[i + 1:] if k is not Ellipsis)
        elif n_axes < self.ndim:
            items = items + (slice(None),) * (self.ndim - n_axes)
        if sum(1 for k in items if k is not None) != self.ndim:
            raise IndexError(f"too many indices for array: array is {self.ndim}-dimensional")
        shape: list[int] = []
        strides: list[int] = []
        off, d = self.offset, 0
        for k in items:
            if k is None:
                shape.append(1)
                strides.append(0)
                continue
            n, s = self.shape[d], self.strides[d]
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step <= 0:
                    raise NotImplementedError("CudaArray: negative slice steps are not supported")
                m = max(0, (stop - start + step - 1) // step)
                if m:
                    off += start * s
                shape.append(m)
                strides.append(s * step)
            else:
                i = int(k)
                if not -n <= i < n:
                    raise IndexError(f"index {i} is out of bounds for axis {d} with size {n}")
                off += (i % n) * s
            d += 1
        return self._derive(tuple(shape), tuple(strides), off)

    # -- host copies ----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A contiguous host copy of the elements (synchronous, any strides)."""
        out = np.empty(self.shape, self.dtype)
        if self.size == 0:
            return out
        if self.is_contiguous:
            self.device.dtoh(out.ctypes.data, self.ptr, out.nbytes)
            return out
        # copy the span the view covers, then gather on the host (strides are non-negative)
        span = sum(s * (n - 1) for s, n in zip(self.strides, self.shape)) + self.itemsize
        raw = np.empty(span, np.uint8)
        self.device.dtoh(raw.ctypes.data, self.ptr, span)
        out[...] = np.lib.stride_tricks.as_strided(raw.view(self.dtype), self.shape, self.strides)
        return out

    def copy_from_numpy(self, a: np.ndarray) -> None:
        """Overwrite this (contiguous) array with a host array of the same shape and dtype."""
        if not self.is_contiguous or a.shape != self.shape or a.dtype != self.dtype:
            raise ValueError(f"CudaArray.copy_from_numpy: {a.dtype}{list(a.shape)} into "
                             f"{self.dtype}{list(self.shape)} (contiguous: {self.is_contiguous})")
        h = np.ascontiguousarray(a)
        self.device.htod(self.ptr, h.ctypes.data, h.nbytes)

    # -- numpy must never read device memory ------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(f"can't convert {device_name(self)} device type tensor to numpy. Use "
                        "Tensor.cpu() to copy the tensor to host memory first.")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.broadcast_to:
            return _broadcast_to(*args, **kwargs)
        raise NotImplementedError(f"numpy.{func.__name__} on a cuda array: not supported on cuda "
                                  "tensors yet")

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"numpy.{ufunc.__name__} on a cuda array: not supported on "
                                  "cuda tensors yet")

    def __repr__(self) -> str:
        return (f"CudaArray(shape={self.shape}, dtype={self.dtype}, strides={self.strides}, "
                f"{device_name(self)})")


def _broadcast_to(a: CudaArray, shape: Any, subok: bool = False) -> CudaArray:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
    lead = len(shape) - a.ndim
    if lead < 0:
        raise ValueError(f"cannot broadcast shape {a.shape} to {shape}")
    strides = []
    for i, n in enumerate(shape):
        if i < lead:
            strides.append(0)
            continue
        m = a.shape[i - lead]
        if m == n:
            strides.append(a.strides[i - lead])
        elif m == 1:
            strides.append(0)
        else:
            raise ValueError(f"operands could not be broadcast together: {a.shape} -> {shape}")
    return a._derive(shape, tuple(strides), a.offset)


def device_name(a: CudaArray) -> str:
    return f"cuda:{getattr(a.device, 'index', 0)}"


def is_cuda_array(a: Any) -> bool:
    return isinstance(a, CudaArray)


__all__ = ["CudaArray", "contiguous_strides", "device_name", "is_cuda_array"]
