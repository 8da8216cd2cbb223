"""numpy reference implementations of the index primitives (``prim_index``), registered
into the prim interpreter's ``TABLE``.

Semantics beyond the op docstrings: an index out of range is an error here (the
oracle refuses what the frontend refuses); scatters run in increasing position
along the axis, each addition rounded once to the element type, as the kernels
do; scans of f16/bf16 accumulate in f32, others in their own type (ints wrap).
"""

from __future__ import annotations

import numpy as np

from lamina.backends.interp import numerics as nx
from lamina.backends.interp.prim_interp import TABLE, Call, _accumulator


def _check_range(c: Call, index: np.ndarray, size: int, *arrays: np.ndarray) -> None:
    if index.size and (index.min() < 0 or index.max() >= size):
        bad = index[(index < 0) | (index >= size)].flat[0]
        raise c.error(f"index {bad} is out of range for size {size} along axis "
                      f"{c.attrs['axis']}", *arrays)


def _check_other_axes(c: Call, x: np.ndarray, index: np.ndarray, *arrays: np.ndarray) -> None:
    axis = c.attrs["axis"]
    if any(b > a for k, (a, b) in enumerate(zip(x.shape, index.shape)) if k != axis):
        raise c.error("index is larger than the operand off the axis", *arrays)


def _reverse(c: Call, x: np.ndarray) -> np.ndarray:
    return np.flip(x, tuple(c.attrs["axes"])).copy()


def _gather(c: Call, x: np.ndarray, index: np.ndarray) -> np.ndarray:
    axis = c.attrs["axis"]
    _check_other_axes(c, x, index, x, index)
    _check_range(c, index, x.shape[axis], x, index)
    part = x[tuple(slice(None) if a == axis else slice(0, n) for a, n in enumerate(index.shape))]
    return np.take_along_axis(part, index.astype(np.int64), axis)


def _scatter(add: bool):
    def rule(c: Call, base: np.ndarray, index: np.ndarray, src: np.ndarray) -> np.ndarray:
        axis = c.attrs["axis"]
        t = c.in_types[0].dtype
        _check_other_axes(c, base, index, base, index, src)
        if index.shape != src.shape:
            raise c.error("index and src shapes differ at run time", base, index, src)
        _check_range(c, index, base.shape[axis], base, index, src)
        out = base.copy()
        grid = list(np.indices(index.shape[:axis] + index.shape[axis + 1:], sparse=True))
        for k in range(index.shape[axis]):
            where = tuple(grid[:axis]) + (np.take(index, k, axis),) + tuple(grid[axis:])
            value = np.take(src, k, axis)
            if add and t.is_float:
                value = nx.convert(nx.as_f64(out[where], t) + nx.as_f64(value, t), t)
            elif add:
                value = out[where] + value  # ints wrap
            out[where] = value
        return out

    return rule


def _cumulative(c: Call, x: np.ndarray) -> np.ndarray:
    axis, fn = c.attrs["axis"], c.attrs["fn"]
    t = c.in_types[0].dtype
    v = nx.decode(x, t).astype(_accumulator(t))
    if fn == "sum":
        r = np.cumsum(v, axis=axis, dtype=v.dtype)
    elif fn == "prod":
        r = np.cumprod(v, axis=axis, dtype=v.dtype)
    elif t.is_bool:
        r = (np.logical_or if fn == "max" else np.logical_and).accumulate(v, axis=axis)
    else:
        r = (np.maximum if fn == "max" else np.minimum).accumulate(v, axis=axis)
    return nx.convert(r, t)


def _argsort(c: Call, x: np.ndarray) -> np.ndarray:
    axis = c.attrs["axis"]
    v = nx.decode(x, c.in_types[0].dtype)
    if not c.attrs["descending"]:
        return np.argsort(v, axis=axis, kind="stable").astype(np.int64)
    # a stable ascending sort of the reversed line, reversed, is a stable descending sort
    # with NaN first
    n = v.shape[axis]
    rev = np.argsort(np.flip(v, axis), axis=axis, kind="stable")
    return np.flip(n - 1 - rev, axis).astype(np.int64)


def _compact(c: Call, mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    pos = np.flatnonzero(mask)[:like.shape[0]]
    out = np.zeros(like.shape[0], np.int64)
    out[:pos.size] = pos
    return out


TABLE.update({
    "prim.reverse": _reverse, "prim.gather": _gather, "prim.scatter_add": _scatter(True),
    "prim.scatter": _scatter(False), "prim.cumulative": _cumulative,
    "prim.argsort": _argsort, "prim.compact": _compact,
})
