"""Views: new shapes and strides over the same storage, like PyTorch's.

Eagerly a view is metadata only (a numpy view of the same buffer, no copy and
no kernel). Inside ``lamina.compile`` views are recorded as movement ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.frontend import dispatch
from lamina.frontend.ops import _restride, broadcast_shapes, contiguous
from lamina.frontend.tensor import Tensor, _dim


def _sizes(args: tuple, op: str) -> tuple[int, ...]:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    if not all(d is None or isinstance(d, int) and not isinstance(d, bool) for d in args):
        raise TypeError(f"{op}(): expected a sequence of ints, got {args!r}")
    return tuple(args)


def _symbolic_reshape(x: Tensor, shape: tuple, op: str) -> Tensor | None:
    """``x`` reshaped when its leading sizes are ``?`` (``dynamic=True``), else None.

    ``x.size(0)`` of such a tensor is ``None``; a reshape keeps those leading axes when
    it names them ``None`` (``x.view(x.size(0), -1)``) or as the only ``-1``
    (``x.view(-1, 64)``), and reshapes the static rest (``prim.reshape_tail``).
    """
    if None not in x.shape and None not in shape:
        return None
    keep = 0
    while keep < x.ndim and x.shape[keep] is None:
        keep += 1
    tail = tuple(x.shape[keep:])

    def fail(why: str) -> RuntimeError:
        dims = [("?" if d is None else d) for d in x.shape]
        return RuntimeError(f"{op}: cannot reshape a tensor of shape {dims} (? = the symbolic "
                            f"batch size of lamina.compile(dynamic=True)) to "
                            f"{list(shape)}: {why}; keep the batch dimension first, e.g. "
                            f"x.view(x.size(0), -1) or x.flatten(1)")

    if None in tail:
        raise fail("only leading sizes may be symbolic")
    head, rest = shape[:keep], shape[keep:]
    if len(head) < keep or None in rest:
        raise fail("the symbolic sizes must stay where they are")
    if any(d is not None for d in head):
        # ``-1`` may name the batch axis when the rest is static and complete
        if keep != 1 or head != (-1,) or -1 in rest:
            raise fail("the symbolic sizes must stay where they are")
    numel = 1
    for d in tail:
        numel *= d
    try:
        rest = _infer_size(tuple(rest), numel, op)
    except RuntimeError as e:
        raise fail(f"{e} per batch position") from None
    from lamina.passes import lower_shape  # noqa: F401  (registers reshape_tail's rules)

    def make() -> Tensor:
        raise RuntimeError(f"{op}: symbolic sizes outside lamina.compile")

    out = tuple(x.shape[:keep]) + tuple(rest)
    return _view("prim.reshape_tail", x, make, keep=keep, shape=out)


def _infer_size(shape: tuple[int, ...], numel: int, op: str) -> tuple[int, ...]:
    if shape.count(-1) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred")
    known = 1
    for d in shape:
        if d != -1:
            if d < 0:
                raise RuntimeError(f"{op}: invalid shape dimension {d}")
            known *= d
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if d == -1 else d for d in shape)
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _view(op: str, x: Tensor, make: Any, **attrs: Any) -> Tensor:
    """A view: ``make()`` eagerly (metadata only), ``op`` when tracing or recording."""
    return dispatch.apply(op, lambda b, v: b(op, v, **attrs), (x,), make)


def view(x: Tensor, *shape: Any) -> Tensor:
    shape = _sizes(shape, "view")
    sym = _symbolic_reshape(x, shape, "view")
    if sym is not None:
        return sym
    shape = _infer_size(shape, x.numel(), "view")

    def make() -> Tensor:
        v = x._a.view()
        try:
            v.shape = shape
        except AttributeError:
            raise RuntimeError(
                f"view size is not compatible with input tensor's size and stride (at least one "
                f"dimension spans across two contiguous subspaces): input {list(x.shape)} with "
                f"strides {list(x.stride())}, view {list(shape)}. Use .reshape(...) instead."
            ) from None
        return Tensor._wrap(v, x._dtype)

    return _view("tensor.reshape", x, make, shape=shape)


def reshape(x: Tensor, *shape: Any) -> Tensor:
    shape = _sizes(shape, "reshape")
    sym = _symbolic_reshape(x, shape, "reshape")
    if sym is not None:
        return sym
    shape = _infer_size(shape, x.numel(), "reshape")

    def make() -> Tensor:
        v = x._a.view()
        try:
            v.shape = shape
            return Tensor._wrap(v, x._dtype)
        except AttributeError:
            return view(contiguous(x), shape)

    return _view("tensor.reshape", x, make, shape=shape)


def permute(x: Tensor, *dims: Any) -> Tensor:
    dims = _sizes(dims, "permute")
    n = x.ndim
    if len(dims) != n:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {n} is not equal to len(dims) = {len(dims)}")
    norm = tuple(_dim(d, n, "permute") for d in dims)
    if len(set(norm)) != n:
        raise RuntimeError(f"permute(): duplicate dims are not allowed: {list(dims)}")
    return _view("tensor.permute", x, lambda: Tensor._wrap(x._a.transpose(norm), x._dtype),
                 perm=norm)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    n = x.ndim
    if n == 0:
        return x
    d0, d1 = _dim(dim0, n, "transpose"), _dim(dim1, n, "transpose")
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return permute(x, perm)


def t(x: Tensor) -> Tensor:
    if x.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {x.ndim}D")
    return x if x.ndim < 2 else transpose(x, 0, 1)


def expand(x: Tensor, *sizes: Any) -> Tensor:
    sizes = _sizes(sizes, "expand")
    if len(sizes) < x.ndim:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({x.ndim})"
        )
    lead = len(sizes) - x.ndim
    shape = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise RuntimeError("expand: -1 is not allowed in a leading, non-existing "
                                   "dimension")
            s = x.shape[i - lead]
        shape.append(s)
    shape = tuple(shape)
    for i, d in enumerate(x.shape):
        if d != 1 and d != shape[lead + i]:
            raise RuntimeError(
                f"The expanded size of the tensor ({shape[lead + i]}) must match the existing "
                f"size ({d}) at non-singleton dimension {lead + i}.  Target sizes: "
                f"{list(sizes)}.  Tensor sizes: {list(x.shape)}"
            )
    if shape == tuple(x.shape):
        return _view("tensor.reshape", x, lambda: Tensor._wrap(x._a.view(), x._dtype),
                     shape=shape)

    def make() -> Tensor:
        a = x._a
        strides = tuple(
            0 if i < lead or (a.shape[i - lead] == 1 and shape[i] != 1) else a.strides[i - lead]
            for i in range(len(shape))
        )
        return Tensor._wrap(_restride(a, shape, strides), x._dtype)

    return _view("tensor.expand", x, make, shape=shape)


def expand_as(x: Tensor, other: Tensor) -> Tensor:
    return expand(x, tuple(other.shape))


def broadcast_to(x: Tensor, shape: Any) -> Tensor:
    broadcast_shapes(tuple(x.shape), tuple(shape), op="broadcast_to")
    return expand(x, tuple(shape))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    d = _dim(dim, x.ndim + 1, "unsqueeze")
    shape = list(x.shape)
    shape.insert(d, 1)
    return view_or_reshape(x, tuple(shape))


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    if dim is None:
        dims = {i for i, s in enumerate(x.shape) if s == 1}
    else:
        dims = {_dim(d, x.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)}
        dims = {d for d in dims if x.shape[d] == 1}
    return view_or_reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in dims))


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for d in x.shape[s:e + 1]:
        n *= d
    return reshape(x, tuple(x.shape[:s]) + (n,) + tuple(x.shape[e + 1:]))


def view_or_reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Adding or removing size-1 axes is always a view."""
    if None in x.shape:
        return _symbolic_units(x, tuple(shape))
    return _view("tensor.reshape", x, lambda: Tensor._wrap(x._a.reshape(shape), x._dtype),
                 shape=shape)


def _symbolic_units(x: Tensor, shape: tuple) -> Tensor:
    """Size-1 axes added or removed around ``?`` sizes: inserted axes are a broadcast (which
    keeps ``?`` axes linked), removed ones after the leading ``?`` axes a ``reshape_tail``."""
    dims: list[int] = []
    for i, d in enumerate(shape):
        if len(dims) < x.ndim and x.shape[len(dims)] == d:
            dims.append(i)
        elif d != 1:
            dims = []
            break
    if len(dims) == x.ndim:
        return _view("prim.broadcast", x, lambda: x, shape=shape, dims=tuple(dims))
    sym = _symbolic_reshape(x, shape, "view")
    assert sym is not None
    return sym


def getitem(x: Tensor, key: Any) -> Tensor:
    """Basic indexing: ints, slices with positive steps, None and Ellipsis (views)."""
    items = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, (Tensor, list, np.ndarray, bool)) for k in items):
        from lamina.frontend.ops_index import advanced_getitem  # tensors, lists, masks

        return advanced_getitem(x, key)
    for k in items:
        if isinstance(k, bool) or not (isinstance(k, (int, slice)) or k is None or k is ...):
            raise TypeError(f"index {k!r} of type {type(k).__name__} is not supported; use "
                            "ints, slices, None or ...")
        if isinstance(k, slice) and k.step is not None and k.step <= 0:
            raise ValueError("step must be greater than zero")
    n_real = sum(1 for k in items if k is not None and k is not ...)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    if items.count(...) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ... in items:
        i = items.index(...)
        items = items[:i] + (slice(None),) * (x.ndim - n_real) + items[i + 1:]
    else:
        items = items + (slice(None),) * (x.ndim - n_real)
    if None in x.shape:  # a dynamic trace: ? axes are kept whole
        return _symbolic_getitem(x, items)
    dim = 0
    for k in items:
        if isinstance(k, int):
            size = x.shape[dim]
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size "
                                 f"{size}")
        if k is not None:
            dim += 1
    start, stop, step, out_shape = [], [], [], []
    dim = 0
    for k in items:
        if k is None:
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if isinstance(k, int):
            k = k + size if k < 0 else k
            start.append(k)
            stop.append(k + 1)
            step.append(1)
        else:
            a, b, s = k.indices(size)
            b = max(a, b)
            start.append(a)
            stop.append(b)
            step.append(s)
            out_shape.append((b - a + s - 1) // s)
        dim += 1
    sliced = (tuple(start), tuple(stop), tuple(step)) != \
        ((0,) * x.ndim, tuple(x.shape), (1,) * x.ndim)
    out_shape = tuple(out_shape)

    def build(b: Any, v: Any) -> Any:
        if sliced:
            v = b("tensor.slice", v, start=tuple(start), stop=tuple(stop), step=tuple(step))
        if tuple(v.type.shape) != out_shape:
            v = b("tensor.reshape", v, shape=out_shape)
        return v

    # the trailing ... keeps an all-int index a 0-d view (numpy would return a scalar copy)
    return dispatch.apply("getitem", build, (x,),
                          lambda: Tensor._wrap(x._a[items + (...,)], x._dtype))


def _symbolic_getitem(x: Tensor, items: tuple) -> Tensor:
    """Basic indexing of a tensor with ``?`` (batch) sizes: ``prim.slice_keep`` slices and
    indexes the static axes and keeps each ``?`` axis whole (other indexes of it raise)."""
    from lamina.passes import lower_shape  # noqa: F401  (registers prim.slice_keep's rules)

    start, stop, step, drop, out_shape, dims = [], [], [], [], [], []
    dim = 0
    for k in items:
        if k is None:
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if size is None:
            if not (isinstance(k, slice) and k.start in (None, 0) and k.stop is None
                    and k.step in (None, 1)):
                raise TypeError(f"getitem: index {k!r} of axis {dim} of a tensor of shape "
                                f"{list(x.shape)}: the symbolic batch axis of a dynamic trace "
                                "can only be kept whole (':')")
            start.append(0)
            stop.append(None)
            step.append(1)
        elif isinstance(k, int):
            if not -size <= k < size:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size "
                                 f"{size}")
            k = k + size if k < 0 else k
            start.append(k)
            stop.append(k + 1)
            step.append(1)
            drop.append(dim)
        else:
            a, b, s = k.indices(size)
            b = max(a, b)
            start.append(a)
            stop.append(b)
            step.append(s)
        if not isinstance(k, int):
            dims.append(len(out_shape))
            out_shape.append(None if size is None else (stop[-1] - start[-1] + step[-1] - 1)
                             // step[-1])
        dim += 1
    whole = not drop and all(b is None or (a, b, s) == (0, d, 1)
                             for a, b, s, d in zip(start, stop, step, x.shape))

    def build(b: Any, v: Any) -> Any:
        if not whole:
            v = b("prim.slice_keep", v, start=tuple(start), stop=tuple(stop), step=tuple(step),
                  drop=tuple(drop))
        if len(dims) != len(out_shape):  # new axes (None in the index)
            v = b("prim.broadcast", v, shape=tuple(out_shape), dims=tuple(dims))
        return v

    return dispatch.apply("getitem", build, (x,), lambda: None)
