"""``decompose``: every tensor-dialect op becomes primitives (tensor -> prim).

One small rule per tensor op in the ``RULES`` table, the way JAX keys its
lowerings by primitive: ``rule(builder, op, operands) -> Value``, where
``operands`` are the already decomposed prim values and the builder carries the
op's source location. Ops of other dialects pass through unchanged, so the pass
is idempotent.

Choices a caller may need to know:

- Implicit broadcasting becomes explicit ``prim.broadcast`` (rank extension and
  size-1 expansion), only where a shape really changes. A ``?`` size is assumed
  to equal the size it meets, unless a static 1 meets it (then it is expanded).
- ``tensor.mean`` needs static reduced sizes (it divides by their product); the
  eager frontend computes a mean as a sum and a scalar multiply instead.
- ``tensor.copy`` is the value itself (graph values are immutable and every
  fusion group writes a fresh buffer). A func result that would so become a
  func argument (also ``expand``/``cast`` to the same type, ...), or a copy of a
  value returned too, is a copy group instead (a ``prim.fusion`` yielding its
  own argument): results stay fresh buffers the caller may write.
- ``keepdim`` re-inserts the reduced axes with ``prim.reshape`` when the result
  shape is static and with a ``prim.broadcast`` to size-1 axes otherwise (its
  ``?`` axes map ``?`` operand axes of the same size; the eager frontend never
  needs this, it builds ``keepdim=False`` and views the result).
- ``tensor.matmul`` with a 1-d or 2-d rhs contracts without batch axes (the lhs
  batch axes are free axes: one big GEMM, no broadcast); otherwise both sides are
  broadcast to the result's batch shape and contracted batch-wise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lamina.ir import Block, Builder, Graph, IRError, Module, Op, TensorType, Value
from lamina.ir.core import Return
from lamina.ir.dialects import tensor as T
from lamina.ir.types import ScalarType
from lamina.passes.manager import Pass, register_pass
from lamina.passes.rewrite import clone_op, copy_group, new_graph_like

Rule = Callable[[Builder, Op, list[Value]], Value]
RULES: dict[str, Rule] = {}

Shape = tuple[int | None, ...]


def rule(*names: str) -> Callable[[Rule], Rule]:
    """Register ``fn`` as the decomposition of the tensor ops ``names``."""

    def deco(fn: Rule) -> Rule:
        for n in names:
            if n in RULES:
                raise ValueError(f"decompose: two rules for {n}")
            RULES[n] = fn
        return fn

    return deco


# -- helpers ------------------------------------------------------------------------
def _type(v: Value) -> TensorType:
    assert isinstance(v.type, TensorType)
    return v.type


def scalar_value(value: int | float | bool, dtype: ScalarType) -> int | float | bool:
    """``value`` as the Python number type that matches ``dtype`` (so equal consts print equal)."""
    if dtype.is_float:
        return float(value)
    if dtype.is_bool:
        return bool(value)
    return int(value)


def splat(b: Builder, value: int | float | bool, dtype: ScalarType, shape: Shape) -> Value:
    """A tensor of ``shape`` filled with ``value``; a ``?`` shape broadcasts a 0-d const."""
    v = scalar_value(value, dtype)
    if all(d is not None for d in shape):
        return b("prim.const", value=v, shape=tuple(shape), dtype=dtype)
    c = b("prim.const", value=v, shape=(), dtype=dtype)
    return b("prim.broadcast", c, shape=tuple(shape), dims=())


def broadcast_to(b: Builder, v: Value, shape: Shape) -> Value:
    """Numpy-style implicit broadcasting made explicit; ``v`` itself if no size changes."""
    src = _type(v).shape
    off = len(shape) - len(src)
    if off < 0:
        raise IRError(f"cannot broadcast {list(src)} to {list(shape)}")
    if off == 0 and not any(s == 1 and d != 1 for s, d in zip(src, shape)):
        return v
    return b("prim.broadcast", v, shape=tuple(shape), dims=tuple(range(off, len(shape))))


def insert_axes(b: Builder, v: Value, shape: Shape, axes: tuple[int, ...]) -> Value:
    """``v`` with size-1 axes inserted at ``axes`` of the result ``shape`` (keepdim)."""
    if all(d is not None for d in shape):
        return b("prim.reshape", v, shape=tuple(shape))
    kept = tuple(i for i in range(len(shape)) if i not in axes)
    return b("prim.broadcast", v, shape=tuple(shape), dims=kept)


def _numel(shape: Shape) -> int | None:
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def _fn(op: Op) -> str:
    return type(op).fn  # type: ignore[attr-defined]


# -- elementwise ------------------------------------------------------------------------
@rule(*(c.name for c in T.UNARY_OPS.values()))
def _unary(b: Builder, op: Op, args: list[Value]) -> Value:
    return b(f"prim.{_fn(op)}", args[0])


@rule(*(c.name for c in (*T.BINARY_OPS.values(), *T.COMPARE_OPS.values())))
def _binary(b: Builder, op: Op, args: list[Value]) -> Value:
    shape = op.result.type.shape
    x, y = (broadcast_to(b, a, shape) for a in args)
    return b(f"prim.{_fn(op)}", x, y)


@rule("tensor.where")
def _where(b: Builder, op: Op, args: list[Value]) -> Value:
    shape = op.result.type.shape
    return b("prim.where", *(broadcast_to(b, a, shape) for a in args))


@rule("tensor.relu")
def _relu(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    t = _type(x)
    if not (t.dtype.is_float or t.dtype.is_int):
        raise IRError(f"{op.where()}: relu needs a numeric dtype, got {t.dtype} "
                      f"(shape {list(t.shape)})")
    # where(x <= 0, 0, x) rather than max(x, 0): NaN passes through and the
    # derivative at exactly 0 is 0, both as in PyTorch
    zero = splat(b, 0, t.dtype, t.shape)
    return b("prim.where", b("prim.le", x, zero), zero, x)


@rule("tensor.cast")
def _cast(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    dtype = op.attrs["dtype"]
    return x if _type(x).dtype == dtype else b("prim.cast", x, dtype=dtype)


@rule("tensor.copy")
def _copy(b: Builder, op: Op, args: list[Value]) -> Value:
    # see the module docstring: the return handling adds a copy group where needed
    return args[0]


@rule("tensor.full")
def _full(b: Builder, op: Op, args: list[Value]) -> Value:
    a = op.attrs
    value, dtype = a["value"], a["dtype"]
    if not dtype.is_float and isinstance(value, float) and not math.isfinite(value):
        raise IRError(f"{op.where()}: cannot fill a {dtype} tensor of shape {list(a['shape'])} "
                      f"with {value}")
    return b("prim.const", value=scalar_value(value, dtype), shape=a["shape"], dtype=dtype)


# -- reductions ------------------------------------------------------------------------
_REDUCE_PRIM = {"sum": "sum", "mean": "sum", "prod": "prod", "amax": "max", "amin": "min"}


def _check_nonempty(op: Op, t: TensorType, axes: tuple[int, ...]) -> None:
    for a in axes:
        if t.shape[a] == 0:
            raise IRError(f"{op.where()}: cannot reduce over dim {a} of size 0 "
                          f"(shape {list(t.shape)}, dtype {t.dtype}): {op.name} has no identity")


@rule(*(c.name for c in T.REDUCE_OPS.values()))
def _reduce(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    t = _type(x)
    fn = _fn(op)
    axes = T.reduced_dims(t, op.attrs["dims"], op.name)
    out = op.result.type
    if fn in ("amax", "amin"):
        _check_nonempty(op, t, axes)
    if t.dtype != out.dtype:  # sum/prod of ints and bools accumulate in i64
        x = b("prim.cast", x, dtype=out.dtype)
    r = b(f"prim.reduce_{_REDUCE_PRIM[fn]}", x, axes=axes) if axes else x
    if fn == "mean" and axes:
        n = _numel(tuple(t.shape[a] for a in axes))
        if n is None:
            raise IRError(f"{op.where()}: mean over dims {list(axes)} of shape {list(t.shape)} "
                          "needs static sizes in the prim dialect (it divides by their product)")
        r = b("prim.div", r, splat(b, n, out.dtype, _type(r).shape))
    if op.attrs["keepdim"] and axes:
        r = insert_axes(b, r, out.shape, axes)
    return r


@rule("tensor.argmax", "tensor.argmin")
def _argreduce(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    axis = op.attrs["dim"]
    _check_nonempty(op, _type(x), (axis,))
    r = b(f"prim.arg{_fn(op)}", x, axis=axis)
    if op.attrs["keepdim"]:
        r = insert_axes(b, r, op.result.type.shape, (axis,))
    return r


# -- contraction ------------------------------------------------------------------------
@rule("tensor.matmul")
def _matmul(b: Builder, op: Op, args: list[Value]) -> Value:
    x, y = args
    xr, yr = _type(x).rank, _type(y).rank

    def dot(lhs: Value, rhs: Value, lc: int, rc: int, nbatch: int = 0) -> Value:
        batch = tuple(range(nbatch))
        return b("prim.dot_general", lhs, rhs, lhs_batch=batch, rhs_batch=batch,
                 lhs_contract=(lc,), rhs_contract=(rc,))

    if yr <= 2:  # (..., m, k) @ (k,) or (k, n): lhs batch axes are free axes, no broadcast
        return dot(x, y, xr - 1, 0)
    if xr == 1:  # (k,) @ (..., k, n): the batch axes come out as rhs free axes, in order
        return dot(x, y, 0, yr - 2)
    shape = op.result.type.shape
    nb = len(shape) - 2
    # broadcast the batch axes of both sides to the result's, then contract batch-wise
    x = broadcast_to(b, x, shape[:-2] + _type(x).shape[-2:])
    y = broadcast_to(b, y, shape[:-2] + _type(y).shape[-2:])
    return dot(x, y, nb + 1, nb, nb)


# -- softmax ------------------------------------------------------------------------------
def _shifted(b: Builder, x: Value, dim: int) -> tuple[Value, Value, list[int]]:
    """(x - max(x), sum(exp(x - max(x))), the kept axes) along ``dim``: numerically stable."""
    t = _type(x)
    kept = [i for i in range(t.rank) if i != dim]
    m = b("prim.reduce_max", x, axes=(dim,))
    z = b("prim.sub", x, b("prim.broadcast", m, shape=t.shape, dims=tuple(kept)))
    s = b("prim.reduce_sum", b("prim.exp", z), axes=(dim,))
    return z, s, kept


@rule("tensor.softmax", "tensor.log_softmax")
def _softmax(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    t = _type(x)
    if 0 in t.shape:  # nothing to compute, and max over an empty axis has no identity
        return x
    z, s, kept = _shifted(b, x, op.attrs["dim"])
    if op.name == "tensor.softmax":
        den = b("prim.broadcast", s, shape=t.shape, dims=tuple(kept))
        return b("prim.div", b("prim.exp", z), den)
    logs = b("prim.broadcast", b("prim.log", s), shape=t.shape, dims=tuple(kept))
    return b("prim.sub", z, logs)


# -- movement -------------------------------------------------------------------------------
@rule("tensor.reshape")
def _reshape(b: Builder, op: Op, args: list[Value]) -> Value:
    return b("prim.reshape", args[0], shape=op.attrs["shape"])


@rule("tensor.permute")
def _permute(b: Builder, op: Op, args: list[Value]) -> Value:
    return b("prim.permute", args[0], perm=op.attrs["perm"])


@rule("tensor.expand")
def _expand(b: Builder, op: Op, args: list[Value]) -> Value:
    (x,) = args
    shape = op.attrs["shape"]
    if _type(x).shape == tuple(shape):
        return x
    off = len(shape) - _type(x).rank
    return b("prim.broadcast", x, shape=tuple(shape), dims=tuple(range(off, len(shape))))


@rule("tensor.slice")
def _slice(b: Builder, op: Op, args: list[Value]) -> Value:
    a = op.attrs
    return b("prim.slice", args[0], start=a["start"], stop=a["stop"], step=a["step"])


@rule("tensor.cat")
def _cat(b: Builder, op: Op, args: list[Value]) -> Value:
    return b("prim.concat", *args, axis=op.attrs["dim"])


# -- the pass -------------------------------------------------------------------------------
def decompose_graph(g: Graph) -> Graph:
    """A new graph computing what ``g`` computes, with every tensor op decomposed."""
    ng, vmap = new_graph_like(g)
    for op in g.ops:
        if isinstance(op, Return):
            ng.body.append(Return(_fresh_results(ng, op, vmap), [], loc=op.loc))
            continue
        fn = RULES.get(op.name)
        if fn is None:
            if op.name.startswith("tensor."):
                raise IRError(f"{op.where()}: decompose has no rule for {op.name}")
            clone_op(op, vmap, ng.body)
            continue
        out = fn(Builder(ng.body, op.loc), op, [vmap[v] for v in op.operands])
        if out.type != op.result.type:
            raise IRError(f"{op.where()}: decomposition gives {out.type}, expected "
                          f"{op.result.type} (operands "
                          f"{', '.join(str(v.type) for v in op.operands)})")
        vmap[op.result] = out
    return ng


def _fresh_results(ng: Graph, ret: Op, vmap: dict[Value, Value]) -> list[Value]:
    """The returned values; an op's result that decomposed to a func argument (a copy, a
    cast to the same dtype, ...), or a copy of a value also returned, becomes a copy group,
    so results stay fresh buffers the caller may write."""
    outs = [vmap[v] for v in ret.operands]
    for i, (old, v) in enumerate(zip(ret.operands, outs)):
        src = old.owner
        if not isinstance(src, Op):
            continue
        shared = src.name == "tensor.copy" and sum(o is v for o in outs) > 1
        if isinstance(v.owner, Block) or shared:
            outs[i] = copy_group(Builder(ng.body, src.loc), v)
    return outs


@register_pass
@dataclass(frozen=True)
class Decompose(Pass):
    """tensor -> prim: every tensor op becomes primitives (see the module docstring)."""

    name = "decompose"

    def run(self, module: Module) -> Module:
        return Module([decompose_graph(g) if g.kind == "func" else g for g in module.graphs])


from lamina.passes import decompose_conv  # noqa: E402, F401 (the conv/pool rules)
