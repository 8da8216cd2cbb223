"""A ctypes binding of the CUDA driver API (libcuda.so.1), loaded on first use.

Importing this module never touches libcuda: ``driver()`` loads it lazily and
raises ``CudaUnavailable`` (a RuntimeError) with the reason when it cannot, so
``lamina.cuda.is_available()`` is simply False on machines without a GPU.
Every call's ``CUresult`` is checked; a failure raises ``CudaError`` naming the
call and the driver's own error name and text (``cuGetErrorName`` /
``cuGetErrorString``).

Memory: ``Driver.alloc(nbytes)`` returns a ``DevicePtr`` from a caching pool
(freed blocks are kept per rounded size and reused, like PyTorch's caching
allocator, because ``cuMemAlloc``/``cuMemFree`` synchronise the device);
``empty_cache()`` gives the cached blocks back to the driver. One context per
device: the primary context, made current on the calling thread before use.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections import defaultdict
from typing import Any

CUresult = ctypes.c_int
CUdevice = ctypes.c_int
CUdeviceptr = ctypes.c_uint64
_P = ctypes.c_void_p

# cuDeviceGetAttribute attributes (CUdevice_attribute)
ATTR_MAX_THREADS_PER_BLOCK = 1
ATTR_MULTIPROCESSOR_COUNT = 16
ATTR_COMPUTE_CAPABILITY_MAJOR = 75
ATTR_COMPUTE_CAPABILITY_MINOR = 76
# cuModuleLoadDataEx options (CUjit_option)
_JIT_ERROR_LOG_BUFFER = 5
_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6


class CudaUnavailable(RuntimeError):
    """No usable CUDA driver or device on this machine."""


class CudaError(RuntimeError):
    """A CUDA driver call failed: ``code`` (CUresult), ``name`` (e.g. CUDA_ERROR_OUT_OF_MEMORY)."""

    def __init__(self, call: str, code: int, name: str, text: str):
        super().__init__(f"CUDA driver: {call} failed with {name} ({code}): {text}")
        self.call, self.code, self.name = call, code, name


# name -> argtypes; every function returns CUresult.
_PROTOS: dict[str, list[Any]] = {
    "cuInit": [ctypes.c_uint],
    "cuDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
    "cuDeviceGetCount": [ctypes.POINTER(ctypes.c_int)],
    "cuDeviceGet": [ctypes.POINTER(CUdevice), ctypes.c_int],
    "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, CUdevice],
    "cuDeviceGetAttribute": [ctypes.POINTER(ctypes.c_int), ctypes.c_int, CUdevice],
    "cuDeviceTotalMem_v2": [ctypes.POINTER(ctypes.c_size_t), CUdevice],
    "cuDevicePrimaryCtxRetain": [ctypes.POINTER(_P), CUdevice],
    "cuCtxSetCurrent": [_P],
    "cuCtxSynchronize": [],
    "cuMemAlloc_v2": [ctypes.POINTER(CUdeviceptr), ctypes.c_size_t],
    "cuMemFree_v2": [CUdeviceptr],
    "cuMemcpyHtoD_v2": [CUdeviceptr, _P, ctypes.c_size_t],
    "cuMemcpyDtoH_v2": [_P, CUdeviceptr, ctypes.c_size_t],
    "cuMemcpyDtoD_v2": [CUdeviceptr, CUdeviceptr, ctypes.c_size_t],
    "cuMemsetD8_v2": [CUdeviceptr, ctypes.c_ubyte, ctypes.c_size_t],
    "cuModuleLoadDataEx": [ctypes.POINTER(_P), _P, ctypes.c_uint, ctypes.POINTER(ctypes.c_int),
                           ctypes.POINTER(_P)],
    "cuModuleUnload": [_P],
    "cuModuleGetFunction": [ctypes.POINTER(_P), _P, ctypes.c_char_p],
    "cuLaunchKernel": [_P, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                       ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, _P, ctypes.POINTER(_P), _P],
    "cuStreamCreate": [ctypes.POINTER(_P), ctypes.c_uint],
    "cuStreamSynchronize": [_P],
    "cuEventCreate": [ctypes.POINTER(_P), ctypes.c_uint],
    "cuEventRecord": [_P, _P],
    "cuEventSynchronize": [_P],
    "cuEventElapsedTime": [ctypes.POINTER(ctypes.c_float), _P, _P],
    "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
    "cuGetErrorString": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
}

_LIB_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


def _round(nbytes: int) -> int:
    """Pool bin of a request: 512-byte multiples, then four steps per power of two."""
    n = max(int(nbytes), 1)
    if n <= 1 << 20:
        return (n + 511) // 512 * 512
    step = 1 << (n.bit_length() - 3)
    return (n + step - 1) // step * step


class DevicePtr:
    """A block of device memory; goes back to its pool when the last reference dies."""

    __slots__ = ("ptr", "nbytes", "device", "__weakref__")

    def __init__(self, ptr: int, nbytes: int, device: Device):
        self.ptr, self.nbytes, self.device = ptr, nbytes, device
        weakref.finalize(self, device._release, ptr, nbytes)

    def __int__(self) -> int:
        return self.ptr

    def __repr__(self) -> str:
        return f"DevicePtr(0x{self.ptr:x}, {self.nbytes} bytes, cuda:{self.device.index})"


class Device:
    """One GPU: its primary context, a caching allocator, module loading and launches."""

    def __init__(self, drv: Driver, index: int):
        self.drv, self.index = drv, index
        dev = CUdevice()
        drv.call("cuDeviceGet", ctypes.byref(dev), index)
        self.handle = dev.value
        ctx = _P()
        drv.call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), self.handle)
        self.context = ctx.value
        self._free: dict[int, list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self.allocated = 0
        self.cached = 0
        self.make_current()
        self.sm_count = self.attribute(ATTR_MULTIPROCESSOR_COUNT)
        self.capability = (self.attribute(ATTR_COMPUTE_CAPABILITY_MAJOR),
                           self.attribute(ATTR_COMPUTE_CAPABILITY_MINOR))

    @property
    def arch(self) -> str:
        """``sm_XY`` of this device, the PTX target its kernels are built for."""
        return f"sm_{self.capability[0]}{self.capability[1]}"

    def make_current(self) -> None:
        self.drv.call("cuCtxSetCurrent", _P(self.context))

    def attribute(self, attr: int) -> int:
        v = ctypes.c_int()
        self.drv.call("cuDeviceGetAttribute", ctypes.byref(v), attr, self.handle)
        return v.value

    def name(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self.drv.call("cuDeviceGetName", buf, 256, self.handle)
        return buf.value.decode(errors="replace")

    # -- memory ---------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> DevicePtr:
        """``nbytes`` of device memory (at least 256-byte aligned), from the pool when possible."""
        size = _round(nbytes)
        with self._lock:
            blocks = self._free.get(size)
            if blocks:
                self.cached -= size
                self.allocated += size
                return DevicePtr(blocks.pop(), size, self)
        self.make_current()
        p = CUdeviceptr()
        try:
            self.drv.call("cuMemAlloc_v2", ctypes.byref(p), size)
        except CudaError as e:
            if e.name != "CUDA_ERROR_OUT_OF_MEMORY":
                raise
            self.empty_cache()
            self.drv.call("cuMemAlloc_v2", ctypes.byref(p), size)
        with self._lock:
            self.allocated += size
        return DevicePtr(p.value, size, self)

    def _release(self, ptr: int, size: int) -> None:
        with self._lock:
            self._free[size].append(ptr)
            self.allocated -= size
            self.cached += size

    def empty_cache(self) -> None:
        """Give every cached (unused) block back to the driver."""
        with self._lock:
            blocks = [p for ps in self._free.values() for p in ps]
            self._free.clear()
            self.cached = 0
        self.make_current()
        for p in blocks:
            self.drv.call("cuMemFree_v2", CUdeviceptr(p))

    def htod(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.drv.call("cuMemcpyHtoD_v2", CUdeviceptr(dst), _P(src), nbytes)

    def dtoh(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.drv.call("cuMemcpyDtoH_v2", _P(dst), CUdeviceptr(src), nbytes)

    def dtod(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            self.drv.call("cuMemcpyDtoD_v2", CUdeviceptr(dst), CUdeviceptr(src), nbytes)

    def memset0(self, dst: int, nbytes: int) -> None:
        if nbytes:
            self.drv.call("cuMemsetD8_v2", CUdeviceptr(dst), 0, nbytes)

    # -- code -----------------------------------------------------------------------------
    def load_module(self, image: bytes | str) -> CudaModule:
        """Load PTX text (JIT-compiled by the driver) or a cubin; the error log is kept."""
        self.make_current()
        data = image.encode() + b"\0" if isinstance(image, str) else bytes(image)
        log = ctypes.create_string_buffer(16384)
        opts = (ctypes.c_int * 2)(_JIT_ERROR_LOG_BUFFER, _JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
        vals = (_P * 2)(ctypes.cast(log, _P), _P(16384))
        mod = _P()
        buf = ctypes.create_string_buffer(data, len(data))
        try:
            self.drv.call("cuModuleLoadDataEx", ctypes.byref(mod), ctypes.cast(buf, _P), 2,
                          opts, vals)
        except CudaError as e:
            detail = log.value.decode(errors="replace").strip()
            raise CudaError(e.call, e.code, e.name, f"{e}\n{detail}" if detail else str(e)) \
                from None
        return CudaModule(self, mod.value)

    def launch(self, fn: int, grid: int, block: int, params: list[Any],
               stream: int = 0, shared: int = 0) -> None:
        """``fn<<<grid, block, shared, stream>>>(*params)``; each param is a ctypes object."""
        # kernelParams[i] points at the value of parameter i (the callers keep them alive).
        arr = (_P * len(params))(*[ctypes.addressof(p) for p in params])
        self.drv.call("cuLaunchKernel", _P(fn), grid, 1, 1, block, 1, 1, shared, _P(stream),
                      arr, None)

    def synchronize(self) -> None:
        self.make_current()
        self.drv.call("cuCtxSynchronize")

    def new_stream(self) -> int:
        s = _P()
        self.drv.call("cuStreamCreate", ctypes.byref(s), 0)
        return s.value or 0

    def stream_synchronize(self, stream: int) -> None:
        self.drv.call("cuStreamSynchronize", _P(stream))


class CudaModule:
    """A loaded module; ``function(name)`` returns the CUfunction handle (cached)."""

    def __init__(self, device: Device, handle: int):
        self.device, self.handle = device, handle
        self._fns: dict[str, int] = {}

    def function(self, name: str) -> int:
        fn = self._fns.get(name)
        if fn is None:
            h = _P()
            self.device.drv.call("cuModuleGetFunction", ctypes.byref(h), _P(self.handle),
                                 name.encode())
            fn = self._fns[name] = h.value
        return fn


class Driver:
    """The loaded libcuda: checked calls, device count and the ``Device`` objects."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        self._fns: dict[str, Any] = {}
        self._devices: dict[int, Device] = {}
        self._lock = threading.Lock()
        self.call("cuInit", 0)

    def fn(self, name: str) -> Any:
        f = self._fns.get(name)
        if f is None:
            try:
                f = getattr(self.lib, name)
            except AttributeError:
                raise CudaUnavailable(f"CUDA driver: libcuda has no {name} (driver too old)") \
                    from None
            f.restype = CUresult
            f.argtypes = _PROTOS[name]
            self._fns[name] = f
        return f

    def error_text(self, code: int) -> tuple[str, str]:
        name, text = ctypes.c_char_p(), ctypes.c_char_p()
        try:
            self.fn("cuGetErrorName")(code, ctypes.byref(name))
            self.fn("cuGetErrorString")(code, ctypes.byref(text))
        except CudaUnavailable:  # pragma: no cover
            pass
        return ((name.value or b"CUDA_ERROR_UNKNOWN").decode(),
                (text.value or b"unknown error").decode())

    def call(self, name: str, *args: Any) -> None:
        code = self.fn(name)(*args)
        if code != 0:
            raise CudaError(name, code, *self.error_text(code))

    def device_count(self) -> int:
        n = ctypes.c_int()
        self.call("cuDeviceGetCount", ctypes.byref(n))
        return n.value

    def device(self, index: int = 0) -> Device:
        with self._lock:
            d = self._devices.get(index)
            if d is None:
                n = self.device_count()
                if not 0 <= index < n:
                    raise RuntimeError(f"CUDA error: invalid device ordinal cuda:{index} "
                                       f"({n} device{'s' if n != 1 else ''} present)")
                d = self._devices[index] = Device(self, index)
            return d


_DRIVER: Driver | None = None
_FAILURE: str | None = None
_INIT_LOCK = threading.Lock()


def driver() -> Driver:
    """The process's ``Driver``; raises ``CudaUnavailable`` with the reason when there is none."""
    global _DRIVER, _FAILURE
    if _DRIVER is not None:
        return _DRIVER
    with _INIT_LOCK:
        if _DRIVER is not None:
            return _DRIVER
        if _FAILURE is not None:
            raise CudaUnavailable(_FAILURE)
        from lamina.runtime.cuda import fake

        if fake.requested():  # LAMINA_CUDA_FAKE=1: the host-memory stand-in
            _DRIVER = fake.FakeDriver()
            return _DRIVER
        errors = []
        for name in _LIB_NAMES:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            _FAILURE = ("CUDA is not available: the CUDA driver library (libcuda.so.1) "
                        f"could not be loaded ({errors[0]})")
            raise CudaUnavailable(_FAILURE)
        try:
            _DRIVER = Driver(lib)
        except CudaError as e:
            _FAILURE = f"CUDA is not available: {e}"
            raise CudaUnavailable(_FAILURE) from None
        return _DRIVER


def available() -> bool:
    """True when libcuda loads, initialises and reports at least one device."""
    try:
        return driver().device_count() > 0
    except (CudaUnavailable, CudaError):
        return False
