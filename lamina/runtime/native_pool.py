"""The native thread pool: kernels split over threads that never touch Python.

``backends/llvm/pool.py`` writes the pool's code (spinning workers, futex
sleep, chunks claimed by compare-and-swap); this module compiles it once per
host (object code cached on disk under ``<cache>/native/``), allocates a
state block with ``malloc``, and starts ``size - 1`` workers with
``pthread_create``. ``Kernel`` calls ``run`` (one ctypes call, the GIL
released) and the replay driver calls ``lamina_pool_pfor`` directly, so a
compiled step's kernels are split without a Python callback.

``LAMINA_NATIVE_POOL=0`` keeps the Python thread pool (``threads.py``), as do
hosts the pool does not support (not Linux on x86-64 or AArch64).
``LAMINA_SPIN`` sets how many pause iterations a worker spins after a job
before it sleeps (default ``DEFAULT_SPIN``, about 115 us on the development machine, whose
``pause`` takes ~28 ns).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import logging
import os
import threading
import time
from typing import Any

log = logging.getLogger("lamina.runtime")

DEFAULT_SPIN = 4096
# A job is cut into a few chunks per thread, claimed in turn: when a worker starts late
# (a busy machine), the caller takes over the chunks it has not claimed yet instead of
# waiting for one big chunk.
CHUNKS_PER_THREAD = 4
_RUN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64,
                        ctypes.c_int64)
_STOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_library: Any = None
_library_lock = threading.Lock()


def enabled() -> bool:
    """Whether kernels should use the native pool on this host (kill switch and platform)."""
    from lamina.backends.llvm import pool

    if os.environ.get("LAMINA_NATIVE_POOL", "1").strip() in ("0", "false", "off", "no"):
        return False
    return pool.supported()


def _spin() -> int:
    env = os.environ.get("LAMINA_SPIN", "").strip()
    if not env:
        return DEFAULT_SPIN
    if not env.isdigit():
        raise ValueError(f"LAMINA_SPIN must be a non-negative integer, got {env!r}")
    return int(env)


def _load_library() -> Any:
    """The pool's loaded object code: from this process, the disk cache, or LLVM."""
    global _library
    if _library is not None:
        return _library
    with _library_lock:
        if _library is not None:
            return _library
        from lamina.backends.llvm import pool, target
        from lamina.runtime.cache import _write_atomic, cache

        text = pool.emit_pool()
        info = target.host_target()
        key = hashlib.sha256("\0".join((text, info.triple, info.cpu, info.features,
                                        info.llvm_version)).encode()).hexdigest()[:32]
        d = cache().directory()
        path = None if d is None else d / "native" / f"pool-{key}.o"
        obj = _read(path) if path is not None else None
        if obj is None:
            obj = target.compile_object(text)
            if path is not None:
                try:
                    path.parent.mkdir(mode=0o700, exist_ok=True)
                    _write_atomic(path, hashlib.sha256(obj).digest() + obj)
                except OSError as e:
                    log.warning("cannot write the thread pool's object code %s (%s)", path, e)
        _library = target.JITLibrary.load(obj)
        return _library


def _read(path: Any) -> bytes | None:
    """The object code stored at ``path`` (its sha256 first), or None if absent or corrupt."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    digest, obj = raw[:32], raw[32:]
    if len(raw) <= 32 or hashlib.sha256(obj).digest() != digest:
        log.warning("thread pool object code %s is corrupt; rebuilding it", path)
        return None
    return obj


class NativePool:
    """``size - 1`` native workers plus the calling thread, and the state block they share."""

    def __init__(self, size: int, spin: int | None = None):
        from lamina.backends.llvm.pool import LAYOUT, STATE_BYTES

        if size < 1:
            raise ValueError(f"NativePool: size must be >= 1, got {size}")
        lib = _load_library()
        self.size = size
        self._lib = lib  # the code lives as long as the pool
        libc = ctypes.CDLL(None, use_errno=True)
        self._libc = libc
        # malloc'd, not Python-owned: workers may read it until they are joined.
        libc.malloc.restype = ctypes.c_void_p
        libc.calloc.restype = ctypes.c_void_p
        self.state = libc.calloc(1, STATE_BYTES + 64)
        if not self.state:
            raise MemoryError("NativePool: cannot allocate the pool state")
        self.state = (self.state + 63) & ~63 if self.state % 64 else self.state
        ctypes.c_int64.from_address(self.state + LAYOUT["spin"]).value = (
            _spin() if spin is None else spin)
        self.chunks = size * CHUNKS_PER_THREAD
        ctypes.c_int64.from_address(self.state + LAYOUT["chunks"]).value = self.chunks
        self.run_address = lib.address("lamina_pool_run")
        self.pfor_address = lib.address("lamina_pool_pfor")
        self._run = _RUN(self.run_address)
        self._stop = _STOP(lib.address("lamina_pool_stop"))
        worker = ctypes.c_void_p(lib.address("lamina_pool_worker"))
        self._threads: list[ctypes.c_ulong] = []
        for _ in range(size - 1):
            tid = ctypes.c_ulong()
            err = libc.pthread_create(ctypes.byref(tid), None, worker,
                                      ctypes.c_void_p(self.state))
            if err:
                self.shutdown()
                raise OSError(err, f"NativePool: pthread_create failed: {os.strerror(err)}")
            self._threads.append(tid)

    def run(self, fn: int, args: bytes, trips: int, n: int) -> None:
        """``fn(args, lo, hi)`` over ``n`` equal chunks of ``[0, trips)``; returns when done."""
        self._run(self.state, fn, args, trips, n)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop and join the workers (the state block is then no longer read). A worker
        that has not returned after ``timeout`` seconds is left running with a warning
        (and the pool's code kept loaded) rather than hanging the process at exit."""
        if self._threads:
            self._stop(self.state)
            deadline = time.time() + timeout
            for tid in self._threads:
                if not _join(self._libc, tid, deadline):
                    log.warning("native thread pool: a worker did not stop within %.0f s; "
                                "leaving it", timeout)
                    _stuck.append(self)  # its code and state must outlive it
                    break
            self._threads.clear()
        self.size = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_stuck: list[NativePool] = []


def _join(libc: Any, tid: ctypes.c_ulong, deadline: float) -> bool:
    """``pthread_join`` with an absolute CLOCK_REALTIME deadline (glibc's
    ``pthread_timedjoin_np``; a plain join where that is missing)."""
    timed = getattr(libc, "pthread_timedjoin_np", None)
    if timed is None:
        return libc.pthread_join(tid, None) == 0
    sec = int(deadline)
    ts = _Timespec(sec, int((deadline - sec) * 1e9))
    return timed(tid, None, ctypes.byref(ts)) == 0


_pool: NativePool | None = None
_pool_lock = threading.Lock()


def pool(size: int) -> NativePool | None:
    """The process's native pool of ``size`` threads, or None when it is off or failed."""
    global _pool
    p = _pool
    if p is not None and p.size == size:
        return p
    with _pool_lock:
        if _pool is not None and _pool.size == size:
            return _pool
        if _pool is not None:
            _pool.shutdown()
            _pool = None
        if size <= 1 or not enabled():
            return None
        try:
            _pool = NativePool(size)
        except Exception as e:  # noqa: BLE001 - the Python pool still runs kernels
            log.warning("native thread pool unavailable (%s); using Python threads", e)
            os.environ["LAMINA_NATIVE_POOL"] = "0"
            return None
        return _pool


def shutdown() -> None:
    """Stop the native workers (at exit, and before the pool is resized)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown()
            _pool = None


def _after_fork_in_child() -> None:
    # The child has none of the parent's workers: forget the pool (its state block is
    # the parent's copy) and start a new one on first use.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
