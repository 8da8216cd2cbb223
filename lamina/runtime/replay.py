"""Native replay: a planned, all-static program runs as ONE ctypes call.

``backends/llvm/driver.emit_replay`` writes a driver function that fills each
kernel's argument words (every pointer, size and stride is known once the
arena and the call's buffers are) and launches the kernels in order through a
table of their addresses in the already loaded kernel library. The driver's
object code goes through the kernel cache like any kernel (memory, disk,
LLVM), so a warm process does not invoke LLVM.

Big kernels keep their threads: the driver calls them through ``pfor``, the
native thread pool's ``lamina_pool_pfor`` (``runtime/native_pool.py``: no
Python on the way), or, where that pool is off, a callback into this module
that splits their trips over the Python thread pool exactly as
``Kernel.__call__`` does; small kernels run inline.

The Program runs the first call from Python, which checks every kernel's
buffers (types and the bounds their loops imply); with static sizes and
contiguous arguments a later call has the same sizes, so the driver skips
those checks and only the program's arguments are checked per call.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any, Callable, Sequence

import numpy as np

from lamina.ir.core import Graph, Module
from lamina.ir.types import MemRefType
from lamina.runtime import native_pool, threads
from lamina.runtime.argcheck import row_major
from lamina.runtime.buffers import data_pointer
from lamina.runtime.cache import CompiledModule, cache
from lamina.runtime.kernel import PARALLEL_MIN_ELEMENTS

SYMBOL = "lamina_replay"
_DRIVER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_void_p)
_PFOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_KERNEL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


def _static(t: Any) -> bool:
    return isinstance(t, MemRefType) and all(d is not None for d in t.shape)


def eligible(func: Graph) -> bool:
    """Every buffer static and every argument dense row-major: what a driver can replay."""
    for a in func.args:
        t = a.type
        if not _static(t):
            return False
        if t.strides is not None and tuple(t.strides) != row_major(t.shape):
            return False
    returned = {id(v) for v in func.returned}
    for op in func.ops:
        if op.name == "loop.alloc":
            if not _static(op.result.type):
                return False
            if "offset" not in op.attrs and id(op.result) not in returned:
                return False
    return any(op.name == "loop.call" for op in func.ops)


def _parallel_rule(compiled: CompiledModule) -> Callable[[str, int], bool]:
    """Which launches the driver splits: big buffers, or (with the native pool, whose
    dispatch is cheap enough) kernels with enough work (``Kernel.heavy``)."""
    native = native_pool.enabled()

    def parallel(kernel: str, elements: int) -> bool:
        return elements >= PARALLEL_MIN_ELEMENTS or (native and compiled.kernels[kernel].heavy)

    return parallel


class NativeReplay:
    """The loaded driver of one program, and how to call it."""

    def __init__(self, module: Module, func: Graph, compiled: CompiledModule,
                 result_kinds: Sequence[tuple[str, int]]):
        from lamina.backends.llvm.driver import emit_replay

        text, table, self.launches = emit_replay(module, func.name, SYMBOL,
                                                  _parallel_rule(compiled))
        self.entry = cache().get(text, lambda: text)
        self._fn = _DRIVER(self.entry.library.address(SYMBOL))
        addrs: list[int] = []
        self._kernels: dict[int, Any] = {}  # kernel address -> callable, for the callback
        for name in table:
            k = compiled.kernels[name]
            addrs.append(k.library.address(name))
            addrs.append(k.library.address(name + "__trips") if k.parallel else 0)
            self._kernels[addrs[-2]] = _KERNEL(addrs[-2])
        self._table = (ctypes.c_void_p * max(len(addrs), 1))(*addrs)
        self._error: BaseException | None = None
        self._pfor = _PFOR(self._parallel_for)  # kept alive as long as the driver may call it
        self._results = list(result_kinds)
        self._works = [(k, tuple(int(d) for d in func.returned[k].type.shape),
                        func.returned[k].type.dtype.numpy)
                       for k, (kind, _) in enumerate(result_kinds) if kind == "alloc"]
        self._words = struct.Struct(f"={len(func.args) + len(self._works) + 1}q")

    def _parallel_for(self, _pool: int, kernel: int, args: int, trips: int) -> None:
        """The driver's callback for a big kernel without the native pool: split
        ``[0, trips)`` over the Python thread pool."""
        try:
            fn = self._kernels[kernel]
            pool = threads.pool()
            n = min(pool.size, trips)
            if n <= 1:
                fn(args, 0, trips)
                return

            def chunk(i: int) -> None:
                fn(args, trips * i // n, trips * (i + 1) // n)

            pool.parallel_for(chunk, n)
        except BaseException as e:  # noqa: BLE001 - ctypes would swallow it: re-raised by run
            self._error = e

    def run(self, xs: Sequence[np.ndarray], take: Callable[..., np.ndarray],
            arena: np.ndarray) -> list[np.ndarray]:
        """Run the program on checked arguments; ``take`` gives each returned buffer."""
        works = [take(k, shape, dtype) for k, shape, dtype in self._works]
        words = self._words.pack(*map(data_pointer, xs), *map(data_pointer, works),
                                 data_pointer(arena))
        size = threads.pool().size
        native = native_pool.pool(size) if size > 1 else None
        if native is not None:
            self._fn(words, self._table, native.pfor_address, native.state)
        else:
            self._fn(words, self._table, self._pfor, None)
        if self._error is not None:
            e, self._error = self._error, None
            raise e
        out: list[np.ndarray] = []
        w = iter(works)
        for kind, src in self._results:
            out.append(next(w) if kind == "alloc" else xs[src] if kind == "arg" else out[src])
        return out
