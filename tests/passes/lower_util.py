"""Helpers for the lower-loops tests: one-group prim funcs, lowering, running, views."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lamina.backends.interp.loop_interp import bf16_to_f32, f32_to_bf16, run_program
from lamina.ir import Block, Builder, Graph, Module, TensorType, Value, parse, verify
from lamina.ir.core import Return
from lamina.ir.dialects import prim as P
from lamina.ir.types import ScalarType
from lamina.passes.lower_loops import LowerLoops
from lamina.passes.prepare_loops import PrepareLoops

ALL_DTYPES = ("f16", "bf16", "f32", "f64", "i1", "i8", "i32", "i64")


def group(arg_types: Sequence[TensorType], build: Callable[..., Value], name: str = "k0",
          func: str = "f") -> Module:
    """A prim-stage module: ``func @f`` holding one fusion group whose body ``build`` makes."""
    g = Graph(func, list(arg_types), [f"a{i}" for i in range(len(arg_types))])
    region = Block(list(arg_types), [f"r{i}" for i in range(len(arg_types))])
    out = build(Builder(region), *region.args)
    region.append(P.FusionYield([out], []))
    fusion = P.Fusion(list(g.args), [out.type], {"name": name}, [region])
    g.body.append(fusion)
    g.body.append(Return([fusion.result], []))
    m = Module([g])
    verify(m)
    return m


def lower(module: Module, layouts=None, prepare: bool = True) -> Module:
    """lower-loops (+ prepare-loops), verified, and checked to print/parse back identically."""
    out = LowerLoops(arg_layouts=layouts).run(module)
    verify(out)
    if prepare:
        out = PrepareLoops().run(out)
        verify(out)
    text = str(out)
    assert str(parse(text)) == text
    return out


def run(loop_module: Module, *arrays: np.ndarray, func: str = "f") -> list[np.ndarray]:
    return run_program(loop_module, func, *arrays)


def layout_of(a: np.ndarray) -> tuple[int | None, ...]:
    """The eager stride pattern of a view (0: broadcast, 1: unit last stride, else None)."""
    return tuple(0 if s == 0 else (1 if i == a.ndim - 1 and s == a.itemsize else None)
                 for i, s in enumerate(a.strides))


def dyn(t: TensorType) -> TensorType:
    return TensorType((None,) * t.rank, t.dtype)


def storage(values: np.ndarray, dtype: str) -> np.ndarray:
    """numpy values as the buffer of an IR dtype (bf16 as uint16 bits)."""
    if dtype == "bf16":
        return f32_to_bf16(np.asarray(values, dtype=np.float32))
    return np.asarray(values).astype(ScalarType(dtype).numpy)


def values(buf: np.ndarray, dtype: str) -> np.ndarray:
    """The numbers held by a buffer of an IR dtype (bf16 widened to float32)."""
    return bf16_to_f32(buf) if dtype == "bf16" else buf


def random_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Small random numbers of an IR dtype, as stored in buffers."""
    if dtype == "i1":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype in ("i8", "i32", "i64"):
        return np.asarray(rng.integers(-9, 10, shape)).astype(ScalarType(dtype).numpy)
    return storage(np.asarray(rng.standard_normal(shape), dtype=np.float32) * 2, dtype)


def strided_view(rng: np.random.Generator, base: np.ndarray, kind: str) -> np.ndarray:
    """The same values as ``base`` in a non-contiguous view: ``"step"`` (every other
    element of a bigger buffer) or ``"t"`` (a transposed copy, viewed back)."""
    if base.ndim == 0:
        return base
    if kind == "step":
        big = np.empty(tuple(2 * d for d in base.shape), dtype=base.dtype)
        view = big[tuple(slice(None, None, 2) for _ in base.shape)]
        view[...] = base
        return view
    if kind == "t":
        return np.ascontiguousarray(base.T).T
    return base
