"""The native thread pool: every chunk runs exactly once, under every way of waking workers."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lamina.backends.llvm import pool as pool_ir
from lamina.backends.llvm import target
from lamina.runtime import buffers, get_num_threads, native_pool

pytestmark = pytest.mark.skipif(not pool_ir.supported(),
                                reason="native pool: Linux x86-64/AArch64 only")

ROOT = Path(__file__).resolve().parents[2]

# A test "kernel": args = {i64 *counts, i64 *owner}; every trip i in [lo, hi) adds 1 to
# counts[i] atomically and records which chunk (its lo) ran it.
_COUNT_IR = """
define void @count(ptr %args, i64 %lo, i64 %hi) nounwind {
entry:
  %counts = load ptr, ptr %args, align 8
  %ownerp = getelementptr inbounds ptr, ptr %args, i64 1
  %owner = load ptr, ptr %ownerp, align 8
  %empty = icmp uge i64 %lo, %hi
  br i1 %empty, label %out, label %loop
loop:
  %i = phi i64 [%lo, %entry], [%i1, %loop]
  %c = getelementptr inbounds i64, ptr %counts, i64 %i
  %old = atomicrmw add ptr %c, i64 1 seq_cst, align 8
  %o = getelementptr inbounds i64, ptr %owner, i64 %i
  store i64 %lo, ptr %o, align 8
  %i1 = add i64 %i, 1
  %more = icmp ult i64 %i1, %hi
  br i1 %more, label %loop, label %out
out:
  ret void
}
"""


@pytest.fixture(scope="module")
def count_kernel() -> int:
    lib = target.JITLibrary.load(target.compile_object(_COUNT_IR))
    count_kernel.lib = lib  # keep the code alive
    return lib.address("count")


def _run_counts(p: native_pool.NativePool, fn: int, trips: int, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(max(trips, 1), np.int64)
    owner = np.full(max(trips, 1), -1, np.int64)
    args = np.array([counts.ctypes.data, owner.ctypes.data], np.int64).tobytes()
    p.run(fn, args, trips, n)
    return counts[:trips], owner[:trips]


def _expected_owner(trips: int, n: int) -> np.ndarray:
    lows = [trips * i // n for i in range(n)]
    return np.array([max(lo for lo in lows if lo <= t) for t in range(trips)], np.int64)


@pytest.mark.parametrize("size,spin", [(2, native_pool.DEFAULT_SPIN), (2, 0), (4, 100),
                                       (3, 0)])
def test_every_chunk_runs_once(count_kernel, size, spin):
    """spin=0: workers sleep on the futex after every job, so every job wakes them."""
    p = native_pool.NativePool(size, spin=spin)
    try:
        for trips, n in [(1, 1), (7, 2), (1000, 2), (1000, size), (5, 5), (997, 13),
                         (3, 8), (0, 2)]:
            for _ in range(20):
                counts, owner = _run_counts(p, count_kernel, trips, n)
                assert (counts == 1).all(), (trips, n, counts)
                if trips and n <= trips:
                    np.testing.assert_array_equal(owner, _expected_owner(trips, n))
    finally:
        p.shutdown()


def test_many_short_jobs_in_a_row(count_kernel):
    """Jobs published back to back: a worker waking late must never run a chunk twice or
    take a chunk of the next job with the previous job's fields."""
    p = native_pool.NativePool(2, spin=0)
    try:
        counts = np.zeros(64, np.int64)
        owner = np.zeros(64, np.int64)
        args = np.array([counts.ctypes.data, owner.ctypes.data], np.int64).tobytes()
        for _ in range(3000):
            p.run(count_kernel, args, 64, 2)
        assert (counts == 3000).all()
    finally:
        p.shutdown()


def test_concurrent_callers_run_inline(count_kernel):
    """A second Python thread calling while a job runs gets its kernel run inline."""
    p = native_pool.NativePool(2)
    errors: list[str] = []

    def caller(k: int) -> None:
        for _ in range(300):
            counts, _ = _run_counts(p, count_kernel, 257 + k, 2)
            if not (counts == 1).all():
                errors.append(f"thread {k}: {counts}")

    try:
        ts = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
    finally:
        p.shutdown()


def test_shutdown_joins_workers(count_kernel):
    p = native_pool.NativePool(3, spin=0)
    _run_counts(p, count_kernel, 100, 3)
    p.shutdown()
    assert p.size == 1 and not p._threads
    p.shutdown()  # twice is harmless


def test_shutdown_right_after_start(count_kernel):
    """A worker that first runs after the stop was published must still see it; so must
    workers that are spinning, sleeping or just woken when it comes."""
    for spin in (0, 50, 1000, native_pool.DEFAULT_SPIN):
        for jobs in (0, 1, 3):
            for _ in range(15):
                p = native_pool.NativePool(3, spin=spin)
                for _ in range(jobs):
                    counts, _ = _run_counts(p, count_kernel, 64, 3)
                    assert (counts == 1).all()
                t0 = time.perf_counter()
                p.shutdown()
                assert time.perf_counter() - t0 < 4 and not native_pool._stuck


def test_kernels_use_the_native_pool_and_agree_with_numpy(monkeypatch):
    import lamina

    monkeypatch.delenv("LAMINA_NATIVE_POOL", raising=False)  # on, even where a run turns it off
    calls = []
    real = native_pool.NativePool.run
    monkeypatch.setattr(native_pool.NativePool, "run",
                        lambda self, *a: (calls.append(a[2:]), real(self, *a)))
    if get_num_threads() < 2:
        pytest.skip("one thread: kernels are not split")
    x = np.random.default_rng(0).standard_normal((512, 300)).astype(np.float32)
    y = lamina.softmax(lamina.from_numpy(x), -1).numpy()
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert calls, "the softmax kernel was not split over the native pool"


def test_kill_switch(monkeypatch):
    monkeypatch.setenv("LAMINA_NATIVE_POOL", "0")
    native_pool.shutdown()
    assert native_pool.pool(2) is None
    monkeypatch.delenv("LAMINA_NATIVE_POOL")
    assert native_pool.pool(2) is not None


def test_bad_spin_setting(monkeypatch):
    monkeypatch.setenv("LAMINA_SPIN", "lots")
    with pytest.raises(ValueError, match="LAMINA_SPIN"):
        native_pool.NativePool(2)


_CHILD = """
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import lamina
from lamina.runtime import native_pool
x = np.random.default_rng(1).standard_normal((512, 300)).astype(np.float32)
ref = np.exp(x).sum(-1)
assert np.allclose(lamina.exp(lamina.from_numpy(x)).sum(-1).numpy(), ref, rtol=1e-5)
pid = os.fork()
if pid == 0:  # the child has no workers of its parent: it must start its own
    ok = np.allclose(lamina.exp(lamina.from_numpy(x)).sum(-1).numpy(), ref, rtol=1e-5)
    os._exit(0 if ok and native_pool._pool is not None else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "pool", native_pool._pool is not None)
"""


def test_fork_child_starts_its_own_workers(tmp_path):
    env = {**os.environ, "LAMINA_CACHE_DIR": str(tmp_path), "LAMINA_NUM_THREADS": "2",
           "LAMINA_NATIVE_POOL": "1"}
    p = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["child", "0", "pool", "True"]


def test_object_code_cached_on_disk_and_corruption_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(native_pool, "_library", None)
    monkeypatch.setenv("LAMINA_CACHE_DIR", str(tmp_path))
    from lamina.runtime import cache as cache_mod

    cache_mod.cache()._dirs.clear()
    native_pool._load_library()
    files = list((tmp_path / "native").glob("pool-*.o"))
    assert len(files) == 1
    good = files[0].read_bytes()
    monkeypatch.setattr(native_pool, "_library", None)
    compiled = []
    real = target.compile_object
    monkeypatch.setattr(target, "compile_object", lambda t: (compiled.append(1), real(t))[1])
    native_pool._load_library()
    assert not compiled  # loaded from disk
    files[0].write_bytes(b"garbage" * 9)
    monkeypatch.setattr(native_pool, "_library", None)
    native_pool._load_library()
    assert compiled == [1] and files[0].read_bytes() == good


def test_state_block_is_aligned():
    p = native_pool.NativePool(2)
    try:
        assert p.state % 64 == 0
        assert ctypes.c_int64.from_address(p.state + pool_ir.LAYOUT["chunks"]).value == p.chunks
    finally:
        p.shutdown()
    assert buffers.ALIGNMENT == 64


def test_a_worker_that_does_not_stop_is_left_with_a_warning(caplog):
    """Shutdown never hangs the process: a worker that misses the stop is left running."""
    p = native_pool.NativePool(2, spin=0)
    real_stop, p._stop = p._stop, lambda state: None  # the workers never hear of it
    threads = list(p._threads)
    try:
        t0 = time.perf_counter()
        p.shutdown(timeout=0.2)
        assert time.perf_counter() - t0 < 3
        assert p in native_pool._stuck and "did not stop" in caplog.text
    finally:
        real_stop(p.state)
        assert all(native_pool._join(p._libc, tid, time.time() + 5) for tid in threads)
        native_pool._stuck.remove(p)
