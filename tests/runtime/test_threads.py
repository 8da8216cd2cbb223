"""The thread pool: every chunk runs exactly once, errors reach the caller, sizes."""

from __future__ import annotations

import threading

import pytest

from lamina.runtime import threads
from lamina.runtime.threads import ThreadPool


@pytest.fixture
def pool():
    p = ThreadPool(3)
    yield p
    p.shutdown()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100])
def test_every_chunk_runs_exactly_once(pool, n):
    seen = []
    lock = threading.Lock()

    def fn(i):
        with lock:
            seen.append(i)

    pool.parallel_for(fn, n)
    assert sorted(seen) == list(range(n))


def test_work_is_spread_over_threads(pool):
    names = set()
    barrier = threading.Barrier(3, timeout=10)

    def fn(i):
        names.add(threading.current_thread().name)
        barrier.wait()  # only passes if three chunks run at the same time

    pool.parallel_for(fn, 3)
    assert len(names) == 3


def test_errors_are_reraised_in_the_caller_after_all_chunks(pool):
    done = []

    def fn(i):
        if i == 2:
            raise KeyError("chunk 2")
        done.append(i)

    with pytest.raises(KeyError, match="chunk 2"):
        pool.parallel_for(fn, 6)
    assert sorted(done) == [0, 1, 3, 4, 5]
    pool.parallel_for(lambda i: None, 4)  # the pool still works


def test_nested_parallel_for_does_not_deadlock(pool):
    out = []
    lock = threading.Lock()

    def inner(i):
        with lock:
            out.append(i)

    pool.parallel_for(lambda i: pool.parallel_for(inner, 4), 3)
    assert sorted(out) == sorted(list(range(4)) * 3)


def test_concurrent_callers_share_the_pool(pool):
    results = [0] * 4

    def caller(k):
        acc = []
        pool.parallel_for(lambda i: acc.append(i), 50)
        results[k] = sorted(acc) == list(range(50))

    ts = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert results == [True] * 4


def test_env_and_set_num_threads(monkeypatch):
    monkeypatch.setenv("LAMINA_NUM_THREADS", "5")
    assert threads._default_size() == 5
    monkeypatch.setenv("LAMINA_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="LAMINA_NUM_THREADS"):
        threads._default_size()
    monkeypatch.delenv("LAMINA_NUM_THREADS")
    old = threads.get_num_threads()
    try:
        threads.set_num_threads(2)
        assert threads.get_num_threads() == 2
        with pytest.raises(ValueError):
            threads.set_num_threads(0)
    finally:
        threads.set_num_threads(old)


def test_pool_of_one_runs_inline():
    p = ThreadPool(1)
    names = set()
    p.parallel_for(lambda i: names.add(threading.current_thread().name), 5)
    assert names == {threading.current_thread().name}


def test_forked_child_gets_a_working_pool(monkeypatch):
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    monkeypatch.setenv("LAMINA_NUM_THREADS", "2")  # the child's new pool has one worker
    threads.set_num_threads(2)
    try:
        pid = os.fork()
        if pid == 0:  # the child: its pool must be new and must run every chunk
            try:
                seen = []
                threads.parallel_for(seen.append, 5)
                ok = sorted(seen) == list(range(5)) and threads.pool()._threads[0].is_alive()
                os._exit(0 if ok else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        threads.set_num_threads(threads._default_size())
