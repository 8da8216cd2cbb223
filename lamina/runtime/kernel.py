"""Calling one compiled kernel on numpy buffers (the Kernel ABI of docs/contracts.md).

A kernel ``k`` is two C functions: ``void k(int64_t *args, int64_t begin, int64_t
end)`` and ``int64_t k__trips(int64_t *args)``. ``args`` holds, per memref
argument, its data pointer, its sizes and its strides in elements. Everything
that does not depend on the buffers (ctypes prototypes, a generated function
that checks and packs the buffers, the bounds the kernel's loops imply) is
prepared once, so a call on tiny tensors costs a few microseconds.

Before any call the buffers are checked against the kernel's memref types
(dtype, rank, static sizes and strides, contiguity, writability) and against
the sizes its loops will index, so a mismatch raises instead of reading or
writing out of bounds.
"""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

from lamina.ir.core import Graph
from lamina.ir.types import MemRefType
from lamina.runtime import native_pool, threads
from lamina.runtime.argcheck import ArgSpec, fast_path
from lamina.runtime.bounds import BoundsCheck, derive_bounds, has_top_level_parallel, written_args
from lamina.runtime.work import static_work

# Split a call over the thread pool only when it is worth a dispatch: a buffer of this
# many elements, or (with the native pool, whose dispatch costs ~1 us) this much work
# (runtime/work.py: ~5-10 us on one core).
PARALLEL_MIN_ELEMENTS = 1 << 16
PARALLEL_MIN_WORK = 1 << 17

_KERNEL_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int64, ctypes.c_int64)
_TRIPS_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_char_p)


class Kernel:
    """One kernel symbol of loaded object code, callable on numpy buffers.

    ``kernel(*buffers)`` checks the buffers, packs the argument words, asks
    ``k__trips`` and runs ``k`` once, or splits ``[0, trips)`` over the thread
    pool when the buffers are large. Build it with ``Kernel.from_graph`` to get
    the writes and bounds checks derived from the kernel's loop IR.
    """

    def __init__(self, library: Any, name: str, arg_types: Sequence[MemRefType],
                 arg_names: Sequence[str | None] = (), writes: Sequence[int] = (),
                 bounds: BoundsCheck | None = None, parallel: bool = True,
                 work: int | None = None):
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
        self.work = work  # ops per call (runtime/work.py), None when unknown
        self.heavy = parallel and work is not None and work >= PARALLEL_MIN_WORK
        # pack(*buffers) -> bytes: the checks and the args words, generated for this signature.
        self.pack = fast_path(self.specs, f"kernel @{name}", bounds)
        self._addr = library.address(name)
        self._fn = _KERNEL_FN(self._addr)
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
                   has_top_level_parallel(graph), static_work(graph))

    def __repr__(self) -> str:
        return f"Kernel(@{self.name}({', '.join(str(t) for t in self.arg_types)}))"

    def trips(self, args: bytes) -> int:
        """The trip count of the kernel's parallel loop for packed ``args``."""
        return self._trips(args) if self._trips is not None else 1

    def __call__(self, *arrays: Any) -> None:
        """Check the buffers and run the kernel (split over threads when they are large)."""
        args = self.pack(*arrays)
        if self._trips is None:
            self._fn(args, 0, 1)
            return
        trips = self._trips(args)
        if trips >= 2:
            big = False
            for a in arrays:
                if a.size >= PARALLEL_MIN_ELEMENTS:
                    big = True
                    break
            if big or self.heavy:
                pool = threads.pool()
                if pool.size > 1:
                    native = native_pool.pool(pool.size)
                    if native is not None:
                        native.run(self._addr, args, trips, min(native.chunks, trips))
                        return
                    if big:  # Python threads: only for big buffers (~10-20 us a dispatch)
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
        native = native_pool.pool(pool.size)
        if native is not None:
            native.run(self._addr, args, trips, n)
            return
        fn = self._fn

        def chunk(i: int) -> None:
            fn(args, trips * i // n, trips * (i + 1) // n)

        pool.parallel_for(chunk, n)
