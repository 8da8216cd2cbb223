"""CPU buffers: 64-byte-aligned numpy arrays and the (pointer, sizes, strides) kernels take.

A Lamina buffer *is* a numpy array (or a view of one), so ``.numpy()`` and
``from_numpy`` never copy. Memory that Lamina allocates starts on a 64-byte
boundary (one cache line, one AVX-512 register) so kernels may use aligned
vector loads on it; views of it keep whatever offset the view has.
"""

from __future__ import annotations

import ctypes
import math
import operator
from typing import Sequence

import numpy as np

ALIGNMENT = 64

_U8 = np.dtype(np.uint8)
_ndarray = np.ndarray


def _probe_data_offset() -> int | None:
    """Where ``PyArrayObject.data`` sits inside the array object, checked on real arrays.

    ``a.ctypes.data`` costs ~0.8 µs, reading the field directly ~0.14 µs; the eager
    path reads a pointer per buffer per op, so it pays. The offset is verified on
    several arrays (fresh, sliced view, 0-d, size 0) and not used if any disagrees.
    """
    base = np.arange(64, dtype=np.float64)
    samples = [base, base[3:17:2], np.zeros((), np.int8), np.empty((0, 3), np.float32),
               base.reshape(8, 8).T]
    for offset in (16, 24, 32):
        try:
            if all(ctypes.c_void_p.from_address(id(a) + offset).value == a.ctypes.data
                   for a in samples):
                return offset
        except (ValueError, OverflowError):
            continue
    return None


_DATA_OFFSET = _probe_data_offset()


if _DATA_OFFSET is not None:
    _read_ptr = ctypes.c_void_p.from_address

    def data_pointer(a: np.ndarray) -> int:
        """The address of ``a``'s first element (of ``a[0, 0, ...]``, not of its base)."""
        return _read_ptr(id(a) + _DATA_OFFSET).value or 0

else:  # pragma: no cover - only on a numpy whose object layout we do not know

    def data_pointer(a: np.ndarray) -> int:
        """The address of ``a``'s first element (of ``a[0, 0, ...]``, not of its base)."""
        return a.ctypes.data


def alloc(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``empty`` for callers that already checked their arguments (generated programs):
    ``shape`` a tuple of non-negative ints, ``dtype`` a ``np.dtype``.

    The memory is a slightly larger uint8 array; the result is a view of it at the
    aligned offset, so numpy owns and frees it as usual.
    """
    raw = np.empty(math.prod(shape) * dtype.itemsize + ALIGNMENT - 1, _U8)
    return _ndarray(shape, dtype, raw, -data_pointer(raw) & (ALIGNMENT - 1))


def empty(shape: int | Sequence[int], dtype: np.dtype | type | str) -> np.ndarray:
    """A new uninitialised C-contiguous array whose data starts on a 64-byte boundary."""
    try:
        sizes = (operator.index(shape),) if not hasattr(shape, "__len__") else tuple(
            map(operator.index, shape))
    except TypeError:
        sizes = None
    if sizes is None or (sizes and min(sizes) < 0):
        raise ValueError(f"empty: sizes must be non-negative integers, got {shape!r}")
    return alloc(sizes, dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))


def zeros(shape: int | Sequence[int], dtype: np.dtype | type | str) -> np.ndarray:
    """Like ``empty`` but filled with zeros."""
    a = empty(shape, dtype)
    a.fill(0)
    return a


def is_aligned(a: np.ndarray, alignment: int = ALIGNMENT) -> bool:
    """Whether ``a``'s first element sits on an ``alignment``-byte boundary."""
    return data_pointer(a) % alignment == 0


def element_strides(a: np.ndarray, what: str = "buffer") -> tuple[int, ...]:
    """``a``'s strides counted in elements; raises ValueError for layouts kernels cannot take.

    Kernels index ``ptr[sum(i_k * stride_k)]`` with non-negative element strides,
    so negative strides (``a[::-1]``) and strides that are not a whole number of
    elements (fields of structured arrays, unaligned byte views) are refused.
    """
    item = a.itemsize
    out = []
    for axis, (s, n) in enumerate(zip(a.strides, a.shape)):
        if n <= 1:
            # Only index 0 exists on this axis, so its stride is never used; numpy may
            # leave any value there (relaxed strides), even a negative one.
            out.append(max(s, 0) // item if s % item == 0 else 0)
            continue
        if s < 0:
            raise ValueError(f"{what}: negative stride {s} bytes on axis {axis} of an array of "
                             f"shape {a.shape} and dtype {a.dtype}; Lamina kernels take only "
                             "non-negative strides (make a copy first)")
        if s % item:
            raise ValueError(f"{what}: stride {s} bytes on axis {axis} is not a multiple of the "
                             f"item size {item} of dtype {a.dtype} (shape {a.shape})")
        out.append(s // item)
    return tuple(out)


def describe(a: np.ndarray, what: str = "buffer") -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """``(data pointer, sizes, strides in elements)`` of any numpy view, as kernels take them.

    Works for 0-d arrays (no sizes, no strides), size-0 arrays and strided views;
    raises ValueError for negative strides and for misaligned data.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(a).__name__}")
    if not a.flags.aligned:
        raise ValueError(f"{what}: array of shape {a.shape} and dtype {a.dtype} is not aligned to "
                         "its item size (an unaligned byte view); make a copy first")
    return data_pointer(a), tuple(a.shape), element_strides(a, what)
