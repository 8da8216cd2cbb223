"""Tensor operations: indexing with tensors (gather, scatter, index_select, take, masks,
nonzero, flip) and advanced ``__getitem__``/``__setitem__``.

Each op states itself over the index primitives (``prim.gather``,
``prim.scatter``/``scatter_add``, ``prim.reverse``, ``prim.compact``), so it is
traced, differentiated (``gather`` <-> ``scatter_add``) and run by generated
kernels like every other op. Indices are checked on the host before any kernel
writes memory: the range of an index tensor comes from an ``amin``/``amax``
kernel pair (a sync, as in PyTorch's own checks); out-of-range indices raise
``IndexOutOfRange``, an ``IndexError`` that is also a ``RuntimeError`` (PyTorch
raises the one or the other depending on the op). Outputs whose size depends
on the data (``nonzero``, ``masked_select``, boolean masks) count on the host
first, then compact with a kernel; they cannot be traced by ``lamina.compile``.

Advanced indexing follows PyTorch: integers select first (views), then the
tensor indices (lists, int tensors, boolean masks as their ``nonzero``) are
broadcast together; their dims replace the indexed ones in place when those
are adjacent, else they come first. The result is one ``gather`` over the
indexed dims flattened into one; assignment is one ``scatter`` into a copy,
written back into the destination view by the in-place machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lamina.frontend import dispatch, ops, trace, views
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import Tensor, _dim
from lamina.ir import Builder, Value

__all__ = ["IndexOutOfRange", "argwhere", "flip", "fliplr", "flipud", "gather", "index_put",
           "index_select", "masked_fill", "masked_select", "nonzero", "scatter", "scatter_add",
           "take", "where"]


class IndexOutOfRange(IndexError, RuntimeError):
    """An index outside its dimension (IndexError, and RuntimeError as PyTorch's gather and
    scatter raise)."""


# -- checks ---------------------------------------------------------------------------------
def _tensor_arg(x: Any, op: str, arg: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument '{arg}' must be Tensor, not {type(x).__name__}")
    return x


def _int_index(index: Tensor, op: str, allowed: tuple[dt.dtype, ...] = (dt.int64, dt.int32)
               ) -> Tensor:
    _tensor_arg(index, op, "index")
    if index._dtype not in allowed:
        names = " or ".join(d.name for d in allowed)
        raise RuntimeError(f"{op}(): Expected dtype {names} for index, got {index._dtype.name}")
    return index


def _concrete(x: Tensor) -> bool:
    return x._a is not None


def index_range(index: Tensor) -> tuple[int, int]:
    """The smallest and largest entry of a nonempty concrete integer tensor (two reduction
    kernels and a sync)."""
    return int(ops.amin(index).item()), int(ops.amax(index).item())


def check_range(index: Tensor, size: int, dim: int, *, negative: bool = False,
                message: Any = None) -> None:
    """Raise IndexOutOfRange unless every index is in [0, size) (or [-size, size)).

    Not while tracing: a compiled function reads its tensors afresh on every call, so
    only its kernels (which clamp and skip) can be relied on there."""
    if trace.current() is not None or not _concrete(index) or index.numel() == 0:
        return
    lo, hi = index_range(index)
    low = -size if negative else 0
    if lo < low or hi >= size:
        bad = hi if hi >= size else lo
        text = message(bad) if message is not None else (
            f"index {bad} is out of bounds for dimension {dim} with size {size}")
        raise IndexOutOfRange(text)


def _not_traced(op: str) -> None:
    if trace.current() is not None:
        raise RuntimeError(f"{op}: the size of the result depends on the values of the input, "
                           "which lamina.compile cannot trace; call it outside the compiled "
                           "function")


def _as_1d(x: Tensor) -> Tensor:
    return views.reshape(x, (1,)) if x.ndim == 0 else x


# -- kernels ----------------------------------------------------------------------------------
def gather_core(x: Tensor, d: int, index: Tensor, op: str = "gather") -> Tensor:
    """``prim.gather`` along ``d`` (same ranks >= 1, index no larger off ``d``, checked)."""

    def build(b: Builder, v: Value, i: Value) -> Value:
        return b("prim.gather", v, i, axis=d)

    def eager() -> Tensor:
        if index.numel() == 0:
            return ops.empty(index.shape, dtype=x._dtype)
        (res,) = dispatch.run_eager(("gather", d), build, [x._a, index._a],
                                    [x._dtype.ir, index._dtype.ir])
        return Tensor._wrap(res, x._dtype)

    return dispatch.apply(op, build, (x, index), eager)


def scatter_core(x: Tensor, d: int, index: Tensor, src: Tensor, add: bool, op: str) -> Tensor:
    """``prim.scatter``/``scatter_add`` along ``d`` (src of index's shape, indices checked)."""
    name = "prim.scatter_add" if add else "prim.scatter"

    def build(b: Builder, v: Value, i: Value, s: Value) -> Value:
        return b(name, v, i, s, axis=d)

    def eager() -> Tensor:
        if index.numel() == 0:
            return ops.clone(x)
        (res,) = dispatch.run_eager(("scatter", add, d), build, [x._a, index._a, src._a],
                                    [x._dtype.ir, index._dtype.ir, src._dtype.ir])
        return Tensor._wrap(res, x._dtype)

    return dispatch.apply(op, build, (x, index, src), eager)


def compact(mask: Tensor, count: int) -> Tensor:
    """The int64 positions of the ``count`` true elements of a 1-d bool tensor (a kernel)."""
    if count == 0:
        return ops.empty((0,), dtype=dt.int64)
    like = np.broadcast_to(np.zeros((), np.bool_), (count,))  # only its size is read

    def build(b: Builder, m: Value, s: Value) -> Value:
        return b("prim.compact", m, s)

    (res,) = dispatch.run_eager(("compact",), build, [mask._a, like], [dt.bool_.ir] * 2)
    return Tensor._wrap(res, dt.int64)


def _count(mask: Tensor) -> int:
    return int(ops.sum(mask).item()) if mask.numel() else 0


def linear_index(tensors: Sequence[Tensor], sizes: Sequence[int]) -> Tensor:
    """``sum_j wrap(t_j) * stride_j`` over the broadcast index tensors as one int64 kernel,
    where ``wrap`` adds ``size_j`` to negative entries and strides are row-major over
    ``sizes`` (the position of an element in the flattened indexed dims)."""
    k = len(tensors)
    strides = [int(np.prod(sizes[j + 1:], dtype=np.int64)) for j in range(k)]

    def build(b: Builder, *vals: Value) -> Value:
        ts, ss, sts = vals[:k], vals[k:2 * k], vals[2 * k:]
        zero = b("tensor.full", value=0, shape=(), dtype=dt.int64.ir)
        acc = None
        for t, s, st in zip(ts, ss, sts):
            t = ops._cast(b, t, dt.int64)
            t = b("tensor.where", b("tensor.lt", t, zero), b("tensor.add", t, s), t)
            term = b("tensor.mul", t, st)
            acc = term if acc is None else b("tensor.add", acc, term)
        return acc

    dtypes = tuple(t._dtype.name for t in tensors)
    return ops._apply_elementwise(("linear_index", dtypes), build,
                                  (*tensors, *sizes, *strides), dt.int64, dt.int64)


# -- gather / scatter -----------------------------------------------------------------------
def _check_ranks_and_sizes(x: Tensor, d: int, index: Tensor, op: str,
                           src: Tensor | None = None) -> None:
    what = "input" if src is None else "self"
    if index.ndim != x.ndim and not (index.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError(f"Index tensor must have the same number of dimensions as {what} "
                           "tensor")
    if src is not None and src.ndim != index.ndim and not (src.ndim <= 1 and index.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
    ish, xsh = tuple(_as_1d(index).shape), tuple(_as_1d(x).shape)
    ssh = tuple(_as_1d(src).shape) if src is not None else None
    for a, n in enumerate(ish):
        if (a != d and n > xsh[a]) or (ssh is not None and n > ssh[a]):
            if ssh is None:
                raise RuntimeError(f"Size does not match at dimension {a} expected index "
                                   f"{list(index.shape)} to be no larger than self "
                                   f"{list(x.shape)} apart from dimension {d}")
            raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than self "
                               f"{list(x.shape)} apart from dimension {d} and to be no larger "
                               f"size than src {list(src.shape)}")


def gather(input: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
    """``torch.gather``: out[i][j] = input[index[i][j]][j] (for dim 0)."""
    x = _tensor_arg(input, "gather", "input")
    _int_index(index, "gather")
    d = _dim(dim, x.ndim, "gather")
    _check_ranks_and_sizes(x, d, index, "gather")
    check_range(index, _as_1d(x).shape[d], d)
    out = gather_core(_as_1d(x), d, _as_1d(index))
    return views.reshape(out, tuple(index.shape)) if index.ndim == 0 else out


def _scatter(op: str, input: Tensor, dim: int, index: Tensor, src: Any, add: bool) -> Tensor:
    x = _tensor_arg(input, op, "input")
    _int_index(index, op, (dt.int64,))
    d = _dim(dim, x.ndim, op)
    if isinstance(src, Tensor):
        if src._dtype is not x._dtype:
            raise RuntimeError(f"{op}(): Expected self.dtype to be equal to src.dtype")
    elif isinstance(src, (bool, int, float)):
        src = ops.full(tuple(index.shape), _number_as(src, x._dtype), dtype=x._dtype)
    else:
        raise TypeError(f"{op}(): argument 'src' must be Tensor or a number, not "
                        f"{type(src).__name__}")
    _check_ranks_and_sizes(x, d, index, op, src)
    check_range(index, _as_1d(x).shape[d], d)
    x1, i1, s1 = _as_1d(x), _as_1d(index), _as_1d(src)
    if tuple(s1.shape) != tuple(i1.shape):
        s1 = views.getitem(s1, tuple(slice(0, n) for n in i1.shape))
    if add and x._dtype is dt.bool_:  # scatter_add on bools is an "or"
        wide = scatter_core(ops.cast(x1, dt.int64), d, i1, ops.cast(s1, dt.int64), True, op)
        out = ops.ne(wide, 0)
    else:
        out = scatter_core(x1, d, i1, s1, add, op)
    return views.reshape(out, ()) if x.ndim == 0 else out


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, value: Any = None, *,
            reduce: str | None = None) -> Tensor:
    """``torch.scatter``: a copy of input with input[index[i][j]][j] = src[i][j] (dim 0); a
    number ``value`` in place of ``src``. Where indices repeat, the last one wins."""
    if reduce is not None:
        raise NotImplementedError("scatter(reduce=...) is not supported; use scatter_add or "
                                  "index_put(accumulate=True)")
    if src is None:
        src = value
    if src is None:
        raise TypeError("scatter() missing required argument: 'src' or 'value'")
    return _scatter("scatter", input, dim, index, src, False)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``torch.scatter_add``: a copy of input with input[index[i][j]][j] += src[i][j]."""
    _tensor_arg(src, "scatter_add", "src")
    return _scatter("scatter_add", input, dim, index, src, True)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """``torch.index_select``: the slices ``index`` (a vector) of ``input`` along ``dim``."""
    x = _tensor_arg(input, "index_select", "input")
    _int_index(index, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    x1 = _as_1d(x)
    d = _dim(dim, x.ndim, "index_select")
    n = index.numel()
    size = x1.shape[d]
    check_range(index, size, d, message=lambda bad: (
        f"index out of range in self (index {bad} for dimension {d} with size {size})"))
    out_shape = tuple(n if a == d else s for a, s in enumerate(x1.shape))
    line = tuple(n if a == d else 1 for a in range(x1.ndim))
    idx = views.expand(views.reshape(index, line), out_shape)
    out = gather_core(x1, d, idx, "index_select")
    return views.reshape(out, ()) if x.ndim == 0 and n == 1 and index.ndim == 0 else out


def take(input: Tensor, index: Tensor) -> Tensor:
    """``torch.take``: elements of the flattened input at ``index`` (negative from the end)."""
    x = _tensor_arg(input, "take", "input")
    _int_index(index, "take", (dt.int64,))
    n = x.numel()
    check_range(index, n, 0, negative=True, message=lambda bad: (
        f"out of range: tried to access index {bad} on a tensor of {n} elements."))
    flat = views.reshape(x, (n,))
    pos = views.reshape(linear_index([index], [n]), (index.numel(),))
    return views.reshape(gather_core(flat, 0, pos, "take"), tuple(index.shape))


# -- masks and compaction -----------------------------------------------------------------------
def _number_as(value: Any, d: dt.dtype) -> Any:
    """A Python number converted the way a copy into a ``d`` tensor converts it."""
    if d is dt.bool_:
        return bool(value)
    if d.category == 1:
        return int(value)
    return float(value)


def _check_mask(mask: Any, op: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask._dtype is not dt.bool_:
        got = mask._dtype.name if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(f"{op} only supports boolean masks, but got mask with dtype {got}")
    return mask


def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:
    """Elements of ``input`` where ``mask`` is False, ``value`` (converted) where True."""
    x = _tensor_arg(input, "masked_fill", "input")
    _check_mask(mask, "masked_fill")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but "
                               f"got tensor with {value.ndim} dimension(s).")
        v: Any = value if value._dtype is x._dtype else ops.cast(value, x._dtype)
    else:
        v = _number_as(value, x._dtype)
    return ops.where(mask, v, x)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements of ``input`` where ``mask`` is True, as a 1-d tensor (broadcasting)."""
    x = _tensor_arg(input, "masked_select", "input")
    _check_mask(mask, "masked_select")
    _not_traced("masked_select")
    shape = ops.broadcast_shapes(tuple(x.shape), tuple(mask.shape), op="masked_select")
    n = int(np.prod(shape, dtype=np.int64))
    flat_mask = views.reshape(views.expand(mask, shape), (n,))
    pos = compact(flat_mask, _count(flat_mask))
    flat = views.reshape(views.expand(x, shape), (n,))
    return gather_core(flat, 0, pos, "masked_select")


def _unravel(pos: Tensor, shape: tuple[int, ...]) -> Tensor:
    """(count, ndim) int64 coordinates of flat row-major positions (one kernel)."""
    strides = [int(np.prod(shape[j + 1:], dtype=np.int64)) for j in range(len(shape))]
    st = ops.tensor(strides, dtype=dt.int64)
    sz = ops.tensor(list(shape), dtype=dt.int64)

    def build(b: Builder, p: Value, s: Value, z: Value) -> Value:
        return b("tensor.rem", b("tensor.div", p, s), z)

    column = views.reshape(pos, (pos.numel(), 1))
    return ops._apply_elementwise(("unravel",), build, (column, st, sz), dt.int64, dt.int64)


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:
    """Coordinates of the nonzero elements, (count, ndim) int64 in row-major order; with
    ``as_tuple`` one 1-d tensor per dim."""
    x = _tensor_arg(input, "nonzero", "input")
    _not_traced("nonzero")
    mask = x if x._dtype is dt.bool_ else ops.ne(x, 0)
    n = x.numel()
    flat = views.reshape(mask, (n,))
    count = _count(flat)
    if x.ndim == 0:
        coords = ops.zeros((count, 0), dtype=dt.int64)
        return (ops.zeros((count,), dtype=dt.int64),) if as_tuple else coords
    pos = compact(flat, count)
    coords = _unravel(pos, tuple(x.shape)) if count else ops.zeros((0, x.ndim), dtype=dt.int64)
    if as_tuple:
        return tuple(views.getitem(coords, (slice(None), j)) for j in range(x.ndim))
    return coords


def argwhere(input: Tensor) -> Tensor:
    """``torch.argwhere``: ``nonzero(input)``."""
    return nonzero(input)


def where(condition: Tensor, input: Any = None, other: Any = None) -> Any:
    """``torch.where(condition, input, other)``, or ``nonzero(condition, as_tuple=True)``."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    if input is None or other is None:
        raise TypeError("where() expects 1 or 3 arguments (condition[, input, other])")
    return ops.where(condition, input, other)


# -- flip ---------------------------------------------------------------------------------------
def flip(input: Tensor, dims: Any) -> Tensor:
    """``torch.flip``: a copy with the order of elements reversed along ``dims``."""
    x = _tensor_arg(input, "flip", "input")
    items = (dims,) if isinstance(dims, int) else tuple(dims)
    axes = tuple(sorted(_dim(d, x.ndim, "flip") for d in items))
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"dims has duplicates, original flip dims size={len(items)}, but "
                           f"unique flip dims size={len(set(axes))}")
    axes = tuple(a for a in axes if x.ndim and x.shape[a] > 1)
    if not axes:
        return ops.clone(x)

    def build(b: Builder, v: Value) -> Value:
        return b("prim.reverse", v, axes=axes)

    def eager() -> Tensor:
        if x.numel() == 0:
            return ops.empty(x.shape, dtype=x._dtype)
        (res,) = dispatch.run_eager(("flip", axes), build, [x._a], [x._dtype.ir])
        return Tensor._wrap(res, x._dtype)

    return dispatch.apply("flip", build, (x,), eager)


def fliplr(input: Tensor) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, (1,))


def flipud(input: Tensor) -> Tensor:
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, (0,))


# -- advanced indexing ----------------------------------------------------------------------------
@dataclass
class _Plan:
    """A key split into a basic (view) part and the tensor indices applied after it."""

    basic: tuple = ()
    dims: list[int] = field(default_factory=list)  # dims of the basic view they index
    source: list[int] = field(default_factory=list)  # the same dims numbered in the input
    tensors: list[Tensor] = field(default_factory=list)
    trusted: list[bool] = field(default_factory=list)  # in range by construction (masks)


def _key_tensor(k: Any) -> Tensor:
    """A list or array used as an index, as an int64 or bool tensor."""
    a = np.asarray(k)
    if a.dtype == np.bool_:
        return ops.tensor(a, dtype=dt.bool_)
    if a.size == 0:
        return ops.tensor(a.astype(np.int64), dtype=dt.int64)
    if a.dtype.kind not in "iu":
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    return ops.tensor(a, dtype=dt.int64)


def _consumed(k: Any) -> int:
    if k is None or k is ... or isinstance(k, bool):
        return 0
    if isinstance(k, Tensor) and k._dtype is dt.bool_:
        return k.ndim
    return 1


def _plan(x: Tensor, key: Any) -> _Plan:
    items = list(key) if isinstance(key, tuple) else [key]
    for n, k in enumerate(items):
        if isinstance(k, (list, np.ndarray)):
            k = items[n] = _key_tensor(k)
        if isinstance(k, Tensor) and k._dtype.category == 2:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if isinstance(k, Tensor) and k.ndim == 0 and _concrete(k):
            # like PyTorch: a 0-d index is a number (an int selects, a bool adds a dim)
            items[n] = bool(k.item()) if k._dtype is dt.bool_ else int(k.item())
    if sum(k is ... for k in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(_consumed(k) for k in items)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    at = next((n for n, k in enumerate(items) if k is ...), None)  # not ==: tensors compare
    if at is not None:
        items[at:at + 1] = [slice(None)] * (x.ndim - n_real)
    plan = _Plan()
    basic: list[Any] = []
    xd = yd = 0
    for k in items:
        if k is None or k is True:
            basic.append(None)
            yd += 1
        elif k is False:  # a new dim of size 0
            basic.append(None)
            plan.dims.append(yd)
            plan.source.append(xd)
            plan.tensors.append(ops.zeros((0,), dtype=dt.int64))
            plan.trusted.append(True)
            yd += 1
        elif isinstance(k, Tensor) and k._dtype is dt.bool_:
            _mask_coords(x, k, xd, yd, plan)
            basic += [slice(None)] * k.ndim
            xd += k.ndim
            yd += k.ndim
        elif isinstance(k, Tensor):
            basic.append(slice(None))
            plan.dims.append(yd)
            plan.source.append(xd)
            plan.tensors.append(k)
            plan.trusted.append(False)
            xd += 1
            yd += 1
        elif isinstance(k, slice):
            basic.append(k)
            xd += 1
            yd += 1
        else:
            basic.append(k)  # an int (views.getitem checks it) selects
            xd += 1
    plan.basic = tuple(basic) + (slice(None),) * (x.ndim - xd)
    return plan


def _mask_coords(x: Tensor, mask: Tensor, xd: int, yd: int, plan: _Plan) -> None:
    target = tuple(x.shape[xd:xd + mask.ndim])
    for j, (m, s) in enumerate(zip(mask.shape, target)):
        if m != s:
            raise IndexError(f"The shape of the mask {list(mask.shape)} at index {j} does not "
                             f"match the shape of the indexed tensor {list(x.shape)} at index "
                             f"{xd + j}")
    coords = nonzero(mask)
    for j in range(mask.ndim):
        plan.dims.append(yd + j)
        plan.source.append(xd + j)
        plan.tensors.append(views.getitem(coords, (slice(None), j)))
        plan.trusted.append(True)


@dataclass
class _Layout:
    """How the indexed dims sit: ``block`` is the basic view with them moved together and
    flattened into one dim at ``place``; ``index`` the matching gather index."""

    perm: tuple[int, ...]
    place: int
    moved_shape: tuple[int, ...]
    block: Tensor
    index: Tensor
    broadcast: tuple[int, ...]


def _layout(y: Tensor, plan: _Plan) -> _Layout:
    shapes = [tuple(t.shape) for t in plan.tensors]
    try:
        bshape = ops.broadcast_shapes(*shapes, op="index")
    except RuntimeError:
        raise IndexError("shape mismatch: indexing tensors could not be broadcast together "
                         f"with shapes {', '.join(str(list(s)) for s in shapes)}") from None
    for t, yd, xd, ok in zip(plan.tensors, plan.dims, plan.source, plan.trusted):
        if not ok:
            check_range(t, y.shape[yd], xd, negative=True)
    dims = plan.dims
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    place = dims[0] if adjacent else 0
    rest = [a for a in range(y.ndim) if a not in dims]
    perm = tuple(rest[:place] + dims + rest[place:])
    moved = views.permute(y, perm) if perm != tuple(range(y.ndim)) else y
    sizes = [y.shape[a] for a in dims]
    pre, post = tuple(moved.shape[:place]), tuple(moved.shape[place + len(dims):])
    block = views.reshape(moved, pre + (int(np.prod(sizes, dtype=np.int64)),) + post)
    tensors = [views.expand(t, bshape) if tuple(t.shape) != bshape else t for t in plan.tensors]
    n = int(np.prod(bshape, dtype=np.int64))
    flat = views.reshape(linear_index(tensors, sizes), (n,))
    line = (1,) * len(pre) + (n,) + (1,) * len(post)
    index = views.expand(views.reshape(flat, line), pre + (n,) + post)
    return _Layout(perm, place, tuple(moved.shape), block, index, bshape)


def advanced_getitem(x: Tensor, key: Any) -> Tensor:
    """``x[key]`` where the key holds tensors, lists or boolean masks (see the module doc)."""
    plan = _plan(x, key)
    y = views.getitem(x, plan.basic)
    if not plan.tensors:
        return y
    lay = _layout(y, plan)
    out = gather_core(lay.block, lay.place, lay.index, "index")
    shape = tuple(out.shape)
    return views.reshape(out, shape[:lay.place] + lay.broadcast + shape[lay.place + 1:])


def _values(values: Any, d: dt.dtype, shape: tuple[int, ...], op: str) -> Tensor:
    """``values`` (a number or tensor) as a ``d`` tensor broadcast to ``shape`` (a view);
    leading size-1 dims beyond ``shape``'s rank are dropped, as PyTorch's assignment does."""
    if not isinstance(values, Tensor):
        if not isinstance(values, (bool, int, float)):
            values = ops.tensor(values, dtype=d)
        else:
            values = ops.full((), _number_as(values, d), dtype=d)
    v = values if values._dtype is d else ops.cast(values, d)
    extra = v.ndim - len(shape)
    if extra > 0 and all(n == 1 for n in v.shape[:extra]):
        v = views.reshape(v, tuple(v.shape[extra:]))
    full = ops.broadcast_shapes(tuple(v.shape), shape, op=op)
    if full != shape:
        raise RuntimeError(f"{op}: shape mismatch: value tensor of shape {list(v.shape)} cannot "
                           f"be broadcast to indexing result of shape {list(shape)}")
    return views.expand(v, shape) if tuple(v.shape) != shape else v


def _index_put_view(y: Tensor, plan: _Plan, values: Any, accumulate: bool) -> Tensor:
    """``y`` with ``values`` put (or added) at the plan's tensor indices: a new tensor."""
    lay = _layout(y, plan)
    shape = tuple(lay.index.shape)
    result_shape = shape[:lay.place] + lay.broadcast + shape[lay.place + 1:]
    v = views.reshape(_values(values, y._dtype, result_shape, "index_put"), shape)
    out = scatter_core(lay.block, lay.place, lay.index, v, accumulate, "index_put")
    inverse = [0] * len(lay.perm)
    for k, p in enumerate(lay.perm):
        inverse[p] = k
    out = views.reshape(out, lay.moved_shape)
    return views.permute(out, tuple(inverse)) if lay.perm != tuple(range(y.ndim)) else out


def setitem(x: Tensor, key: Any, value: Any) -> None:
    """``x[key] = value``: written into x's memory by a generated kernel."""
    from lamina.frontend import inplace

    plan = _plan(x, key)
    y = views.getitem(x, plan.basic)
    if y.numel() == 0:
        return
    if plan.tensors:
        inplace.copy_(y, _index_put_view(y, plan, value, False))
    elif isinstance(value, (bool, int, float)):
        inplace.fill_(y, value)
    else:
        inplace.copy_(y, _values(value, x._dtype, tuple(y.shape), "setitem"))


def index_put(input: Tensor, indices: Sequence[Any], values: Any, accumulate: bool = False
              ) -> Tensor:
    """``torch.index_put``: a copy of input with ``values`` put (or added, with
    ``accumulate``) at the tensor ``indices`` (one per leading dim; None for a whole dim)."""
    x = _tensor_arg(input, "index_put", "input")
    key = tuple(slice(None) if k is None else k for k in indices)
    plan = _plan(x, key)
    y = views.getitem(x, plan.basic)
    if not plan.tensors:
        v = _values(values, x._dtype, tuple(y.shape), "index_put")
        return ops.add(y, v) if accumulate else ops.clone(v)
    return _index_put_view(y, plan, values, accumulate)


def _index_put_(self: Tensor, indices: Sequence[Any], values: Any,
                accumulate: bool = False) -> Tensor:
    from lamina.frontend import inplace

    return inplace.inplace(self, "index_put_",
                           lambda: index_put(self, indices, values, accumulate), check=False)


def _scatter_(self: Tensor, dim: int, index: Tensor, src: Any = None, value: Any = None, *,
              reduce: str | None = None) -> Tensor:
    from lamina.frontend import inplace

    return inplace.inplace(self, "scatter_",
                           lambda: scatter(self, dim, index, src, value, reduce=reduce))


def _scatter_add_(self: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    from lamina.frontend import inplace

    return inplace.inplace(self, "scatter_add_", lambda: scatter_add(self, dim, index, src))


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {
    "gather": gather, "scatter": scatter, "scatter_add": scatter_add, "scatter_": _scatter_,
    "scatter_add_": _scatter_add_, "index_select": index_select, "take": take,
    "masked_fill": masked_fill, "masked_select": masked_select, "nonzero": nonzero,
    "argwhere": argwhere, "flip": flip, "fliplr": fliplr, "flipud": flipud,
    "index_put": index_put, "index_put_": _index_put_, "__setitem__": setitem,
}
