"""Checking buffers against memref types and packing them as kernel argument words.

Two paths with one meaning. ``ArgSpec.check`` validates one buffer in full
and explains any mismatch. ``fast_path`` generates, once per signature, a
straight-line Python function that does the same checks with attribute reads
and comparisons only, packs the words, and hands any buffer it is unsure about
to the full path. The eager frontend calls a kernel per op on tiny tensors, so
per-call Python is the cost that matters: the generated function does in about
a microsecond what generic per-argument closures do in two or three.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from lamina.ir.types import MemRefType
from lamina.runtime import buffers
from lamina.runtime.bounds import BoundsCheck
from lamina.runtime.buffers import data_pointer, element_strides
from lamina.runtime.errors import ArgumentMismatch

_ndarray = np.ndarray


@dataclass(frozen=True)
class ArgSpec:
    """What one memref argument accepts; ``where`` names it in error messages."""

    type: MemRefType
    where: str
    writes: bool = False

    @property
    def dtype(self) -> np.dtype:
        return self.type.dtype.numpy

    def check(self, a: Any) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """Validate ``a`` in full; return ``(pointer, sizes, strides)`` or raise ArgumentMismatch.

        The slow path behind the generated checks: it runs on their first doubt and
        either explains the problem or accepts the buffer after all (an equal but
        not identical dtype object, a size-1 axis with an odd stride).
        """
        t = self.type
        if not isinstance(a, _ndarray):
            raise ArgumentMismatch(f"{self.where}: expected a numpy array for {t}, got "
                                   f"{type(a).__name__}")
        got = f"an array of shape {tuple(a.shape)}, strides {a.strides} and dtype {a.dtype}"

        def fail(why: str) -> ArgumentMismatch:
            return ArgumentMismatch(f"{self.where}: expects {t} but got {got}: {why}")

        if a.dtype != self.dtype:
            raise fail(f"dtype {a.dtype} is not {self.dtype} ({t.dtype})")
        if a.ndim != t.rank:
            raise fail(f"rank {a.ndim} is not {t.rank}")
        for axis, (n, want) in enumerate(zip(a.shape, t.shape)):
            if want is not None and n != want:
                raise fail(f"size {n} on axis {axis}, expected {want}")
        if not a.flags.aligned:
            raise fail("data is not aligned to the item size")
        if self.writes and not a.flags.writeable:
            raise fail("the kernel writes this buffer but the array is read-only")
        try:
            strides = element_strides(a, self.where)
        except ValueError as e:
            raise ArgumentMismatch(str(e)) from None
        if t.strides is None:
            if not a.flags.c_contiguous:
                raise fail("the type requires a contiguous row-major buffer")
            strides = row_major(a.shape)
        else:
            fixed = list(strides)
            for axis, (s, want, n) in enumerate(zip(strides, t.strides, a.shape)):
                if want is None:
                    continue
                if n > 1 and s != want:
                    raise fail(f"stride {s} (elements) on axis {axis}, expected {want}")
                fixed[axis] = want  # unused on a size <= 1 axis; pass what the type says
            strides = tuple(fixed)
        return data_pointer(a), tuple(a.shape), strides


def row_major(shape: Sequence[int]) -> tuple[int, ...]:
    """Contiguous strides in elements (what a type without a layout promises)."""
    out = [1] * len(shape)
    acc = 1
    for axis in range(len(shape) - 1, 0, -1):
        acc *= shape[axis]
        out[axis - 1] = acc
    return tuple(out)


def word_count(specs: Sequence[ArgSpec]) -> int:
    return sum(1 + 2 * s.type.rank for s in specs)


def slow_path(specs: Sequence[ArgSpec], what: str, bounds: BoundsCheck | None,
              words: struct.Struct | None) -> Callable[..., bytes | None]:
    """Full validation (with explanations) and packing; the fallback of ``fast_path``."""

    def slow(*arrays: Any) -> bytes | None:
        if len(arrays) != len(specs):
            types = ", ".join(str(s.type) for s in specs)
            raise ArgumentMismatch(f"{what}: expected {len(specs)} buffers ({types}), got "
                                   f"{len(arrays)}")
        out: list[int] = []
        for a, spec in zip(arrays, specs):
            ptr, sizes, strides = spec.check(a)
            out.append(ptr)
            out.extend(sizes)
            out.extend(strides)
        if bounds is not None:
            bounds(arrays)
        return words.pack(*out) if words is not None else None

    return slow


def fast_path(specs: Sequence[ArgSpec], what: str, bounds: BoundsCheck | None = None,
              pack: bool = True) -> Callable[..., bytes | None]:
    """A generated ``f(*arrays)`` that validates the buffers and returns the packed
    words (or None when ``pack`` is false); anything unusual goes to ``slow_path``."""
    words = struct.Struct(f"={word_count(specs)}q") if pack else None
    env: dict[str, Any] = {
        "nd": _ndarray, "slow": slow_path(specs, what, bounds, words),
        "bounds_general": bounds.check_general if bounds is not None else None,
        "words": words.pack if words is not None else None,
        "rd": ctypes.c_void_p.from_address, "dp": data_pointer,
    }
    n = len(specs)
    xs = ", ".join(f"x{i}" for i in range(n))
    bail = "return slow(*xs)"
    body = [f"if len(xs) != {n}: {bail}"]
    if n:
        body.append(f"{xs}{',' if n == 1 else ''} = xs")
    out: list[str] = []
    for i, spec in enumerate(specs):
        t, x = spec.type, f"x{i}"
        env[f"d{i}"] = spec.dtype
        item = spec.dtype.itemsize
        body.append(f"if {x}.__class__ is not nd or {x}.dtype is not d{i} or {x}.ndim != "
                    f"{t.rank}: {bail}")
        flags = [f"f{i}.aligned"] + ([f"f{i}.writeable"] if spec.writes else [])
        if t.strides is None and t.rank:
            flags.append(f"f{i}.c_contiguous")
        body.append(f"f{i} = {x}.flags")
        body.append(f"if not ({' and '.join(flags)}): {bail}")
        if not t.rank:
            out.append(_pointer(x))
            continue
        body.append(f"s{i} = {x}.shape")
        conds = [f"s{i}[{ax}] == {d}" for ax, d in enumerate(t.shape) if d is not None]
        sizes = [f"s{i}[{ax}]" for ax in range(t.rank)]
        if t.strides is None:
            strides = ["*".join(sizes[ax + 1:]) or "1" for ax in range(t.rank)]
        else:
            body.append(f"t{i} = {x}.strides")
            strides = []
            for ax, st in enumerate(t.strides):
                if st is None:
                    conds.append(f"t{i}[{ax}] >= 0")
                    strides.append(f"t{i}[{ax}] // {item}")
                else:
                    conds.append(f"(t{i}[{ax}] == {st * item} or s{i}[{ax}] <= 1)")
                    strides.append(str(st))
        if conds:
            body.append(f"if not ({' and '.join(conds)}): {bail}")
        out += [_pointer(x)] + sizes + strides
    if bounds is not None:
        # Loop-over-another-size bounds hold whenever the size is at least as large;
        # only when it is not does the exact check (with its guards) have to decide.
        pairs = [f"s{a}[{ax}] >= s{src}[{src_ax}]" for a, ax, src, src_ax in bounds.simple]
        if pairs:
            body.append(f"if not ({' and '.join(pairs)}): {bail}")
        if bounds.general:
            body.append("bounds_general(xs)")
    body.append(f"return words({', '.join(out)})" if pack else "return None")
    src = "def fast(*xs):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(src, f"<lamina argcheck {what}>", "exec"), env)
    fast = env["fast"]
    fast.source = src
    return fast


def _pointer(x: str) -> str:
    if buffers._DATA_OFFSET is None:  # pragma: no cover - unknown numpy object layout
        return f"dp({x})"
    return f"rd(id({x}) + {buffers._DATA_OFFSET}).value"
