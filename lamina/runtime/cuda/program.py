"""Running loop-stage programs on a GPU: device arrays, kernel launches, the program func.

``CudaProgram(loop_module, device)`` builds PTX for every kernel (``gpu-map`` +
the NVPTX backend) for the device's ``sm_XY``, assembles it with ptxas when
installed (else the driver JIT-compiles the PTX), and runs the program func
op by op on ``DeviceArray`` buffers. A launch passes the kernel's flat int64
argument array by value (device pointers, sizes, strides), so it uploads
nothing. Its grid size needs the trip count: the host runs the CPU build's
``k__trips`` of the same kernel on the same words (it reads sizes only).

``device`` is any object with ``arch``, ``sm_count``, ``alloc``, ``htod``,
``dtoh``, ``dtod``, ``load_module`` and ``launch`` (``driver.Device``); the tests
use a host-memory stand-in that runs the CPU kernels, which checks all of this
module's logic without a GPU.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from lamina.ir.core import Graph, Module, Op, SymbolRef
from lamina.ir.dialects import gpu as G
from lamina.ir.types import MemRefType
from lamina.runtime.program import _ARITH, ProgramError, _div, _pick_func, _rem

MAX_BLOCKS_PER_SM = 32


class DeviceArray:
    """A strided array in device memory: ``ptr`` (a DevicePtr keeping the memory alive),
    ``shape``, ``strides`` in elements, numpy ``dtype``, byte ``offset`` into the block."""

    __slots__ = ("device", "mem", "offset", "shape", "strides", "dtype")

    def __init__(self, device: Any, mem: Any, shape: tuple[int, ...], dtype: Any,
                 strides: tuple[int, ...] | None = None, offset: int = 0):
        self.device, self.mem, self.offset = device, mem, offset
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.strides = tuple(strides) if strides is not None else _contiguous(self.shape)

    @classmethod
    def empty(cls, device: Any, shape: tuple[int, ...], dtype: Any) -> DeviceArray:
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return cls(device, device.alloc(max(n, 1)), shape, dtype)

    @classmethod
    def from_numpy(cls, device: Any, a: np.ndarray) -> DeviceArray:
        a = np.ascontiguousarray(a)
        out = cls.empty(device, a.shape, a.dtype)
        device.htod(out.ptr, a.ctypes.data, a.nbytes)
        return out

    @property
    def ptr(self) -> int:
        return int(self.mem) + self.offset

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def is_contiguous(self) -> bool:
        return all(st == c for st, c, n in zip(self.strides, _contiguous(self.shape), self.shape)
                   if n != 1)

    def numpy(self) -> np.ndarray:
        """A host copy (synchronous)."""
        if not self.is_contiguous:
            raise ValueError("DeviceArray.numpy: make the array contiguous on the device first")
        out = np.empty(self.shape, self.dtype)
        self.device.dtoh(out.ctypes.data, self.ptr, out.nbytes)
        return out

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, strides={self.strides})"


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, s = [], 1
    for n in reversed(shape):
        out.append(s)
        s *= max(n, 1)
    return tuple(reversed(out))


_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def build_image(loop_module: Module, arch: str) -> tuple[bytes | str, dict[str, int]]:
    """(cubin, or PTX when ptxas is missing; block size per mapped kernel) for ``arch``."""
    from lamina.backends import nvptx

    mapped = nvptx.gpu_module(loop_module)
    blocks = {}
    for g in mapped.graphs:
        if g.kind == "kernel":
            par = [op for op in g.ops if isinstance(op, G.GpuParallel)]
            blocks[g.name] = par[0].attrs["block"] if par else 0
    ptx = nvptx.compile_ptx(nvptx.emit_module(mapped), arch)
    image: bytes | str = nvptx.assemble_cubin(ptx, arch) if nvptx.ptxas_path() else ptx
    return image, blocks


class CudaProgram:
    """A loop-stage program compiled for one device: ``prog(*device_arrays) -> [DeviceArray]``."""

    def __init__(self, loop_module: Module, device: Any, func_name: str | None = None):
        from lamina.ir.printer import print_module
        from lamina.ir.verifier import verify
        from lamina.runtime.cache import compile_module

        verify(loop_module)
        self.device = device
        self.func: Graph = _pick_func(loop_module, func_name)
        key = (print_module(loop_module), device.arch)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is None:
            hit = (*build_image(loop_module, device.arch), compile_module(loop_module))
            with _CACHE_LOCK:
                _CACHE[key] = hit
        image, self.blocks, self.host = hit
        self.module = device.load_module(image)
        self.kernels = {g.name: g for g in loop_module.graphs if g.kind == "kernel"}

    def _check_args(self, arrays: tuple[DeviceArray, ...]) -> None:
        f = self.func
        if len(arrays) != len(f.args):
            raise ProgramError(f"func @{f.name}: takes {len(f.args)} arrays, got {len(arrays)}")
        for i, (a, v) in enumerate(zip(arrays, f.args)):
            t = v.type
            where = f"func @{f.name}: argument {i}"
            if not isinstance(a, DeviceArray):
                raise TypeError(f"{where}: expected a DeviceArray, got {type(a).__name__}")
            if a.device is not self.device:
                raise RuntimeError(f"{where}: the array is on another device")
            if a.dtype != t.dtype.numpy or len(a.shape) != t.rank:
                raise ProgramError(f"{where}: got {a.dtype} of rank {len(a.shape)}, "
                                   f"expected {t}")
            for k, (n, want) in enumerate(zip(a.shape, t.shape)):
                if want is not None and n != want:
                    raise ProgramError(f"{where}: size {n} on axis {k}, expected {t}")
            want_strides = t.strides if t.strides is not None else _contiguous(a.shape)
            for k, (s, w) in enumerate(zip(a.strides, want_strides)):
                if w is not None and s != w and a.shape[k] != 1:
                    raise ProgramError(f"{where}: strides {a.strides} do not fit {t}")

    def __call__(self, *arrays: DeviceArray) -> list[DeviceArray]:
        self._check_args(arrays)
        env: dict[int, Any] = {id(v): a for v, a in zip(self.func.args, arrays)}
        for op in self.func.ops:
            name = op.name
            if name == "return":
                return [env[id(v)] for v in op.operands]
            if name == "loop.const":
                env[id(op.result)] = int(op.attrs["value"])
            elif name == "loop.dim":
                env[id(op.result)] = env[id(op.operands[0])].shape[int(op.attrs["axis"])]
            elif name in _ARITH:
                a, b = (env[id(v)] for v in op.operands)
                env[id(op.result)] = _arith(name, a, b, op)
            elif name == "loop.alloc":
                env[id(op.result)] = self._alloc(op, [env[id(v)] for v in op.operands])
            elif name == "loop.call":
                self.launch(op, [env[id(v)] for v in op.operands])
            else:
                raise ProgramError(f"@{self.func.name}: {op.where()}: the CUDA runtime cannot "
                                   "run this op in a program")
        raise ProgramError(f"@{self.func.name}: the program has no return")

    def _alloc(self, op: Op, dyn: list[int]) -> DeviceArray:
        t = op.result.type
        assert isinstance(t, MemRefType)
        it = iter(dyn)
        shape = tuple(d if d is not None else next(it) for d in t.shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"@{self.func.name}: {op.where()}: negative size in {shape} for {t}")
        return DeviceArray.empty(self.device, shape, t.dtype.numpy)

    def launch(self, op: Op, bufs: list[DeviceArray]) -> None:
        ref = op.attrs["kernel"]
        name = ref.name if isinstance(ref, SymbolRef) else str(ref)
        g = self.kernels.get(name)
        if g is None:
            raise ProgramError(f"@{self.func.name}: the module has no kernel @{name}")
        if len(bufs) != len(g.args):
            raise ProgramError(f"kernel @{name} takes {len(g.args)} buffers, got {len(bufs)}")
        words: list[int] = []
        for i, (b, a) in enumerate(zip(bufs, g.args)):
            t = a.type
            if b.dtype != t.dtype.numpy or len(b.shape) != t.rank:
                raise ProgramError(f"kernel @{name}: argument {i} is {b.dtype} of rank "
                                   f"{len(b.shape)}, expected {t}")
            words += [b.ptr, *b.shape, *b.strides]
        args = (ctypes.c_int64 * max(len(words), 1))(*words)
        block = self.blocks[name]
        if block:
            trips = self.host[name].trips(bytes(args))
            if trips <= 0:
                return
            grid = min((trips + block - 1) // block, self.device.sm_count * MAX_BLOCKS_PER_SM)
        else:
            grid, block = 1, 32
        self.device.launch(self.module.function(name), grid, block, [args])


def _arith(name: str, a: int, b: int, op: Op) -> int:
    if name == "loop.div":
        return _div(a, b, op.where())
    if name == "loop.rem":
        return _rem(a, b, op.where())
    return {"loop.add": a + b, "loop.sub": a - b, "loop.mul": a * b, "loop.max": max(a, b),
            "loop.min": min(a, b)}[name]
