"""DataLoader: batching, shuffling with a seed, and worker processes (order, seeds,
worker_init_fn, exceptions, early exit, persistent workers, no leaked processes)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import lamina
from lamina.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    TensorDataset,
    get_worker_info,
)


class Range(Dataset):
    """Sample i is (float tensor [i, i], int i, str)."""

    def __init__(self, n, delay=None):
        self.n = n
        self.delay = delay or {}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        time.sleep(self.delay.get(i, 0))
        return lamina.tensor([float(i), float(i)]), i, f"s{i}"


class WhoAmI(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return {"i": i, "pid": os.getpid(), "worker": -1 if info is None else info.id,
                "seed": -1 if info is None else info.seed,
                "draw": lamina.rand(1).item(), "np": float(np.random.random())}


class Failing(Dataset):
    def __init__(self, exc=ValueError):
        self.exc = exc

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 3:
            raise self.exc("item 3 is broken")
        return i


class Dies(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            os._exit(3)
        return i


class Slow(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        time.sleep(3)
        return i


class Stream(IterableDataset):
    """0..n-1, split between workers by worker id."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))

    def __len__(self):
        return self.n


def _init_marks_worker(worker_id):
    os.environ["LAMINA_TEST_WORKER"] = str(worker_id)


class Marked(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return os.environ.get("LAMINA_TEST_WORKER", "none")


def _failing_init(worker_id):
    raise RuntimeError(f"init of worker {worker_id} failed")


@pytest.fixture
def no_leaks():
    yield
    gc.collect()
    deadline = time.time() + 10
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def _ids(loader):
    return [b[1].tolist() for b in loader]


# -- single process -----------------------------------------------------------------------------
def test_batches_in_order():
    dl = DataLoader(Range(7), batch_size=3)
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    x, i, s = batches[0]
    assert x.shape == (3, 2) and x.dtype is lamina.float32 and x[:, 0].tolist() == [0, 1, 2]
    assert i.dtype is lamina.int64 and i.tolist() == [0, 1, 2] and s == ["s0", "s1", "s2"]
    assert _ids(dl) == [[0, 1, 2], [3, 4, 5], [6]]
    assert _ids(DataLoader(Range(7), batch_size=3, drop_last=True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Range(7), batch_size=3, drop_last=True)) == 2


def test_no_batching_custom_collate_and_samplers():
    items = list(DataLoader(Range(3), batch_size=None))
    assert items[1][1] == 1 and items[1][0].shape == (2,)
    dl = DataLoader(Range(5), batch_size=2, collate_fn=lambda b: [s[1] for s in b])
    assert list(dl) == [[0, 1], [2, 3], [4]]
    dl = DataLoader(Range(5), sampler=[4, 0, 2], batch_size=2)
    assert _ids(dl) == [[4, 0], [2]]
    dl = DataLoader(Range(5), batch_sampler=BatchSampler(SequentialSampler(range(5)), 4, False))
    assert _ids(dl) == [[0, 1, 2, 3], [4]]
    x = lamina.tensor(np.arange(10.0).reshape(5, 2))
    batches = list(DataLoader(TensorDataset(x), batch_size=2, pin_memory=True))
    assert batches[2][0].tolist() == [[8.0, 9.0]]


def test_shuffle_is_deterministic_with_a_seed():
    def epochs(seed, workers=0):
        dl = DataLoader(Range(10), batch_size=4, shuffle=True, num_workers=workers,
                        generator=lamina.Generator().manual_seed(seed))
        return [_ids(dl), _ids(dl)]

    a, b = epochs(7), epochs(7)
    assert a == b
    assert a[0] != a[1], "each epoch has its own order"
    for epoch in a:
        assert sorted(sum(epoch, [])) == list(range(10))
    assert epochs(8) != a
    assert DataLoader(Range(3), shuffle=True, generator=5) is not None  # an int seed works


def test_iterable_dataset_single_process():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5],
                                                                         [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [
        [0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Stream(7), batch_size=3)) == 3
    assert [int(x) for x in DataLoader(Stream(3), batch_size=None)] == [0, 1, 2]


def test_argument_errors():
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(Range(3), sampler=[0], shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(Range(3), batch_sampler=[[0]], batch_size=2)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(Range(3), num_workers=-1)
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(Range(3), persistent_workers=True)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(Range(3), prefetch_factor=2)
    with pytest.raises(ValueError, match="multiprocessing_context option should specify"):
        DataLoader(Range(3), num_workers=1, multiprocessing_context="teleport")
    dl = DataLoader(Range(3))
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        dl.batch_size = 5


# -- worker processes ---------------------------------------------------------------------------
def test_workers_give_the_same_batches_in_order(no_leaks):
    slow_first = {0: 0.3, 1: 0.2}  # the first batches finish last
    dl = DataLoader(Range(12, delay=slow_first), batch_size=2, num_workers=3)
    assert _ids(dl) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    x, _, s = next(iter(DataLoader(Range(4), batch_size=4, num_workers=2)))
    assert x.dtype is lamina.float32 and x[:, 1].tolist() == [0, 1, 2, 3] and s[3] == "s3"


def test_worker_info_seeds_and_processes(no_leaks):
    dl = DataLoader(WhoAmI(), batch_size=None, num_workers=2,
                    generator=lamina.Generator().manual_seed(3))
    items = list(dl)
    assert [it["i"] for it in items] == list(range(8))
    assert {it["worker"] for it in items} == {0, 1}
    assert len({it["pid"] for it in items}) == 2 and os.getpid() not in {it["pid"] for it in items}
    seeds = {it["worker"]: it["seed"] for it in items}
    assert seeds[1] == seeds[0] + 1
    # workers draw different random numbers; the same loader seed repeats them
    assert items[0]["draw"] != items[1]["draw"] and items[0]["np"] != items[1]["np"]
    again = list(DataLoader(WhoAmI(), batch_size=None, num_workers=2,
                            generator=lamina.Generator().manual_seed(3)))
    assert [it["draw"] for it in again] == [it["draw"] for it in items]
    assert [it["seed"] for it in again] == [it["seed"] for it in items]


def test_worker_init_fn(no_leaks):
    out = list(DataLoader(Marked(), batch_size=None, num_workers=2,
                          worker_init_fn=_init_marks_worker))
    assert out == ["0", "1", "0", "1"]
    assert os.environ.get("LAMINA_TEST_WORKER") is None
    with pytest.raises(RuntimeError, match="init of worker 0 failed"):
        list(DataLoader(Marked(), num_workers=2, worker_init_fn=_failing_init))


def test_iterable_dataset_with_workers(no_leaks):
    dl = DataLoader(Stream(10), batch_size=2, num_workers=2)
    got = sorted(sum((b.tolist() for b in dl), []))
    assert got == list(range(10))
    batches = list(DataLoader(Stream(5), batch_size=None, num_workers=2))
    assert sorted(batches) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("exc", [ValueError, KeyError])
def test_worker_exception_is_reraised_with_its_traceback(no_leaks, exc):
    it = iter(DataLoader(Failing(exc), batch_size=2, num_workers=2))
    assert next(it).tolist() == [0, 1]
    with pytest.raises(exc) as info:
        next(it)
    text = str(info.value)
    assert "Caught " + exc.__name__ + " in DataLoader worker process 1" in text
    assert "Traceback (most recent call last)" in text and "item 3 is broken" in text
    assert "in __getitem__" in text
    assert next(it).tolist() == [4, 5], "the loader goes on after an error, like PyTorch's"
    with pytest.raises(StopIteration):
        next(it)


def test_early_break_and_garbage_collection_leave_no_processes(no_leaks):
    dl = DataLoader(Range(100), batch_size=2, num_workers=2)
    for _batch in dl:
        break
    del _batch
    it = iter(DataLoader(Range(100), batch_size=2, num_workers=2))
    next(it)
    workers = list(it._workers)
    assert all(w.is_alive() for w in workers)
    del it
    gc.collect()
    assert not any(w.is_alive() for w in workers)


def test_dead_worker_and_timeout_raise(no_leaks):
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid\(s\) \d+\) exited "
                                           "unexpectedly"):
        list(DataLoader(Dies(), batch_size=None, num_workers=2))
    with pytest.raises(RuntimeError, match="DataLoader timed out after 1 seconds"):
        list(DataLoader(Slow(), batch_size=None, num_workers=1, timeout=1))


def test_persistent_workers_survive_epochs(no_leaks):
    dl = DataLoader(WhoAmI(), batch_size=None, num_workers=2, persistent_workers=True)
    first = list(dl)
    it = dl._iterator
    second = list(dl)
    assert dl._iterator is it
    assert {x["pid"] for x in first} == {x["pid"] for x in second}
    assert [x["i"] for x in second] == list(range(8))
    partial = iter(dl)
    next(partial)  # abandon an epoch half-way: its leftovers are not delivered later
    assert [x["i"] for x in dl] == list(range(8))
    streams = DataLoader(Stream(6), batch_size=2, num_workers=2, persistent_workers=True)
    for _ in range(2):
        assert sorted(sum((b.tolist() for b in streams), [])) == list(range(6))
    del dl, it, partial, streams


def test_spawn_context(no_leaks):
    dl = DataLoader(Range(6), batch_size=3, num_workers=2, multiprocessing_context="spawn")
    assert _ids(dl) == [[0, 1, 2], [3, 4, 5]]


def test_bfloat16_and_requires_grad_cross_processes(no_leaks):
    x = lamina.tensor([[1.5], [2.5], [-3.0]], dtype=lamina.bfloat16)
    (out,) = next(iter(DataLoader(TensorDataset(x), batch_size=3, num_workers=1)))
    assert out.dtype is lamina.bfloat16 and out.float().tolist() == [[1.5], [2.5], [-3.0]]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)"])
def test_workers_end_with_their_parent(exit_call):
    script = (
        "import os, sys\n"
        "from tests.utils.test_data_loader import Range\n"
        "from lamina.utils.data import DataLoader\n"
        "it = iter(DataLoader(Range(100), batch_size=2, num_workers=2))\n"
        "next(it)\n"
        "print(' '.join(str(w.pid) for w in it._workers), flush=True)\n"
        f"{exit_call}\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHONPATH": root})
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, out.stderr
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_tensor_dataset_batches_equal_stacked_rows():
    from lamina.utils.data import Subset, default_collate

    rng = np.random.default_rng(0)
    x = lamina.tensor(rng.standard_normal((23, 3, 2)).astype(np.float32))
    y = lamina.tensor(rng.integers(0, 10, 23))
    ds = TensorDataset(x, y)
    sub = Subset(Subset(ds, list(range(22, -1, -1))), [0, 5, 7, 9, 11, 3, 2])
    for data, sampler in ((ds, None), (sub, None), (ds, [4, -1, 2])):
        fast = list(DataLoader(data, batch_size=4, sampler=sampler))
        slow = list(DataLoader(data, batch_size=4, sampler=sampler,
                               collate_fn=lambda b: default_collate(b)))
        assert len(fast) == len(slow)
        for f, s in zip(fast, slow):
            assert isinstance(f, list) and len(f) == 2
            for a, b in zip(f, s):
                assert a.dtype is b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a.numpy(), b.numpy())
    rows = next(iter(DataLoader(sub, batch_size=3)))
    np.testing.assert_array_equal(rows[1].numpy(), y.numpy()[[22, 17, 15]])
