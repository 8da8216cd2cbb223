"""The shape/dtype rule of every prim and tensor op: valid cases and the errors of invalid ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.ir import OPS, IRError, MemRefType, TensorType, parse_type
from lamina.ir.dialects import elementwise as ew
from lamina.ir.dialects.tensor import TENSOR_BINARY_NAMES, broadcast_shapes
from lamina.ir.types import SCALARS, f32


def T(text: str) -> TensorType:
    """``T("2x?xf32")`` is ``tensor<2x?xf32>``."""
    t = parse_type(f"tensor<{text}>")
    assert isinstance(t, TensorType)
    return t


def infer(name: str, operands: list[str], **attrs: Any) -> list[str]:
    types = [T(o) for o in operands]
    return [str(t) for t in OPS[name].infer(types, attrs)]


def check(name: str, operands: list[str], attrs: dict[str, Any], expected: str) -> None:
    """``expected`` is the result type text, or ``!regex`` for the error message."""
    if expected.startswith("!"):
        with pytest.raises(IRError, match=expected[1:]):
            infer(name, operands, **attrs)
    else:
        assert infer(name, operands, **attrs) == [expected]


# -- prim ------------------------------------------------------------------------------
PRIM_CASES: list[tuple[str, list[str], dict[str, Any], str]] = [
    # elementwise: equal shapes, ? matches anything, dtypes equal and accepted
    ("prim.add", ["2x?xf32", "?x3xf32"], {}, "tensor<2x3xf32>"),
    ("prim.add", ["?xf32", "?xf32"], {}, "tensor<?xf32>"),
    ("prim.add", ["f32", "f32"], {}, "tensor<f32>"),
    ("prim.add", ["0x3xi8", "0x?xi8"], {}, "tensor<0x3xi8>"),
    ("prim.add", ["4xf32", "5xf32"], {}, r"!prim\.add: operand shapes differ: \[\[4\], \[5\]\]"),
    ("prim.add", ["4xf32", "1xf32"], {}, r"!operand shapes differ"),  # no implicit broadcast
    ("prim.add", ["4xf32", "1x4xf32"], {}, r"!prim\.add: operand ranks differ"),
    ("prim.add", ["4xf32", "4xf64"], {}, r"!prim\.add: operand dtypes differ: f32 and f64"),
    ("prim.add", ["4xi1", "4xi1"], {}, r"!prim\.add: unsupported dtype i1"),
    ("prim.div", ["4xi32", "4xi32"], {}, "tensor<4xi32>"),
    ("prim.atan2", ["4xi32", "4xi32"], {}, r"!prim\.atan2: unsupported dtype i32"),
    ("prim.and", ["4xi1", "4xi1"], {}, "tensor<4xi1>"),
    ("prim.and", ["4xf32", "4xf32"], {}, r"!prim\.and: unsupported dtype f32"),
    ("prim.shl", ["4xi64", "4xi64"], {}, "tensor<4xi64>"),
    ("prim.shl", ["4xi1", "4xi1"], {}, r"!prim\.shl: unsupported dtype i1"),
    ("prim.lt", ["2x?xbf16", "2x5xbf16"], {}, "tensor<2x5xi1>"),
    ("prim.eq", ["4xi1", "4xi1"], {}, "tensor<4xi1>"),
    ("prim.exp", ["2x?xf16"], {}, "tensor<2x?xf16>"),
    ("prim.exp", ["4xi32"], {}, r"!prim\.exp: unsupported dtype i32"),
    ("prim.neg", ["4xi8"], {}, "tensor<4xi8>"),
    ("prim.abs", ["4xi1"], {}, r"!prim\.abs: unsupported dtype i1"),
    ("prim.not", ["4xi1"], {}, "tensor<4xi1>"),
    ("prim.not", ["4xf32"], {}, r"!prim\.not: unsupported dtype f32"),
    ("prim.isnan", ["3xf64"], {}, "tensor<3xi1>"),
    ("prim.where", ["?x2xi1", "3x?xf32", "?x?xf32"], {}, "tensor<3x2xf32>"),
    ("prim.where", ["2xf32", "2xf32", "2xf32"], {}, r"!prim\.where: condition must be i1, got f32"),
    ("prim.where", ["2xi1", "2xf32", "2xf16"], {}, r"!prim\.where: branch dtypes differ"),
    ("prim.where", ["3xi1", "2xf32", "2xf32"], {}, r"!prim\.where: operand shapes differ"),
    ("prim.cast", ["2x?xf32"], {"dtype": SCALARS["i1"]}, "tensor<2x?xi1>"),
    ("prim.cast", ["2xf32"], {"dtype": SCALARS["index"]}, r"!dtype must be an element type"),
    # sources
    ("prim.const", [], {"value": 1, "shape": (2, 0), "dtype": SCALARS["i8"]}, "tensor<2x0xi8>"),
    ("prim.const", [], {"value": True, "shape": (), "dtype": SCALARS["i1"]}, "tensor<i1>"),
    ("prim.const", [], {"value": 1.0, "shape": (None,), "dtype": f32},
     r"!prim\.const: shape must be a list of sizes >= 0"),
    ("prim.const", [], {"value": 1.0, "shape": (2,), "dtype": "f32"}, r"!prim\.const: bad dtype"),
    ("prim.iota", [], {"shape": (2, 3), "dim": 0, "dtype": SCALARS["i32"]}, "tensor<2x3xi32>"),
    ("prim.iota", [], {"shape": (2, 3), "dim": 2, "dtype": f32},
     r"!prim\.iota: axes \[2\] out of range for rank 2"),
    # reductions
    ("prim.reduce_sum", ["2x?x4xf32"], {"axes": (0, 2)}, "tensor<?xf32>"),
    ("prim.reduce_sum", ["2x3xf32"], {"axes": ()}, "tensor<2x3xf32>"),
    ("prim.reduce_prod", ["2x3xi64"], {"axes": (1, 0)}, "tensor<i64>"),
    ("prim.reduce_max", ["2x3xi1"], {"axes": (1,)}, "tensor<2xi1>"),
    ("prim.reduce_sum", ["2x3xi1"], {"axes": (1,)}, r"!prim\.reduce_sum: cannot reduce i1"),
    ("prim.reduce_min", ["2x3xf32"], {"axes": (1, 1)}, r"!prim\.reduce_min: repeated axes"),
    ("prim.reduce_min", ["2x3xf32"], {"axes": (-1,)}, r"!axes \[-1\] out of range for rank 2"),
    ("prim.argmax", ["2x?x4xbf16"], {"axis": 1}, "tensor<2x4xi64>"),
    ("prim.argmin", ["5xi8"], {"axis": 0}, "tensor<i64>"),
    ("prim.argmin", ["5xi8"], {"axis": 1}, r"!prim\.argmin: axes \[1\] out of range for rank 1"),
    # movement
    ("prim.reshape", ["2x3xf32"], {"shape": (3, 2)}, "tensor<3x2xf32>"),
    ("prim.reshape", ["2x3xf32"], {"shape": (6, 1, 1)}, "tensor<6x1x1xf32>"),
    ("prim.reshape", ["0x3xf32"], {"shape": (5, 0)}, "tensor<5x0xf32>"),
    ("prim.reshape", ["?x3xf32"], {"shape": (7,)}, "tensor<7xf32>"),  # checked at run time
    ("prim.reshape", ["2x3xf32"], {"shape": (4,)},
     r"!prim\.reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4\] \(4 elements\)"),
    ("prim.reshape", ["2x3xf32"], {"shape": (None, 3)}, r"!shape must be a list of sizes >= 0"),
    ("prim.permute", ["2x?x4xf32"], {"perm": (2, 0, 1)}, "tensor<4x2x?xf32>"),
    ("prim.permute", ["2x3xf32"], {"perm": (0,)}, r"!perm \[0\] is not a permutation of rank 2"),
    ("prim.permute", ["2x3xf32"], {"perm": (1, 1)}, r"!prim\.permute: repeated axes \[1, 1\]"),
    ("prim.permute", ["2x3xf32"], {"perm": (0, 2)}, r"!axes \[0, 2\] out of range"),
    ("prim.broadcast", ["3xf32"], {"shape": (2, 3), "dims": (1,)}, "tensor<2x3xf32>"),
    ("prim.broadcast", ["1x3xf32"], {"shape": (4, 3), "dims": (0, 1)}, "tensor<4x3xf32>"),
    ("prim.broadcast", ["?xf32"], {"shape": (4, 5), "dims": (1,)}, "tensor<4x5xf32>"),
    ("prim.broadcast", ["f32"], {"shape": (None, None), "dims": ()}, "tensor<?x?xf32>"),
    ("prim.broadcast", ["3xf32"], {"shape": (None, 3), "dims": (1,)}, "tensor<?x3xf32>"),
    ("prim.broadcast", ["3xf32"], {"shape": (2, 4), "dims": (1,)},
     r"!prim\.broadcast: cannot broadcast \[3\] to \[2, 4\]"),
    ("prim.broadcast", ["2x3xf32"], {"shape": (2, 3, 4), "dims": (1, 0)},
     r"!dims \[1, 0\] must map each of the 2 operand axes, in increasing order"),
    ("prim.broadcast", ["2x3xf32"], {"shape": (2, 3), "dims": (0,)}, r"!must map each of the 2"),
    ("prim.broadcast", ["3xf32"], {"shape": (3,), "dims": (1,)}, r"!axes \[1\] out of range"),
    ("prim.slice", ["10x?xf32"], {"start": (1, 0), "stop": (10, 7), "step": (3, 2)},
     "tensor<3x4xf32>"),
    ("prim.slice", ["4xf32"], {"start": (2,), "stop": (2,), "step": (1,)}, "tensor<0xf32>"),
    ("prim.slice", ["4xf32"], {"start": (0,), "stop": (5,), "step": (1,)},
     r"!prim\.slice: bad slice 0:5:1 of size 4"),
    ("prim.slice", ["4xf32"], {"start": (3,), "stop": (2,), "step": (1,)}, r"!bad slice 3:2:1"),
    ("prim.slice", ["4xf32"], {"start": (-1,), "stop": (2,), "step": (1,)}, r"!bad slice -1:2:1"),
    ("prim.slice", ["4xf32"], {"start": (0,), "stop": (2,), "step": (0,)}, r"!bad slice 0:2:0"),
    ("prim.slice", ["4xf32"], {"start": (0, 0), "stop": (2, 2), "step": (1, 1)},
     r"!start/stop/step need 1 entries each"),
    ("prim.pad", ["2x?xf32"], {"low": (1, 2), "high": (0, 3), "value": 0.0}, "tensor<3x?xf32>"),
    ("prim.pad", ["0xi32"], {"low": (0,), "high": (2,), "value": 7}, "tensor<2xi32>"),
    ("prim.pad", ["2xf32"], {"low": (-1,), "high": (0,), "value": 0.0},
     r"!prim\.pad: low/high need 1 entries >= 0"),
    ("prim.pad", ["2xf32"], {"low": (0, 0), "high": (0,), "value": 0.0}, r"!low/high need 1"),
    ("prim.concat", ["2x3xf32", "4x3xf32", "0x3xf32"], {"axis": 0}, "tensor<6x3xf32>"),
    ("prim.concat", ["2x3xf32", "?x?xf32"], {"axis": 0}, "tensor<?x3xf32>"),
    ("prim.concat", ["2x3xf32", "2x1xf32"], {"axis": 1}, "tensor<2x4xf32>"),
    ("prim.concat", ["2x3xf32"], {"axis": 1}, "tensor<2x3xf32>"),
    ("prim.concat", ["2x3xf32", "3x3xf32"], {"axis": 1}, r"!prim\.concat: operand shapes differ"),
    ("prim.concat", ["2x3xf32", "2x3xf64"], {"axis": 0}, r"!prim\.concat: operand dtypes differ"),
    ("prim.concat", ["2x3xf32", "2xf32"], {"axis": 0}, r"!prim\.concat: operand ranks differ"),
    ("prim.concat", ["2x3xf32"], {"axis": 2}, r"!axes \[2\] out of range for rank 2"),
    ("prim.concat", [], {"axis": 0}, r"!prim\.concat: needs at least one operand"),
    # contraction
    ("prim.dot_general", ["2x3xf32", "3x4xf32"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (1,), "rhs_contract": (0,)},
     "tensor<2x4xf32>"),
    ("prim.dot_general", ["5x2x3xf32", "5x4x3xf32"],
     {"lhs_batch": (0,), "rhs_batch": (0,), "lhs_contract": (2,), "rhs_contract": (2,)},
     "tensor<5x2x4xf32>"),
    ("prim.dot_general", ["3x?x7xf16", "7x?x6x3xf16"],
     {"lhs_batch": (0,), "rhs_batch": (3,), "lhs_contract": (2,), "rhs_contract": (0,)},
     "tensor<3x?x?x6xf16>"),
    ("prim.dot_general", ["?x3xi32", "?x4xi32"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (0,), "rhs_contract": (0,)},
     "tensor<3x4xi32>"),
    ("prim.dot_general", ["2x3xf32", "4xf32"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (), "rhs_contract": ()},
     "tensor<2x3x4xf32>"),
    ("prim.dot_general", ["2x3xf32", "4x5xf32"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (1,), "rhs_contract": (0,)},
     r"!prim\.dot_general of \[2, 3\] and \[4, 5\]: operand shapes differ"),
    ("prim.dot_general", ["5x2x3xf32", "6x3x4xf32"],
     {"lhs_batch": (0,), "rhs_batch": (0,), "lhs_contract": (2,), "rhs_contract": (1,)},
     r"!prim\.dot_general of \[5, 2, 3\] and \[6, 3, 4\]"),
    ("prim.dot_general", ["2x3xf32", "3x4xf32"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (1,), "rhs_contract": ()},
     r"!prim\.dot_general: batch/contract axis counts differ"),
    ("prim.dot_general", ["2x3xf32", "3x4xf32"],
     {"lhs_batch": (1,), "rhs_batch": (0,), "lhs_contract": (1,), "rhs_contract": (0,)},
     r"!prim\.dot_general: repeated axes \[1, 1\]"),
    ("prim.dot_general", ["2x3xf32", "3x4xf64"],
     {"lhs_batch": (), "rhs_batch": (), "lhs_contract": (1,), "rhs_contract": (0,)},
     r"!prim\.dot_general: operand dtypes differ"),
]


@pytest.mark.parametrize("name,operands,attrs,expected", PRIM_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(PRIM_CASES)])
def test_prim_shape_rules(name, operands, attrs, expected):
    check(name, operands, attrs, expected)


def test_prim_ops_take_tensors_only():
    m = MemRefType((4,), f32)
    with pytest.raises(IRError, match=r"prim\.add must be a tensor, got memref<4xf32>"):
        OPS["prim.add"].infer([m, m], {})


@pytest.mark.parametrize("fn", sorted(ew.UNARY))
def test_every_prim_unary_keeps_the_shape(fn):
    kind = ew.UNARY[fn]
    dtype = {"float": "f32", "num": "i32", "int_bool": "i64", "any": "f16"}[kind]
    out = "i1" if fn in ew.UNARY_PREDICATES else dtype
    check(f"prim.{fn}", [f"?x0x3x{dtype}"], {}, f"tensor<?x0x3x{out}>")


@pytest.mark.parametrize("fn", sorted(ew.BINARY) + list(ew.COMPARE))
def test_every_prim_binary_merges_shapes(fn):
    kind = ew.BINARY.get(fn, "any")
    dtype = {"float": "f64", "num": "i8", "int": "i32", "int_bool": "i1", "any": "bf16"}[kind]
    out = "i1" if fn in ew.COMPARE else dtype
    check(f"prim.{fn}", [f"?x3x{dtype}", f"2x?x{dtype}"], {}, f"tensor<2x3x{out}>")
    check(f"prim.{fn}", [f"2x{dtype}", f"3x{dtype}"], {}, r"!operand shapes differ")


# -- tensor ------------------------------------------------------------------------------
TENSOR_CASES: list[tuple[str, list[str], dict[str, Any], str]] = [
    ("tensor.add", ["2x1xf32", "3xf32"], {}, "tensor<2x3xf32>"),
    ("tensor.add", ["f32", "4x5xf32"], {}, "tensor<4x5xf32>"),
    ("tensor.add", ["?xf32", "1xf32"], {}, "tensor<?xf32>"),
    ("tensor.add", ["?x3xf32", "4x1xf32"], {}, "tensor<4x3xf32>"),
    ("tensor.add", ["?xf32", "5xf32"], {}, "tensor<5xf32>"),
    ("tensor.add", ["0x1xf32", "1x4xf32"], {}, "tensor<0x4xf32>"),
    ("tensor.add", ["2x3xf32", "4xf32"], {},
     r"!tensor\.add: shapes \[\[2, 3\], \[4\]\] cannot be broadcast \(size 3 vs 4 at dim 1\)"),
    ("tensor.add", ["2xf32", "2xi32"], {}, r"!tensor\.add: operand dtypes differ"),
    ("tensor.maximum", ["2x1xi32", "1x5xi32"], {}, "tensor<2x5xi32>"),
    ("tensor.lt", ["3x1xf32", "4xf32"], {}, "tensor<3x4xi1>"),
    ("tensor.exp", ["2xi32"], {}, r"!tensor\.exp: unsupported dtype i32"),
    ("tensor.isnan", ["2xf32"], {}, "tensor<2xi1>"),
    ("tensor.where", ["2x1x1xi1", "3x1xf32", "4xf32"], {}, "tensor<2x3x4xf32>"),
    ("tensor.where", ["2xf32", "2xf32", "2xf32"], {}, r"!tensor\.where: condition must be bool"),
    ("tensor.where", ["2xi1", "3xf32", "2xf32"], {}, r"!tensor\.where: shapes .* cannot be"),
    ("tensor.relu", ["?x3xbf16"], {}, "tensor<?x3xbf16>"),
    ("tensor.cast", ["?x3xbf16"], {"dtype": SCALARS["i8"]}, "tensor<?x3xi8>"),
    ("tensor.copy", ["?x3xbf16"], {}, "tensor<?x3xbf16>"),
    ("tensor.full", [], {"value": 0, "shape": (2, 3), "dtype": SCALARS["i32"]}, "tensor<2x3xi32>"),
    ("tensor.sum", ["2x3x4xf32"], {"dims": (), "keepdim": False}, "tensor<f32>"),
    ("tensor.sum", ["2x3x4xf32"], {"dims": (), "keepdim": True}, "tensor<1x1x1xf32>"),
    ("tensor.sum", ["2x?x4xi8"], {"dims": (2, 0), "keepdim": True}, "tensor<1x?x1xi64>"),
    ("tensor.sum", ["2x4xi1"], {"dims": (1,), "keepdim": False}, "tensor<2xi64>"),
    ("tensor.prod", ["2x4xi32"], {"dims": (1,), "keepdim": False}, "tensor<2xi64>"),
    ("tensor.mean", ["2x4xf16"], {"dims": (0,), "keepdim": False}, "tensor<4xf16>"),
    ("tensor.mean", ["2x4xi32"], {"dims": (0,), "keepdim": False},
     r"!tensor\.mean: mean needs a floating dtype, got i32"),
    ("tensor.amax", ["2x4xi8"], {"dims": (1,), "keepdim": True}, "tensor<2x1xi8>"),
    ("tensor.amin", ["2x4xi8"], {"dims": (2,), "keepdim": True}, r"!axes \[2\] out of range"),
    ("tensor.argmax", ["2x?xf32"], {"dim": 1, "keepdim": True}, "tensor<2x1xi64>"),
    ("tensor.argmin", ["2x?xf32"], {"dim": 0, "keepdim": False}, "tensor<?xi64>"),
    ("tensor.matmul", ["3xf32", "3xf32"], {}, "tensor<f32>"),
    ("tensor.matmul", ["3xf32", "3x4xf32"], {}, "tensor<4xf32>"),
    ("tensor.matmul", ["2x3xf32", "3xf32"], {}, "tensor<2xf32>"),
    ("tensor.matmul", ["2x3xf32", "3x4xf32"], {}, "tensor<2x4xf32>"),
    ("tensor.matmul", ["5x2x3xf32", "3x4xf32"], {}, "tensor<5x2x4xf32>"),
    ("tensor.matmul", ["2x1x2x3xf32", "4x3x5xf32"], {}, "tensor<2x4x2x5xf32>"),
    ("tensor.matmul", ["?x?xf32", "?x?xf32"], {}, "tensor<?x?xf32>"),
    ("tensor.matmul", ["2x3xf32", "4x5xf32"], {},
     r"!tensor\.matmul: shapes \[2, 3\] and \[4, 5\] cannot be multiplied \(3 vs 4\)"),
    ("tensor.matmul", ["f32", "3xf32"], {}, r"!both operands need at least 1 dimension"),
    ("tensor.matmul", ["2x2x3xf32", "3x3x4xf32"], {}, r"!cannot be broadcast"),
    ("tensor.softmax", ["2x?xf32"], {"dim": 1}, "tensor<2x?xf32>"),
    ("tensor.log_softmax", ["2xi32"], {"dim": 0}, r"!needs a floating dtype, got i32"),
    ("tensor.softmax", ["2xf32"], {"dim": 1}, r"!axes \[1\] out of range for rank 1"),
    ("tensor.reshape", ["2x3xf32"], {"shape": (3, 2)}, "tensor<3x2xf32>"),
    ("tensor.reshape", ["2x3xf32"], {"shape": (5,)}, r"!cannot reshape \[2, 3\]"),
    ("tensor.permute", ["2x3xf32"], {"perm": (1, 0)}, "tensor<3x2xf32>"),
    ("tensor.expand", ["3x1xf32"], {"shape": (2, 3, 4)}, "tensor<2x3x4xf32>"),
    ("tensor.expand", ["?x1xf32"], {"shape": (3, 4)}, "tensor<3x4xf32>"),
    ("tensor.expand", ["3xf32"], {"shape": (4,)},
     r"!tensor\.expand: shapes .* cannot be broadcast"),
    ("tensor.expand", ["2x3xf32"], {"shape": (3,)}, r"!cannot expand \[2, 3\] to \[3\]"),
    ("tensor.slice", ["8xf32"], {"start": (1,), "stop": (8,), "step": (3,)}, "tensor<3xf32>"),
    ("tensor.cat", ["2x3xf32", "2x1xf32"], {"dim": 1}, "tensor<2x4xf32>"),
    ("tensor.cat", ["2x3xf32", "2x1xf32"], {"dim": 0}, r"!operand shapes differ"),
]


@pytest.mark.parametrize("name,operands,attrs,expected", TENSOR_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_shape_rules(name, operands, attrs, expected):
    check(name, operands, attrs, expected)


@pytest.mark.parametrize("fn", sorted(ew.BINARY) + list(ew.COMPARE))
def test_every_tensor_binary_broadcasts(fn):
    kind = ew.BINARY.get(fn, "any")
    dtype = {"float": "f32", "num": "i64", "int": "i8", "int_bool": "i1", "any": "f16"}[kind]
    out = "i1" if fn in ew.COMPARE else dtype
    name = f"tensor.{TENSOR_BINARY_NAMES.get(fn, fn)}"
    check(name, [f"4x1x{dtype}", f"?x3x{dtype}"], {}, f"tensor<4x3x{out}>")
    check(name, [f"2x{dtype}", f"3x{dtype}"], {}, r"!cannot be broadcast")


# numpy's broadcasting is the oracle for shapes without ?.
_shapes = st.lists(st.integers(1, 4), max_size=4).map(tuple)


@given(st.lists(_shapes, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_broadcast_shapes_matches_numpy(shapes, rnd):
    import numpy as np

    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        with pytest.raises(IRError, match="cannot be broadcast"):
            broadcast_shapes(list(shapes), "tensor.add")
        return
    assert broadcast_shapes(list(shapes), "tensor.add") == expected
    # hiding any size behind ? keeps the result compatible: each size is the known one or ?
    hidden = [tuple(None if rnd.random() < 0.3 else d for d in s) for s in shapes]
    got = broadcast_shapes(hidden, "tensor.add")
    assert len(got) == len(expected)
    assert all(g is None or g == e for g, e in zip(got, expected))
