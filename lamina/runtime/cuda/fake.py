"""A host-memory stand-in for the CUDA driver, so the GPU code paths run without a GPU.

``install()`` (or ``LAMINA_CUDA_FAKE=1`` in the environment before the first
use of the driver) makes ``lamina.cuda.is_available()`` True with one device,
"Lamina host stand-in (fake CUDA)". Only libcuda is replaced: the real
``driver.Device`` (pooled allocator, copies, argument packing of launches), the
real ``CudaProgram`` (PTX build, argument words, grid sizes) and the real
frontend paths run unchanged. Device memory is host memory; ``cuLaunchKernel``
runs the CPU build of the same kernel on the same argument words, after
checking the launch shape and that every buffer the words describe lies inside
a live allocation (so an out-of-bounds view fails here instead of on a GPU).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from typing import Any

import numpy as np

from lamina.runtime.cuda import driver as D

NAME = "Lamina host stand-in (fake CUDA)"
SM_COUNT = 2  # small, so the grid cap (32 blocks per SM) is reached by modest launches
CAPABILITY = (9, 0)
TOTAL_MEM = 1 << 34


class FakeDriver(D.Driver):
    """``Driver`` whose calls are answered in Python instead of by libcuda."""

    def __init__(self) -> None:
        self.lib = None
        self._fns = {}
        self._devices = {}
        self._lock = threading.Lock()
        self.blocks: dict[int, np.ndarray] = {}  # device pointer -> its host buffer
        self.modules: dict[int, dict[str, Any]] = {}  # module handle -> kernel name -> host
        self.functions: dict[int, tuple[int, str]] = {}
        self._ids = itertools.count(1)
        self.launches: list[tuple[str, int, int]] = []
        self.call("cuInit", 0)

    # -- the driver API, answered on the host ------------------------------------------------
    def call(self, name: str, *args: Any) -> None:
        fn = getattr(self, "_" + name, None)
        if fn is None:
            raise D.CudaError(name, 801, "CUDA_ERROR_NOT_SUPPORTED",
                              f"the fake CUDA driver does not implement {name}")
        fn(*args)

    def bind_host(self, module: int, host: Any, kernels: dict[str, Any]) -> None:
        """Give a loaded module the CPU build of its kernels (what a launch runs)."""
        self.modules[module] = {"host": host, "kernels": kernels}

    @staticmethod
    def _set(ref: Any, value: Any) -> None:
        ref._obj.value = value

    def _cuInit(self, flags: int) -> None:  # noqa: N802 - the driver's names
        pass

    def _cuDriverGetVersion(self, out: Any) -> None:  # noqa: N802
        self._set(out, 13000)

    def _cuDeviceGetCount(self, out: Any) -> None:  # noqa: N802
        self._set(out, 1)

    def _cuDeviceGet(self, out: Any, index: int) -> None:  # noqa: N802
        if index != 0:
            raise D.CudaError("cuDeviceGet", 101, "CUDA_ERROR_INVALID_DEVICE", "invalid device")
        self._set(out, 0)

    def _cuDeviceGetName(self, buf: Any, n: int, dev: int) -> None:  # noqa: N802
        ctypes.memmove(buf, NAME.encode()[: n - 1] + b"\0", min(len(NAME) + 1, n))

    def _cuDeviceGetAttribute(self, out: Any, attr: int, dev: int) -> None:  # noqa: N802
        self._set(out, {D.ATTR_MULTIPROCESSOR_COUNT: SM_COUNT,
                        D.ATTR_MAX_THREADS_PER_BLOCK: 1024,
                        D.ATTR_COMPUTE_CAPABILITY_MAJOR: CAPABILITY[0],
                        D.ATTR_COMPUTE_CAPABILITY_MINOR: CAPABILITY[1]}.get(attr, 0))

    def _cuDeviceTotalMem_v2(self, out: Any, dev: int) -> None:  # noqa: N802
        self._set(out, TOTAL_MEM)

    def _cuDevicePrimaryCtxRetain(self, out: Any, dev: int) -> None:  # noqa: N802
        self._set(out, 1)

    def _cuCtxSetCurrent(self, ctx: Any) -> None:  # noqa: N802
        pass

    def _cuCtxSynchronize(self) -> None:  # noqa: N802
        pass

    def _cuMemAlloc_v2(self, out: Any, size: int) -> None:  # noqa: N802
        buf = np.zeros(size + 256, np.uint8)
        ptr = (buf.ctypes.data + 255) // 256 * 256
        self.blocks[ptr] = buf[ptr - buf.ctypes.data:][:size]
        self._set(out, ptr)

    def _cuMemFree_v2(self, ptr: Any) -> None:  # noqa: N802
        if self.blocks.pop(ptr.value, None) is None:
            raise D.CudaError("cuMemFree_v2", 1, "CUDA_ERROR_INVALID_VALUE",
                              f"0x{ptr.value:x} is not an allocation")

    def check_range(self, ptr: int, nbytes: int, what: str) -> None:
        """Raise unless ``[ptr, ptr + nbytes)`` lies inside one live allocation."""
        if nbytes <= 0:
            return
        for base, buf in self.blocks.items():
            if base <= ptr and ptr + nbytes <= base + buf.size:
                return
        raise D.CudaError(what, 700, "CUDA_ERROR_ILLEGAL_ADDRESS",
                          f"{nbytes} bytes at 0x{ptr:x} are outside every allocation")

    def _cuMemcpyHtoD_v2(self, dst: Any, src: Any, n: int) -> None:  # noqa: N802
        self.check_range(dst.value, n, "cuMemcpyHtoD_v2")
        ctypes.memmove(dst.value, src.value, n)

    def _cuMemcpyDtoH_v2(self, dst: Any, src: Any, n: int) -> None:  # noqa: N802
        self.check_range(src.value, n, "cuMemcpyDtoH_v2")
        ctypes.memmove(dst.value, src.value, n)

    def _cuMemcpyDtoD_v2(self, dst: Any, src: Any, n: int) -> None:  # noqa: N802
        self.check_range(src.value, n, "cuMemcpyDtoD_v2")
        self.check_range(dst.value, n, "cuMemcpyDtoD_v2")
        ctypes.memmove(dst.value, src.value, n)

    def _cuMemsetD8_v2(self, dst: Any, value: int, n: int) -> None:  # noqa: N802
        self.check_range(dst.value, n, "cuMemsetD8_v2")
        ctypes.memset(dst.value, value, n)

    def _cuModuleLoadDataEx(self, out: Any, image: Any, *_: Any) -> None:  # noqa: N802
        if not ctypes.string_at(image.value, 16):
            raise D.CudaError("cuModuleLoadDataEx", 200, "CUDA_ERROR_INVALID_IMAGE", "empty")
        h = next(self._ids)
        self.modules[h] = {}
        self._set(out, h)

    def _cuModuleUnload(self, mod: Any) -> None:  # noqa: N802
        self.modules.pop(mod.value, None)

    def _cuModuleGetFunction(self, out: Any, mod: Any, name: bytes) -> None:  # noqa: N802
        h = next(self._ids)
        self.functions[h] = (mod.value, name.decode())
        self._set(out, h)

    def _cuLaunchKernel(self, fn: Any, gx: int, gy: int, gz: int, bx: int, by: int,  # noqa: N802
                        bz: int, shared: int, stream: Any, params: Any, extra: Any) -> None:
        mod, name = self.functions[fn.value]
        bound = self.modules.get(mod)
        if not bound:
            raise D.CudaError("cuLaunchKernel", 400, "CUDA_ERROR_INVALID_HANDLE",
                              f"kernel {name}: its module has no host build (bind_host)")
        if not (1 <= gx <= SM_COUNT * 32 and gy == gz == 1 and by == bz == 1
                and bx % 32 == 0 and 32 <= bx <= 1024):
            raise D.CudaError("cuLaunchKernel", 1, "CUDA_ERROR_INVALID_VALUE",
                              f"kernel {name}: bad launch shape grid={gx} block={bx}")
        graph = bound["kernels"][name]
        nwords = sum(1 + 2 * a.type.rank for a in graph.args)
        words = ctypes.string_at(params[0], 8 * max(nwords, 1))
        self._check_buffers(name, graph, np.frombuffer(words, np.int64))
        k = bound["host"][name]
        trips = k.trips(words)
        self.launches.append((name, gx, bx))
        if trips > 0:
            k._fn(words, 0, trips)

    def _check_buffers(self, name: str, graph: Any, words: np.ndarray) -> None:
        i = 0
        for n, a in enumerate(graph.args):
            r = a.type.rank
            ptr, sizes = int(words[i]), words[i + 1:i + 1 + r]
            strides = words[i + 1 + r:i + 1 + 2 * r]
            i += 1 + 2 * r
            if any(int(s) == 0 for s in sizes):
                continue
            item = a.type.dtype.numpy.itemsize
            span = (sum(int(st) * (int(sz) - 1) for st, sz in zip(strides, sizes)) + 1) * item
            if any(int(st) < 0 for st in strides):
                raise D.CudaError("cuLaunchKernel", 700, "CUDA_ERROR_ILLEGAL_ADDRESS",
                                  f"kernel {name}: argument {n} has negative strides")
            self.check_range(ptr, span, f"cuLaunchKernel({name}) argument {n}")

    def _cuStreamCreate(self, out: Any, flags: int) -> None:  # noqa: N802
        self._set(out, 0)

    def _cuStreamSynchronize(self, stream: Any) -> None:  # noqa: N802
        pass


_saved: list[tuple[Any, Any]] = []


def installed() -> bool:
    return isinstance(D._DRIVER, FakeDriver)


def install() -> FakeDriver:
    """Make the stand-in the process's CUDA driver (until ``uninstall()``)."""
    with D._INIT_LOCK:
        if isinstance(D._DRIVER, FakeDriver):
            return D._DRIVER
        _saved.append((D._DRIVER, D._FAILURE))
        D._DRIVER, D._FAILURE = FakeDriver(), None
        return D._DRIVER


def uninstall() -> None:
    """Restore the driver state from before ``install()``."""
    with D._INIT_LOCK:
        if _saved and isinstance(D._DRIVER, FakeDriver):
            D._DRIVER, D._FAILURE = _saved.pop()


def requested() -> bool:
    """``LAMINA_CUDA_FAKE=1`` in the environment."""
    return os.environ.get("LAMINA_CUDA_FAKE", "") not in ("", "0")


__all__ = ["NAME", "FakeDriver", "install", "installed", "requested", "uninstall"]
