"""Calling one compiled kernel on numpy buffers (the Kernel ABI of docs/contracts.md).

A kernel ``k`` is two C functions: ``void k(int64_t *args, int64_t begin, int64_t
end)`` and ``int64_t k__trips(int64_t *args)``. ``args`` holds, per memref
argument, its data pointer, its sizes and its strides in elements. Everything
that does not depend on the buffers (ctypes prototypes, the struct layout of
``args``, one packing closure per argument, the bounds the kernel's loops
imply) is prepared once, so a call on tiny tensors costs a few microseconds.

Before any call the buffers are checked against the kernel's memref types
(dtype, rank, static sizes and strides, contiguity, writability) and against
the sizes its loops will index, so a mismatch raises instead of reading or
writing out of bounds.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from lamina.ir.core import Graph
from lamina.ir.types import MemRefType
from lamina.runtime import threads
from lamina.runtime.bounds import BoundsCheck, derive_bounds, has_top_level_parallel, written_args
from lamina.runtime.buffers import data_pointer, element_strides
from lamina.runtime.errors import ArgumentMismatch

# Split a call over the thread pool only when it is worth a dispatch (~10-20 µs).
PARALLEL_MIN_ELEMENTS = 1 << 16

_KERNEL_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64)
_TRIPS_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p)
_ndarray = np.ndarray


@dataclass(frozen=True)
class ArgSpec:
    """What one memref argument accepts; ``where`` names it in error messages."""

    type: MemRefType
    where: str
    writes: bool = False

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype.numpy

    def check(self, a: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """Validate ``a`` in full; return ``(pointer, sizes, strides)`` or raise ArgumentMismatch.

        The slow path behind the packing closures: it runs on their first doubt and
        either explains the problem or accepts the buffer after all.
        """
        t = self.type
        if not isinstance(a, _ndarray):
            raise ArgumentMismatch(f"{self.where}: expected a numpy array for {t}, got "
                                   f"{type(a).__name__}")
        got = f"an array of shape {tuple(a.shape)}, strides {a.strides} and dtype {a.dtype}"

        def fail(why: str) -> ArgumentMismatch:
            return ArgumentMismatch(f"{self.where}: expects {t} but got {got}: {why}")

        if a.dtype != self.dtype:
            raise fail(f"dtype {a.dtype} is not {self.dtype} ({t.dtype})")
        if a.ndim != t.rank:
            raise fail(f"rank {a.ndim} is not {t.rank}")
        for axis, (n, want) in enumerate(zip(a.shape, t.shape)):
            if want is not None and n != want:
                raise fail(f"size {n} on axis {axis}, expected {want}")
        if not a.flags.aligned:
            raise fail("data is not aligned to the item size")
        if self.writes and not a.flags.writeable:
            raise fail("the kernel writes this buffer but the array is read-only")
        try:
            strides = element_strides(a, self.where)
        except ValueError as e:
            raise ArgumentMismatch(str(e)) from None
        if t.strides is None:
            if not a.flags.c_contiguous:
                raise fail("the type requires a contiguous row-major buffer")
            strides = _row_major(a.shape)
        else:
            fixed = list(strides)
            for axis, (s, want, n) in enumerate(zip(strides, t.strides, a.shape)):
                if want is None:
                    continue
                if n > 1 and s != want:
                    raise fail(f"stride {s} (elements) on axis {axis}, expected {want}")
                fixed[axis] = want  # unused on a size <= 1 axis; pass what the type says
            strides = tuple(fixed)
        return data_pointer(a), tuple(a.shape), strides


def _row_major(shape: Sequence[int]) -> tuple[int, ...]:
    out = [1] * len(shape)
    acc = 1
    for axis in range(len(shape) - 1, 0, -1):
        acc *= shape[axis]
        out[axis - 1] = acc
    return tuple(out)


Packer = Callable[[Any, list], None]


def _common(spec: ArgSpec) -> Callable[[Any], bool]:
    """A fast predicate for the checks every layout shares: type, dtype, rank, static
    sizes, alignment and (for written arguments) writability."""
    t = spec.type
    dt, rank, writes = spec.dtype, t.rank, spec.writes
    static = tuple((axis, n) for axis, n in enumerate(t.shape) if n is not None)
    all_static = len(static) == rank
    want_shape = tuple(t.shape)

    def common(a: Any) -> bool:
        if a.__class__ is not _ndarray and not isinstance(a, _ndarray):
            return False
        if a.dtype is not dt or a.ndim != rank:
            return False
        shape = a.shape
        if all_static:
            if shape != want_shape:
                return False
        else:
            for axis, n in static:
                if shape[axis] != n:
                    return False
        flags = a.flags
        if not flags.aligned or (writes and not flags.writeable):
            return False
        return True

    return common


def make_checker(spec: ArgSpec) -> Callable[[Any], None]:
    """A closure that validates one buffer against ``spec`` (raising ArgumentMismatch)
    without packing it: for checking a program's arguments up front."""
    common = _common(spec)
    t = spec.type
    if t.strides is None:
        def check(a: Any) -> None:
            if not common(a) or not a.flags.c_contiguous:
                spec.check(a)
        return check
    fixed = tuple((axis, s * spec.dtype.itemsize) for axis, s in enumerate(t.strides)
                  if s is not None)

    def check_strided(a: Any) -> None:
        if not common(a):
            spec.check(a)
            return
        strides, shape = a.strides, a.shape
        if strides and min(strides) < 0:
            spec.check(a)
            return
        for axis, s in fixed:
            if strides[axis] != s and shape[axis] > 1:
                spec.check(a)
                return

    return check_strided


def _packer(spec: ArgSpec) -> Packer:
    """A closure that checks one buffer quickly and appends its ABI words to a list.

    Each closure does only the checks its type needs; anything unusual (a dtype
    that is equal but not identical, a size-1 axis with an odd stride, any
    mismatch) falls back to ``spec.check``, which decides and explains.
    """
    t = spec.type
    rank, itemsize = t.rank, spec.dtype.itemsize
    common = _common(spec)

    def slow(a: Any, out: list) -> None:
        ptr, sizes, strides = spec.check(a)
        out.append(ptr)
        out.extend(sizes)
        out.extend(strides)

    if t.strides is None:
        if rank == 0:
            def pack(a: Any, out: list) -> None:
                if not common(a) or not a.flags.c_contiguous:
                    return slow(a, out)
                out.append(data_pointer(a))
        elif rank == 1:
            def pack(a: Any, out: list) -> None:
                if not common(a) or not a.flags.c_contiguous:
                    return slow(a, out)
                out += (data_pointer(a), a.shape[0], 1)
        elif rank == 2:
            def pack(a: Any, out: list) -> None:
                if not common(a) or not a.flags.c_contiguous:
                    return slow(a, out)
                n0, n1 = a.shape
                out += (data_pointer(a), n0, n1, n1, 1)
        else:
            def pack(a: Any, out: list) -> None:
                if not common(a) or not a.flags.c_contiguous:
                    return slow(a, out)
                shape = a.shape
                out.append(data_pointer(a))
                out.extend(shape)
                out.extend(_row_major(shape))
        return pack

    fixed = tuple((axis, s) for axis, s in enumerate(t.strides) if s is not None)

    def pack_strided(a: Any, out: list) -> None:
        if not common(a):
            return slow(a, out)
        strides = [s // itemsize for s in a.strides]
        if strides and min(strides) < 0:
            return slow(a, out)
        shape = a.shape
        for axis, s in fixed:
            if strides[axis] != s:
                if shape[axis] > 1:
                    return slow(a, out)
                strides[axis] = s
        out.append(data_pointer(a))
        out.extend(shape)
        out.extend(strides)

    return pack_strided


class Kernel:
    """One kernel symbol of loaded object code, callable on numpy buffers.

    ``kernel(*buffers)`` checks the buffers, packs the argument words, asks
    ``k__trips`` and runs ``k`` once, or splits ``[0, trips)`` over the thread
    pool when the buffers are large. Build it with ``Kernel.from_graph`` to get
    the writes and bounds checks derived from the kernel's loop IR.
    """

    def __init__(self, library: Any, name: str, arg_types: Sequence[MemRefType],
                 arg_names: Sequence[str | None] = (), writes: Sequence[int] = (),
                 bounds: BoundsCheck | None = None, parallel: bool = True):
        self.name = name
        self.library = library  # keeps the code alive as long as this kernel
        names = list(arg_names) + [None] * (len(arg_types) - len(arg_names))
        written = set(writes)
        self.specs = tuple(
            ArgSpec(t, f"kernel @{name}: argument {i}" + (f" (%{n})" if n else ""),
                    i in written)
            for i, (t, n) in enumerate(zip(arg_types, names))
        )
        for s in self.specs:
            if not isinstance(s.type, MemRefType):
                raise TypeError(f"kernel @{name}: arguments must be memrefs, got {s.type}")
        self.arg_types = tuple(arg_types)
        self.bounds = bounds
        self.parallel = parallel
        self._packers = tuple(_packer(s) for s in self.specs)
        self._nargs = len(self.specs)
        self._words = struct.Struct(f"={sum(1 + 2 * t.rank for t in arg_types)}q")
        self._fn = _KERNEL_FN(library.address(name))
        self._trips = _TRIPS_FN(library.address(name + "__trips")) if parallel else None

    @classmethod
    def from_graph(cls, library: Any, graph: Graph) -> Kernel:
        """The kernel for ``graph`` (a loop-stage ``kernel``) in ``library``."""
        if graph.kind != "kernel":
            raise TypeError(f"@{graph.name} is a {graph.kind}, not a kernel")
        types = [a.type for a in graph.args]
        bounds = derive_bounds(graph)
        return cls(library, graph.name, types, [a.hint for a in graph.args],
                   written_args(graph), BoundsCheck(bounds, graph.name, types) if bounds else None,
                   has_top_level_parallel(graph))

    def __repr__(self) -> str:
        return f"Kernel(@{self.name}({', '.join(str(t) for t in self.arg_types)}))"

    def pack(self, *arrays: Any) -> bytes:
        """Check the buffers and return the packed ``args`` words (``int64_t[]``)."""
        if len(arrays) != self._nargs:
            raise ArgumentMismatch(f"kernel @{self.name}: expected {self._nargs} buffers, got "
                                   f"{len(arrays)}")
        words: list[int] = []
        for a, pack in zip(arrays, self._packers):
            pack(a, words)
        if self.bounds is not None:
            self.bounds(arrays)
        return self._words.pack(*words)

    def trips(self, args: bytes) -> int:
        """The trip count of the kernel's parallel loop for packed ``args``."""
        return self._trips(args) if self._trips is not None else 1

    def __call__(self, *arrays: Any) -> None:
        args = self.pack(*arrays)
        if self._trips is None:
            self._fn(args, 0, 1)
            return
        trips = self._trips(args)
        if trips >= 2 and max(a.size for a in arrays) >= PARALLEL_MIN_ELEMENTS:
            pool = threads.pool()
            if pool.size > 1:
                self._split(args, trips, min(pool.size, trips), pool)
                return
        if trips > 0:
            self._fn(args, 0, trips)

    def run(self, *arrays: Any, chunks: int = 1) -> None:
        """Call the kernel with its trips split into ``chunks`` ranges on the thread pool."""
        if chunks < 1:
            raise ValueError(f"kernel @{self.name}: chunks must be >= 1, got {chunks}")
        args = self.pack(*arrays)
        trips = self.trips(args)
        if trips <= 0:
            return
        if self._trips is None or chunks == 1:
            self._fn(args, 0, trips)
            return
        self._split(args, trips, min(chunks, trips), threads.pool())

    def _split(self, args: bytes, trips: int, n: int, pool: threads.ThreadPool) -> None:
        fn = self._fn

        def chunk(i: int) -> None:
            fn(args, trips * i // n, trips * (i + 1) // n)

        pool.parallel_for(chunk, n)
