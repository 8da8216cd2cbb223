"""Compile loop-dialect kernels with the LLVM backend and call them on numpy arrays.

The tests' stand-in for the runtime: it packs the Kernel ABI's ``args`` words
(per memref the data pointer, the sizes, the strides in elements) itself, so
the backend is tested without the runtime.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

from lamina.backends.llvm import JITLibrary, compile_object
from lamina.backends.llvm.emit import emit_kernel
from lamina.ir import Graph, MemRefType, parse

_KERNEL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
_TRIPS = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)


@dataclass
class Compiled:
    """One kernel loaded into the process."""

    graph: Graph
    llvm_ir: str
    library: JITLibrary
    kernel: object
    trips_fn: object

    def pack(self, *arrays: np.ndarray) -> np.ndarray:
        """The args words for ``arrays``, checked against the memref types."""
        if len(arrays) != len(self.graph.args):
            raise TypeError(f"@{self.graph.name} takes {len(self.graph.args)} buffers")
        words: list[int] = []
        for a, arg in zip(arrays, self.graph.args):
            t: MemRefType = arg.type
            assert a.dtype == t.dtype.numpy, (a.dtype, t)
            assert a.ndim == t.rank, (a.shape, t)
            strides = [s // a.itemsize for s in a.strides]
            for d, s in zip(t.shape, a.shape):
                assert d is None or d == s, (a.shape, t)
            if t.strides is not None:
                for k, d in enumerate(t.strides):
                    if d is not None and a.shape[k] <= 1:
                        strides[k] = d  # numpy's stride of a length-0/1 axis is arbitrary
                    assert d is None or d == strides[k], (strides, t)
            words += [a.ctypes.data, *a.shape, *strides]
        return np.array(words, dtype=np.int64)

    def trips(self, *arrays: np.ndarray) -> int:
        args = self.pack(*arrays)
        return self.trips_fn(args.ctypes.data)

    def __call__(self, *arrays: np.ndarray, begin: int = 0, end: int | None = None) -> None:
        args = self.pack(*arrays)
        if end is None:
            end = self.trips_fn(args.ctypes.data)
        self.kernel(args.ctypes.data, begin, end)


@functools.cache
def compile_kernel(text: str) -> Compiled:
    """Parse one kernel graph, emit, optimise, load."""
    (graph,) = parse(text).graphs
    llvm_ir = emit_kernel(graph)
    lib = JITLibrary.load(compile_object(llvm_ir))
    return Compiled(graph, llvm_ir, lib, _KERNEL(lib.address(graph.name)),
                    _TRIPS(lib.address(graph.name + "__trips")))
