"""What runs inside a DataLoader worker process, and what crosses the process boundary.

A worker reads ``(epoch, batch number, indices)`` tasks from its own index queue,
fetches and collates the samples, and puts ``(epoch, batch number, batch)`` on
the shared result queue (pickled already). ``None`` asks it to exit; ``_ResumeIteration`` starts a
new epoch (persistent workers). Exceptions travel as ``ExceptionWrapper`` with
the worker's formatted traceback and are re-raised in the main process.

Tensors are pickled as a numpy array plus a dtype name (see ``_reduce_tensor``,
registered with multiprocessing's pickler), so batches of any structure can
hold them.
"""

from __future__ import annotations

import os
import pickle
import queue
import random
import sys
import traceback
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

import lamina
from lamina.utils.data.collate import default_collate
from lamina.utils.data.dataset import Subset, TensorDataset

# How often (seconds) a waiting worker checks that it should stop (its parent died, or
# the loader shut down without its ``None`` arriving: queues collected by the garbage
# collector may stop feeding before the loader's finalizer runs), and how often the main
# process checks on its workers while it waits for a batch.
STATUS_INTERVAL = 0.5


@dataclass(frozen=True)
class WorkerInfo:
    """``get_worker_info()`` inside a worker: its id, the worker count, its seed and its
    copy of the dataset."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's ``WorkerInfo``, or ``None`` in the main process."""
    return _worker_info


@dataclass(frozen=True)
class _ResumeIteration:
    epoch: int


@dataclass(frozen=True)
class _IterableDatasetStopIteration:
    worker_id: int


class KeyErrorMessage(str):
    """A KeyError's message that prints its newlines (``str(KeyError(x))`` is ``repr(x)``)."""

    def __repr__(self) -> str:
        return self


class ExceptionWrapper:
    """An exception caught in a worker: its type and its formatted traceback."""

    def __init__(self, exc_info: Any = None, where: str = "in background"):
        if exc_info is None:
            exc_info = sys.exc_info()
        self.exc_type = exc_info[0]
        self.exc_msg = "".join(traceback.format_exception(*exc_info))
        self.where = where
        try:  # the main process must be able to import the type to re-raise it
            pickle.loads(pickle.dumps(self.exc_type))
        except Exception:
            self.exc_msg = f"{self.exc_type.__name__}: {self.exc_msg}"
            self.exc_type = RuntimeError

    def reraise(self) -> None:
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = KeyErrorMessage(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:
            raise RuntimeError(msg) from None
        raise exc


def _rebuild_tensor(array: np.ndarray, dtype: str, requires_grad: bool) -> lamina.Tensor:
    if dtype == "bfloat16":
        t = lamina.from_numpy((array.astype(np.uint32) << 16).view(np.float32))
        t = t.to(lamina.bfloat16)
    else:
        t = lamina.from_numpy(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _reduce_tensor(t: lamina.Tensor) -> tuple:
    if t.dtype is lamina.bfloat16:
        bits = np.ascontiguousarray(t.detach().float().numpy()).view(np.uint32) >> 16
        array = bits.astype(np.uint16)
    else:
        array = np.ascontiguousarray(t.detach().numpy())
    return _rebuild_tensor, (array, t.dtype.name, bool(t.requires_grad))


ForkingPickler.register(lamina.Tensor, _reduce_tensor)


def _tensor_rows(dataset: Any) -> tuple[tuple, list | None] | None:
    """The tensors behind a TensorDataset (possibly inside Subsets) and the index map."""
    mapping = None
    while type(dataset) is Subset:
        inner = list(dataset.indices)
        mapping = inner if mapping is None else [inner[i] for i in mapping]
        dataset = dataset.dataset
    if type(dataset) is not TensorDataset:
        return None
    return dataset.tensors, mapping


class _MapFetcher:
    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool):
        self.dataset = dataset
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        # default_collate of TensorDataset rows is one gather per tensor: the same batch as
        # stacking len(batch) row views, without a kernel operand per row.
        self.rows = _tensor_rows(dataset) if (auto_collation and
                                              collate_fn is default_collate) else None

    def fetch(self, index: Any) -> Any:
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self.rows is not None and index:
            tensors, mapping = self.rows
            n = len(self.dataset)
            if all(type(i) is int and 0 <= i < n for i in index):
                if mapping is not None:
                    index = [mapping[i] for i in index]
                picked = lamina.tensor(index, dtype=lamina.int64)
                return [lamina.index_select(t, 0, picked) for t in tensors]
        many = getattr(self.dataset, "__getitems__", None)
        data = many(index) if many is not None else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class _IterableFetcher:
    def __init__(self, dataset: Any, auto_collation: bool, collate_fn: Any, drop_last: bool):
        self.it = iter(dataset)
        self.auto_collation = auto_collation
        self.collate_fn = collate_fn
        self.drop_last = drop_last
        self.ended = False

    def fetch(self, index: Any) -> Any:
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.it))
        data = []
        for _ in index:
            try:
                data.append(next(self.it))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def make_fetcher(iterable: bool, dataset: Any, auto_collation: bool, collate_fn: Any,
                 drop_last: bool) -> Any:
    cls = _IterableFetcher if iterable else _MapFetcher
    return cls(dataset, auto_collation, collate_fn, drop_last)


def seed_worker(seed: int) -> None:
    """Seed every generator a dataset may use: Python's, numpy's global one, Lamina's."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    lamina.manual_seed(seed)


def worker_loop(iterable: bool, dataset: Any, index_queue: Any, data_queue: Any,
                done_event: Any, auto_collation: bool, collate_fn: Any, drop_last: bool,
                base_seed: int, init_fn: Any, worker_id: int, num_workers: int,
                parent_pid: int) -> None:
    """The body of a worker process."""
    global _worker_info
    try:
        seed = base_seed + worker_id
        seed_worker(seed)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_error = None
        fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_error = ExceptionWrapper(where=where)
        ended = False
        while True:
            try:
                task = index_queue.get(timeout=STATUS_INTERVAL)
            except queue.Empty:
                if done_event.is_set() or os.getppid() != parent_pid:
                    break
                continue
            if task is None:
                break
            if isinstance(task, _ResumeIteration):
                ended = False
                if init_error is None:
                    fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn,
                                           drop_last)
                continue
            if done_event.is_set() or ended:
                continue
            epoch, idx, index = task
            if init_error is not None:
                data: Any = init_error
            else:
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    if not iterable:
                        data = ExceptionWrapper(where=where)
                    else:
                        data = _IterableDatasetStopIteration(worker_id)
                        ended = True
                except Exception:
                    data = ExceptionWrapper(where=where)
            # Pickled here, not in the queue's feeder thread, so that an unpicklable
            # batch is reported instead of lost (which would hang the main process).
            try:
                payload = bytes(ForkingPickler.dumps(data))
            except Exception:
                payload = bytes(ForkingPickler.dumps(ExceptionWrapper(where=where)))
            data_queue.put((epoch, idx, payload))
            del data, task, payload
    except KeyboardInterrupt:
        pass
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
