"""PyTorch-style dtype objects and PyTorch's type-promotion rules."""

from __future__ import annotations

import numpy as np

from lamina.ir import types as irt


class dtype:  # noqa: N801 - PyTorch's spelling
    """An element type: ``lamina.float32`` etc. (compares like ``torch.dtype``)."""

    __slots__ = ("name", "ir", "numpy", "category", "rank", "is_floating_point", "itemsize")

    def __init__(self, name: str, ir: irt.ScalarType, category: int, rank: int):
        self.name = name
        self.ir = ir
        self.numpy = ir.numpy
        self.category = category  # 0 bool, 1 integer, 2 floating
        self.rank = rank  # order within the category
        self.is_floating_point = category == 2
        self.itemsize = ir.itemsize

    def __repr__(self) -> str:
        return f"lamina.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))

    @property
    def is_signed(self) -> bool:
        return self.category != 0


bool_ = dtype("bool", irt.i1, 0, 0)
int8 = dtype("int8", irt.i8, 1, 0)
int32 = dtype("int32", irt.i32, 1, 2)
int64 = dtype("int64", irt.i64, 1, 3)
float16 = dtype("float16", irt.f16, 2, 1)
bfloat16 = dtype("bfloat16", irt.bf16, 2, 1)
float32 = dtype("float32", irt.f32, 2, 2)
float64 = dtype("float64", irt.f64, 2, 3)

ALL = (bool_, int8, int32, int64, float16, bfloat16, float32, float64)
_NAMES = {d.name: d for d in ALL}
_FROM_IR = {d.ir: d for d in ALL}
_FROM_NUMPY = {np.dtype(d.numpy): d for d in ALL if d is not bfloat16}

default_float = float32


def _by_name(name: str) -> dtype:
    return _NAMES[name]


def from_ir(t: irt.ScalarType) -> dtype:
    return _FROM_IR[t]


def from_numpy(npdt: np.dtype) -> dtype:
    """The Lamina dtype storing a numpy dtype (float64 stays float64, like torch.from_numpy)."""
    try:
        return _FROM_NUMPY[np.dtype(npdt)]
    except KeyError:
        raise TypeError(
            f"can't convert np.ndarray of type {np.dtype(npdt)}. The only supported types "
            "are: float64, float32, float16, int64, int32, int8 and bool."
        ) from None


def promote(a: dtype, b: dtype) -> dtype:
    """``torch.promote_types`` for two dtypes."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if {a, b} == {float16, bfloat16}:
        return float32
    return a if a.rank >= b.rank else b


def promote_types(type1: dtype, type2: dtype) -> dtype:
    """``torch.promote_types``."""
    return promote(type1, type2)


def scalar_dtype(x: bool | int | float) -> dtype:
    """The dtype a Python number has when it stands alone (``torch.tensor(x).dtype``)."""
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    return default_float


def result_type(tensors: list[tuple[dtype, int]], scalars: list[bool | int | float]) -> dtype:
    """``torch.result_type``: dimensioned tensors, then 0-d tensors, then Python numbers.

    A lower-priority group only changes the result when its category (bool < int
    < float) is higher, and Python numbers then contribute their default dtype.
    """
    dims = [d for d, ndim in tensors if ndim > 0]
    zeros = [d for d, ndim in tensors if ndim == 0]
    result: dtype | None = None
    for group in (dims, zeros):
        if not group:
            continue
        g = group[0]
        for d in group[1:]:
            g = promote(g, d)
        if result is None or g.category > result.category:
            result = g
    for s in scalars:
        sd = scalar_dtype(s)
        if result is None:
            result = sd
        elif sd.category > result.category:
            result = sd if sd.category < 2 else default_float
    return result if result is not None else default_float
