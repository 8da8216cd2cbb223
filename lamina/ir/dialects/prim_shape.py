"""Prim dialect extension: movement over values whose leading sizes are ``?``.

``prim.reshape`` needs static shapes (its lowering unravels a flat index by
static sizes). A step compiled with ``dynamic=True`` still flattens its
activations: ``x.flatten(1)`` or ``x.view(x.size(0), -1)`` on a
``tensor<?x4x4x4xf32>``. ``prim.reshape_tail`` is that reshape: it keeps the
first ``keep`` axes (which may be ``?``) and reshapes the static rest, so its
lowering stays a static index remapping per kept position.

``prim.fill_batch`` is the creation side: ``zeros((layers, batch, hidden))``
or a dropout mask ``rand(x.shape)`` inside a dynamic trace asks for a shape
with the batch size in it, which no value of the trace holds as a number. It
broadcasts a 0-d value to a shape whose ``?`` axes have the size of axis 0 of
a second operand (``like``, an argument of the step); ``like`` is never read,
it only tells the run-time size solver where the size lives.

``prim.slice_keep`` is basic indexing over such values (``h0[k]``,
``xg[t]``, ``o[:, -1]``, ``g[:, :8]``): ``prim.slice`` needs static stops,
this one slices the static axes, keeps every ``?`` axis whole and drops the
axes indexed by an int.
"""

from __future__ import annotations

from typing import Any

from lamina.ir.core import IRError, register
from lamina.ir.dialects.prim import Prim, _tensor
from lamina.ir.types import TensorType


def _product(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


@register
class ReshapeTail(Prim):
    """Keep axes ``[0, keep)``, reshape the static others: out.shape = ``shape``."""

    name = "prim.reshape_tail"
    num_operands = 1
    attributes = ("keep", "shape")
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types: list[Any], attrs: dict[str, Any]) -> list[TensorType]:
        t = _tensor(operand_types[0], cls.name)
        keep, shape = attrs["keep"], attrs["shape"]
        if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= t.rank:
            raise IRError(f"{cls.name}: keep must be in [0, {t.rank}], got {keep!r}")
        if not isinstance(shape, tuple) or len(shape) < keep:
            raise IRError(f"{cls.name}: shape must list at least {keep} sizes, got {shape!r}")
        if tuple(shape[:keep]) != t.shape[:keep]:
            raise IRError(f"{cls.name}: the kept sizes {list(shape[:keep])} must be the "
                          f"operand's {list(t.shape[:keep])}")
        src, dst = t.shape[keep:], shape[keep:]
        if not all(isinstance(d, int) and d >= 0 for d in (*src, *dst)):
            raise IRError(f"{cls.name}: the reshaped sizes must be static, got {list(src)} -> "
                          f"{list(dst)}")
        if _product(src) != _product(dst):
            raise IRError(f"{cls.name}: cannot reshape {list(t.shape)} to {list(shape)} "
                          f"({_product(src)} vs {_product(dst)} elements per kept position)")
        return [t.with_shape(tuple(shape))]

    def size_links(self) -> list[tuple[int, int, int]]:
        """The kept axes are the operand's (what the run-time size solver needs)."""
        return [(0, a, a) for a in range(self.attrs["keep"])]


@register
class FillBatch(Prim):
    """``x`` (0-d) broadcast to ``shape``; every ``?`` axis has ``like``'s axis-0 size."""

    name = "prim.fill_batch"
    num_operands = 2
    attributes = ("shape",)
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types: list[Any], attrs: dict[str, Any]) -> list[TensorType]:
        x = _tensor(operand_types[0], cls.name)
        like = _tensor(operand_types[1], cls.name)
        shape = attrs["shape"]
        if x.rank != 0:
            raise IRError(f"{cls.name}: the filled value must be 0-d, got {x}")
        if like.rank == 0 or like.shape[0] is not None:
            raise IRError(f"{cls.name}: like must have a ? leading size, got {like}")
        if not isinstance(shape, tuple) or not all(
                d is None or isinstance(d, int) and not isinstance(d, bool) and d >= 0
                for d in shape):
            raise IRError(f"{cls.name}: shape must list sizes >= 0 or ?, got {shape!r}")
        if None not in shape:
            raise IRError(f"{cls.name}: shape {list(shape)} has no ? axis (use a broadcast)")
        return [x.with_shape(tuple(shape))]

    def size_links(self) -> list[tuple[int, int, int]]:
        """Every ``?`` axis of the result is ``like``'s axis 0."""
        return [(1, 0, a) for a, d in enumerate(self.attrs["shape"]) if d is None]


@register
class SliceKeep(Prim):
    """Slice the static axes (``start/stop/step``), keep ``?`` axes whole (start 0, stop
    ``?``, step 1), then drop the axes listed in ``drop`` (each sliced to one element)."""

    name = "prim.slice_keep"
    num_operands = 1
    attributes = ("start", "stop", "step", "drop")
    traits = frozenset({"pure", "movement"})

    @classmethod
    def infer(cls, operand_types: list[Any], attrs: dict[str, Any]) -> list[TensorType]:
        t = _tensor(operand_types[0], cls.name)
        start, stop, step, drop = (attrs[k] for k in ("start", "stop", "step", "drop"))
        if not all(isinstance(a, tuple) and len(a) == t.rank for a in (start, stop, step)):
            raise IRError(f"{cls.name}: start/stop/step need {t.rank} entries each")
        if not isinstance(drop, tuple) or list(drop) != sorted(set(drop)) or any(
                not 0 <= a < t.rank for a in drop):
            raise IRError(f"{cls.name}: drop must list distinct axes of {t}, in order, got "
                          f"{drop!r}")
        out: list[int | None] = []
        for axis, (d, a, b, s) in enumerate(zip(t.shape, start, stop, step)):
            if d is None:
                if (a, b, s) != (0, None, 1) or axis in drop:
                    raise IRError(f"{cls.name}: the ? axis {axis} must be kept whole, got "
                                  f"{a}:{b}:{s}")
                out.append(None)
                continue
            if not all(isinstance(v, int) for v in (a, b, s)) or s < 1 or a < 0 or b < a \
                    or b > d:
                raise IRError(f"{cls.name}: bad slice {a}:{b}:{s} of axis {axis} (size {d})")
            n = (b - a + s - 1) // s
            if axis in drop:
                if n != 1:
                    raise IRError(f"{cls.name}: dropped axis {axis} must keep one element, "
                                  f"got {a}:{b}:{s}")
                continue
            out.append(n)
        return [t.with_shape(tuple(out))]

    def size_links(self) -> list[tuple[int, int, int]]:
        """Each ``?`` axis is the operand's, at its position among the kept axes."""
        links, k = [], 0
        for axis, d in enumerate(self.operands[0].type.shape):
            if axis in self.attrs["drop"]:
                continue
            if d is None:
                links.append((0, axis, k))
            k += 1
        return links
