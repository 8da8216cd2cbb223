"""Running loop-stage programs on a GPU: device arrays, kernel launches, the program func.

``CudaProgram(loop_module, device)`` builds PTX for every kernel (``gpu-map`` +
the NVPTX backend) for the device's ``sm_XY``, assembles it with ptxas when
installed (else the driver JIT-compiles the PTX), and runs the program func
op by op on ``DeviceArray`` buffers. A launch passes the kernel's flat int64
argument array by value (device pointers, sizes, strides), so it uploads
nothing. Its grid size needs the trip count: the host runs the CPU build's
``k__trips`` of the same kernel on the same words (it reads sizes only).

``device`` is any object with ``arch``, ``sm_count``, ``alloc``, ``htod``,
``dtoh``, ``dtod``, ``load_module`` and ``launch`` (``driver.Device``). Buffers
are ``CudaArray`` (byte strides, like numpy); the kernel words carry strides in
elements. Without a GPU, ``lamina.runtime.cuda.fake`` replaces libcuda with a
host-memory stand-in whose launches run the CPU build of each kernel.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from lamina.ir.core import Graph, Module, Op, SymbolRef
from lamina.ir.dialects import gpu as G
from lamina.ir.types import MemRefType
from lamina.runtime.cuda.array import CudaArray
from lamina.runtime.program import _ARITH, ProgramError, _div, _pick_func, _rem

MAX_BLOCKS_PER_SM = 32


# The device array type of programs: byte strides like numpy; the kernel words carry elements.
DeviceArray = CudaArray


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides in elements."""
    out, s = [], 1
    for n in reversed(shape):
        out.append(s)
        s *= max(n, 1)
    return tuple(reversed(out))


_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()


def build_image(loop_module: Module, arch: str
                ) -> tuple[bytes | str, dict[str, tuple[int, int, int]]]:
    """(cubin, or PTX when ptxas is missing; (block size, lanes per trip, elements per
    unrolled trip) per kernel) for ``arch``. A kernel without a mapped parallel loop gets
    block 0 (it runs on one thread)."""
    from lamina.backends import nvptx

    mapped = nvptx.gpu_module(loop_module)
    blocks = {}
    for g in mapped.graphs:
        if g.kind == "kernel":
            par = [op for op in g.ops if isinstance(op, G.GpuParallel)]
            blocks[g.name] = (par[0].attrs["block"], int(par[0].attrs.get("lanes", 1)),
                              int(par[0].attrs.get("unroll", 1))) if par else (0, 1, 1)
    ptx = nvptx.compile_ptx(nvptx.emit_module(mapped), arch)
    image: bytes | str = nvptx.assemble_cubin(ptx, arch) if nvptx.ptxas_path() else ptx
    return image, blocks


def grid_size(trips: int, block: int, lanes: int, sm_count: int) -> int:
    """Blocks to launch: enough for every trip's ``lanes`` threads, capped (the kernels are
    grid-stride loops, so any grid is correct)."""
    return max(1, min((trips * lanes + block - 1) // block, sm_count * MAX_BLOCKS_PER_SM))


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
            from lamina.backends import nvptx
            from lamina.runtime.cuda import image_cache

            image = image_cache.load_or_build(
                key[0], device.arch, nvptx.ptxas_path() is not None,
                lambda: build_image(loop_module, device.arch))
            hit = (*image, compile_module(loop_module))
            with _CACHE_LOCK:
                _CACHE[key] = hit
        image, self.blocks, self.host = hit
        self.module = device.load_module(image)
        self.kernels = {g.name: g for g in loop_module.graphs if g.kind == "kernel"}
        # a stand-in driver (lamina.runtime.cuda.fake) runs launches with the CPU build
        bind = getattr(getattr(device, "drv", None), "bind_host", None)
        if bind is not None:
            bind(self.module.handle, self.host, self.kernels)

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
            strides = a.element_strides
            for k, (s, w) in enumerate(zip(strides, want_strides)):
                if w is not None and s != w and a.shape[k] != 1:
                    raise ProgramError(f"{where}: strides {strides} do not fit {t}")

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
            words += [b.ptr, *b.shape, *b.element_strides]
        args = (ctypes.c_int64 * max(len(words), 1))(*words)
        block, lanes, unroll = self.blocks[name]
        if block:
            # the CPU build counts the original trips; an unrolled trip covers `unroll`
            trips = -(-self.host[name].trips(bytes(args)) // unroll)
            if trips <= 0:
                return
            grid = grid_size(trips, block, lanes, self.device.sm_count)
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
