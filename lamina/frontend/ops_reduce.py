"""Tensor operations: reductions beyond the core set (var/std, logsumexp, all/any,
count_nonzero), scans (cumsum, cumprod, cummax, cummin) and order statistics (sort,
argsort, msort, topk, kthvalue, median, unique).

Scans run the ``prim.cumulative`` kernel; everything about order runs the stable
``prim.argsort`` kernel (NaN sorts as the largest value, like PyTorch) and takes
values with ``gather``, so gradients flow through ``gather``'s VJP. The rest is
composed from other ops (each a generated kernel, each recorded by autograd).
``prod`` lives in ``ops`` and ``norm`` in ``ops_linalg``.
"""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

import numpy as np

from lamina.frontend import dispatch, ops, views
from lamina.frontend import dtypes as dt
from lamina.frontend.ops_index import compact, gather_core, scatter_core
from lamina.frontend.tensor import Tensor, _dim
from lamina.ir import Builder, Value

__all__ = ["all", "any", "argsort", "count_nonzero", "cummax", "cummin", "cumprod", "cumsum",
           "kthvalue", "logsumexp", "median", "msort", "sort", "std", "std_mean", "topk",
           "unique", "var", "var_mean"]

# PyTorch's torch.return_types.* (the type names show in reprs)
_sort_t = namedtuple("sort", ["values", "indices"])
_topk_t = namedtuple("topk", ["values", "indices"])
_kthvalue_t = namedtuple("kthvalue", ["values", "indices"])
_median_t = namedtuple("median", ["values", "indices"])
_cummax_t = namedtuple("cummax", ["values", "indices"])
_cummin_t = namedtuple("cummin", ["values", "indices"])
_var_mean_t = namedtuple("var_mean", ["var", "mean"])
_std_mean_t = namedtuple("std_mean", ["std", "mean"])


def _check(x: Any, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument 'input' must be Tensor, not {type(x).__name__}")
    return x


def _dims(dim: Any, ndim: int, op: str) -> tuple[int, ...]:
    """Reduced dims, sorted (all for None or an empty list)."""
    if dim is None:
        return tuple(range(ndim))
    items = (dim,) if isinstance(dim, int) else tuple(dim)
    if not items:
        return tuple(range(ndim))
    out = tuple(sorted({_dim(d, ndim, op) for d in items}))
    if len(out) != len(items):
        raise RuntimeError(f"{op}: dim {list(items)} appears multiple times in the list of dims")
    return out


def _numel(shape: Any, dims: tuple[int, ...]) -> int:
    return int(np.prod([shape[d] for d in dims], dtype=np.int64))


def _squeeze(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Drop the (size-1) axes ``dims`` (a view)."""
    return views.reshape(x, tuple(s for a, s in enumerate(x.shape) if a not in dims))


# -- var / std --------------------------------------------------------------------------------
def _moments(op: str, input: Tensor, dim: Any, unbiased: Any, keepdim: bool,
             correction: Any) -> tuple[Tensor, Tensor]:
    x = _check(input, op)
    if isinstance(dim, bool):  # the legacy var(input, unbiased)
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise RuntimeError(f"{op}: cannot specify both unbiased and correction")
    if not x._dtype.is_floating_point:
        raise RuntimeError("std and var only support floating point and complex dtypes")
    c = correction if correction is not None else (0 if unbiased is False else 1)
    dims = _dims(dim, x.ndim, op)
    n = _numel(x.shape, dims)
    mean = ops.div(ops.sum(x, dims, keepdim=True), float(n))
    dev = ops.sub(x, mean)
    var = ops.div(ops.sum(ops.mul(dev, dev), dims, keepdim=keepdim), float(builtins.max(n - c,
                                                                                         0)))
    return var, mean if keepdim else _squeeze(mean, dims)


def var(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """``torch.var``: sum((x - mean)^2) / max(0, N - correction) (correction 1 by default;
    the legacy ``unbiased`` flag is correction 1 or 0)."""
    return _moments("var", input, dim, unbiased, keepdim, correction)[0]


def std(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """``torch.std``: the square root of ``var``."""
    return ops.sqrt(_moments("std", input, dim, unbiased, keepdim, correction)[0])


def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> Any:
    v, m = _moments("var_mean", input, dim, unbiased, keepdim, correction)
    return _var_mean_t(v, m)


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> Any:
    v, m = _moments("std_mean", input, dim, unbiased, keepdim, correction)
    return _std_mean_t(ops.sqrt(v), m)


# -- logsumexp, all, any, count_nonzero ------------------------------------------------------------
def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``dim``, shifted by the max so it never overflows."""
    x = _check(input, "logsumexp")
    if not x._dtype.is_floating_point:
        x = ops.cast(x, dt.default_float)
    dims = _dims(dim, x.ndim, "logsumexp")
    kept = tuple(1 if a in dims else s for a, s in enumerate(x.shape))
    if x.numel() == 0:  # log of an empty sum
        r = ops.full(kept, float("-inf"), dtype=x._dtype)
        return r if keepdim else _squeeze(r, dims)
    m = ops.amax(x.detach(), dims, keepdim=True)
    # an infinite max (all -inf, or some +inf) shifts by 0: the sum then gives the right inf
    m = ops.where(ops.eq(ops.abs(m), float("inf")), 0.0, m)
    r = ops.add(ops.log(ops.sum(ops.exp(ops.sub(x, m)), dims, keepdim=True)), m)
    return r if keepdim else _squeeze(r, dims)


def _truth(x: Tensor) -> Tensor:
    return x if x._dtype is dt.bool_ else ops.ne(x, 0)


def _all_any(op: str, input: Tensor, dim: Any, keepdim: bool) -> Tensor:
    x = _check(input, op)
    dims = _dims(dim, x.ndim, op)
    if x.numel() == 0:  # the identity: all() of nothing is True
        kept = tuple(1 if a in dims else s for a, s in enumerate(x.shape) if keepdim or
                     a not in dims)
        return ops.full(kept, op == "all", dtype=dt.bool_)
    return (ops.amin if op == "all" else ops.amax)(_truth(x), dims, keepdim)


def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether every element (along ``dim``) is nonzero, as bool."""
    return _all_any("all", input, dim, keepdim)


def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether some element (along ``dim``) is nonzero, as bool."""
    return _all_any("any", input, dim, keepdim)


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:
    """The number of nonzero elements (along ``dim``), as int64."""
    x = _check(input, "count_nonzero")
    return ops.sum(_truth(x), _dims(dim, x.ndim, "count_nonzero"))


# -- scans ---------------------------------------------------------------------------------------
def _scan(op: str, fn: str, input: Tensor, dim: int, dtype: dt.dtype | None) -> Tensor:
    x = _check(input, op)
    d = _dim(dim, x.ndim, op)
    if dtype is None and fn in ("sum", "prod") and x._dtype.category < 2:
        dtype = dt.int64  # PyTorch accumulates integers and bools in int64
    if dtype is not None and dtype is not x._dtype:
        x = ops.cast(x, dtype)
    x1 = views.reshape(x, (1,)) if x.ndim == 0 else x

    def build(b: Builder, v: Value) -> Value:
        return b("prim.cumulative", v, axis=d, fn=fn)

    def eager() -> Tensor:
        if x1.numel() == 0:
            return ops.empty(x1.shape, dtype=x1._dtype)
        (res,) = dispatch.run_eager(("cumulative", fn, d), build, [x1._a], [x1._dtype.ir])
        return Tensor._wrap(res, x1._dtype)

    out = dispatch.apply(op, build, (x1,), eager)
    return views.reshape(out, ()) if x.ndim == 0 else out


def cumsum(input: Tensor, dim: int, *, dtype: dt.dtype | None = None) -> Tensor:
    """Running sums along ``dim`` (integers and bools in int64 unless ``dtype``)."""
    return _scan("cumsum", "sum", input, dim, dtype)


def cumprod(input: Tensor, dim: int, *, dtype: dt.dtype | None = None) -> Tensor:
    """Running products along ``dim`` (integers and bools in int64 unless ``dtype``)."""
    return _scan("cumprod", "prod", input, dim, dtype)


def _positions(x: Tensor, d: int) -> Tensor:
    """int64 positions along ``d``, broadcast to ``x``'s shape (a view)."""
    n = x.shape[d]
    line = views.reshape(ops.arange(n, dtype=dt.int64),
                         tuple(n if a == d else 1 for a in range(x.ndim)))
    return views.expand(line, tuple(x.shape))


def _cum_extreme(op: str, fn: str, input: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    x = _check(input, op)
    d = _dim(dim, x.ndim, op)
    values = _scan(op, fn, x, d, None)
    if x.numel() == 0 or x.ndim == 0:
        return values, ops.zeros(x.shape, dtype=dt.int64)
    # the index of the running extreme: the last element equal to it (or NaN) so far
    hit = ops.eq(x, values)
    if x._dtype.is_floating_point:
        hit = ops.logical_or(hit, ops.isnan(x))
    starts = ops.where(hit, _positions(x, d), 0)
    return values, _scan(op, "max", starts, d, None)


def cummax(input: Tensor, dim: int) -> Any:
    """Running maximum along ``dim`` and the index where it was reached (the last on ties;
    NaN propagates)."""
    return _cummax_t(*_cum_extreme("cummax", "max", input, dim))


def cummin(input: Tensor, dim: int) -> Any:
    """Running minimum along ``dim`` and the index where it was reached."""
    return _cummin_t(*_cum_extreme("cummin", "min", input, dim))


# -- sorting ---------------------------------------------------------------------------------------
def _argsort(x: Tensor, d: int, descending: bool) -> Tensor:
    """The stable sorting permutation along ``d`` (x.ndim >= 1), int64."""

    def build(b: Builder, v: Value) -> Value:
        return b("prim.argsort", v, axis=d, descending=descending)

    def eager() -> Tensor:
        if x.numel() == 0:
            return ops.empty(x.shape, dtype=dt.int64)
        (res,) = dispatch.run_eager(("argsort", d, descending), build, [x._a], [x._dtype.ir])
        return Tensor._wrap(res, dt.int64)

    return dispatch.apply("argsort", build, (x,), eager)


def _sorted(op: str, input: Tensor, dim: int, descending: bool) -> tuple[Tensor, Tensor]:
    x = _check(input, op)
    d = _dim(dim, x.ndim, op)
    if x.ndim == 0:
        return ops.clone(x), ops.zeros((), dtype=dt.int64)
    idx = _argsort(x, d, descending)
    return gather_core(x, d, idx, op), idx


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """``(values, indices)`` sorted along ``dim``; always stable; NaN sorts as the largest."""
    return _sort_t(*_sorted("sort", input, dim, descending))


def argsort(input: Tensor, dim: int = -1, descending: bool = False,
            stable: bool = False) -> Tensor:
    """The indices that sort ``input`` along ``dim`` (stable)."""
    x = _check(input, "argsort")
    d = _dim(dim, x.ndim, "argsort")
    return ops.zeros((), dtype=dt.int64) if x.ndim == 0 else _argsort(x, d, descending)


def msort(input: Tensor) -> Tensor:
    """``input`` sorted along dim 0."""
    return _sorted("msort", input, 0, False)[0]


def _pick(x: Tensor, d: int, values: Tensor, idx: Tensor, pos: Any, keepdim: bool
          ) -> tuple[Tensor, Tensor]:
    """The sorted ``values``/``idx`` at position ``pos`` (an int or a keepdim int64 tensor of
    positions per line) along ``d``."""
    if isinstance(pos, int):
        v = views.getitem(values, (slice(None),) * d + (slice(pos, pos + 1),))
        i = views.getitem(idx, (slice(None),) * d + (slice(pos, pos + 1),))
    else:
        v, i = gather_core(values, d, pos), gather_core(idx, d, pos)
    if keepdim:
        return v, i
    return _squeeze(v, (d,)), _squeeze(i, (d,))


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True
         ) -> Any:
    """The ``k`` largest (or smallest) elements along ``dim`` and their indices, in order."""
    x = _check(input, "topk")
    d = _dim(dim, x.ndim, "topk")
    n = x.shape[d] if x.ndim else 1
    if not isinstance(k, int) or k < 0 or k > n:
        raise RuntimeError("selected index k out of range")
    values, idx = _sorted("topk", x, d, largest)
    if x.ndim == 0:
        return _topk_t(values, idx)
    key = (slice(None),) * d + (slice(0, k),)
    return _topk_t(views.getitem(values, key), views.getitem(idx, key))


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False) -> Any:
    """The k-th smallest element along ``dim`` (1-based) and its index."""
    x = _check(input, "kthvalue")
    d = _dim(dim, x.ndim, "kthvalue")
    n = x.shape[d] if x.ndim else 1
    if not isinstance(k, int) or not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    values, idx = _sorted("kthvalue", x, d, False)
    if x.ndim == 0:
        return _kthvalue_t(values, idx)
    return _kthvalue_t(*_pick(x, d, values, idx, k - 1, keepdim))


def median(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """The lower median of all elements (no ``dim``), or ``(values, indices)`` along ``dim``;
    a line holding NaN gives NaN (its first NaN)."""
    x = _check(input, "median")
    if dim is None:
        flat = views.reshape(x, (x.numel(),))
        if x.numel() == 0:  # what PyTorch gives: NaN, or the NaN cast (lowest int, True)
            if x._dtype.is_floating_point:
                return ops.full((), float("nan"), dtype=x._dtype)
            empty = True if x._dtype is dt.bool_ else int(np.iinfo(x._dtype.numpy).min)
            return ops.full((), empty, dtype=x._dtype)
        return _median(flat, 0, False)[0]
    d = _dim(dim, x.ndim, "median")
    if x.ndim and x.shape[d] == 0:
        raise IndexError(f"median(): Expected reduction dim {d} to have non-zero size.")
    if x.ndim == 0:
        return _median_t(ops.clone(x), ops.zeros((), dtype=dt.int64))
    return _median_t(*_median(x, d, keepdim))


def _median(x: Tensor, d: int, keepdim: bool) -> tuple[Tensor, Tensor]:
    values, idx = _sorted("median", x, d, False)
    n = x.shape[d]
    if not x._dtype.is_floating_point:
        return _pick(x, d, values, idx, (n - 1) // 2, keepdim)
    nans = ops.sum(ops.isnan(x), d, keepdim=True)
    pos = ops.where(ops.gt(nans, 0), ops.sub(n, nans), (n - 1) // 2)  # NaNs sort last
    return _pick(x, d, values, idx, pos, keepdim)


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim: int | None = None) -> Any:
    """The distinct elements in ascending order (each NaN distinct), and optionally the
    position of each input element among them and how often each occurs."""
    from lamina.frontend.ops_shape import cat

    x = _check(input, "unique")
    if dim is not None:
        raise NotImplementedError("unique(dim=...) is not supported; flatten or use "
                                  "unique() without dim")
    n = x.numel()
    flat = views.reshape(x, (n,))
    if n == 0:
        out: list[Tensor] = [ops.empty((0,), dtype=x._dtype)]
        if return_inverse:
            out.append(ops.empty(tuple(x.shape), dtype=dt.int64))
        if return_counts:
            out.append(ops.empty((0,), dtype=dt.int64))
        return out[0] if len(out) == 1 else tuple(out)
    s, perm = _sorted("unique", flat, 0, False)
    one = ops.full((1,), True, dtype=dt.bool_)
    differs = ops.ne(views.getitem(s, slice(1, None)), views.getitem(s, slice(0, n - 1)))
    first = cat([one, differs])
    count = int(ops.sum(first).item())
    starts = compact(first, count)
    out = [gather_core(s, 0, starts, "unique")]
    if return_inverse:
        rank = ops.sub(cumsum(first, 0), 1)
        inverse = scatter_core(ops.zeros((n,), dtype=dt.int64), 0, perm, rank, False, "unique")
        out.append(views.reshape(inverse, tuple(x.shape)))
    if return_counts:
        ends = compact(cat([differs, one]), count)
        out.append(ops.add(ops.sub(ends, starts), 1))
    return out[0] if len(out) == 1 else tuple(out)


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {
    "all": all, "any": any, "argsort": argsort, "count_nonzero": count_nonzero,
    "cummax": cummax, "cummin": cummin, "cumprod": cumprod, "cumsum": cumsum,
    "kthvalue": kthvalue, "logsumexp": logsumexp, "median": median, "msort": msort,
    "sort": sort, "std": std, "topk": topk, "unique": unique, "var": var,
}
