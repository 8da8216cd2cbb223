"""IR types: scalars, tensors (values), memrefs (buffers) and short vectors.

Sizes are ints, or ``None`` for a size known only at run time (printed ``?``).
Types are frozen and hashable so they can sit in cache keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScalarType:
    """An element type: ``f16 bf16 f32 f64 i1 i8 i32 i64 index``."""

    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def is_float(self) -> bool:
        return self.name in ("f16", "bf16", "f32", "f64")

    @property
    def is_int(self) -> bool:
        return self.name in ("i8", "i32", "i64", "index")

    @property
    def is_bool(self) -> bool:
        return self.name == "i1"

    @property
    def bits(self) -> int:
        return _BITS[self.name]

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype used to store this scalar (bf16 is stored as uint16)."""
        return np.dtype(_NUMPY[self.name])


_BITS = {"f16": 16, "bf16": 16, "f32": 32, "f64": 64, "i1": 8, "i8": 8, "i32": 32, "i64": 64,
         "index": 64}
_NUMPY = {"f16": "float16", "bf16": "uint16", "f32": "float32", "f64": "float64", "i1": "bool",
          "i8": "int8", "i32": "int32", "i64": "int64", "index": "int64"}

f16 = ScalarType("f16")
bf16 = ScalarType("bf16")
f32 = ScalarType("f32")
f64 = ScalarType("f64")
i1 = ScalarType("i1")
i8 = ScalarType("i8")
i32 = ScalarType("i32")
i64 = ScalarType("i64")
index = ScalarType("index")

SCALARS: dict[str, ScalarType] = {t.name: t for t in (f16, bf16, f32, f64, i1, i8, i32, i64, index)}


def scalar_from_numpy(dtype: np.dtype) -> ScalarType:
    """Map a numpy dtype to its IR scalar type."""
    for name, np_name in _NUMPY.items():
        if name not in ("bf16", "index") and np.dtype(np_name) == np.dtype(dtype):
            return SCALARS[name]
    raise TypeError(f"unsupported numpy dtype {np.dtype(dtype)}")


def _dims(shape: tuple[int | None, ...]) -> str:
    return "".join(("?" if d is None else str(d)) + "x" for d in shape)


@dataclass(frozen=True)
class TensorType:
    """An immutable n-d value: ``tensor<4x?xf32>``."""

    shape: tuple[int | None, ...]
    dtype: ScalarType

    def __str__(self) -> str:
        return f"tensor<{_dims(self.shape)}{self.dtype}>"

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(d is not None for d in self.shape)

    def with_shape(self, shape: tuple[int | None, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: ScalarType) -> TensorType:
        return TensorType(self.shape, dtype)


@dataclass(frozen=True)
class MemRefType:
    """A buffer view: ``memref<?x128xf32>`` or ``memref<?x?xf32, strided<[?, 1]>>``.

    ``strides`` is ``None`` for a row-major contiguous buffer; otherwise each
    stride is a static element count or ``None`` (known at run time). Static
    strides of 0 and 1 let the backend emit broadcast and vector loads.
    """

    shape: tuple[int | None, ...]
    dtype: ScalarType
    strides: tuple[int | None, ...] | None = None

    def __str__(self) -> str:
        layout = ""
        if self.strides is not None:
            inner = ", ".join("?" if s is None else str(s) for s in self.strides)
            layout = f", strided<[{inner}]>"
        return f"memref<{_dims(self.shape)}{self.dtype}{layout}>"

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class VectorType:
    """A fixed-width SIMD register value: ``vector<16xf32>`` (loop stage only)."""

    width: int
    dtype: ScalarType

    def __str__(self) -> str:
        return f"vector<{self.width}x{self.dtype}>"


Type = ScalarType | TensorType | MemRefType | VectorType


def element_type(t: Type) -> ScalarType:
    """The scalar type inside any type."""
    return t if isinstance(t, ScalarType) else t.dtype


def parse_type(text: str) -> Type:
    """Parse one type from its textual form."""
    from lamina.ir.parser import Lexer, Parser

    p = Parser(Lexer(text))
    t = p.parse_type()
    p.expect_end()
    return t
