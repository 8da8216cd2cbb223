"""Tensor operations: joining, splitting and rearranging (PyTorch's shape functions).

Views stay views (``split``, ``chunk``, ``unbind``, ``narrow``, ``movedim``,
``swapaxes``, ``unflatten``): eagerly they are numpy views of the same storage,
in a trace ``tensor.slice``/``tensor.reshape``/``tensor.permute``. Ops that copy
(``cat``, ``stack``, ``roll``, ``repeat``, ``repeat_interleave``, ``tile``) state
themselves as one tensor-dialect build (one trace/autograd node) and run eagerly
as one generated copy/concat kernel over numpy views of their inputs, so sizes
and shift amounts never enter a kernel's cache key. ``repeat_interleave`` with
per-entry repeats is an ``index_select``.

``flip`` needs a reverse primitive (``prim.slice`` takes only positive steps):
it lives with the index primitives (``ops_index``).
"""

from __future__ import annotations

import builtins
from typing import Any, Sequence

import numpy as np

from lamina.frontend import dispatch, views
from lamina.frontend import dtypes as dt
from lamina.frontend.ops import _alloc, _cast, _check_tensor, clone
from lamina.frontend.ops import broadcast_shapes as _broadcast_shapes
from lamina.frontend.ops_math import _tname
from lamina.frontend.tensor import Size, Tensor, _dim
from lamina.ir import Builder, Value

__all__ = [
    "atleast_1d", "atleast_2d", "atleast_3d", "broadcast_shapes", "broadcast_tensors", "cat",
    "chunk", "column_stack", "concat", "concatenate", "dstack", "hstack", "movedim", "moveaxis",
    "narrow", "repeat_interleave", "roll", "split", "stack", "swapaxes", "swapdims", "tile",
    "unbind", "unflatten", "vstack",
]

# At most this many inputs per eager concat kernel: a concat kernel tests every piece
# per element, so long lists are joined as a tree of small concats.
_CAT_FAN_IN = 8


# -- helpers ------------------------------------------------------------------------------------
def _tensor_list(tensors: Any, op: str) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{op}(): argument 'tensors' (position 1) must be tuple of Tensors, "
                        f"not {type(tensors).__name__}")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got "
                            f"{type(t).__name__}")
    return list(tensors)


def _int_arg(x: Any, op: str, what: str) -> int:
    if isinstance(x, Tensor):
        if x.numel() != 1 or x.dtype.category != 1:
            raise TypeError(f"{op}(): argument '{what}' must be int, not a tensor of shape "
                            f"{list(x.shape)} and dtype {x.dtype.name}")
        return int(x.item())
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{op}(): argument '{what}' must be int, not {type(x).__name__}")
    return int(x)


def _int_tuple(x: Any, op: str, what: str) -> tuple[int, ...]:
    if isinstance(x, (list, tuple, Size)):
        return tuple(_int_arg(v, op, what) for v in x)
    return (_int_arg(x, op, what),)


def _slice_attrs(shape: Sequence[int], d: int, start: int, stop: int) -> dict:
    n = len(shape)
    return {"start": tuple(start if i == d else 0 for i in range(n)),
            "stop": tuple(stop if i == d else shape[i] for i in range(n)),
            "step": (1,) * n}


def _np_slice(a: np.ndarray, d: int, start: int, stop: int) -> np.ndarray:
    return a[(slice(None),) * d + (slice(start, stop),)]


def _narrow_view(x: Tensor, d: int, start: int, stop: int, op: str) -> Tensor:
    """``x`` restricted to ``start:stop`` along axis ``d`` (a view)."""
    if None in x.shape:  # a dynamic trace: getitem keeps the ? (batch) axes whole
        return x[(slice(None),) * d + (slice(start, stop),)]
    attrs = _slice_attrs(x.shape, d, start, stop)

    def build(b: Builder, v: Value) -> Value:
        return b("tensor.slice", v, **attrs)

    return dispatch.apply(op, build, (x,),
                          lambda: Tensor._wrap(_np_slice(x._a, d, start, stop), x._dtype))


def _select_view(x: Tensor, d: int, i: int, op: str) -> Tensor:
    """``x`` at index ``i`` of axis ``d``, the axis removed (a view)."""
    if None in x.shape:  # a dynamic trace: getitem keeps the ? (batch) axes whole
        return x[(slice(None),) * d + (i,)]
    attrs = _slice_attrs(x.shape, d, i, i + 1)
    shape = tuple(s for k, s in enumerate(x.shape) if k != d)

    def build(b: Builder, v: Value) -> Value:
        return b("tensor.reshape", b("tensor.slice", v, **attrs), shape=shape)

    return dispatch.apply(op, build, (x,),
                          lambda: Tensor._wrap(x._a[(slice(None),) * d + (i, ...)], x._dtype))


def _copy_of_view(view: np.ndarray, dtype: dt.dtype, shape: tuple[int, ...]) -> Tensor:
    """A contiguous copy (one kernel) of a numpy view, reshaped to ``shape``."""
    if 0 in view.shape:
        return Tensor._wrap(_alloc(shape, dtype), dtype)
    return clone(Tensor._wrap(view, dtype)).reshape(shape)


# -- joining ------------------------------------------------------------------------------------
def _cat_kernel(parts: list[np.ndarray], types: list[dt.dtype], d: int, out: dt.dtype
                ) -> np.ndarray:
    """Concatenate arrays along ``d`` into a new ``out`` array (a tree of concat kernels)."""
    while True:
        joined, jtypes = [], []
        for i in range(0, len(parts), _CAT_FAN_IN):
            group, gtypes = parts[i:i + _CAT_FAN_IN], types[i:i + _CAT_FAN_IN]

            def build(b: Builder, *vals: Value) -> Value:
                vals = tuple(_cast(b, v, out) for v in vals)
                if len(vals) == 1:
                    return b("tensor.copy", vals[0])
                return b("tensor.cat", *vals, dim=d)

            (res,) = dispatch.run_eager(("cat", d, out.name), build, group,
                                        [t.ir for t in gtypes])
            joined.append(res)
            jtypes.append(out)
        if len(joined) == 1:
            return joined[0]
        parts, types = joined, jtypes


def _cat_eager(tensors: list[Tensor], d: int, out: dt.dtype, shape: tuple[int, ...]) -> Tensor:
    if 0 in shape:
        return Tensor._wrap(_alloc(shape, out), out)
    parts = [t for t in tensors if t.shape[d] != 0]
    res = _cat_kernel([t._concrete("cat") for t in parts], [t._dtype for t in parts], d, out)
    return Tensor._wrap(res.reshape(shape), out)


def _cat_checks(tensors: list[Tensor], dim: int, op: str) -> tuple[list[Tensor], int, tuple]:
    """The tensors that take part (PyTorch skips legacy 1-d empty tensors), the axis and
    the result shape; PyTorch's errors."""
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be "
                               "concatenated")
    kept = [(i, t) for i, t in enumerate(tensors) if tuple(t.shape) != (0,)] or \
        [(0, tensors[0])]
    ref = kept[0][1]
    d = _dim(dim, ref.ndim, op)
    total = 0
    for i, t in kept:
        if t.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} "
                               f"and {t.ndim}")
        for k in range(ref.ndim):
            if k != d and t.shape[k] != ref.shape[k]:
                raise RuntimeError(
                    f"Sizes of tensors must match except in dimension {d}. Expected size "
                    f"{ref.shape[k]} but got size {t.shape[k]} for tensor number {i} in the "
                    "list.")
        total += t.shape[d]
    shape = tuple(total if k == d else s for k, s in enumerate(ref.shape))
    return [t for _, t in kept], d, shape


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """``torch.cat``: join along an existing axis; dtypes promote."""
    tensors = _tensor_list(tensors, "cat")
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    out = tensors[0]._dtype
    for t in tensors[1:]:
        out = dt.promote(out, t._dtype)
    kept, d, shape = _cat_checks(tensors, dim, "cat")

    def build(b: Builder, *vals: Value) -> Value:
        vals = tuple(_cast(b, v, out) for v in vals)
        return b("tensor.cat", *vals, dim=d) if len(vals) > 1 else b("tensor.copy", vals[0])

    return dispatch.apply("cat", build, kept, lambda: _cat_eager(kept, d, out, shape))


concat = cat
concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """``torch.stack``: join along a new axis ``dim``; dtypes promote."""
    tensors = _tensor_list(tensors, "stack")
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    ref = tensors[0]
    for i, t in enumerate(tensors):
        if tuple(t.shape) != tuple(ref.shape):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(ref.shape)} at entry 0 and {list(t.shape)} at entry {i}")
    d = _dim(dim, ref.ndim + 1, "stack")
    out = ref._dtype
    for t in tensors[1:]:
        out = dt.promote(out, t._dtype)
    one = tuple(ref.shape[:d]) + (1,) + tuple(ref.shape[d:])
    shape = tuple(ref.shape[:d]) + (len(tensors),) + tuple(ref.shape[d:])

    def unit(b: Builder, v: Value) -> Value:
        if None in one:  # a dynamic trace: a broadcast keeps the ? (batch) axes linked
            return b("prim.broadcast", v, shape=one, dims=tuple(k for k in range(len(one))
                                                                if k != d))
        return b("tensor.reshape", v, shape=one)

    def build(b: Builder, *vals: Value) -> Value:
        vals = tuple(unit(b, _cast(b, v, out)) for v in vals)
        return b("tensor.cat", *vals, dim=d) if len(vals) > 1 else b("tensor.copy", vals[0])

    def eager() -> Tensor:
        units = [Tensor._wrap(t._concrete("stack").reshape(one), t._dtype) for t in tensors]
        return _cat_eager(units, d, out, shape)

    return dispatch.apply("stack", build, tensors, eager)


def atleast_1d(*tensors: Any) -> Any:
    """Each tensor with at least one axis (0-d becomes shape [1])."""
    return _atleast(tensors, 1)


def atleast_2d(*tensors: Any) -> Any:
    """Each tensor with at least two axes (new axes in front)."""
    return _atleast(tensors, 2)


def atleast_3d(*tensors: Any) -> Any:
    """Each tensor with at least three axes (PyTorch's placement: [n] -> [1, n, 1])."""
    return _atleast(tensors, 3)


def _atleast(tensors: tuple, n: int) -> Any:
    single = len(tensors) == 1 and isinstance(tensors[0], Tensor)
    items = tensors[0] if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)) \
        else tensors
    out = []
    for t in _tensor_list(list(items), f"atleast_{n}d"):
        shape = tuple(t.shape)
        if len(shape) < n:
            if n == 3 and len(shape) == 2:
                shape = shape + (1,)
            elif n == 3 and len(shape) == 1:
                shape = (1,) + shape + (1,)
            else:
                shape = (1,) * (n - len(shape)) + shape
            t = views.view_or_reshape(t, shape)
        out.append(t)
    return out[0] if single else tuple(out)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """Join horizontally: along axis 0 for 1-d tensors, else axis 1."""
    ts = atleast_1d(tuple(_tensor_list(tensors, "hstack")))
    return cat(ts, 0 if ts and ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """Join vertically (rows): ``cat(atleast_2d(tensors), 0)``."""
    return cat(atleast_2d(tuple(_tensor_list(tensors, "vstack"))), 0)


def dstack(tensors: Sequence[Tensor]) -> Tensor:
    """Join along the third axis: ``cat(atleast_3d(tensors), 2)``."""
    return cat(atleast_3d(tuple(_tensor_list(tensors, "dstack"))), 2)


def column_stack(tensors: Sequence[Tensor]) -> Tensor:
    """Join as columns: 0-d and 1-d tensors become columns, then ``hstack``."""
    ts = [t.reshape(t.numel(), 1) if t.ndim <= 1 else t
          for t in _tensor_list(tensors, "column_stack")]
    return cat(ts, 1)


# -- splitting (views) --------------------------------------------------------------------------
def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """``torch.split``: pieces of ``split_size`` (the last may be smaller) or of the given
    sizes; the pieces are views."""
    x = _check_tensor(tensor, "split")
    if x.ndim == 0:
        raise RuntimeError("split expects at least a 1-dimensional tensor")
    d = _dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = _int_tuple(split_size_or_sections, "split_with_sizes", "split_sizes")
        if any(s < 0 for s in sizes) or builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {d}), but got "
                               f"split_sizes={list(sizes)}")
    else:
        size = _int_arg(split_size_or_sections, "split", "split_size")
        if size < 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got "
                               f"split_size={size}")
        if size == 0:
            if n != 0:
                raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got "
                                   f"dimension size of {n}")
            sizes = (0,)
        else:
            sizes = tuple(builtins.min(size, n - s) for s in range(0, n, size)) or (0,)
    out, start = [], 0
    for s in sizes:
        out.append(_narrow_view(x, d, start, start + s, "split"))
        start += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """``torch.chunk``: at most ``chunks`` views of equal size (the last may be smaller)."""
    x = _check_tensor(input, "chunk")
    chunks = _int_arg(chunks, "chunk", "chunks")
    if x.ndim == 0:
        raise RuntimeError("chunk expects at least a 1-dimensional tensor")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    d = _dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    if n == 0:
        return tuple(_narrow_view(x, d, 0, 0, "chunk") for _ in range(chunks))
    return split(x, -(-n // chunks), d)


def unbind(input: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    """``torch.unbind``: the slices along ``dim``, that axis removed (views)."""
    x = _check_tensor(input, "unbind")
    if x.ndim == 0:
        raise IndexError("Dimension specified as 0 but tensor has no dimensions")
    d = _dim(dim, x.ndim, "unbind")
    return tuple(_select_view(x, d, i, "unbind") for i in range(x.shape[d]))


def narrow(input: Tensor, dim: int, start: Any, length: int) -> Tensor:
    """``torch.narrow``: ``length`` entries from ``start`` along ``dim`` (a view)."""
    x = _check_tensor(input, "narrow")
    if x.ndim == 0:
        raise RuntimeError("narrow() cannot be applied to a 0-dim tensor.")
    d = _dim(dim, x.ndim, "narrow")
    start = _int_arg(start, "narrow", "start")
    length = _int_arg(length, "narrow", "length")
    n = x.shape[d]
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if not -n <= start <= n:
        raise IndexError(f"start out of range (expected to be in range of [{-n}, {n}], but got "
                         f"{start})")
    if start < 0:
        start += n
    if start + length > n:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return _narrow_view(x, d, start, start + length, "narrow")


# -- rearranging (views) ------------------------------------------------------------------------
def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:
    """``torch.movedim``: move axes ``source`` to positions ``destination`` (a view)."""
    x = _check_tensor(input, "movedim")
    src = _int_tuple(source, "movedim", "source")
    dst = _int_tuple(destination, "movedim", "destination")
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} "
                           f"dims) should contain the same number of dims as destination "
                           f"({list(dst)} dims)")
    n = x.ndim
    src_n = tuple(_dim(s, n, "movedim") for s in src)
    dst_n = tuple(_dim(s, n, "movedim") for s in dst)
    if len(set(src_n)) != len(src_n):
        raise RuntimeError(f"movedim: repeated dim in `source` ({list(src)})")
    if len(set(dst_n)) != len(dst_n):
        raise RuntimeError(f"movedim: repeated dim in `destination` ({list(dst)})")
    perm: list[int | None] = [None] * n
    for s, t in zip(src_n, dst_n):
        perm[t] = s
    rest = iter(i for i in range(n) if i not in src_n)
    perm = [p if p is not None else next(rest) for p in perm]
    return views.permute(x, perm)


moveaxis = movedim


def swapaxes(input: Tensor, axis0: int, axis1: int) -> Tensor:
    """``torch.swapaxes`` (= ``transpose``, a view)."""
    return views.transpose(_check_tensor(input, "swapaxes"), axis0, axis1)


swapdims = swapaxes


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    """``torch.unflatten``: split axis ``dim`` into ``sizes`` (one may be -1; a view)."""
    x = _check_tensor(input, "unflatten")
    d = _dim(dim, x.ndim, "unflatten")
    sizes = _int_tuple(sizes, "unflatten", "sizes")
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    if sizes.count(-1) > 1:
        raise RuntimeError("unflatten: only one dimension can be inferred")
    n = x.shape[d]
    known = 1
    for s in sizes:
        if s != -1:
            known *= s
    if -1 in sizes:
        if known == 0 or n % known:
            raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to "
                               f"the size of dim {d} ({n}) in the input tensor")
        sizes = tuple(n // known if s == -1 else s for s in sizes)
    elif known != n:
        raise RuntimeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the "
                           f"size of dim {d} ({n}) in the input tensor")
    return views.view(x, tuple(x.shape[:d]) + sizes + tuple(x.shape[d + 1:]))


def view_as(self: Tensor, other: Tensor) -> Tensor:
    """``Tensor.view_as``: ``self.view(other.shape)``."""
    return views.view(self, tuple(_check_tensor(other, "view_as", "other").shape))


def reshape_as(self: Tensor, other: Tensor) -> Tensor:
    """``Tensor.reshape_as``: ``self.reshape(other.shape)``."""
    return views.reshape(self, tuple(_check_tensor(other, "reshape_as", "other").shape))


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    """``torch.broadcast_tensors``: every tensor expanded to the common shape (views)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    ts = _tensor_list(list(tensors), "broadcast_tensors")
    shape = _broadcast_shapes(*(tuple(t.shape) for t in ts), op="broadcast_tensors")
    return tuple(views.expand(t, shape) for t in ts)


def broadcast_shapes(*shapes: Any) -> Size:
    """``torch.broadcast_shapes``: the shape tensors of these shapes broadcast to."""
    norm = [(s,) if isinstance(s, int) else tuple(s) for s in shapes]
    return Size(_broadcast_shapes(*norm, op="broadcast_shapes"))


# -- copies -------------------------------------------------------------------------------------
def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """``torch.roll``: rotate entries along ``dims`` (flattened when ``dims`` is None)."""
    x = _check_tensor(input, "roll")
    sh = _int_tuple(shifts, "roll", "shifts")
    if dims is None:
        if len(sh) != 1:
            raise RuntimeError(f"shifts and dimensions must align. shifts: {len(sh)}, dims:0")
        flat = views.reshape(x, (-1,))
        return views.reshape(roll(flat, sh[0], 0), tuple(x.shape))
    ds = _int_tuple(dims, "roll", "dims")
    if len(sh) != len(ds):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(sh)}, "
                           f"dims:{len(ds)}")
    if x.ndim == 0:
        raise IndexError("roll: Dimension specified as 0 but tensor has no dimensions")
    shape = tuple(x.shape)
    steps = []  # (axis, split point): out = cat(x[split:], x[:split]) along axis
    for s, d in zip(sh, ds):
        d = _dim(d, x.ndim, "roll")
        n = shape[d]
        if n and s % n:
            steps.append((d, n - s % n))

    def build(b: Builder, v: Value) -> Value:
        for d, k in steps:
            hi = b("tensor.slice", v, **_slice_attrs(shape, d, k, shape[d]))
            lo = b("tensor.slice", v, **_slice_attrs(shape, d, 0, k))
            v = b("tensor.cat", hi, lo, dim=d)
        return v if steps else b("tensor.copy", v)

    def eager() -> Tensor:
        if not steps or x.numel() == 0:
            return clone(x)
        a = x._concrete("roll")
        for d, k in steps:
            pieces = [_np_slice(a, d, k, shape[d]), _np_slice(a, d, 0, k)]
            a = _cat_kernel(pieces, [x._dtype] * 2, d, x._dtype)
        return Tensor._wrap(a, x._dtype)

    return dispatch.apply("roll", build, (x,), eager)


def _repeat_build(x: Tensor, grouped: tuple[int, ...], expanded: tuple[int, ...],
                  shape: tuple[int, ...], op: str) -> Tensor:
    """``x`` reshaped to ``grouped`` (size-1 axes added), expanded, then reshaped to ``shape``:
    one build, one copy kernel eagerly."""

    def build(b: Builder, v: Value) -> Value:
        v = b("tensor.reshape", v, shape=grouped)
        v = b("tensor.expand", v, shape=expanded)
        return b("tensor.reshape", v, shape=shape)

    def eager() -> Tensor:
        a = x._concrete(op).reshape(grouped)
        return _copy_of_view(np.broadcast_to(a, expanded), x._dtype, shape)

    return dispatch.apply(op, build, (x,), eager)


def repeat(self: Tensor, *sizes: Any) -> Tensor:
    """``Tensor.repeat``: tile the tensor ``sizes`` times along each axis (a copy)."""
    x = _check_tensor(self, "repeat")
    reps = _int_tuple(sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, Size))
                      else sizes, "repeat", "repeats")
    if len(reps) < x.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    src = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    shape = tuple(r * s for r, s in zip(reps, src))
    for r in reps:
        if r < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension "
                               f"{builtins.min(shape)}: {list(shape)}")
    grouped = tuple(v for s in src for v in (1, s))
    expanded = tuple(v for r, s in zip(reps, src) for v in (r, s))
    return _repeat_build(x, grouped, expanded, shape, "repeat")


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:
    """``torch.tile``: ``repeat`` with missing leading repeats taken as 1."""
    x = _check_tensor(input, "tile")
    reps = _int_tuple(dims, "tile", "dims")
    return repeat(x, (1,) * (x.ndim - len(reps)) + reps)


def repeat_interleave(input: Tensor, repeats: Any = None, dim: int | None = None, *,
                      output_size: int | None = None) -> Tensor:
    """``torch.repeat_interleave``: each entry repeated ``repeats`` times along ``dim``
    (flattened when None). Per-entry repeats (a 1-d tensor) gather, and their sum is the
    output size, read back from the device unless ``output_size`` gives it."""
    x = _check_tensor(input, "repeat_interleave")
    if repeats is None:  # repeat_interleave(repeats): the indices, each repeated
        from lamina.frontend.ops import arange

        return repeat_interleave(arange(x.numel(), dtype=x.dtype), x, 0,
                                 output_size=output_size)
    if dim is None:
        x = views.reshape(x, (-1,))
        d = 0
    else:
        d = _dim(dim, x.ndim, "repeat_interleave")
        if x.ndim == 0:
            x = views.reshape(x, (1,))
    if isinstance(repeats, Tensor) and repeats.ndim > 1:
        raise RuntimeError("repeats must be 0-dim or 1-dim tensor")
    if isinstance(repeats, Tensor) and repeats.numel() != 1:
        return _repeat_per_entry(x, repeats, d, output_size)
    if isinstance(repeats, Tensor) and repeats.dtype.category != 1:
        raise NotImplementedError(f"\"repeat_interleave_cpu\" not implemented for "
                                  f"'{_tname(repeats.dtype)}'")
    r = _int_arg(repeats, "repeat_interleave", "repeats")
    if r < 0:
        raise RuntimeError("Repeats must be non-negative")
    src = tuple(x.shape)
    shape = src[:d] + (src[d] * r,) + src[d + 1:]
    if output_size is not None and output_size != shape[d]:
        raise RuntimeError("allocated size does not match required size")
    grouped = src[:d + 1] + (1,) + src[d + 1:]
    expanded = src[:d + 1] + (r,) + src[d + 1:]
    return _repeat_build(x, grouped, expanded, shape, "repeat_interleave")


def _repeat_per_entry(x: Tensor, repeats: Tensor, d: int, output_size: int | None) -> Tensor:
    """Entry i of axis ``d`` repeated ``repeats[i]`` times: ``index_select`` of the source
    positions, found without a search: mark where each entry's run starts, count marks."""
    from lamina.frontend import ops
    from lamina.frontend.ops_index import index_select, scatter_add
    from lamina.frontend.ops_reduce import cumsum

    if repeats.dtype not in (dt.int64, dt.int32):
        raise NotImplementedError(f"\"repeat_interleave_cpu\" not implemented for "
                                  f"'{_tname(repeats.dtype)}'")
    if repeats.shape[0] != x.shape[d]:
        raise RuntimeError(f"repeats must have the same size as input along dim, but got "
                           f"repeats.size(0) = {repeats.shape[0]} and input.size({d}) = "
                           f"{x.shape[d]}")
    reps = ops.cast(repeats, dt.int64)
    if repeats.numel() and int(ops.amin(reps)) < 0:
        raise RuntimeError("repeats can not be negative")
    ends = cumsum(reps, 0)
    total = int(ends[-1]) if repeats.numel() else 0
    if output_size is not None and output_size != total:
        raise RuntimeError("allocated size does not match required size")
    # a run that starts at ``total`` is empty: the extra slot keeps its mark in range
    marks = scatter_add(ops.zeros(total + 1, dtype=dt.int64), 0, ends - reps,
                        ops.ones(repeats.shape[0], dtype=dt.int64))
    source = cumsum(marks[:total], 0) - 1
    return index_select(x, d, source)


def _tensor_split_method(self: Tensor, split_size: Any, dim: int = 0) -> tuple[Tensor, ...]:
    return split(self, split_size, dim)


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {
    "split": _tensor_split_method, "chunk": chunk, "unbind": unbind, "narrow": narrow,
    "movedim": movedim, "moveaxis": movedim, "swapaxes": swapaxes, "swapdims": swapaxes,
    "unflatten": unflatten, "view_as": view_as, "reshape_as": reshape_as, "roll": roll,
    "repeat": repeat, "tile": tile, "repeat_interleave": repeat_interleave,
}
