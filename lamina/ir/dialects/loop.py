"""The loop dialect: kernels over buffers with explicit loops, loads, stores and scalar math.

A ``kernel`` graph takes memref arguments and returns nothing; its body holds
``loop.for`` (sequential, may carry accumulators through ``loop.yield``) and
``loop.parallel`` (iterations independent, split over threads by the runtime)
nests. Scalar math reuses the elementwise table of the prim dialect and works
on scalars and on ``vector<NxT>`` values alike. A program ``func`` at this
stage allocates buffers with ``loop.alloc`` and runs kernels with ``loop.call``.
"""

from __future__ import annotations

from typing import ClassVar

from lamina.ir.core import IRError, Op, register
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import (
    MemRefType,
    ScalarType,
    Type,
    VectorType,
    element_type,
    i1,
    index,
)


def _scalar_like(t: Type, what: str) -> ScalarType | VectorType:
    if not isinstance(t, (ScalarType, VectorType)):
        raise IRError(f"{what}: operand must be a scalar or vector, got {t}")
    return t


def _with_elem(t: ScalarType | VectorType, dtype: ScalarType) -> ScalarType | VectorType:
    return VectorType(t.width, dtype) if isinstance(t, VectorType) else dtype


def _memref(t: Type, what: str) -> MemRefType:
    if not isinstance(t, MemRefType):
        raise IRError(f"{what}: expected a memref, got {t}")
    return t


def _indices(types: list[Type], rank: int, what: str) -> None:
    if len(types) != rank:
        raise IRError(f"{what}: {rank}-d memref needs {rank} indices, got {len(types)}")
    if any(t != index for t in types):
        raise IRError(f"{what}: indices must be of type index")


class LoopOp(Op):
    traits = frozenset({"pure"})


class SUnary(LoopOp):
    num_operands = 1
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _scalar_like(operand_types[0], cls.name)
        if not ew.accepts(cls.kind, element_type(t)):
            raise IRError(f"{cls.name}: unsupported type {t}")
        return [_with_elem(t, i1) if cls.fn in ew.UNARY_PREDICATES else t]


class SBinary(LoopOp):
    num_operands = 2
    fn: ClassVar[str] = ""
    kind: ClassVar[str] = "any"
    predicate: ClassVar[bool] = False

    @classmethod
    def infer(cls, operand_types, attrs):
        a, b = (_scalar_like(t, cls.name) for t in operand_types)
        if a != b:
            raise IRError(f"{cls.name}: operand types differ: {a} and {b}")
        if not ew.accepts(cls.kind, element_type(a)):
            raise IRError(f"{cls.name}: unsupported type {a}")
        return [_with_elem(a, i1) if cls.predicate else a]


def _declare(base: type, fn: str, kind: str, **extra) -> type:
    body = {"name": f"loop.{fn}", "fn": fn, "kind": kind, "__doc__": f"Scalar {fn}."}
    body.update(extra)
    return register(type("L" + fn.capitalize(), (base,), body))


UNARY_OPS = {f: _declare(SUnary, f, k) for f, k in ew.UNARY.items()}
BINARY_OPS = {f: _declare(SBinary, f, k) for f, k in ew.BINARY.items()}
COMPARE_OPS = {f: _declare(SBinary, f, "any", predicate=True) for f in ew.COMPARE}


@register
class Select(LoopOp):
    """``cond ? a : b`` on scalars or vectors."""

    name = "loop.select"
    num_operands = 3

    @classmethod
    def infer(cls, operand_types, attrs):
        c, a, b = (_scalar_like(t, cls.name) for t in operand_types)
        if element_type(c) != i1 or a != b or _with_elem(a, i1) != c:
            raise IRError(f"{cls.name}: expected (i1, T, T) of one width, got {c}, {a}, {b}")
        return [a]


@register
class SCast(LoopOp):
    """Convert a scalar or vector to ``dtype`` (index counts as an integer)."""

    name = "loop.cast"
    num_operands = 1
    attributes = ("dtype",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _scalar_like(operand_types[0], cls.name)
        return [_with_elem(t, attrs["dtype"])]


@register
class SConst(LoopOp):
    """A scalar constant of the result type."""

    name = "loop.const"
    num_operands = 0
    attributes = ("value",)

    def verify_extra(self) -> None:
        v = self.attrs["value"]
        if len(self.results) != 1 or not isinstance(self.results[0].type, ScalarType):
            raise self.error("needs one scalar result type")
        if not isinstance(v, (int, float, bool)):
            raise self.error(f"value must be a number, got {v!r}")


@register
class Splat(LoopOp):
    """A vector with every lane equal to a scalar."""

    name = "loop.splat"
    num_operands = 1
    attributes = ("width",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = operand_types[0]
        if not isinstance(t, ScalarType):
            raise IRError(f"{cls.name}: operand must be a scalar, got {t}")
        return [VectorType(attrs["width"], t)]


@register
class VReduce(LoopOp):
    """Reduce the lanes of a vector with ``fn`` (sum, prod, max, min)."""

    name = "loop.vreduce"
    num_operands = 1
    attributes = ("fn",)

    @classmethod
    def infer(cls, operand_types, attrs):
        t = operand_types[0]
        if not isinstance(t, VectorType):
            raise IRError(f"{cls.name}: operand must be a vector, got {t}")
        if attrs["fn"] not in ("sum", "prod", "max", "min"):
            raise IRError(f"{cls.name}: unknown fn {attrs['fn']!r}")
        return [t.dtype]


@register
class Dim(LoopOp):
    """The run-time size of a memref axis."""

    name = "loop.dim"
    num_operands = 1
    attributes = ("axis",)

    @classmethod
    def infer(cls, operand_types, attrs):
        m = _memref(operand_types[0], cls.name)
        if not 0 <= attrs["axis"] < m.rank:
            raise IRError(f"{cls.name}: axis {attrs['axis']} out of range for {m}")
        return [index]


@register
class Load(Op):
    """Read one element: ``loop.load %buf, %i, %j``."""

    name = "loop.load"

    @classmethod
    def infer(cls, operand_types, attrs):
        m = _memref(operand_types[0], cls.name)
        _indices(operand_types[1:], m.rank, cls.name)
        return [m.dtype]


@register
class Store(Op):
    """Write one element: ``loop.store %value, %buf, %i, %j``."""

    name = "loop.store"
    traits = frozenset({"writes"})

    @classmethod
    def infer(cls, operand_types, attrs):
        if len(operand_types) < 2:
            raise IRError(f"{cls.name}: needs a value and a memref")
        v, m = operand_types[0], _memref(operand_types[1], cls.name)
        _indices(operand_types[2:], m.rank, cls.name)
        if v != m.dtype:
            raise IRError(f"{cls.name}: value of type {v} stored into {m}")
        return []


def _unit_inner_stride(m: MemRefType, what: str) -> None:
    if m.rank == 0 or (m.strides is not None and m.strides[-1] != 1):
        raise IRError(f"{what}: needs a memref whose last axis has static stride 1, got {m}")


@register
class VLoad(Op):
    """Read ``width`` consecutive elements along the last axis."""

    name = "loop.vload"
    attributes = ("width",)

    @classmethod
    def infer(cls, operand_types, attrs):
        m = _memref(operand_types[0], cls.name)
        _indices(operand_types[1:], m.rank, cls.name)
        _unit_inner_stride(m, cls.name)
        return [VectorType(attrs["width"], m.dtype)]


@register
class VStore(Op):
    """Write a vector to consecutive elements along the last axis."""

    name = "loop.vstore"
    traits = frozenset({"writes"})

    @classmethod
    def infer(cls, operand_types, attrs):
        v, m = operand_types[0], _memref(operand_types[1], cls.name)
        _indices(operand_types[2:], m.rank, cls.name)
        _unit_inner_stride(m, cls.name)
        if not isinstance(v, VectorType) or v.dtype != m.dtype:
            raise IRError(f"{cls.name}: value of type {v} stored into {m}")
        return []


class _Loop(Op):
    num_regions = 1

    def verify_extra(self) -> None:
        lb, ub, step = self.operands[:3]
        if any(v.type != index for v in (lb, ub, step)):
            raise self.error("bounds and step must be of type index")
        body = self.regions[0]
        carried = self.operands[3:]
        expected = [index] + [v.type for v in carried]
        if [a.type for a in body.args] != expected:
            raise self.error(f"body arguments must be (index, carried types...), got "
                             f"{[str(a.type) for a in body.args]}")
        if [r.type for r in self.results] != [v.type for v in carried]:
            raise self.error("results must match the carried values")
        last = body.ops[-1] if body.ops else None
        if carried or last is not None and isinstance(last, Yield):
            if not isinstance(last, Yield):
                raise self.error("a loop carrying values must end with loop.yield")
            if [v.type for v in last.operands] != [v.type for v in carried]:
                raise self.error("loop.yield types must match the carried values")


@register
class For(_Loop):
    """Sequential loop ``for i in range(lb, ub, step)``, carrying values through yield."""

    name = "loop.for"


@register
class Parallel(_Loop):
    """A loop whose iterations are independent; the runtime splits it over threads."""

    name = "loop.parallel"
    traits = frozenset({"parallel"})
    # a matmul tile loop for the GPU (passes/lower_dot.py, backends/nvptx/matmul.py)
    optional_attributes = ("gpu_matmul",)

    def verify_extra(self) -> None:
        super().verify_extra()
        if self.results:
            raise self.error("a parallel loop carries no values")


@register
class Yield(Op):
    """The values a loop body passes to its next iteration."""

    name = "loop.yield"
    traits = frozenset({"terminator"})

    @classmethod
    def infer(cls, operand_types, attrs):
        return []


@register
class Alloc(Op):
    """A new contiguous buffer of the result type (programs only).

    Operands give the sizes of the ``?`` axes, in order.
    """

    name = "loop.alloc"
    # ``offset``: set by memory planning; the buffer lives at this byte offset of the
    # program's ``loop.arena`` instead of being allocated on its own.
    optional_attributes = ("offset",)

    def verify_extra(self) -> None:
        if len(self.results) != 1 or not isinstance(self.results[0].type, MemRefType):
            raise self.error("needs one memref result")
        t = self.results[0].type
        if t.strides is not None:
            raise self.error("allocates contiguous buffers only")
        if "offset" in self.attrs:
            off = self.attrs["offset"]
            if not isinstance(off, int) or isinstance(off, bool) or off < 0 or off % 64:
                raise self.error(f"offset must be a non-negative multiple of 64, got {off!r}")
            if any(d is None for d in t.shape):
                raise self.error(f"only static buffers are placed in the arena, got {t}")
        dynamic = sum(d is None for d in t.shape)
        if len(self.operands) != dynamic or any(v.type != index for v in self.operands):
            raise self.error(f"needs {dynamic} index operands for the ? sizes of {t}")


@register
class Arena(Op):
    """The program's planned scratch memory: ``size`` bytes, 64-byte aligned (programs only).

    Memory planning places intermediates with disjoint lifetimes at ``offset``s of
    this one block, which the runtime allocates once and reuses on every call.
    """

    name = "loop.arena"
    num_operands = 0
    attributes = ("size",)

    def verify_extra(self) -> None:
        size = self.attrs["size"]
        if self.results:
            raise self.error("has no results")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size % 64:
            raise self.error(f"size must be a non-negative multiple of 64, got {size!r}")


@register
class Call(Op):
    """Run kernel ``kernel`` on the given buffers (programs only)."""

    name = "loop.call"
    attributes = ("kernel",)
    traits = frozenset({"writes"})

    @classmethod
    def infer(cls, operand_types, attrs):
        return []
