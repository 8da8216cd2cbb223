"""The VJP rules of the primitives: one table, applied to IR values and to tensors.

A rule maps the cotangents of an op's results to the cotangents of its operands::

    rule(e, attrs, inputs, outputs, cotangents) -> [cotangent or None per input]

It is written once against an *emitter* ``e`` (``e.prim(name, *operands,
**attrs)``, ``e.shape(x)``, ``e.dtype(x)``), so the same rule builds IR in the
``autodiff`` pass (``IREmitter``) and computes on tensors in the eager tape
(``TensorEmitter``). Prims do not broadcast: rules emit explicit
``prim.broadcast``/``prim.reduce_sum``/``prim.reshape``, and constants of the
full shape. Shapes are static.

An optional keyword ``wanted`` (one bool per input) says which cotangents the
caller needs; the others are not computed and come back ``None`` (the eager tape
saves kernels for inputs that do not require grad).

Conventions every rule follows (``_register`` enforces the first two):

- ``None`` is "no cotangent": operands that are not floating point (integer,
  bool, the condition of ``where``) and unwanted ones always get ``None``, and a
  rule called with only ``None`` cotangents returns only ``None``.
- Functions with a zero derivative (``floor``, ``sign``, ...) return explicit
  zeros, as PyTorch does; the ``autodiff`` pass drops them as symbolic zeros.
- Derivatives at ties and singular points follow PyTorch: ``max``/``min``
  split the cotangent evenly between equal operands, ``reduce_max``/``min``
  evenly among the equal elements (``amax``), ``pow`` gives 0 where PyTorch
  masks (exponent 0; base 0 with exponent >= 0), ``reduce_prod`` is exact with
  zeros in the input (no division by zero).

Adding a primitive means adding one entry: decorate its rule with
``@vjp("prim.name")``, or list an op without a derivative in ``NONDIFF``. The
decorated function gets one more argument than the public rule, ``need`` (one
bool per input: floating and wanted); what it returns for inputs not needed is
replaced by ``None``, so it may skip computing them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lamina.ir import OPS, Builder, IRError, Value
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import ScalarType, TensorType

X = Any  # an IR Value (autodiff) or a tensor (eager tape)
Rule = Callable[..., list["X | None"]]  # the public form, see the module docstring
Inner = Callable[["Emitter", dict, Sequence[X], Sequence[X], Sequence[X], list[bool]],
                 list["X | None"]]  # what @vjp decorates: cotangents, then ``need``


class Emitter(Protocol):
    """What a rule may do: apply a prim, read a static shape and a dtype."""

    def prim(self, name: str, *operands: X, **attrs: Any) -> X: ...

    def shape(self, x: X) -> tuple[int, ...]: ...

    def dtype(self, x: X) -> ScalarType: ...


class IREmitter:
    """The emitter of the autodiff pass: each prim becomes an op appended by ``builder``."""

    def __init__(self, builder: Builder):
        self.builder = builder

    def prim(self, name: str, *operands: Value, **attrs: Any) -> Value:
        return self.builder(name, *operands, **attrs)

    def shape(self, x: Value) -> tuple[int, ...]:
        t = x.type
        if not isinstance(t, TensorType):
            raise IRError(f"autodiff needs tensors, got {t}")
        # ``?`` sizes (compile(dynamic=True)) pass through: rules that do arithmetic on a
        # size fail on None, which the caller reports
        return tuple(t.shape)  # type: ignore[arg-type]

    def dtype(self, x: Value) -> ScalarType:
        return x.type.dtype


VJP: dict[str, Rule] = {}

# ops without a derivative: every operand gets None
NONDIFF = (
    "prim.const", "prim.iota", "prim.not", "prim.isnan", "prim.argmax", "prim.argmin",
    *(f"prim.{f}" for f in ew.COMPARE), "prim.and", "prim.or", "prim.xor", "prim.shl",
    "prim.shr",
)


def _register(name: str, fn: Inner) -> None:
    if name in VJP:
        raise ValueError(f"vjp_rules: two rules for {name}")

    @functools.wraps(fn)
    def rule(e: Emitter, attrs: dict, inputs: Sequence[X], outputs: Sequence[X],
             cotangents: Sequence[X | None], wanted: Sequence[bool] | None = None
             ) -> list[X | None]:
        need = [e.dtype(x).is_float and (wanted is None or bool(wanted[i]))
                for i, x in enumerate(inputs)]
        if not any(need) or all(c is None for c in cotangents):
            return [None] * len(inputs)
        out = fn(e, attrs, inputs, outputs, cotangents, need)
        if len(out) != len(inputs):
            raise IRError(f"vjp rule of {name} gave {len(out)} cotangents for "
                          f"{len(inputs)} operands")
        return [c if ok else None for c, ok in zip(out, need)]

    VJP[name] = rule
    cls = OPS.get(name)
    if cls is not None:
        cls.vjp = staticmethod(rule)  # type: ignore[attr-defined]


def vjp(*names: str) -> Callable[[Inner], Inner]:
    """Register ``fn`` as the VJP rule of the prims ``names``."""

    def deco(fn: Inner) -> Inner:
        for n in names:
            _register(n, fn)
        return fn

    return deco


def _nondiff(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [None] * len(inputs)


for _name in NONDIFF:
    _register(_name, _nondiff)


# -- helpers: each is one prim ----------------------------------------------------------
def _const(e: Emitter, value: float, like: X) -> X:
    """A constant of ``like``'s shape and dtype (prims do not broadcast)."""
    dtype = e.dtype(like)
    v: int | float | bool = float(value) if dtype.is_float else (
        bool(value) if dtype.is_bool else int(value))
    shape = tuple(e.shape(like))
    if None in shape:  # a ``?`` size: a 0-d constant broadcast where it meets ``like``
        c = e.prim("prim.const", value=v, shape=(), dtype=dtype)
        return e.prim("prim.broadcast", c, shape=shape, dims=())
    return e.prim("prim.const", value=v, shape=shape, dtype=dtype)


def _zeros(e: Emitter, like: X) -> X:
    return _const(e, 0.0, like)


def _add(e: Emitter, a: X, b: X) -> X:
    return e.prim("prim.add", a, b)


def _sub(e: Emitter, a: X, b: X) -> X:
    return e.prim("prim.sub", a, b)


def _mul(e: Emitter, a: X, b: X) -> X:
    return e.prim("prim.mul", a, b)


def _div(e: Emitter, a: X, b: X) -> X:
    return e.prim("prim.div", a, b)


def _neg(e: Emitter, a: X) -> X:
    return e.prim("prim.neg", a)


def _scale(e: Emitter, a: X, k: float) -> X:
    return _mul(e, a, _const(e, k, a))


def _where(e: Emitter, c: X, a: X, b: X) -> X:
    return e.prim("prim.where", c, a, b)


def _kept(rank: int, axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(i for i in range(rank) if i not in axes)


def _unreduce(e: Emitter, v: X, like: X, axes: Sequence[int]) -> X:
    """``v`` (``like`` reduced over ``axes``) broadcast back to ``like``'s shape."""
    shape = tuple(e.shape(like))
    return e.prim("prim.broadcast", v, shape=shape, dims=_kept(len(shape), axes))


# -- elementwise: d(out)/d(x) times the cotangent ------------------------------------
# fn -> (e, x, y, g) -> cotangent of x; y is the result, g its cotangent
_UNARY: dict[str, Callable[[Emitter, X, X, X], X]] = {
    "neg": lambda e, x, y, g: _neg(e, g),
    "abs": lambda e, x, y, g: _mul(e, g, e.prim("prim.sign", x)),
    "exp": lambda e, x, y, g: _mul(e, g, y),
    "exp2": lambda e, x, y, g: _mul(e, g, _scale(e, y, math.log(2.0))),
    "expm1": lambda e, x, y, g: _mul(e, g, _add(e, y, _const(e, 1.0, y))),
    "log": lambda e, x, y, g: _div(e, g, x),
    "log2": lambda e, x, y, g: _div(e, g, _scale(e, x, math.log(2.0))),
    "log1p": lambda e, x, y, g: _div(e, g, _add(e, x, _const(e, 1.0, x))),
    "sqrt": lambda e, x, y, g: _div(e, g, _scale(e, y, 2.0)),
    # d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
    "rsqrt": lambda e, x, y, g: _mul(e, g, _scale(e, _mul(e, _mul(e, y, y), y), -0.5)),
    "sin": lambda e, x, y, g: _mul(e, g, e.prim("prim.cos", x)),
    "cos": lambda e, x, y, g: _mul(e, g, _neg(e, e.prim("prim.sin", x))),
    "tan": lambda e, x, y, g: _mul(e, g, _add(e, _const(e, 1.0, y), _mul(e, y, y))),
    "tanh": lambda e, x, y, g: _mul(e, g, _sub(e, _const(e, 1.0, y), _mul(e, y, y))),
    "logistic": lambda e, x, y, g: _mul(e, g, _mul(e, y, _sub(e, _const(e, 1.0, y), y))),
    "erf": lambda e, x, y, g: _mul(e, g, _scale(e, e.prim("prim.exp", _neg(e, _mul(e, x, x))),
                                                2.0 / math.sqrt(math.pi))),
    "erfinv": lambda e, x, y, g: _mul(e, g, _scale(e, e.prim("prim.exp", _mul(e, y, y)),
                                                   math.sqrt(math.pi) / 2.0)),
    **{f: (lambda e, x, y, g: _zeros(e, x)) for f in ("sign", "floor", "ceil", "round", "trunc")},
}


def _unary_rule(fn: str) -> Inner:
    deriv = _UNARY[fn]

    def rule(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
        return [deriv(e, inputs[0], outputs[0], cts[0])]

    rule.__name__ = f"vjp_{fn}"
    return rule


for _fn in _UNARY:
    _register(f"prim.{_fn}", _unary_rule(_fn))


# fn -> ((e, a, b, y, g) -> cotangent of a, (e, a, b, y, g) -> cotangent of b)
def _pow_a(e: Emitter, a: X, b: X, y: X, g: X) -> X:
    # PyTorch's mask: no base gradient where the exponent is 0 (0 * inf would be nan)
    zero_b = _zeros(e, b)
    da = _mul(e, b, e.prim("prim.pow", a, _sub(e, b, _const(e, 1.0, b))))
    return _where(e, e.prim("prim.eq", b, zero_b), _zeros(e, a), _mul(e, g, da))


def _pow_b(e: Emitter, a: X, b: X, y: X, g: X) -> X:
    # PyTorch's mask: no exponent gradient where the base is 0 and the exponent >= 0 (log 0)
    zero_a, zero_b = _zeros(e, a), _zeros(e, b)
    at_zero = e.prim("prim.and", e.prim("prim.eq", a, zero_a), e.prim("prim.ge", b, zero_b))
    return _where(e, at_zero, zero_b, _mul(e, g, _mul(e, y, e.prim("prim.log", a))))


def _extreme(loses: str) -> Callable[[Emitter, X, X, X, X], X]:
    """torch.maximum/minimum: ``a`` gets the cotangent unless ``loses(a, b)``; ties split it
    evenly (``_swapped`` gives ``b``'s)."""

    def rule(e: Emitter, a: X, b: X, y: X, g: X) -> X:
        ga = _where(e, e.prim(loses, a, b), _zeros(e, g), g)
        return _where(e, e.prim("prim.eq", a, b), _scale(e, g, 0.5), ga)

    return rule


def _swapped(fn: Callable[[Emitter, X, X, X, X], X]) -> Callable[[Emitter, X, X, X, X], X]:
    return lambda e, a, b, y, g: fn(e, b, a, y, g)


def _atan2(e: Emitter, num: X, a: X, b: X, g: X) -> X:
    return _div(e, _mul(e, g, num), _add(e, _mul(e, a, a), _mul(e, b, b)))


_BINARY: dict[str, tuple[Callable[[Emitter, X, X, X, X], X], ...]] = {
    "add": (lambda e, a, b, y, g: g, lambda e, a, b, y, g: g),
    "sub": (lambda e, a, b, y, g: g, lambda e, a, b, y, g: _neg(e, g)),
    "mul": (lambda e, a, b, y, g: _mul(e, g, b), lambda e, a, b, y, g: _mul(e, g, a)),
    # g * a / b^2 == (g / b) * (a / b)
    "div": (lambda e, a, b, y, g: _div(e, g, b),
            lambda e, a, b, y, g: _neg(e, _mul(e, _div(e, g, b), y))),
    # fmod(a, b) = a - trunc(a / b) * b
    "rem": (lambda e, a, b, y, g: g,
            lambda e, a, b, y, g: _neg(e, _mul(e, g, e.prim("prim.trunc", _div(e, a, b))))),
    "pow": (_pow_a, _pow_b),
    "max": (_extreme("prim.lt"), _swapped(_extreme("prim.lt"))),
    "min": (_extreme("prim.gt"), _swapped(_extreme("prim.gt"))),
    "atan2": (lambda e, a, b, y, g: _atan2(e, b, a, b, g),
              lambda e, a, b, y, g: _atan2(e, _neg(e, a), a, b, g)),
}


def _binary_rule(fn: str) -> Inner:
    derivs = _BINARY[fn]

    def rule(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
        a, b = inputs
        return [d(e, a, b, outputs[0], cts[0]) if n else None for d, n in zip(derivs, need)]

    rule.__name__ = f"vjp_{fn}"
    return rule


for _fn in _BINARY:
    _register(f"prim.{_fn}", _binary_rule(_fn))


@vjp("prim.where")
def _where_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    c = inputs[0]
    (g,) = cts
    zero = _zeros(e, g)
    return [None, _where(e, c, g, zero) if need[1] else None,
            _where(e, c, zero, g) if need[2] else None]


@vjp("prim.cast")
def _cast_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x,), (g,) = inputs, cts
    if not e.dtype(g).is_float:
        return [None]
    return [g if e.dtype(g) == e.dtype(x) else e.prim("prim.cast", g, dtype=e.dtype(x))]


# -- reductions ------------------------------------------------------------------------------
@vjp("prim.reduce_sum")
def _reduce_sum_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [_unreduce(e, cts[0], inputs[0], attrs["axes"])]


@vjp("prim.reduce_prod")
def _reduce_prod_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    # d prod / d x_i is the product of the others: out / x_i where x_i != 0; where x_i == 0,
    # the product of the nonzero elements if x_i is the only zero, else 0
    (x,), (y,), (g,) = inputs, outputs, cts
    axes = attrs["axes"]
    zero, one = _zeros(e, x), _const(e, 1.0, x)
    is_zero = e.prim("prim.eq", x, zero)
    nonzero_prod = e.prim("prim.reduce_prod", _where(e, is_zero, one, x), axes=axes)
    zeros = e.prim("prim.reduce_sum", e.prim("prim.cast", is_zero, dtype=e.dtype(x)), axes=axes)
    only_zero = e.prim("prim.eq", _unreduce(e, zeros, x, axes), one)
    others = _where(e, is_zero,
                    _where(e, only_zero, _unreduce(e, nonzero_prod, x, axes), zero),
                    _div(e, _unreduce(e, y, x, axes), _where(e, is_zero, one, x)))
    return [_mul(e, _unreduce(e, g, x, axes), others)]


@vjp("prim.reduce_max", "prim.reduce_min")
def _reduce_extreme_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    # like torch.amax/amin: the cotangent is split evenly among the elements equal to the result
    (x,), (y,), (g,) = inputs, outputs, cts
    axes = attrs["axes"]
    hit = e.prim("prim.eq", x, _unreduce(e, y, x, axes))
    count = e.prim("prim.reduce_sum", e.prim("prim.cast", hit, dtype=e.dtype(x)), axes=axes)
    share = _unreduce(e, _div(e, g, count), x, axes)
    return [_where(e, hit, share, _zeros(e, x))]


# -- movement --------------------------------------------------------------------------------
@vjp("prim.reshape")
def _reshape_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    return [e.prim("prim.reshape", cts[0], shape=tuple(e.shape(inputs[0])))]


@vjp("prim.permute")
def _permute_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    perm = attrs["perm"]
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return [e.prim("prim.permute", cts[0], perm=tuple(inv))]


@vjp("prim.broadcast")
def _broadcast_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x,), (g,) = inputs, cts
    xs, shape, dims = tuple(e.shape(x)), tuple(e.shape(g)), attrs["dims"]
    new = [j for j in range(len(shape)) if j not in dims]
    stretched = [d for s, d in zip(xs, dims) if s == 1 and shape[d] != 1]
    axes = tuple(sorted(new + stretched))
    out = e.prim("prim.reduce_sum", g, axes=axes) if axes else g
    if tuple(e.shape(out)) == xs:
        return [out]
    if None in xs:  # ? (batch) axes: the size-1 axes come back by a broadcast (linked sizes)
        kept = tuple(i for i, d in enumerate(dims) if d not in axes)
        return [e.prim("prim.broadcast", out, shape=xs, dims=kept)]
    return [e.prim("prim.reshape", out, shape=xs)]


@vjp("prim.slice")
def _slice_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    # scatter the cotangent back: strided axes are interleaved with zeros (reshape to n x 1,
    # pad to n x step, merge, trim), then every axis is padded to the input's size
    (x,), (g,) = inputs, cts
    start, step = attrs["start"], attrs["step"]
    xs, gs = tuple(e.shape(x)), tuple(e.shape(g))
    zero = 0.0 if e.dtype(g).is_float else 0
    lengths = list(gs)
    if any(s > 1 for s in step):
        split: list[int] = []
        high: list[int] = []
        for n, s in zip(gs, step):
            split += [n, 1] if s > 1 else [n]
            high += [0, s - 1] if s > 1 else [0]
        g = e.prim("prim.reshape", g, shape=tuple(split))
        g = e.prim("prim.pad", g, low=(0,) * len(split), high=tuple(high), value=zero)
        merged = tuple(n * s for n, s in zip(gs, step))
        g = e.prim("prim.reshape", g, shape=merged)
        lengths = [min(m, d - a) for m, d, a in zip(merged, xs, start)]
        if tuple(lengths) != merged:
            g = e.prim("prim.slice", g, start=(0,) * len(xs), stop=tuple(lengths),
                       step=(1,) * len(xs))
    high = tuple(d - a - n for d, a, n in zip(xs, start, lengths))
    if any(start) or any(high):
        g = e.prim("prim.pad", g, low=tuple(start), high=high, value=zero)
    return [g]


@vjp("prim.pad")
def _pad_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (x,), (g,) = inputs, cts
    low = attrs["low"]
    stop = tuple(lo + d for lo, d in zip(low, e.shape(x)))
    return [e.prim("prim.slice", g, start=tuple(low), stop=stop, step=(1,) * len(low))]


@vjp("prim.concat")
def _concat_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    (g,) = cts
    axis = attrs["axis"]
    gs = tuple(e.shape(g))
    out, offset = [], 0
    for x, wanted in zip(inputs, need):
        n = e.shape(x)[axis]
        start = tuple(offset if i == axis else 0 for i in range(len(gs)))
        stop = tuple(offset + n if i == axis else d for i, d in enumerate(gs))
        if not wanted:
            out.append(None)
        elif None in gs:  # ? (batch) axes: kept whole by prim.slice_keep
            out.append(e.prim("prim.slice_keep", g, start=start, stop=stop,
                              step=(1,) * len(gs), drop=()))
        else:
            out.append(e.prim("prim.slice", g, start=start, stop=stop, step=(1,) * len(gs)))
        offset += n
    return out


# -- contraction -----------------------------------------------------------------------------
def _contract_back(e: Emitter, g: X, other: X, g_batch: tuple[int, ...],
                   o_batch: tuple[int, ...], g_contract: tuple[int, ...],
                   o_contract: tuple[int, ...], labels_go: list[int], labels_og: list[int],
                   rank: int) -> X:
    """Contract ``g`` with ``other`` into an operand's cotangent of rank ``rank``.

    ``labels_go``/``labels_og`` name, for ``dot(g, other)`` and ``dot(other, g)``, which
    operand axis each result axis is; the order that needs no permute is chosen.
    """
    ident = list(range(rank))
    if labels_og == ident and labels_go != ident:
        return e.prim("prim.dot_general", other, g, lhs_batch=o_batch, rhs_batch=g_batch,
                      lhs_contract=o_contract, rhs_contract=g_contract)
    out = e.prim("prim.dot_general", g, other, lhs_batch=g_batch, rhs_batch=o_batch,
                 lhs_contract=g_contract, rhs_contract=o_contract)
    if labels_go == ident:
        return out
    return e.prim("prim.permute", out, perm=tuple(labels_go.index(p) for p in range(rank)))


@vjp("prim.dot_general")
def _dot_general_vjp(e: Emitter, attrs: dict, inputs, outputs, cts, need) -> list:
    a, b = inputs
    (g,) = cts
    lb, rb = tuple(attrs["lhs_batch"]), tuple(attrs["rhs_batch"])
    lc, rc = tuple(attrs["lhs_contract"]), tuple(attrs["rhs_contract"])
    ra, rk = len(e.shape(a)), len(e.shape(b))
    lfree = tuple(i for i in range(ra) if i not in lb + lc)
    rfree = tuple(j for j in range(rk) if j not in rb + rc)
    nb, nl = len(lb), len(lfree)
    g_batch = tuple(range(nb))
    g_lfree = tuple(range(nb, nb + nl))
    g_rfree = tuple(range(nb + nl, nb + nl + len(rfree)))
    # b's free axes in a's cotangent are b's contracted axes, in b's order, i.e. a's lc axes
    a_from_b = [lc[rc.index(j)] for j in sorted(rc)]
    b_from_a = [rc[lc.index(i)] for i in sorted(lc)]
    ga = gb = None
    if need[0]:
        ga = _contract_back(e, g, b, g_batch, rb, g_rfree, rfree,
                            [*lb, *lfree, *a_from_b], [*lb, *a_from_b, *lfree], ra)
    if need[1]:
        gb = _contract_back(e, g, a, g_batch, lb, g_lfree, lfree,
                            [*rb, *rfree, *b_from_a], [*rb, *b_from_a, *rfree], rk)
    return [ga, gb]


def missing_rules() -> list[str]:
    """Registered prims without a VJP rule (empty when the table is complete)."""
    structural = {"prim.fusion", "prim.yield"}
    return sorted(n for n in OPS if n.startswith("prim.") and n not in VJP
                  and n not in structural)


from lamina.passes import vjp_conv  # noqa: E402, F401, I001 (the conv/pool rules)
from lamina.passes import vjp_index  # noqa: E402, F401  (rules of the index prims)
from lamina.passes import lower_shape  # noqa: E402, F401  (prim.reshape_tail's rules)
