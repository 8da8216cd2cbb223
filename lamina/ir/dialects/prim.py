"""The prim dialect: the small closed set of primitives every tensor op decomposes into.

Primitives take tensors of equal shapes (broadcasting is explicit through
``prim.broadcast``) and equal dtypes (casts are explicit through ``prim.cast``).
Each declares its shape/dtype rule (``infer``) and has a slot for its VJP rule
(``vjp``), filled by the autodiff layer.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from lamina.ir.core import IRError, Op, register
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import SCALARS, ScalarType, TensorType, i1


class Prim(Op):
    """Base of all primitives."""

    traits = frozenset({"pure"})
    # Filled by the autodiff layer: vjp(op, cotangents, builder) -> input cotangents.
    vjp: ClassVar[Callable[..., Any] | None] = None


def _tensor(t: Any, what: str) -> TensorType:
    if not isinstance(t, TensorType):
        raise IRError(f"{what} must be a tensor, got {t}")
    return t


def merge_dims(shapes: list[tuple[int | None, ...]], what: str) -> tuple[int | None, ...]:
    """The common shape of equal-shaped operands; ``?`` matches any size."""
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise IRError(f"{what}: operand ranks differ: {[list(s) for s in shapes]}")
    out: list[int | None] = []
    for dims in zip(*shapes):
        known = {d for d in dims if d is not None}
        if len(known) > 1:
            raise IRError(f"{what}: operand shapes differ: {[list(s) for s in shapes]}")
        out.append(known.pop() if known else None)
    return tuple(out)


def _check_axes(axes: Any, rank: int, what: str, unique: bool = True) -> tuple[int, ...]:
    if not isinstance(axes, tuple) or not all(isinstance(a, int) for a in axes):
        raise IRError(f"{what}: axes must be a list of ints, got {axes!r}")
    if any(a < 0 or a >= rank for a in axes):
        raise IRError(f"{what}: axes {list(axes)} out of range for rank {rank}")
    if unique and len(set(axes)) != len(axes):
        raise IRError(f"{what}: repeated axes {list(axes)}")
    return axes


# -- elementwise ------------------------------------------------------------
class Unary(Prim):
    num_operands = 1
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        if not ew.accepts(cls.kind, t.dtype):
            raise IRError(f"{cls.name}: unsupported dtype {t.dtype}")
        return [t.with_dtype(i1) if cls.fn in ew.UNARY_PREDICATES else t]


class Binary(Prim):
    num_operands = 2
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"

    @classmethod
    def infer(cls, operand_types, attrs):
        a, b = (_tensor(t, cls.name) for t in operand_types)
        if a.dtype != b.dtype:
            raise IRError(f"{cls.name}: operand dtypes differ: {a.dtype} and {b.dtype}")
        if not ew.accepts(cls.kind, a.dtype):
            raise IRError(f"{cls.name}: unsupported dtype {a.dtype}")
        return [TensorType(merge_dims([a.shape, b.shape], cls.name), cls.result_dtype(a.dtype))]

    @staticmethod
    def result_dtype(dtype: ScalarType) -> ScalarType:
        return dtype


class Compare(Binary):
    @staticmethod
    def result_dtype(dtype: ScalarType) -> ScalarType:
        return i1


def _declare(base: type, fn: str, kind: str, traits: frozenset[str]) -> type:
    cls = type(fn.capitalize(), (base,), {"name": f"prim.{fn}", "fn": fn, "kind": kind,
                                         "traits": traits, "__doc__": f"Elementwise {fn}."})
    return register(cls)


ELEMENTWISE = frozenset({"pure", "elementwise"})
UNARY_OPS = {f: _declare(Unary, f, k, ELEMENTWISE) for f, k in ew.UNARY.items()}
BINARY_OPS = {
    f: _declare(Binary, f, k, ELEMENTWISE | ({"commutative"} if f in ew.COMMUTATIVE else set()))
    for f, k in ew.BINARY.items()
}
COMPARE_OPS = {f: _declare(Compare, f, "any", ELEMENTWISE) for f in ew.COMPARE}


@register
class Where(Prim):
    """``cond ? x : y`` elementwise."""

    name = "prim.where"
    num_operands = 3
    traits = ELEMENTWISE

    @classmethod
    def infer(cls, operand_types, attrs):
        c, x, y = (_tensor(t, cls.name) for t in operand_types)
        if c.dtype != i1:
            raise IRError(f"{cls.name}: condition must be i1, got {c.dtype}")
        if x.dtype != y.dtype:
            raise IRError(f"{cls.name}: branch dtypes differ: {x.dtype} and {y.dtype}")
        return [TensorType(merge_dims([c.shape, x.shape, y.shape], cls.name), x.dtype)]


@register
class Cast(Prim):
    """Convert elements to ``dtype`` (floats to ints truncate toward zero)."""

    name = "prim.cast"
    num_operands = 1
    attributes = ("dtype",)
    traits = ELEMENTWISE

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        dtype = attrs["dtype"]
        if not isinstance(dtype, ScalarType) or dtype.name == "index":
            raise IRError(f"{cls.name}: dtype must be an element type, got {dtype!r}")
        return [t.with_dtype(dtype)]


# -- sources ------------------------------------------------------------------
def _static_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise IRError(f"{what}: shape must be a list of sizes >= 0, got {shape!r}")
    return shape


@register
class Const(Prim):
    """A tensor with every element equal to ``value``."""

    name = "prim.const"
    num_operands = 0
    attributes = ("value", "shape", "dtype")

    @classmethod
    def infer(cls, operand_types, attrs):
        dtype = attrs["dtype"]
        if not isinstance(dtype, ScalarType):
            raise IRError(f"{cls.name}: bad dtype {dtype!r}")
        if not isinstance(attrs["value"], (int, float, bool)):
            raise IRError(f"{cls.name}: value must be a number, got {attrs['value']!r}")
        return [TensorType(_static_shape(attrs["shape"], cls.name), dtype)]


@register
class Iota(Prim):
    """Indices along ``dim``: out[i0, ..., in] = i_dim."""

    name = "prim.iota"
    num_operands = 0
    attributes = ("shape", "dim", "dtype")

    @classmethod
    def infer(cls, operand_types, attrs):
        shape = _static_shape(attrs["shape"], cls.name)
        _check_axes((attrs["dim"],), len(shape), cls.name)
        return [TensorType(shape, attrs["dtype"])]


# -- reductions -----------------------------------------------------------------
class Reduce(Prim):
    """Reduce over ``axes``; the reduced axes are removed from the shape."""

    num_operands = 1
    attributes = ("axes",)
    traits = frozenset({"pure", "reduction"})
    fn: ClassVar[str] = ""

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        axes = _check_axes(attrs["axes"], t.rank, cls.name)
        if cls.fn in ("sum", "prod") and t.dtype.is_bool:
            raise IRError(f"{cls.name}: cannot reduce i1; cast first")
        return [t.with_shape(tuple(d for i, d in enumerate(t.shape) if i not in axes))]


REDUCE_FNS = ("sum", "prod", "max", "min")
REDUCE_OPS = {
    f: register(type(f"Reduce{f.capitalize()}", (Reduce,),
                     {"name": f"prim.reduce_{f}", "fn": f, "__doc__": f"Reduce by {f}."}))
    for f in REDUCE_FNS
}


class ArgReduce(Prim):
    """Index (i64) of the first max/min along ``axis``; the axis is removed."""

    num_operands = 1
    attributes = ("axis",)
    traits = frozenset({"pure", "reduction"})
    fn: ClassVar[str] = ""

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        (axis,) = _check_axes((attrs["axis"],), t.rank, cls.name)
        return [TensorType(tuple(d for i, d in enumerate(t.shape) if i != axis), SCALARS["i64"])]


ARG_OPS = {
    f: register(type(f"Arg{f}", (ArgReduce,),
                     {"name": f"prim.arg{f}", "fn": f, "__doc__": f"Index of the {f}."}))
    for f in ("max", "min")
}


# -- movement -------------------------------------------------------------------
@register
class Reshape(Prim):
    """Same elements in row-major order, new static shape."""

    name = "prim.reshape"
    num_operands = 1
    attributes = ("shape",)
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        shape = _static_shape(attrs["shape"], cls.name)
        if t.is_static:
            n_in = 1
            for d in t.shape:
                n_in *= d
            n_out = 1
            for d in shape:
                n_out *= d
            if n_in != n_out:
                raise IRError(f"{cls.name}: cannot reshape {list(t.shape)} ({n_in} elements) "
                              f"to {list(shape)} ({n_out} elements)")
        return [t.with_shape(shape)]


@register
class Permute(Prim):
    """Reorder axes: out.shape[i] = in.shape[perm[i]]."""

    name = "prim.permute"
    num_operands = 1
    attributes = ("perm",)
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        perm = _check_axes(attrs["perm"], t.rank, cls.name)
        if len(perm) != t.rank:
            raise IRError(f"{cls.name}: perm {list(perm)} is not a permutation of rank {t.rank}")
        return [t.with_shape(tuple(t.shape[p] for p in perm))]


@register
class Broadcast(Prim):
    """Broadcast to ``shape``: operand axis i becomes result axis dims[i] (size 1 or equal)."""

    name = "prim.broadcast"
    num_operands = 1
    attributes = ("shape", "dims")
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        shape, dims = attrs["shape"], attrs["dims"]
        # ``?`` (None) sizes are allowed: eager graphs broadcast scalars to run-time shapes
        if not isinstance(shape, tuple) or not all(
                d is None or (isinstance(d, int) and d >= 0) for d in shape):
            raise IRError(f"{cls.name}: shape must be a list of sizes >= 0 or ?, got {shape!r}")
        _check_axes(dims, len(shape), cls.name)
        if len(dims) != t.rank or list(dims) != sorted(dims):
            raise IRError(f"{cls.name}: dims {list(dims)} must map each of the {t.rank} operand "
                          "axes, in increasing order")
        for src, dst in zip(t.shape, dims):
            if src not in (1, None) and shape[dst] is not None and src != shape[dst]:
                raise IRError(f"{cls.name}: cannot broadcast {list(t.shape)} to {list(shape)}")
        return [t.with_shape(shape)]


@register
class Slice(Prim):
    """Strided slice: out[i] = in[start + i * step] per axis (step >= 1)."""

    name = "prim.slice"
    num_operands = 1
    attributes = ("start", "stop", "step")
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
        if not (len(start) == len(stop) == len(step) == t.rank):
            raise IRError(f"{cls.name}: start/stop/step need {t.rank} entries each")
        out = []
        for d, a, b, s in zip(t.shape, start, stop, step):
            if s < 1 or a < 0 or b < a or (d is not None and b > d):
                raise IRError(f"{cls.name}: bad slice {a}:{b}:{s} of size {d}")
            out.append((b - a + s - 1) // s)
        return [t.with_shape(tuple(out))]


@register
class Pad(Prim):
    """Pad with ``value``: ``low[i]`` before and ``high[i]`` after each axis (>= 0)."""

    name = "prim.pad"
    num_operands = 1
    attributes = ("low", "high", "value")
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        low, high = attrs["low"], attrs["high"]
        if len(low) != t.rank or len(high) != t.rank or min(low + high, default=0) < 0:
            raise IRError(f"{cls.name}: low/high need {t.rank} entries >= 0")
        return [t.with_shape(tuple(None if d is None else d + lo + hi
                                   for d, lo, hi in zip(t.shape, low, high)))]


@register
class Concat(Prim):
    """Join tensors along ``axis``."""

    name = "prim.concat"
    attributes = ("axis",)
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types, attrs):
        ts = [_tensor(t, cls.name) for t in operand_types]
        if not ts:
            raise IRError(f"{cls.name}: needs at least one operand")
        axis = attrs["axis"]
        _check_axes((axis,), ts[0].rank, cls.name)
        if len({t.dtype for t in ts}) != 1:
            raise IRError(f"{cls.name}: operand dtypes differ")
        others = [t.shape[:axis] + t.shape[axis + 1:] for t in ts]
        rest = merge_dims(others, cls.name)
        sizes = [t.shape[axis] for t in ts]
        total = None if None in sizes else sum(sizes)
        return [ts[0].with_shape(rest[:axis] + (total,) + rest[axis:])]


# -- contraction ----------------------------------------------------------------
@register
class DotGeneral(Prim):
    """Contraction: result axes are batch, then lhs free, then rhs free axes."""

    name = "prim.dot_general"
    num_operands = 2
    attributes = ("lhs_batch", "rhs_batch", "lhs_contract", "rhs_contract")
    traits = frozenset({"pure", "contraction"})

    @classmethod
    def infer(cls, operand_types, attrs):
        a, b = (_tensor(t, cls.name) for t in operand_types)
        if a.dtype != b.dtype:
            raise IRError(f"{cls.name}: operand dtypes differ: {a.dtype} and {b.dtype}")
        lb, rb = attrs["lhs_batch"], attrs["rhs_batch"]
        lc, rc = attrs["lhs_contract"], attrs["rhs_contract"]
        _check_axes(lb + lc, a.rank, cls.name)
        _check_axes(rb + rc, b.rank, cls.name)
        if len(lb) != len(rb) or len(lc) != len(rc):
            raise IRError(f"{cls.name}: batch/contract axis counts differ")
        for x, y in list(zip(lb, rb)) + list(zip(lc, rc)):
            merge_dims([(a.shape[x],), (b.shape[y],)],
                       f"{cls.name} of {list(a.shape)} and {list(b.shape)}")
        batch = merge_dims([tuple(a.shape[i] for i in lb), tuple(b.shape[i] for i in rb)],
                           cls.name)
        lfree = tuple(d for i, d in enumerate(a.shape) if i not in lb + lc)
        rfree = tuple(d for i, d in enumerate(b.shape) if i not in rb + rc)
        return [TensorType(batch + lfree + rfree, a.dtype)]


# -- fusion groups ----------------------------------------------------------------
@register
class Fusion(Op):
    """A group of primitives that becomes one kernel.

    Operands are the group's inputs, bound to the region's arguments in order;
    the region ends with ``prim.yield`` of the group's results. ``name`` is the
    kernel's name (it carries the user's source line).
    """

    name = "prim.fusion"
    attributes = ("name",)
    num_regions = 1
    traits = frozenset({"pure"})

    def verify_extra(self) -> None:
        body = self.regions[0]
        if [a.type for a in body.args] != [v.type for v in self.operands]:
            raise self.error("region arguments must have the operand types")
        last = body.ops[-1] if body.ops else None
        if not isinstance(last, FusionYield):
            raise self.error("region must end with prim.yield")
        if [v.type for v in last.operands] != [r.type for r in self.results]:
            raise self.error("prim.yield types must match the results")


@register
class FusionYield(Op):
    """The results of a fusion group."""

    name = "prim.yield"
    traits = frozenset({"terminator"})

    @classmethod
    def infer(cls, operand_types, attrs):
        return []
