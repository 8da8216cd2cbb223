"""Prim dialect extension: positional sources, whose elements depend on their own index.

``prim.random_bits`` is a counter-based random number generator (Philox4x32-10,
Salmon et al., SC'11) and ``prim.iota_like`` an ``iota`` over the shape of an
operand, so a ``?`` size is known at run time (eager kernels never see sizes).

Both are *elementwise in shape*: every operand has the result's shape, which
lets shape inference, fusion and the run-time size solver treat them like any
elementwise prim. Unlike a true elementwise function, element ``idx`` also
depends on ``idx`` itself, so they carry the ``positional`` trait: a rewrite
must never move them across movement prims (``permute(f(x)) != f(permute(x))``).

The random stream (this is the contract every backend implements bit for bit):

* ``key`` and ``offset`` are i64 (in practice broadcast from 0-d run-time
  arguments: a new seed never compiles a new kernel). The Philox key is
  ``(key mod 2**32, key >> 32 mod 2**32)``.
* ``n`` is the element's row-major linear index in the result's shape. Each
  element consumes ``stride`` 32-bit words (1, 2 or 4), so one Philox counter
  serves ``4 // stride`` consecutive elements: element ``n`` uses counter
  ``c = offset + n // (4 // stride)`` (as the 128-bit counter
  ``(c mod 2**32, c >> 32 mod 2**32, 0, 0)``) and its own words are
  ``(n mod (4 // stride)) * stride + 0 .. stride-1`` of the 4-word output.
* ``word`` (``0 <= word < stride``) picks one of the element's words; the
  result is that word as an unsigned value in ``[0, 2**32)`` held in i64.

A draw of ``N`` elements therefore uses ``ceil(N / (4 // stride))`` counters,
the amount a generator advances its offset by.
"""

from __future__ import annotations

from typing import Any

from lamina.ir.core import IRError, Op, register
from lamina.ir.dialects.prim import Prim, _check_axes, _tensor, merge_dims
from lamina.ir.types import ScalarType, TensorType, i64

POSITIONAL = frozenset({"pure", "elementwise", "positional"})

# Philox4x32 round multipliers and Weyl key increments (Salmon et al. 2011).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
STRIDES = (1, 2, 4)


def elements_per_counter(stride: int) -> int:
    """How many consecutive elements share one Philox counter."""
    return 4 // stride


@register
class RandomBits(Prim):
    """Philox4x32-10 words per element (see the module docstring for the exact layout)."""

    name = "prim.random_bits"
    num_operands = 2
    attributes = ("stride", "word")
    traits = POSITIONAL

    @classmethod
    def infer(cls, operand_types: list[Any], attrs: dict[str, Any]) -> list[TensorType]:
        key, offset = (_tensor(t, cls.name) for t in operand_types)
        if key.dtype != i64 or offset.dtype != i64:
            raise IRError(f"{cls.name}: key and offset must be i64, got {key.dtype} and "
                          f"{offset.dtype}")
        stride, word = attrs["stride"], attrs["word"]
        if stride not in STRIDES or isinstance(stride, bool):
            raise IRError(f"{cls.name}: stride must be 1, 2 or 4 words per element, got "
                          f"{stride!r}")
        if not isinstance(word, int) or isinstance(word, bool) or not 0 <= word < stride:
            raise IRError(f"{cls.name}: word must be in [0, {stride}), got {word!r}")
        return [TensorType(merge_dims([key.shape, offset.shape], cls.name), i64)]


@register
class IotaLike(Prim):
    """Indices along ``dim`` over the shape of the operand: out[i0, ..., in] = i_dim."""

    name = "prim.iota_like"
    num_operands = 1
    attributes = ("dim", "dtype")
    traits = POSITIONAL

    @classmethod
    def infer(cls, operand_types: list[Any], attrs: dict[str, Any]) -> list[TensorType]:
        t = _tensor(operand_types[0], cls.name)
        _check_axes((attrs["dim"],), t.rank, cls.name)
        dtype = attrs["dtype"]
        if not isinstance(dtype, ScalarType) or dtype.is_bool or dtype.name == "index":
            raise IRError(f"{cls.name}: dtype must be a number type, got {dtype!r}")
        return [t.with_dtype(dtype)]


def is_positional(op: Op) -> bool:
    """An op whose element at an index depends on the index itself."""
    return op.has("positional")
