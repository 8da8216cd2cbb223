"""A small persistent thread pool for splitting kernel trip ranges over CPU cores.

Kernels are called through ctypes, which releases the GIL, so plain Python
threads run them in parallel. The pool is created on first use with
``LAMINA_NUM_THREADS`` threads (default ``os.cpu_count()``); the calling thread
counts as one of them and works too, so a pool of size 1 starts no thread at all.
Dispatch costs a queue put per woken worker and one event wait.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Callable


def _default_size() -> int:
    env = os.environ.get("LAMINA_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"LAMINA_NUM_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return os.cpu_count() or 1


class _Job:
    """One ``parallel_for``: chunks are claimed from a shared counter until none is left."""

    __slots__ = ("fn", "n", "claim", "lock", "left", "done", "error")

    def __init__(self, fn: Callable[[int], object], n: int):
        self.fn = fn
        self.n = n
        self.claim = itertools.count()  # next() on it is atomic under the GIL
        self.lock = threading.Lock()
        self.left = n
        self.done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        fn, n = self.fn, self.n
        finished = 0
        for i in self.claim:
            if i >= n:
                break
            try:
                fn(i)
            except BaseException as e:  # handed to the caller, who re-raises it
                if self.error is None:
                    self.error = e
            finished += 1
        if finished:
            with self.lock:
                self.left -= finished
                if self.left == 0:
                    self.done.set()


_local = threading.local()


class ThreadPool:
    """``size - 1`` daemon workers plus the calling thread."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"ThreadPool: size must be >= 1, got {size}")
        self.size = size
        self._queues: list[queue.SimpleQueue] = []
        self._threads: list[threading.Thread] = []
        for k in range(size - 1):
            q: queue.SimpleQueue = queue.SimpleQueue()
            t = threading.Thread(target=self._worker, args=(q,), name=f"lamina-worker-{k}",
                                 daemon=True)
            t.start()
            self._queues.append(q)
            self._threads.append(t)

    @staticmethod
    def _worker(q: queue.SimpleQueue) -> None:
        _local.in_worker = True
        while True:
            job = q.get()
            if job is None:
                return
            job.work()

    def parallel_for(self, fn: Callable[[int], object], n_chunks: int) -> None:
        """Run ``fn(i)`` for every ``i`` in ``range(n_chunks)``, spread over the pool.

        Returns when all calls are done; the first exception raised by any call is
        re-raised here. Called from inside a worker (nested parallelism) it runs
        the chunks in the calling thread, so a worker never waits on its own pool.
        """
        if n_chunks <= 0:
            return
        if n_chunks == 1 or self.size == 1 or getattr(_local, "in_worker", False):
            for i in range(n_chunks):
                fn(i)
            return
        job = _Job(fn, n_chunks)
        for q in self._queues[: n_chunks - 1]:
            q.put(job)
        job.work()
        job.done.wait()
        if job.error is not None:
            raise job.error

    def shutdown(self) -> None:
        """Stop the workers (they are daemons, so this is only needed to resize)."""
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        self._queues.clear()
        self._threads.clear()
        self.size = 1


_pool: ThreadPool | None = None
_pool_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A forked child (a DataLoader worker, say) has none of the parent's threads: start a
    # new pool on first use instead of queueing work for workers that do not exist.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def pool() -> ThreadPool:
    """The process-wide pool, created on first use."""
    global _pool
    p = _pool
    if p is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPool(_default_size())
            p = _pool
    return p


def get_num_threads() -> int:
    """How many threads (the caller included) kernels are split over."""
    return pool().size


def set_num_threads(n: int) -> None:
    """Resize the pool (like ``torch.set_num_threads``); running jobs finish first."""
    global _pool
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    with _pool_lock:
        old, _pool = _pool, ThreadPool(n)
    if old is not None:
        old.shutdown()


def parallel_for(fn: Callable[[int], object], n_chunks: int) -> None:
    """Run ``fn(i)`` for ``i`` in ``range(n_chunks)`` on the process-wide pool."""
    pool().parallel_for(fn, n_chunks)
