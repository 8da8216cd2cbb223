"""``TensorEmitter``: one primitive executed on concrete tensors (the eager tape's emitter).

The VJP rules of ``lamina.passes.vjp_rules`` are written against an emitter
(``prim``, ``shape``, ``dtype``); this one computes. Movement prims become
views (``reshape``, ``permute``, ``broadcast``, ``slice``), ``const`` and
``iota`` creation functions, and every other prim one generated kernel: a
one-prim graph over ``?``-sized arguments run through ``dispatch.run_eager``,
so sizes never enter a kernel's cache key. Each call goes through
``dispatch.apply`` with the prim as its ``build``: when the tape records (a
backward with ``create_graph=True``), these ops are themselves differentiable.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from lamina.frontend import dispatch, ops, views
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import Tensor
from lamina.ir import OPS, Builder, TensorType, Value
from lamina.ir.types import ScalarType


class TensorEmitter:
    """Executes prims on tensors; the eager counterpart of ``vjp_rules.IREmitter``."""

    def prim(self, name: str, *operands: Tensor, **attrs: Any) -> Tensor:
        special = _SPECIAL.get(name)
        if special is not None:
            return special(*operands, **attrs)
        return run_prim(name, operands, attrs)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def dtype(self, x: Tensor) -> ScalarType:
        return x.dtype.ir


def result_type(name: str, operands: tuple[Tensor, ...], attrs: dict) -> TensorType:
    """The prim's result type for these operands (its shape/dtype rule checks them)."""
    cls = OPS.get(name)
    if cls is None or not name.startswith("prim."):
        raise ValueError(f"TensorEmitter: {name!r} is not a primitive")
    if not all(isinstance(x, Tensor) for x in operands):
        raise TypeError(f"{name}: operands must be tensors, got "
                        f"{[type(x).__name__ for x in operands]}")
    (t,) = cls.infer([TensorType(tuple(x.shape), x.dtype.ir) for x in operands], attrs)
    return t


def run_prim(name: str, operands: tuple[Tensor, ...], attrs: dict) -> Tensor:
    """One generated kernel computing prim ``name`` (not a movement or source prim)."""
    out_t = result_type(name, operands, attrs)
    akey = _attrs_key(attrs)
    build = _builds.get((name, akey))
    if build is None:
        build = _builds[(name, akey)] = _prim_build(name, dict(attrs))
    out = dt.from_ir(out_t.dtype)
    key = ("prim", name, akey)
    cls = OPS[name]
    if "elementwise" in cls.traits and "positional" not in cls.traits:  # flattening is fine
        def eager() -> Tensor:
            return ops._eager_elementwise(key, build, operands, out, out, None)
    else:
        def eager() -> Tensor:
            return _eager_kernel(key, build, operands, out_t, cls, attrs)
    return dispatch.apply(name, build, operands, eager)


def _eager_kernel(key: tuple, build: Callable, operands: tuple[Tensor, ...],
                  out_t: TensorType, cls: type, attrs: dict) -> Tensor:
    shape = tuple(out_t.shape)
    out = dt.from_ir(out_t.dtype)
    if 0 in shape:
        return ops.empty(shape, dtype=out)
    if any(x.numel() == 0 for x in operands):
        # a non-empty result from empty operands: no kernel reads nothing
        fn = getattr(cls, "fn", "")
        if cls.name == "prim.dot_general" or fn == "sum":
            return ops.zeros(shape, dtype=out)
        if fn == "prod":
            return ops.ones(shape, dtype=out)
        if cls.name == "prim.pad":
            return ops.full(shape, attrs["value"], dtype=out)
        if cls.name == "prim.concat":
            operands = tuple(x for x in operands if x.numel())
        else:
            raise RuntimeError(f"{cls.name}: cannot reduce an empty tensor of shape "
                               f"{list(operands[0].shape)} ({out.name}): no identity")
    arrays = [x._concrete(cls.name) for x in operands]
    (res,) = dispatch.run_eager(key, build, arrays, [x.dtype.ir for x in operands])
    return Tensor._wrap(res.reshape(shape), out)


def _prim_build(name: str, attrs: dict) -> Callable[..., Value]:
    def build(b: Builder, *vals: Value) -> Value:
        return b(name, *vals, **attrs)

    return build


_builds: dict[tuple, Callable] = {}


def _attrs_key(attrs: dict) -> tuple:
    return tuple(sorted((k, _attr_key(v)) for k, v in attrs.items()))


def _attr_key(v: Any) -> Any:
    # -0.0 == 0.0 and True == 1 in Python, but they are different constants
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, float):
        return ("f", struct.pack("<d", v))
    return (type(v).__name__, v)


# -- movement and sources -------------------------------------------------------------------
def _reshape(x: Tensor, *, shape: tuple[int, ...]) -> Tensor:
    result_type("prim.reshape", (x,), {"shape": shape})
    return views.reshape(x, tuple(shape))


def _permute(x: Tensor, *, perm: tuple[int, ...]) -> Tensor:
    result_type("prim.permute", (x,), {"perm": perm})
    return views.permute(x, tuple(perm))


def _broadcast(x: Tensor, *, shape: tuple[int, ...], dims: tuple[int, ...]) -> Tensor:
    result_type("prim.broadcast", (x,), {"shape": shape, "dims": dims})
    inter = [1] * len(shape)
    for src, d in enumerate(dims):
        inter[d] = x.shape[src]
    v = x if tuple(inter) == tuple(x.shape) else views.reshape(x, tuple(inter))
    return views.expand(v, tuple(shape))


def _slice(x: Tensor, *, start: tuple[int, ...], stop: tuple[int, ...],
           step: tuple[int, ...]) -> Tensor:
    result_type("prim.slice", (x,), {"start": start, "stop": stop, "step": step})
    return views.getitem(x, tuple(slice(a, b, s) for a, b, s in zip(start, stop, step)))


def _const(*, value: Any, shape: tuple[int, ...], dtype: ScalarType) -> Tensor:
    result_type("prim.const", (), {"value": value, "shape": shape, "dtype": dtype})
    return ops.full(tuple(shape), value, dtype=dt.from_ir(dtype))


def _iota(*, shape: tuple[int, ...], dim: int, dtype: ScalarType) -> Tensor:
    result_type("prim.iota", (), {"shape": shape, "dim": dim, "dtype": dtype})
    line = ops.arange(shape[dim], dtype=dt.from_ir(dtype))
    return _broadcast(line, shape=tuple(shape), dims=(dim,))


_SPECIAL: dict[str, Callable[..., Tensor]] = {
    "prim.reshape": _reshape, "prim.permute": _permute, "prim.broadcast": _broadcast,
    "prim.slice": _slice, "prim.const": _const, "prim.iota": _iota,
}

__all__ = ["TensorEmitter", "result_type", "run_prim"]
