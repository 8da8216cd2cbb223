"""How a list of samples becomes a batch (``default_collate``) and how single samples are
converted when batching is off (``default_convert``)."""

from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np

import lamina

__all__ = ["default_collate", "default_convert"]

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        "found {}")


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _numeric_array(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def _rebuild(elem: Any, items: Any) -> Any:
    """A container of ``elem``'s type holding ``items`` (a plain list/dict if it cannot)."""
    try:
        return type(elem)(items)
    except TypeError:
        return dict(items) if isinstance(elem, collections.abc.Mapping) else list(items)


def default_convert(data: Any) -> Any:
    """numpy arrays (of numbers) become tensors, recursively inside containers."""
    if isinstance(data, lamina.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return lamina.from_numpy(data) if _numeric_array(data) else data
    if isinstance(data, np.generic) and data.dtype.kind in "biuf":
        return lamina.tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild(data, {k: default_convert(v) for k, v in data.items()})
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild(data, [default_convert(d) for d in data])
    return data


def default_collate(batch: list[Any]) -> Any:
    """Stack samples into a batch, keeping their structure.

    Tensors are stacked (``lamina.stack``) on a new first axis; numpy arrays and
    numpy scalars become tensors first; Python floats a float64 tensor, ints an
    int64 tensor, bools a bool tensor; strings stay a list; dicts, namedtuples
    and sequences are collated field by field (tuples give lists, as in PyTorch).
    """
    elem = batch[0]
    if isinstance(elem, lamina.Tensor):
        return lamina.stack(list(batch), 0)
    if isinstance(elem, np.ndarray):
        if not _numeric_array(elem):
            raise TypeError(_ERR.format(elem.dtype))
        return default_collate([lamina.from_numpy(np.asarray(b)) for b in batch])
    if isinstance(elem, np.generic):
        if elem.dtype.kind not in "biuf":
            raise TypeError(_ERR.format(elem.dtype))
        return lamina.tensor(np.array(batch))
    if isinstance(elem, float):
        return lamina.tensor(batch, dtype=lamina.float64)
    if isinstance(elem, bool):
        return lamina.tensor(batch, dtype=lamina.bool)
    if isinstance(elem, int):
        return lamina.tensor(batch, dtype=lamina.int64)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild(elem, {k: default_collate([d[k] for d in batch]) for k in elem})
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(b) != size for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [default_collate(list(s)) for s in zip(*batch)]
        return columns if isinstance(elem, tuple) else _rebuild(elem, columns)
    raise TypeError(_ERR.format(type(elem)))
