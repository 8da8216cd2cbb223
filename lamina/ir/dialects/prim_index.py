"""Prim dialect extension: index primitives (shape/dtype rules; VJPs live in passes).

Two kinds, told apart by their traits:

- ``movement`` prims are computed at an index from their operands at other
  indices, so they fuse into elementwise groups: ``reverse`` (``n-1-i`` along
  axes) and ``gather`` (a load at an index read from the index tensor).
- ``opaque`` prims need loops of their own (a scan, a sort, a scatter with
  collisions, a compaction): the fuser gives each its own group and the
  lowering calls the kernel registered for it.

Each op's ``size_links`` says which of its operands' axes have the sizes of which
result axes (the lowering's shape solver reads it). Index operands are i32 or
i64 tensors. Out-of-range indices are the caller's
error (the frontend raises before running a kernel); kernels still never touch
memory out of bounds: ``gather`` clamps, the scatters skip such elements.
"""

from __future__ import annotations

from lamina.ir.core import IRError, register
from lamina.ir.dialects.prim import Prim, _check_axes, _tensor, merge_dims
from lamina.ir.types import TensorType, i64

MOVEMENT = frozenset({"pure", "movement"})
OPAQUE = frozenset({"pure", "opaque"})
SCAN_FNS = ("sum", "prod", "max", "min")


def _index_tensor(t, what: str) -> TensorType:
    t = _tensor(t, what)
    if t.dtype.name not in ("i32", "i64"):
        raise IRError(f"{what}: index must be an i32 or i64 tensor, got {t}")
    return t


def _axis(attrs: dict, rank: int, what: str) -> int:
    axis = attrs["axis"]
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise IRError(f"{what}: axis must be an int, got {axis!r}")
    (axis,) = _check_axes((axis,), rank, what)
    return axis


def _fits_but_axis(x: TensorType, index: TensorType, axis: int, what: str) -> None:
    """The index has ``x``'s rank and is no larger than ``x`` on any axis but ``axis``."""
    if index.rank != x.rank:
        raise IRError(f"{what}: index rank {index.rank} differs from operand rank {x.rank} "
                      f"({index} vs {x})")
    for a, (d, e) in enumerate(zip(x.shape, index.shape)):
        if a != axis and d is not None and e is not None and e > d:
            raise IRError(f"{what}: index {index} is larger than the operand {x} on axis {a}")


def _same_shape(op, k: int) -> list[tuple[int, int, int]]:
    """Size links (operand, its axis, result axis): operand ``k`` has the result's shape."""
    return [(k, a, a) for a in range(op.result.type.rank)]


@register
class Reverse(Prim):
    """Elements in reverse order along ``axes``: out[i] = x[n - 1 - i] on each of them."""

    name = "prim.reverse"
    num_operands = 1
    attributes = ("axes",)
    traits = MOVEMENT

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        _check_axes(attrs["axes"], t.rank, cls.name)
        return [t]

    def size_links(self) -> list[tuple[int, int, int]]:
        return _same_shape(self, 0)


@register
class Gather(Prim):
    """Take along ``axis``: out[..., i, ...] = x[..., index[..., i, ...], ...].

    ``index`` has ``x``'s rank and is no larger on the other axes; the result has
    the index's shape and ``x``'s dtype (``torch.gather``).
    """

    name = "prim.gather"
    num_operands = 2
    attributes = ("axis",)
    traits = MOVEMENT

    @classmethod
    def infer(cls, operand_types, attrs):
        x = _tensor(operand_types[0], cls.name)
        index = _index_tensor(operand_types[1], cls.name)
        axis = _axis(attrs, x.rank, cls.name)
        _fits_but_axis(x, index, axis, cls.name)
        return [TensorType(index.shape, x.dtype)]

    def size_links(self) -> list[tuple[int, int, int]]:
        return _same_shape(self, 1)


class _Scatter(Prim):
    num_operands = 3
    attributes = ("axis",)
    traits = OPAQUE

    @classmethod
    def infer(cls, operand_types, attrs):
        base = _tensor(operand_types[0], cls.name)
        index = _index_tensor(operand_types[1], cls.name)
        src = _tensor(operand_types[2], cls.name)
        axis = _axis(attrs, base.rank, cls.name)
        if src.dtype != base.dtype:
            raise IRError(f"{cls.name}: src dtype {src.dtype} differs from {base.dtype}")
        if cls.name == "prim.scatter_add" and base.dtype.is_bool:
            raise IRError(f"{cls.name}: cannot add i1 values")
        _fits_but_axis(base, index, axis, cls.name)
        merge_dims([index.shape, src.shape], f"{cls.name}: index {index} and src {src}")
        return [base]

    def size_links(self) -> list[tuple[int, int, int]]:
        return _same_shape(self, 0)


@register
class ScatterAdd(_Scatter):
    """A copy of ``base`` with out[..., index[..., i, ...], ...] += src[..., i, ...].

    ``index`` and ``src`` share a shape, no larger than ``base``'s on every axis
    but ``axis``; additions into one element happen in increasing ``i``.
    """

    name = "prim.scatter_add"


@register
class Scatter(_Scatter):
    """A copy of ``base`` with out[..., index[..., i, ...], ...] = src[..., i, ...]; where
    indices repeat, the largest ``i`` wins."""

    name = "prim.scatter"


@register
class Cumulative(Prim):
    """Inclusive scan along ``axis`` with ``fn`` (sum, prod, max, min); f16/bf16 accumulate
    in f32, max/min propagate NaN."""

    name = "prim.cumulative"
    num_operands = 1
    attributes = ("axis", "fn")
    traits = OPAQUE

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        _axis(attrs, t.rank, cls.name)
        fn = attrs["fn"]
        if fn not in SCAN_FNS:
            raise IRError(f"{cls.name}: fn must be one of {', '.join(SCAN_FNS)}, got {fn!r}")
        if fn in ("sum", "prod") and t.dtype.is_bool:
            raise IRError(f"{cls.name}: cannot {fn} i1 values; cast first")
        return [t]

    def size_links(self) -> list[tuple[int, int, int]]:
        return _same_shape(self, 0)


@register
class Argsort(Prim):
    """The i64 permutation that sorts each line along ``axis``, stably (equal elements keep
    their order), ascending or ``descending``; NaN counts as larger than every number."""

    name = "prim.argsort"
    num_operands = 1
    attributes = ("axis", "descending")
    traits = OPAQUE

    @classmethod
    def infer(cls, operand_types, attrs):
        t = _tensor(operand_types[0], cls.name)
        _axis(attrs, t.rank, cls.name)
        if not isinstance(attrs["descending"], bool):
            raise IRError(f"{cls.name}: descending must be a bool, got {attrs['descending']!r}")
        return [t.with_dtype(i64)]

    def size_links(self) -> list[tuple[int, int, int]]:
        return _same_shape(self, 0)


@register
class Compact(Prim):
    """The i64 positions of the true elements of a 1-d ``mask``, in order.

    The result has the size of the 1-d ``like`` operand (only its size is used):
    the caller counts the true elements first, as data-dependent sizes need. If
    ``like`` is longer than the count, the remaining entries are 0; if shorter,
    the positions past it are dropped.
    """

    name = "prim.compact"
    num_operands = 2
    traits = OPAQUE

    @classmethod
    def infer(cls, operand_types, attrs):
        mask = _tensor(operand_types[0], cls.name)
        like = _tensor(operand_types[1], cls.name)
        if mask.rank != 1 or not mask.dtype.is_bool:
            raise IRError(f"{cls.name}: mask must be a 1-d i1 tensor, got {mask}")
        if like.rank != 1:
            raise IRError(f"{cls.name}: like must be a 1-d tensor, got {like}")
        return [TensorType(like.shape, i64)]

    def size_links(self) -> list[tuple[int, int, int]]:
        return [(1, 0, 0)]


INDEX_OPS = (Reverse, Gather, ScatterAdd, Scatter, Cumulative, Argsort, Compact)
