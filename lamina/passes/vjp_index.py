"""VJP rules of the index primitives (``lamina.ir.dialects.prim_index``), added to the one
table of ``vjp_rules``.

``gather`` and ``scatter_add`` are each other's transpose; ``scatter`` (overwrite)
sends the cotangent of overwritten elements to ``src`` and the rest to ``base``,
as PyTorch does; ``reverse`` is its own transpose. Scans: a cumulative sum's VJP
is a reversed cumulative sum; a cumulative product's is exact with zeros in the
input (no division by zero, like PyTorch); cumulative max/min send each
cotangent to the element holding the running extreme (the last one on ties,
like ``torch.cummax``). ``argsort`` and ``compact`` give integers: no cotangent.
"""

from __future__ import annotations

from lamina.ir.types import i64
from lamina.passes.vjp_rules import Emitter, X, _const, _register, _zeros, vjp


def _nondiff(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [None] * len(inputs)


for _name in ("prim.argsort", "prim.compact"):
    _register(_name, _nondiff)


def _empty(e: Emitter, x: X) -> bool:
    return 0 in tuple(e.shape(x))


@vjp("prim.reverse")
def _reverse_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [e.prim("prim.reverse", cts[0], axes=attrs["axes"])]


@vjp("prim.gather")
def _gather_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x, index), (g,) = inputs, cts
    if _empty(e, index):
        return [_zeros(e, x), None]
    return [e.prim("prim.scatter_add", _zeros(e, x), index, g, axis=attrs["axis"]), None]


def _gather_back(e: Emitter, g: X, index: X, axis: int) -> X:
    if _empty(e, index):
        return e.prim("prim.const", value=0.0, shape=tuple(e.shape(index)), dtype=e.dtype(g))
    return e.prim("prim.gather", g, index, axis=axis)


@vjp("prim.scatter_add")
def _scatter_add_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (_, index, _), (g,) = inputs, cts
    return [g, None, _gather_back(e, g, index, attrs["axis"]) if need[2] else None]


@vjp("prim.scatter")
def _scatter_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (_, index, src), (g,) = inputs, cts
    axis = attrs["axis"]
    g_base = None
    if need[0]:
        g_base = g if _empty(e, index) else e.prim("prim.scatter", g, index, _zeros(e, src),
                                                   axis=axis)
    return [g_base, None, _gather_back(e, g, index, axis) if need[2] else None]


def _scan(e: Emitter, x: X, axis: int, fn: str) -> X:
    return e.prim("prim.cumulative", x, axis=axis, fn=fn)


def _reverse_cumsum(e: Emitter, x: X, axis: int) -> X:
    """out[i] = sum of x[j] for j >= i along ``axis``."""
    flipped = e.prim("prim.reverse", x, axes=(axis,))
    return e.prim("prim.reverse", _scan(e, flipped, axis, "sum"), axes=(axis,))


def _cumprod_vjp(e: Emitter, x: X, y: X, g: X, axis: int) -> X:
    # d y_j / d x_i = prod of x_k for k <= j, k != i. Before the first zero z of a line that
    # is y_j / x_i; at z it is the running product with x_z taken as 1; after z it is 0.
    one, zero = _const(e, 1.0, x), _zeros(e, x)
    is_zero = e.prim("prim.eq", x, zero)
    zeros_so_far = _scan(e, e.prim("prim.cast", is_zero, dtype=e.dtype(x)), axis, "sum")
    before = e.prim("prim.eq", zeros_so_far, zero)
    first = e.prim("prim.and", is_zero, e.prim("prim.eq", zeros_so_far, one))
    plain = e.prim("prim.div", _reverse_cumsum(e, e.prim("prim.mul", g, y), axis),
                   e.prim("prim.where", before, x, one))
    y_skip = _scan(e, e.prim("prim.where", first, one, x), axis, "prod")
    at_zero = _reverse_cumsum(e, e.prim("prim.mul", g, y_skip), axis)
    return e.prim("prim.where", before, plain, e.prim("prim.where", first, at_zero, zero))


def _cumextreme_vjp(e: Emitter, x: X, y: X, g: X, axis: int) -> X:
    # element j holds the running extreme from where it equals it (or is NaN) until the next
    # such element: a running max of those positions is the index torch.cummax returns
    shape = tuple(e.shape(x))
    hit = e.prim("prim.or", e.prim("prim.eq", x, y), e.prim("prim.isnan", x))
    iota = e.prim("prim.iota", shape=shape, dim=axis, dtype=i64)
    start = e.prim("prim.where", hit, iota,
                   e.prim("prim.const", value=0, shape=shape, dtype=i64))
    holder = _scan(e, start, axis, "max")
    return e.prim("prim.scatter_add", _zeros(e, x), holder, g, axis=axis)


@vjp("prim.cumulative")
def _cumulative_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x,), (y,), (g,) = inputs, outputs, cts
    axis, fn = attrs["axis"], attrs["fn"]
    if _empty(e, x):
        return [_zeros(e, x)]
    if fn == "sum":
        return [_reverse_cumsum(e, g, axis)]
    if fn == "prod":
        return [_cumprod_vjp(e, x, y, g, axis)]
    return [_cumextreme_vjp(e, x, y, g, axis)]
