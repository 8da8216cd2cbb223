"""The tensor dialect: one op per user-visible operation, as the frontend records it.

Elementwise ops broadcast like numpy/PyTorch; dtypes must already agree (the
frontend inserts ``tensor.cast`` per PyTorch's promotion rules). Shapes are
inferred when the op is built so errors surface at the user's line.
"""

from __future__ import annotations

from typing import ClassVar

from lamina.ir.core import IRError, Op, register
from lamina.ir.dialects import elementwise as ew
from lamina.ir.dialects.prim import _check_axes, _static_shape, _tensor
from lamina.ir.types import SCALARS, ScalarType, TensorType, i1

# tensor-dialect names of binary functions that differ from the prim names
TENSOR_BINARY_NAMES = {"max": "maximum", "min": "minimum"}


class TensorOp(Op):
    traits = frozenset({"pure"})


def broadcast_shapes(shapes: list[tuple[int | None, ...]], what: str) -> tuple[int | None, ...]:
    """numpy/PyTorch broadcasting of shapes; ``?`` is assumed to match."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise IRError(f"{what}: shapes {[list(s) for s in shapes]} cannot be broadcast "
                          f"(size {sorted(known)[0]} vs {sorted(known)[1]} at dim {i})")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


class TUnary(TensorOp):
    num_operands = 1
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        if not ew.accepts(cls.kind, t.dtype):
            raise IRError(f"{cls.name}: unsupported dtype {t.dtype}")
        return [t.with_dtype(i1) if cls.fn in ew.UNARY_PREDICATES else t]


class TBinary(TensorOp):
    num_operands = 2
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"
    predicate: ClassVar[bool] = False

    @classmethod
    def infer(cls, operand_types, attrs):
        a, b = (_tensor(t, cls.name) for t in operand_types)
        if a.dtype != b.dtype:
            raise IRError(f"{cls.name}: operand dtypes differ: {a.dtype} and {b.dtype}")
        if not ew.accepts(cls.kind, a.dtype):
            raise IRError(f"{cls.name}: unsupported dtype {a.dtype}")
        shape = broadcast_shapes([a.shape, b.shape], cls.name)
        return [TensorType(shape, i1 if cls.predicate else a.dtype)]


def _declare(base: type, fn: str, tname: str, kind: str, **extra) -> type:
    body = {"name": f"tensor.{tname}", "fn": fn, "kind": kind, "__doc__": f"Elementwise {tname}."}
    body.update(extra)
    return register(type("T" + tname.capitalize(), (base,), body))


UNARY_OPS = {f: _declare(TUnary, f, f, k) for f, k in ew.UNARY.items()}
BINARY_OPS = {f: _declare(TBinary, f, TENSOR_BINARY_NAMES.get(f, f), k)
              for f, k in ew.BINARY.items()}
COMPARE_OPS = {f: _declare(TBinary, f, f, "any", predicate=True) for f in ew.COMPARE}


@register
class Relu(TensorOp):
    """max(x, 0)."""

    name = "tensor.relu"
    num_operands = 1

    @classmethod
    def infer(cls, operand_types, attrs):
        return [_tensor(operand_types[0], cls.name)]


@register
class TWhere(TensorOp):
    """``cond ? x : y`` with broadcasting."""

    name = "tensor.where"
    num_operands = 3

    @classmethod
    def infer(cls, operand_types, attrs):
        c, x, y = (_tensor(t, cls.name) for t in operand_types)
        if c.dtype != i1:
            raise IRError(f"{cls.name}: condition must be bool (i1), got {c.dtype}")
        if x.dtype != y.dtype:
            raise IRError(f"{cls.name}: branch dtypes differ: {x.dtype} and {y.dtype}")
        return [TensorType(broadcast_shapes([c.shape, x.shape, y.shape], cls.name), x.dtype)]


@register
class TCast(TensorOp):
    """Convert to ``dtype``."""

    name = "tensor.cast"
    num_operands = 1
    attributes = ("dtype",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        if not isinstance(attrs["dtype"], ScalarType):
            raise IRError(f"{cls.name}: bad dtype {attrs['dtype']!r}")
        return [t.with_dtype(attrs["dtype"])]


@register
class Copy(TensorOp):
    """A fresh contiguous copy (``Tensor.contiguous``/``clone``)."""

    name = "tensor.copy"
    num_operands = 1

    @classmethod
    def infer(cls, operand_types, attrs):
        return [_tensor(operand_types[0], cls.name)]


@register
class Full(TensorOp):
    """A tensor of ``shape`` filled with ``value``."""

    name = "tensor.full"
    num_operands = 0
    attributes = ("value", "shape", "dtype")

    @classmethod
    def infer(cls, operand_types, attrs):
        return [TensorType(_static_shape(attrs["shape"], cls.name), attrs["dtype"])]


class TReduce(TensorOp):
    """Reduce over ``dims`` (all when empty), keeping them as size 1 if ``keepdim``."""

    num_operands = 1
    attributes = ("dims", "keepdim")
    fn: ClassVar[str] = ""

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        dims = reduced_dims(t, attrs["dims"], cls.name)
        if cls.fn == "mean" and not t.dtype.is_float:
            raise IRError(f"{cls.name}: mean needs a floating dtype, got {t.dtype}")
        keep = attrs["keepdim"]
        shape = tuple(1 if i in dims else d for i, d in enumerate(t.shape) if keep or i not in dims)
        dtype = t.dtype
        if cls.fn in ("sum", "prod") and (dtype.is_bool or dtype.is_int):
            dtype = SCALARS["i64"]
        return [TensorType(shape, dtype)]


def reduced_dims(t: TensorType, dims: tuple[int, ...], what: str) -> tuple[int, ...]:
    """The reduced axes (all when ``dims`` is empty), checked and sorted."""
    if not dims:
        return tuple(range(t.rank))
    return tuple(sorted(_check_axes(dims, t.rank, what)))


REDUCE_OPS = {
    f: register(type(f"T{f.capitalize()}", (TReduce,),
                     {"name": f"tensor.{f}", "fn": f, "__doc__": f"Reduction {f}."}))
    for f in ("sum", "mean", "prod", "amax", "amin")
}


class TArgReduce(TensorOp):
    num_operands = 1
    attributes = ("dim", "keepdim")
    fn: ClassVar[str] = ""

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        (dim,) = _check_axes((attrs["dim"],), t.rank, cls.name)
        keep = attrs["keepdim"]
        shape = tuple(1 if i == dim else d for i, d in enumerate(t.shape) if keep or i != dim)
        return [TensorType(shape, SCALARS["i64"])]


ARG_OPS = {
    f: register(type(f"T{f.capitalize()}", (TArgReduce,),
                     {"name": f"tensor.{f}", "fn": f[3:], "__doc__": f"{f} along dim."}))
    for f in ("argmax", "argmin")
}


@register
class Matmul(TensorOp):
    """``torch.matmul``: 1-d and n-d operands, batch dims broadcast."""

    name = "tensor.matmul"
    num_operands = 2

    @classmethod
    def infer(cls, operand_types, attrs):
        a, b = (_tensor(t, cls.name) for t in operand_types)
        if a.dtype != b.dtype:
            raise IRError(f"{cls.name}: operand dtypes differ: {a.dtype} and {b.dtype}")
        if a.rank == 0 or b.rank == 0:
            raise IRError(f"{cls.name}: both operands need at least 1 dimension, got "
                          f"{list(a.shape)} and {list(b.shape)}")
        ash = (1,) + a.shape if a.rank == 1 else a.shape
        bsh = b.shape + (1,) if b.rank == 1 else b.shape
        k1, k2 = ash[-1], bsh[-2]
        if k1 is not None and k2 is not None and k1 != k2:
            raise IRError(f"{cls.name}: shapes {list(a.shape)} and {list(b.shape)} cannot be "
                          f"multiplied ({k1} vs {k2})")
        batch = broadcast_shapes([ash[:-2], bsh[:-2]], cls.name)
        shape = batch + ((ash[-2],) if a.rank > 1 else ()) + ((bsh[-1],) if b.rank > 1 else ())
        return [TensorType(shape, a.dtype)]


class _Softmax(TensorOp):
    num_operands = 1
    attributes = ("dim",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        _check_axes((attrs["dim"],), t.rank, cls.name)
        if not t.dtype.is_float:
            raise IRError(f"{cls.name}: needs a floating dtype, got {t.dtype}")
        return [t]


@register
class Softmax(_Softmax):
    """exp(x - max) / sum(exp(x - max)) along ``dim``."""

    name = "tensor.softmax"


@register
class LogSoftmax(_Softmax):
    """x - max - log(sum(exp(x - max))) along ``dim``."""

    name = "tensor.log_softmax"


@register
class TReshape(TensorOp):
    name = "tensor.reshape"
    num_operands = 1
    attributes = ("shape",)

    @classmethod
    def infer(cls, operand_types, attrs):
        from lamina.ir.dialects.prim import Reshape

        return Reshape.infer(operand_types, attrs)


@register
class TPermute(TensorOp):
    name = "tensor.permute"
    num_operands = 1
    attributes = ("perm",)

    @classmethod
    def infer(cls, operand_types, attrs):
        from lamina.ir.dialects.prim import Permute

        return Permute.infer(operand_types, attrs)


@register
class Expand(TensorOp):
    """Broadcast to ``shape`` with numpy's right-aligned rules."""

    name = "tensor.expand"
    num_operands = 1
    attributes = ("shape",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        shape = _static_shape(attrs["shape"], cls.name)
        if broadcast_shapes([t.shape, shape], cls.name) != shape:
            raise IRError(f"{cls.name}: cannot expand {list(t.shape)} to {list(shape)}")
        return [t.with_shape(shape)]


@register
class TSlice(TensorOp):
    name = "tensor.slice"
    num_operands = 1
    attributes = ("start", "stop", "step")

    @classmethod
    def infer(cls, operand_types, attrs):
        from lamina.ir.dialects.prim import Slice

        return Slice.infer(operand_types, attrs)


@register
class TConcat(TensorOp):
    name = "tensor.cat"
    attributes = ("dim",)

    @classmethod
    def infer(cls, operand_types, attrs):
        from lamina.ir.dialects.prim import Concat

        return Concat.infer(operand_types, {"axis": attrs["dim"]})
