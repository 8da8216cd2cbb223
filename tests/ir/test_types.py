"""Types print and parse back to themselves; malformed types are IRErrors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.ir import IRError, MemRefType, ScalarType, TensorType, VectorType, parse_type
from lamina.ir.types import SCALARS, element_type, scalar_from_numpy

_scalars = st.sampled_from(sorted(SCALARS.values(), key=str))
_sizes = st.none() | st.integers(0, 10**6)
_shapes = st.lists(_sizes, max_size=6).map(tuple)


@st.composite
def _memrefs(draw) -> MemRefType:
    shape = draw(_shapes)
    strides = draw(st.none() | st.lists(st.none() | st.integers(0, 10**9), min_size=len(shape),
                                        max_size=len(shape)).map(tuple))
    return MemRefType(shape, draw(_scalars), strides)


_types = st.one_of(
    _scalars,
    st.builds(TensorType, _shapes, _scalars),
    _memrefs(),
    st.builds(VectorType, st.integers(1, 512), _scalars),
)


@given(_types)
def test_types_round_trip(t):
    text = str(t)
    assert parse_type(text) == t
    assert str(parse_type(text)) == text


@given(_shapes, _scalars)
def test_tensor_text_spells_sizes_and_question_marks(shape, dtype):
    text = str(TensorType(shape, dtype))
    dims = "".join(("?" if d is None else str(d)) + "x" for d in shape)
    assert text == f"tensor<{dims}{dtype}>"


@given(_types)
def test_types_round_trip_in_a_signature(t):
    from lamina.ir import parse_graph

    text = f"kernel @k(%a: {t}, %b: {t}) {{\n}}"
    g = parse_graph(text)
    assert [a.type for a in g.args] == [t, t]
    assert str(g) == text


@pytest.mark.parametrize("text,expected", [
    ("f32", SCALARS["f32"]),
    ("tensor<f32>", TensorType((), SCALARS["f32"])),
    ("tensor<0x?x3xbf16>", TensorType((0, None, 3), SCALARS["bf16"])),
    ("tensor<4xindex>", TensorType((4,), SCALARS["index"])),
    ("tensor<?xindex>", TensorType((None,), SCALARS["index"])),
    ("memref<?x128xf32>", MemRefType((None, 128), SCALARS["f32"])),
    ("memref<?x?xf32, strided<[?, 1]>>", MemRefType((None, None), SCALARS["f32"], (None, 1))),
    ("memref<3xi8, strided<[0]>>", MemRefType((3,), SCALARS["i8"], (0,))),
    ("memref<f32, strided<[]>>", MemRefType((), SCALARS["f32"], ())),
    ("memref<2xindex>", MemRefType((2,), SCALARS["index"])),
    ("vector<16xf32>", VectorType(16, SCALARS["f32"])),
    ("vector<8xindex>", VectorType(8, SCALARS["index"])),
])
def test_known_type_texts(text, expected):
    assert parse_type(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text,message", [
    ("f33", "expected a type"),
    ("tensor<4xf33>", "unknown element type 'f33'"),
    ("tensor<ax4xf32>", "unknown element type"),
    ("tensor<4x>", "unknown element type '4x'"),
    ("tensor<4x-3xf32>", "bad shape"),
    ("memref<4xf32, strided<[1, 1]>>", "2 strides for rank 1"),
    ("memref<4xf32, strided<[a]>>", "bad memref layout"),
    ("memref<4xf32, dense>", "bad memref layout"),
    ("vector<?xf32>", "one static width"),
    ("vector<4x4xf32>", "one static width"),
    ("tensor<4xf32> f32", "expected end of input"),
])
def test_malformed_types_are_ir_errors(text, message):
    with pytest.raises(IRError, match=message):
        parse_type(text)


def test_scalar_properties():
    kinds = {n: (t.is_float, t.is_int, t.is_bool) for n, t in SCALARS.items()}
    assert kinds == {
        "f16": (True, False, False), "bf16": (True, False, False), "f32": (True, False, False),
        "f64": (True, False, False), "i1": (False, False, True), "i8": (False, True, False),
        "i32": (False, True, False), "i64": (False, True, False),
        "index": (False, True, False),
    }
    assert {n: t.itemsize for n, t in SCALARS.items()} == {
        "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "i1": 1, "i8": 1, "i32": 4, "i64": 8,
        "index": 8}
    assert SCALARS["bf16"].numpy == np.uint16
    assert all(t.numpy.itemsize == t.itemsize for t in SCALARS.values())


@pytest.mark.parametrize("dtype,name", [(np.float16, "f16"), (np.float32, "f32"),
                                        (np.float64, "f64"), (np.bool_, "i1"), (np.int8, "i8"),
                                        (np.int32, "i32"), (np.int64, "i64")])
def test_scalar_from_numpy(dtype, name):
    assert scalar_from_numpy(np.dtype(dtype)) == SCALARS[name]


def test_scalar_from_numpy_rejects_unknown_dtypes():
    with pytest.raises(TypeError, match="unsupported numpy dtype complex64"):
        scalar_from_numpy(np.dtype(np.complex64))


@given(_types)
def test_element_type_and_hashability(t):
    assert isinstance(element_type(t), ScalarType)
    assert hash(parse_type(str(t))) == hash(t)
