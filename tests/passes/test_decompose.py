"""decompose: IR text in/out, and interp(decompose(g)) against numpy for every tensor op."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lamina.backends.interp import run
from lamina.ir import OPS, IRError, Module, TensorType, verify
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import f32, f64, i1, i32, i64
from lamina.passes.decompose import RULES, Decompose
from tests.passes.filecheck import check_ir, filecheck, func, run_pipeline

DYN = None  # a ? size


def T(*shape, dtype=f32):
    return TensorType(tuple(shape), dtype)


def dyn(rank, dtype=f32):
    return TensorType((None,) * rank, dtype)


def decomposed(m: Module) -> Module:
    out = Decompose().run(m)
    verify(out)
    left = [op.name for g in out.graphs for op in g.walk() if op.name.startswith("tensor.")]
    assert not left, f"tensor ops left after decompose: {left}"
    return out


def check(m: Module, args, expected, rtol=1e-5, atol=1e-6):
    """interp(decompose(m))(*args) equals the numpy ``expected`` values (and their dtypes)."""
    got = run(decomposed(m), *args)
    expected = expected if isinstance(expected, list) else [expected]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        e = np.asarray(e)
        assert g.dtype == e.dtype, (g.dtype, e.dtype)
        assert g.shape == e.shape, (g.shape, e.shape)
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, e)


def rand(shape, dtype=np.float32, seed=0, lo=-3.0, hi=3.0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.bool_:
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind == "i":
        return rng.integers(-20, 20, shape).astype(dtype)
    return rng.uniform(lo, hi, shape).astype(dtype)


seeds = st.integers(0, 2**32 - 1)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0,
                                          max_side=4)
triples = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, min_side=0,
                                            max_side=3)


# -- coverage ----------------------------------------------------------------------------
def test_every_tensor_op_has_a_rule():
    tensor_ops = sorted(n for n in OPS if n.startswith("tensor."))
    assert tensor_ops and [n for n in tensor_ops if n not in RULES] == []


# -- text in, text out -----------------------------------------------------------------------
def test_broadcast_is_explicit_and_only_where_shapes_change():
    check_ir("""
        func @f(%x: tensor<4x3xf32>, %y: tensor<3xf32>, %z: tensor<4x3xf32>) -> (tensor<4x3xf32>) {
          %0 = tensor.add %x, %y : tensor<4x3xf32>
          %1 = tensor.mul %0, %z : tensor<4x3xf32>
          return %1
        }""", "decompose", """
        func @f(%x: tensor<4x3xf32>, %y: tensor<3xf32>, %z: tensor<4x3xf32>) -> (tensor<4x3xf32>) {
          %0 = prim.broadcast %y {dims = [1], shape = [4, 3]} : tensor<4x3xf32>
          %1 = prim.add %x, %0 : tensor<4x3xf32>
          %2 = prim.mul %1, %z : tensor<4x3xf32>
          return %2
        }""")


def test_size_one_expansion_and_dynamic_sizes():
    # a static 1 meeting ? is expanded; ? meeting ? is assumed equal
    check_ir("""
        func @f(%x: tensor<1x?xf32>, %y: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
          %0 = tensor.sub %x, %y : tensor<?x?xf32>
          return %0
        }""", "decompose", """
        func @f(%x: tensor<1x?xf32>, %y: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
          %0 = prim.broadcast %x {dims = [0, 1], shape = [?, ?]} : tensor<?x?xf32>
          %1 = prim.sub %0, %y : tensor<?x?xf32>
          return %1
        }""")


def test_relu_on_dynamic_shape_broadcasts_a_scalar_zero():
    check_ir("""
        func @f(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
          %0 = tensor.relu %x : tensor<?x?xf32>
          return %0
        }""", "decompose", """
        func @f(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
          %0 = prim.const {dtype = f32, shape = [], value = 0.0} : tensor<f32>
          %1 = prim.broadcast %0 {dims = [], shape = [?, ?]} : tensor<?x?xf32>
          %2 = prim.le %x, %1 : tensor<?x?xi1>
          %3 = prim.where %2, %1, %x : tensor<?x?xf32>
          return %3
        }""")


def test_mean_keepdim_and_int_sum():
    check_ir("""
        func @f(%x: tensor<4x6xf32>, %n: tensor<5xi32>) -> (tensor<4x1xf32>, tensor<i64>) {
          %0 = tensor.mean %x {dims = [1], keepdim = true} : tensor<4x1xf32>
          %1 = tensor.sum %n {dims = [], keepdim = false} : tensor<i64>
          return %0, %1
        }""", "decompose", """
        func @f(%x: tensor<4x6xf32>, %n: tensor<5xi32>) -> (tensor<4x1xf32>, tensor<i64>) {
          %0 = prim.reduce_sum %x {axes = [1]} : tensor<4xf32>
          %1 = prim.const {dtype = f32, shape = [4], value = 6.0} : tensor<4xf32>
          %2 = prim.div %0, %1 : tensor<4xf32>
          %3 = prim.reshape %2 {shape = [4, 1]} : tensor<4x1xf32>
          %4 = prim.cast %n {dtype = i64} : tensor<5xi64>
          %5 = prim.reduce_sum %4 {axes = [0]} : tensor<i64>
          return %3, %5
        }""")


def test_keepdim_on_dynamic_shape_inserts_unit_axes_by_broadcast():
    check_ir("""
        func @f(%x: tensor<?x?x?xf32>) -> (tensor<?x1x1xf32>) {
          %0 = tensor.amax %x {dims = [1, 2], keepdim = true} : tensor<?x1x1xf32>
          return %0
        }""", "decompose", """
        func @f(%x: tensor<?x?x?xf32>) -> (tensor<?x1x1xf32>) {
          %0 = prim.reduce_max %x {axes = [1, 2]} : tensor<?xf32>
          %1 = prim.broadcast %0 {dims = [0], shape = [?, 1, 1]} : tensor<?x1x1xf32>
          return %1
        }""")


def test_batched_matmul_broadcasts_batch_dims():
    out = run_pipeline("""
        func @f(%a: tensor<2x1x4x3xf32>, %b: tensor<5x3x6xf32>) -> (tensor<2x5x4x6xf32>) {
          %0 = tensor.matmul %a, %b : tensor<2x5x4x6xf32>
          return %0
        }""", "decompose")
    filecheck(out, """
        CHECK: %0 = prim.broadcast %a {dims = [0, 1, 2, 3], shape = [2, 5, 4, 3]}
        CHECK-NEXT: %1 = prim.broadcast %b {dims = [1, 2, 3], shape = [2, 5, 3, 6]}
        CHECK-NEXT: %2 = prim.dot_general %0, %1 {lhs_batch = [0, 1], lhs_contract = [3],
        CHECK-SAME: rhs_batch = [0, 1], rhs_contract = [2]} : tensor<2x5x4x6xf32>
        CHECK-NEXT: return %2
    """)


def test_matmul_with_a_matrix_rhs_needs_no_broadcast():
    out = run_pipeline("""
        func @f(%a: tensor<?x?x3xf32>, %b: tensor<3x6xf32>) -> (tensor<?x?x6xf32>) {
          %0 = tensor.matmul %a, %b : tensor<?x?x6xf32>
          return %0
        }""", "decompose")
    filecheck(out, """
        CHECK-NOT: prim.broadcast
        CHECK: prim.dot_general %a, %b {lhs_batch = [], lhs_contract = [2], rhs_batch = []
        CHECK-NEXT: return
    """)


def test_softmax_is_max_shifted():
    out = run_pipeline("""
        func @f(%x: tensor<4x8xf32>) -> (tensor<4x8xf32>) {
          %0 = tensor.softmax %x {dim = 1} : tensor<4x8xf32>
          return %0
        }""", "decompose")
    filecheck(out, """
        CHECK: prim.reduce_max %x {axes = [1]}
        CHECK-NEXT: prim.broadcast
        CHECK-NEXT: prim.sub %x
        CHECK-NEXT: prim.exp
        CHECK-NEXT: prim.reduce_sum
        CHECK-NOT: prim.log
        CHECK: prim.div
        CHECK-NEXT: return
    """)


def test_copy_of_an_argument_is_a_copy_group_and_of_a_value_is_the_value():
    check_ir("""
        func @f(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf64>) {
          %0 = tensor.copy %x : tensor<?xf32>
          %1 = tensor.cast %x {dtype = f64} : tensor<?xf64>
          %2 = tensor.copy %1 : tensor<?xf64>
          return %0, %2
        }""", "decompose", """
        func @f(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf64>) {
          %0 = prim.cast %x {dtype = f64} : tensor<?xf64>
          %1 = prim.fusion %x {name = "copy"} : tensor<?xf32> (%x_1: tensor<?xf32>) {
            prim.yield %x_1
          }
          return %1, %0
        }""")


def test_results_stay_fresh_buffers():
    # an op result that decomposes to an argument, or a copy of a value returned too
    out = run_pipeline("""
        func @f(%x: tensor<3xf32>, %s: tensor<f32>)
            -> (tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<f32>, tensor<3xf32>) {
          %0 = tensor.exp %x : tensor<3xf32>
          %1 = tensor.copy %0 : tensor<3xf32>
          %2 = tensor.cast %x {dtype = f32} : tensor<3xf32>
          %3 = tensor.amax %s {dims = [], keepdim = false} : tensor<f32>
          return %1, %0, %2, %3, %x
        }""", "decompose")
    filecheck(out, """
        CHECK: %0 = prim.exp %x
        CHECK-NEXT: %1 = prim.fusion %0 {name = "copy"}
        CHECK: %2 = prim.fusion %x {name = "copy"}
        CHECK: %3 = prim.fusion %s {name = "copy"}
        CHECK: return %1, %0, %2, %3, %x
    """)


def test_decompose_is_idempotent_and_keeps_locations():
    from lamina.ir import Loc
    from lamina.ir.printer import print_module

    m = func(lambda b, x: b("tensor.relu", b("tensor.exp", x)), T(3))
    for op in m.graphs[0].ops[:-1]:
        op.loc = Loc("model.py", 7)
    once = decomposed(m)
    assert all(op.loc == Loc("model.py", 7) for op in once.graphs[0].ops[:-1])
    twice = decomposed(once)
    assert print_module(twice, locs=True) == print_module(once, locs=True)
    assert 'loc("model.py":7)' in print_module(once, locs=True)


# -- errors -----------------------------------------------------------------------------------
def test_errors_name_the_op_shapes_and_dtypes():
    with pytest.raises(IRError, match=r"tensor.amax.*dim 1 of size 0.*\[3, 0\]"):
        Decompose().run(func(lambda b, x: b("tensor.amax", x, dims=(1,), keepdim=False),
                             T(3, 0)))
    with pytest.raises(IRError, match=r"tensor.argmin.*size 0"):
        Decompose().run(func(lambda b, x: b("tensor.argmin", x, dim=0, keepdim=False), T(0, 2)))
    with pytest.raises(IRError, match=r"tensor.mean.*static sizes"):
        Decompose().run(func(lambda b, x: b("tensor.mean", x, dims=(0,), keepdim=False),
                             dyn(2)))
    with pytest.raises(IRError, match=r"tensor.full.*i32 tensor of shape \[2\] with nan"):
        Decompose().run(func(lambda b: b("tensor.full", value=float("nan"), shape=(2,),
                                         dtype=i32)))
    with pytest.raises(IRError, match=r"tensor.relu.*i1"):
        Decompose().run(func(lambda b, x: b("tensor.relu", x), T(2, dtype=i1)))


# -- numbers: elementwise -----------------------------------------------------------------------
def _erfinv(x):
    special = pytest.importorskip("scipy.special")
    return special.erfinv(x)


UNARY_REF = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "exp": np.exp, "exp2": np.exp2,
    "expm1": np.expm1, "log": np.log, "log2": np.log2, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "tanh": np.tanh, "logistic": lambda x: 1 / (1 + np.exp(-x)),
    "erf": np.vectorize(math.erf, otypes=[np.float64]), "erfinv": _erfinv, "floor": np.floor,
    "ceil": np.ceil, "round": np.rint, "trunc": np.trunc, "isnan": np.isnan,
    "not": np.invert,
}


@pytest.mark.parametrize("fn", sorted(ew.UNARY))
def test_unary(fn):
    kind = ew.UNARY[fn]
    dtype = np.int32 if kind == "int_bool" else np.float32
    lo, hi = (-0.9, 0.9) if fn in ("erfinv", "log1p") else (0.1, 3.0) if fn in (
        "log", "log2", "sqrt", "rsqrt") else (-3.0, 3.0)
    x = rand((3, 5), dtype, seed=1, lo=lo, hi=hi)
    if fn == "isnan":
        x[0, 0] = np.nan
    ref = UNARY_REF[fn](x.astype(np.float64) if dtype == np.float32 else x)
    if ref.dtype == np.float64:
        ref = ref.astype(np.float32)
    ir_dtype = i32 if dtype == np.int32 else f32
    m = func(lambda b, a: b(f"tensor.{fn}", a), T(3, 5, dtype=ir_dtype))
    check(m, [x], ref)


BINARY_REF = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "rem": np.fmod,
    "pow": np.power, "max": np.maximum, "min": np.minimum, "atan2": np.arctan2,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
    "shl": np.left_shift, "shr": np.right_shift,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal,
}
_TNAME = {"max": "maximum", "min": "minimum"}


@pytest.mark.parametrize("fn", sorted(BINARY_REF))
def test_binary_with_broadcasting(fn):
    kind = ew.BINARY.get(fn, "any")
    ints = kind in ("int", "int_bool")
    dtype, ir_dtype = (np.int32, i32) if ints else (np.float32, f32)
    x = rand((4, 1, 3), dtype, seed=2, lo=0.5 if fn == "pow" else -3, hi=3)
    y = rand((5, 1), dtype, seed=3, lo=0.5, hi=2.0)
    if fn in ("shl", "shr"):
        y = np.abs(y) % 8
    ref = BINARY_REF[fn](x.astype(np.float64) if not ints else x,
                         y.astype(np.float64) if not ints else y)
    if ref.dtype != np.bool_:
        ref = ref.astype(dtype)
    m = func(lambda b, a, c: b(f"tensor.{_TNAME.get(fn, fn)}", a, c),
             T(4, 1, 3, dtype=ir_dtype), T(5, 1, dtype=ir_dtype))
    check(m, [x, y], ref)


@settings(max_examples=40, deadline=None)
@given(pairs, seeds)
def test_add_and_compare_broadcast_any_shapes(shapes, seed):
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a, b = rand(sa, seed=seed), rand(sb, seed=seed + 1)
    m = func(lambda bb, x, y: [bb("tensor.add", x, y), bb("tensor.lt", x, y)], T(*sa), T(*sb))
    check(m, [a, b], [(a.astype(np.float64) + b).astype(np.float32), a < b])
    assert np.broadcast_shapes(sa, sb) == out


@settings(max_examples=30, deadline=None)
@given(triples, seeds)
def test_where_broadcasts_all_three(shapes, seed):
    sc, sx, sy = shapes.input_shapes
    c, x, y = rand(sc, np.bool_, seed), rand(sx, seed=seed + 1), rand(sy, seed=seed + 2)
    m = func(lambda b, *v: b("tensor.where", *v), T(*sc, dtype=i1), T(*sx), T(*sy))
    check(m, [c, x, y], np.where(c, x, y))


@settings(max_examples=30, deadline=None)
@given(small_shapes, seeds, st.booleans())
def test_relu_static_and_dynamic(shape, seed, dynamic):
    x = rand(shape, seed=seed)
    if x.size:
        x.flat[0] = np.nan
    t = dyn(len(shape)) if dynamic else T(*shape)
    check(func(lambda b, v: b("tensor.relu", v), t), [x], np.where(np.isnan(x), x,
                                                                     np.maximum(x, 0)))


def test_relu_on_ints():
    x = rand((7,), np.int64, seed=4)
    check(func(lambda b, v: b("tensor.relu", v), T(7, dtype=i64)), [x], np.maximum(x, 0))


def test_dynamic_rank_extension_with_equal_runtime_sizes():
    a, b = rand((3, 4), seed=5), rand((4,), seed=6)
    m = func(lambda bb, x, y: bb("tensor.mul", x, y), dyn(2), dyn(1))
    check(m, [a, b], a * b)


@pytest.mark.parametrize("src,dst,values", [
    (f32, i32, [-2.7, -0.5, 0.0, 3.9]), (i32, f32, [-3, 0, 7, 2**24 + 1]),
    (f32, i1, [0.0, -0.0, 2.0, np.nan]), (i1, f32, [True, False]), (f64, f32, [0.1, 1e-40]),
    (f32, f32, [1.5]),
])
def test_cast(src, dst, values):
    x = np.array(values, dtype=src.numpy)
    ref = x != 0 if dst == i1 else x.astype(dst.numpy)
    check(func(lambda b, v: b("tensor.cast", v, dtype=dst), T(len(values), dtype=src)), [x],
          ref, rtol=0, atol=0)


def test_copy_results_are_fresh_values():
    x = rand((2, 3), seed=7)
    m = func(lambda b, v: [b("tensor.copy", v), b("tensor.copy", b("tensor.neg", v)),
                           b("tensor.copy", v)], dyn(2))
    got = run(decomposed(m), x)
    np.testing.assert_array_equal(got[0], x)
    np.testing.assert_array_equal(got[1], -x)
    np.testing.assert_array_equal(got[2], x)


@pytest.mark.parametrize("value,dtype", [(2.5, f32), (-3, i64), (True, i1), (0, f64)])
def test_full(value, dtype):
    m = func(lambda b: b("tensor.full", value=value, shape=(2, 0, 3), dtype=dtype))
    check(m, [], np.full((2, 0, 3), value, dtype.numpy))
    m = func(lambda b: b("tensor.full", value=value, shape=(2, 3), dtype=dtype))
    check(m, [], np.full((2, 3), value, dtype.numpy))


# -- numbers: reductions ------------------------------------------------------------
@st.composite
def reductions(draw, allow_empty=True):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0 if allow_empty else 1,
                                  max_side=4))
    dims = draw(st.lists(st.integers(0, max(len(shape) - 1, 0)), unique=True,
                         max_size=len(shape)))
    return shape, tuple(sorted(dims)), draw(st.booleans())


_REDUCE_REF = {"sum": np.sum, "mean": np.mean, "prod": np.prod, "amax": np.max,
               "amin": np.min}


@settings(max_examples=40, deadline=None)
@given(reductions(), seeds, st.sampled_from(["sum", "mean", "prod"]))
def test_sum_mean_prod(case, seed, fn):
    shape, dims, keep = case
    x = rand(shape, seed=seed, lo=0.5, hi=1.5)
    axes = dims or tuple(range(len(shape)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's mean of nothing is nan too
        ref = _REDUCE_REF[fn](x.astype(np.float64), axis=axes, keepdims=keep)
    m = func(lambda b, v: b(f"tensor.{fn}", v, dims=dims, keepdim=keep), T(*shape))
    check(m, [x], np.asarray(ref).astype(np.float32), rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(reductions(allow_empty=False), seeds, st.sampled_from(["amax", "amin"]),
       st.sampled_from([f32, i32]))
def test_amax_amin(case, seed, fn, dtype):
    shape, dims, keep = case
    x = rand(shape, dtype.numpy, seed=seed)
    axes = dims or tuple(range(len(shape)))
    ref = _REDUCE_REF[fn](x, axis=axes, keepdims=keep)
    m = func(lambda b, v: b(f"tensor.{fn}", v, dims=dims, keepdim=keep), T(*shape, dtype=dtype))
    check(m, [x], np.asarray(ref, dtype=dtype.numpy))


@pytest.mark.parametrize("dtype", [i32, i1])
def test_sum_and_prod_of_ints_and_bools_accumulate_in_i64(dtype):
    x = rand((3, 4), dtype.numpy, seed=8)
    m = func(lambda b, v: [b("tensor.sum", v, dims=(1,), keepdim=False),
                           b("tensor.prod", v, dims=(), keepdim=True)], T(3, 4, dtype=dtype))
    check(m, [x], [x.astype(np.int64).sum(1), x.astype(np.int64).prod(keepdims=True)])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), seeds, st.booleans(), st.sampled_from(["sum", "amax", "prod"]))
def test_reductions_on_dynamic_shapes_keep_dims(rank, seed, keep, fn):
    rng = np.random.default_rng(seed)
    # sizes >= 2: a ? operand axis of run-time size 1 broadcast to a ? axis is ambiguous
    # to the interpreter (it could be an expansion), and keepdim on ? shapes uses one
    shape = tuple(int(n) for n in rng.integers(2, 5, rank))
    dims = tuple(sorted(rng.choice(rank, size=int(rng.integers(1, rank + 1)), replace=False)))
    dims = tuple(int(d) for d in dims)
    x = rand(shape, seed=seed, lo=0.5, hi=1.5)
    m = func(lambda b, v: b(f"tensor.{fn}", v, dims=dims, keepdim=keep), dyn(rank))
    ref = _REDUCE_REF[fn](x.astype(np.float64), axis=dims, keepdims=keep)
    check(m, [x], np.asarray(ref).astype(np.float32))


@settings(max_examples=30, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), seeds, st.booleans(),
       st.sampled_from(["argmax", "argmin"]), st.data())
def test_argmax_argmin(shape, seed, keep, fn, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    x = rand(shape, np.int32, seed=seed)  # small ints: ties, the first index wins
    ref = getattr(np, fn)(x, axis=dim)
    if keep:
        ref = np.expand_dims(ref, dim)
    m = func(lambda b, v: b(f"tensor.{fn}", v, dim=dim, keepdim=keep), T(*shape, dtype=i32))
    check(m, [x], ref.astype(np.int64))


# -- numbers: matmul and softmax ----------------------------------------------------------------
@st.composite
def matmul_shapes(draw):
    m, k, n = (draw(st.integers(0, 3)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, min_side=1,
                                                   max_side=3))
    ba, bb = batch.input_shapes
    ra, rb = draw(st.integers(1, 2 + len(ba))), draw(st.integers(1, 2 + len(bb)))
    a = (k,) if ra == 1 else ba[len(ba) - (ra - 2):] + (m, k)
    b = (k,) if rb == 1 else bb[len(bb) - (rb - 2):] + (k, n)
    return a, b


@settings(max_examples=50, deadline=None)
@given(matmul_shapes(), seeds, st.booleans())
def test_matmul(shapes, seed, dynamic):
    sa, sb = shapes
    a, b = rand(sa, seed=seed), rand(sb, seed=seed + 1)
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    if dynamic and len(sb) > 2 and sa[:-2] != sb[:-2]:
        dynamic = False  # a ? batch axis that must be broadcast is not representable
    ta, tb = (dyn(len(sa)), dyn(len(sb))) if dynamic else (T(*sa), T(*sb))
    check(func(lambda bb, x, y: bb("tensor.matmul", x, y), ta, tb), [a, b], ref, rtol=1e-5,
          atol=1e-5)


def _softmax_ref(x, dim, log):
    if x.size == 0:
        return x
    x = x.astype(np.float64)
    z = x - x.max(axis=dim, keepdims=True)
    s = np.exp(z).sum(axis=dim, keepdims=True)
    return (z - np.log(s) if log else np.exp(z) / s).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), seeds, st.booleans(),
       st.booleans(), st.data())
def test_softmax_and_log_softmax(shape, seed, log, dynamic, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    x = rand(shape, seed=seed, lo=-30, hi=30)
    if x.size:
        x.flat[0] = 80.0  # exp(80) overflows f32: only the max-shifted form survives it
    name = "tensor.log_softmax" if log else "tensor.softmax"
    t = dyn(len(shape)) if dynamic and 0 not in shape else T(*shape)
    check(func(lambda b, v: b(name, v, dim=dim), t), [x], _softmax_ref(x, dim, log),
          rtol=1e-5, atol=1e-6)


# -- numbers: movement ------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(small_shapes, seeds, st.data())
def test_reshape_permute_expand(shape, seed, data):
    x = rand(shape, seed=seed)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    flat = (x.size,)
    extra = data.draw(st.integers(1, 3))
    target = (extra,) + tuple(1 if d == 1 else d for d in shape)
    m = func(lambda b, v: [b("tensor.reshape", v, shape=flat), b("tensor.permute", v, perm=perm),
                           b("tensor.expand", v, shape=target)], T(*shape))
    check(m, [x], [x.reshape(flat), x.transpose(perm), np.broadcast_to(x, target)])


@settings(max_examples=30, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), seeds, st.data())
def test_slice(shape, seed, data):
    x = rand(shape, seed=seed)
    start, stop, step = [], [], []
    for n in shape:
        a = data.draw(st.integers(0, n))
        start.append(a)
        stop.append(data.draw(st.integers(a, n)))
        step.append(data.draw(st.integers(1, 3)))
    m = func(lambda b, v: b("tensor.slice", v, start=tuple(start), stop=tuple(stop),
                            step=tuple(step)), T(*shape))
    check(m, [x], x[tuple(slice(a, b, s) for a, b, s in zip(start, stop, step))])


@settings(max_examples=30, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), seeds,
       st.lists(st.integers(0, 3), min_size=1, max_size=3), st.data())
def test_cat(shape, seed, sizes, data):
    dim = data.draw(st.integers(0, len(shape) - 1))
    parts = [rand(shape[:dim] + (n,) + shape[dim + 1:], seed=seed + i)
             for i, n in enumerate(sizes)]
    m = func(lambda b, *vs: b("tensor.cat", *vs, dim=dim), *(T(*p.shape) for p in parts))
    check(m, parts, np.concatenate(parts, axis=dim))
