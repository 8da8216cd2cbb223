"""lower-loops: kernel and program structure as text, and elementwise/movement/copy groups
run by the loop interpreter against numpy (static and ? shapes, views, every dtype)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir import IRError, TensorType, parse, verify
from lamina.ir.types import SCALARS, f32, i64
from lamina.passes.lower_loops import LowerLoops
from tests.passes.filecheck import filecheck
from tests.passes.lower_util import (
    ALL_DTYPES,
    dyn,
    group,
    layout_of,
    lower,
    random_values,
    run,
    storage,
    strided_view,
    values,
)

BIAS_ADD = """
func @f(%x: tensor<4x8xf32>, %y: tensor<8xf32>) -> (tensor<4x8xf32>) {
  %0 = prim.fusion %x, %y {name = "k0"} : tensor<4x8xf32> (%a: tensor<4x8xf32>, %b: tensor<8xf32>) {
    %1 = prim.broadcast %b {dims = [1], shape = [4, 8]} : tensor<4x8xf32>
    %2 = prim.add %a, %1 : tensor<4x8xf32>
    %3 = prim.exp %2 : tensor<4x8xf32>
    prim.yield %3
  }
  return %0
}"""

BIAS_ADD_LOOPS = """
kernel @k0(%in0: memref<4x8xf32>, %in1: memref<8xf32>, %out: memref<4x8xf32>) {
  %0 = loop.const {value = 4} : index
  %1 = loop.const {value = 8} : index
  %2 = loop.const {value = 0} : index
  %3 = loop.const {value = 1} : index
  loop.parallel %2, %0, %3 (%i1: index) {
    loop.for %2, %1, %3 (%i2: index) {
      %4 = loop.load %in0, %i1, %i2 : f32
      %5 = loop.load %in1, %i2 : f32
      %6 = loop.add %4, %5 : f32
      %7 = loop.exp %6 : f32
      loop.store %7, %out, %i1, %i2
    }
  }
}

func @f(%x: memref<4x8xf32>, %y: memref<8xf32>) -> (memref<4x8xf32>) {
  %0 = loop.alloc : memref<4x8xf32>
  loop.call %x, %y, %0 {kernel = @k0}
  return %0
}"""


def test_static_elementwise_text():
    out = lower(parse(BIAS_ADD))
    assert str(out) == BIAS_ADD_LOOPS.strip()


def test_eager_all_dynamic_with_layouts_text():
    text = BIAS_ADD.replace("4x8", "?x?").replace("tensor<8xf32>", "tensor<?xf32>").replace(
        "shape = [4, 8]", "shape = [?, ?]")
    module = parse(text)
    verify(module)
    out = str(lower(module, layouts=((None, 1), (0,))))
    filecheck(out, """
        CHECK: kernel @k0(%in0: memref<?x?xf32, strided<[?, 1]>>,
        CHECK-SAME: %in1: memref<?xf32, strided<[0]>>, %out: memref<?x?xf32>)
        CHECK: loop.dim %out {axis = 0}
        CHECK: loop.dim %out {axis = 1}
        CHECK: loop.parallel
        CHECK-NEXT: loop.for
        CHECK-NEXT: loop.load %in0
        CHECK-NEXT: loop.load %in1
        CHECK: loop.store
        CHECK: func @f(%x: memref<?x?xf32, strided<[?, 1]>>, %y: memref<?xf32, strided<[0]>>)
        CHECK-SAME: -> (memref<?x?xf32>)
        CHECK-NEXT: loop.dim %x {axis = 0}
        CHECK-NEXT: loop.dim %x {axis = 1}
        CHECK-NEXT: loop.alloc %0, %1 : memref<?x?xf32>
        CHECK-NEXT: loop.call %x, %y, %2 {kernel = @k0}
        CHECK-NEXT: return %2
    """)
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    y = np.broadcast_to(np.float32(0.5), (5,))
    np.testing.assert_allclose(run(parse(out), x, y)[0], np.exp(x + y), rtol=1e-6)


CHAIN = """
func @f(%x: tensor<?xf32>, %y: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>, tensor<?xf32>) {
  %0 = prim.fusion %x, %x {name = "k_sq"} : tensor<?xf32> (%a: tensor<?xf32>, %b: tensor<?xf32>) {
    %1 = prim.mul %a, %b : tensor<?xf32>
    prim.yield %1
  }
  %2 = prim.fusion %0, %y {name = "k_sq"} : tensor<?xf32> (%c: tensor<?xf32>, %d: tensor<?xf32>) {
    %3 = prim.sub %c, %d : tensor<?xf32>
    prim.yield %3
  }
  %4 = prim.fusion %y {name = "copy"} : tensor<?xf32> (%e: tensor<?xf32>) {
    prim.yield %e
  }
  return %2, %y, %4
}"""


def test_program_of_several_groups():
    out = lower(parse(CHAIN))
    text = str(out)
    assert text.count("kernel @") == 3
    filecheck(text, """
        CHECK: kernel @k_sq(%in0: memref<?xf32>, %out: memref<?xf32>)
        CHECK: loop.mul
        CHECK: kernel @k_sq_1(%in0: memref<?xf32>, %in1: memref<?xf32>, %out: memref<?xf32>)
        CHECK: loop.sub
        CHECK: kernel @copy(%in0: memref<?xf32>, %out: memref<?xf32>)
        CHECK: func @f(
        CHECK: loop.call %x, %
        CHECK-SAME: {kernel = @k_sq}
        CHECK: , %y, %
        CHECK-SAME: {kernel = @k_sq_1}
        CHECK: loop.call %y, %
        CHECK-SAME: {kernel = @copy}
        CHECK: return %
        CHECK-SAME: , %y, %
    """)
    x = np.arange(5, dtype=np.float32)
    y = np.full(5, 2.0, np.float32)
    a, b, c = run(out, x, y)
    np.testing.assert_array_equal(a, x * x - y)
    assert b is y
    np.testing.assert_array_equal(c, y)
    assert c is not y


def test_one_kernel_per_group_parallel_outermost():
    text = str(lower(parse(CHAIN)))
    kernels = text.split("kernel @")[1:]
    for k in kernels:
        body = [ln.strip() for ln in k.split("\n")[1:] if ln.strip()]
        first_loop = next(ln for ln in body if "loop.for" in ln or "loop.parallel" in ln)
        assert "loop.parallel" in first_loop


# -- errors --------------------------------------------------------------------------------
def test_errors_name_the_problem():
    m = parse("""
func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {
  %0 = prim.exp %x : tensor<4xf32>
  return %0
}""")
    with pytest.raises(IRError, match="only prim.fusion ops and return.*prim.exp"):
        LowerLoops().run(m)
    with pytest.raises(IRError, match="has 2 arguments but arg_layouts gives 1"):
        LowerLoops(arg_layouts=[(1,)]).run(parse(CHAIN))
    with pytest.raises(IRError, match=r"argument 0 of @f of type tensor<\?xf32> has stride "
                                      r"pattern \(2,\)"):
        LowerLoops(arg_layouts=[(2,), None]).run(parse(CHAIN))
    unknown = group([TensorType((1,), f32)], lambda b, x: b("prim.broadcast", x, shape=(None,),
                                                             dims=(0,)))
    with pytest.raises(IRError, match="cannot tell the run-time size of axis 0"):
        LowerLoops().run(unknown)
    outside = parse("""
func @f(%x: tensor<?xf32>, %y: tensor<?xf32>) -> (tensor<?xf32>) {
  %0 = prim.fusion %x {name = "k0"} : tensor<?xf32> (%a: tensor<?xf32>) {
    %1 = prim.add %a, %y : tensor<?xf32>
    prim.yield %1
  }
  return %0
}""")
    with pytest.raises(IRError, match="from outside the group"):
        LowerLoops().run(outside)


# -- numerics: elementwise with broadcasting ---------------------------------------------------
BINARY_FOR = {"float": ["add", "sub", "mul", "div", "max", "min"],
              "int": ["add", "sub", "mul", "max", "min", "xor"],
              "bool": ["and", "or", "xor"]}


def _kind(dtype: str) -> str:
    t = SCALARS[dtype]
    return "float" if t.is_float else "bool" if t.is_bool else "int"


def np_binary(fn: str, a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray:
    """The reference: float math in float64 rounded to the type, integers wrapping."""
    kind = _kind(dtype)
    ops = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
           "max": np.maximum, "min": np.minimum, "xor": np.bitwise_xor,
           "and": np.bitwise_and, "or": np.bitwise_or}
    if kind == "float":
        with np.errstate(all="ignore"):
            r = ops[fn](values(a, dtype).astype(np.float64), values(b, dtype).astype(np.float64))
        return storage(r.astype(np.float32) if dtype == "bf16" else r, dtype)
    with np.errstate(all="ignore"):
        return ops[fn](a, b).astype(a.dtype)


def assert_same(got: np.ndarray, want: np.ndarray, dtype: str) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if SCALARS[dtype].is_float:
        np.testing.assert_array_equal(values(got, dtype), values(want, dtype))
    else:
        np.testing.assert_array_equal(got, want)


shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)


@settings(max_examples=50, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(ALL_DTYPES), data=st.data(), dynamic=st.booleans(),
       view=st.sampled_from(["plain", "step", "t"]))
def test_binary_with_broadcast(shape, dtype, data, dynamic, view):
    fn = data.draw(st.sampled_from(BINARY_FOR[_kind(dtype)]))
    rank = len(shape)
    keep = data.draw(st.integers(0, rank))  # b has the trailing `keep` axes of a
    b_shape = tuple(1 if data.draw(st.booleans()) else d for d in shape[rank - keep:])
    t = SCALARS[dtype]
    a_t = TensorType(shape, t)
    b_t = TensorType(b_shape, t)
    if dynamic:
        a_t = dyn(a_t)
        b_t = TensorType(tuple(1 if d == 1 else None for d in b_shape), t)

    def build(b, x, y):
        dims = tuple(range(rank - keep, rank))
        yb = b("prim.broadcast", y, shape=a_t.shape, dims=dims)
        return b(f"prim.{fn}", x, yb)

    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = strided_view(rng, random_values(rng, shape, dtype), view)
    bv = random_values(rng, b_shape, dtype)
    if fn == "div" and _kind(dtype) == "float":
        bv = storage(np.where(values(bv, dtype) == 0, 1, values(bv, dtype)), dtype)
    layouts = (layout_of(a), layout_of(bv)) if view != "plain" else None
    out = lower(group([a_t, b_t], build), layouts)
    (got,) = run(out, a, bv)
    assert_same(got, np_binary(fn, a, np.broadcast_to(bv, shape), dtype), dtype)


@settings(max_examples=30, deadline=None)
@given(shape=shapes.filter(lambda s: len(s) >= 1), dtype=st.sampled_from(ALL_DTYPES),
       data=st.data())
def test_eager_style_stride_zero_inputs(shape, dtype, data):
    """Eager graphs: all sizes ?, inputs already broadcast as stride-0 views."""
    t = SCALARS[dtype]
    fn = data.draw(st.sampled_from(BINARY_FOR[_kind(dtype)]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = random_values(rng, shape, dtype)
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True))
    small = tuple(1 if i in axes else d for i, d in enumerate(shape))
    bv = np.broadcast_to(random_values(rng, small, dtype), shape)
    tt = TensorType((None,) * len(shape), t)
    out = lower(group([tt, tt], lambda b, x, y: b(f"prim.{fn}", x, y)),
                (layout_of(a), layout_of(bv)))
    strides = out.get("k0").args[1].type.strides
    for i in axes:
        if shape[i] > 1:  # a broadcast axis: its static stride 0 reaches the kernel
            assert strides[i] == 0
    (got,) = run(out, a, bv)
    assert_same(got, np_binary(fn, a, np.ascontiguousarray(bv), dtype), dtype)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(ALL_DTYPES), src=st.sampled_from(ALL_DTYPES),
       data=st.data())
def test_cast_where_compare(shape, dtype, src, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = random_values(rng, shape, src)
    y = random_values(rng, shape, src)
    st_, dt = SCALARS[src], SCALARS[dtype]

    def build(b, xv, yv):
        c = b("prim.lt", xv, yv)
        cx = b("prim.cast", xv, dtype=dt)
        cy = b("prim.cast", yv, dtype=dt)
        return b("prim.where", c, cx, cy)

    out = lower(group([TensorType(shape, st_)] * 2, build))
    (got,) = run(out, x, y)
    xv, yv = values(x, src), values(y, src)
    pick = np.where(xv < yv, xv, yv)
    if dt.is_bool:
        want = pick != 0
    elif dt.is_float:
        want = storage(pick.astype(np.float64).astype(np.float32) if dtype == "bf16"
                       else pick.astype(dt.numpy), dtype)
    else:
        want = np.trunc(pick.astype(np.float64)).astype(np.int64).astype(dt.numpy)
    assert_same(got, want, dtype)


# -- numerics: movement ----------------------------------------------------------------------
def _run1(module, layouts, *arrays):
    return run(lower(module, layouts), *arrays)[0]


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple), data=st.data(),
       dynamic=st.booleans())
def test_permute_slice_then_elementwise(shape, data, dynamic):
    rank = len(shape)
    perm = tuple(data.draw(st.permutations(range(rank))))
    start, stop, step = [], [], []
    for d in shape:
        a = data.draw(st.integers(0, d))
        start.append(a)
        stop.append(data.draw(st.integers(a, d)))
        step.append(data.draw(st.integers(1, 3)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    t = TensorType(shape, f32)

    def build(b, v):
        s = b("prim.slice", v, start=tuple(start), stop=tuple(stop), step=tuple(step))
        p = b("prim.permute", s, perm=perm)
        return b("prim.mul", p, p)

    got = _run1(group([dyn(t) if dynamic else t], build), None, x)
    ref = x[tuple(slice(a, b, s) for a, b, s in zip(start, stop, step))].transpose(perm)
    np.testing.assert_array_equal(got, ref * ref)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple), data=st.data(),
       dynamic=st.booleans(), dtype=st.sampled_from(["f32", "i32", "i1", "f16"]))
def test_pad(shape, data, dynamic, dtype):
    """Static non-empty inputs clamp + select; ? or empty ones guard the load."""
    rank = len(shape)
    low = tuple(data.draw(st.integers(0, 2)) for _ in range(rank))
    high = tuple(data.draw(st.integers(0, 2)) for _ in range(rank))
    t = TensorType(shape, SCALARS[dtype])
    value = {"f32": -1.5, "i32": 7, "i1": True, "f16": 2.0}[dtype]
    rng = np.random.default_rng(1)
    x = random_values(rng, shape, dtype)

    def build(b, v):
        return b("prim.pad", v, low=low, high=high, value=value)

    module = group([dyn(t) if dynamic else t], build)
    text = str(lower(module, None))
    if dynamic and any(lo or hi for lo, hi in zip(low, high)):
        assert "loop.for" in text and "loop.cast" in text  # the 0/1-trip guard
    got = _run1(module, None, x)
    ref = np.pad(x, list(zip(low, high)), constant_values=value)
    np.testing.assert_array_equal(got, ref)


@settings(max_examples=40, deadline=None)
@given(rank=st.integers(1, 3), data=st.data(), dynamic=st.booleans())
def test_concat(rank, data, dynamic):
    axis = data.draw(st.integers(0, rank - 1))
    base = [data.draw(st.integers(0, 3)) for _ in range(rank)]
    pieces = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = list(base)
        s[axis] = data.draw(st.integers(0, 3))
        pieces.append(tuple(s))
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal(s).astype(np.float32) for s in pieces]
    types = [TensorType(s, f32) for s in pieces]
    if dynamic:
        types = [TensorType(tuple(None if a == axis else d for a, d in enumerate(s)), f32)
                 for s in pieces]

    def build(b, *vs):
        c = b("prim.concat", *vs, axis=axis)
        return b("prim.add", c, c)

    got = _run1(group(types, build), None, *xs)
    ref = np.concatenate(xs, axis=axis)
    np.testing.assert_array_equal(got, ref + ref)


def _factor(n: int, data) -> tuple[int, ...]:
    dims = []
    while n > 1 and len(dims) < 3:
        f = data.draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
        dims.append(f)
        n //= f
    dims.append(n)
    if data.draw(st.booleans()):
        dims.insert(data.draw(st.integers(0, len(dims))), 1)
    return tuple(dims)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dynamic=st.booleans(), view=st.sampled_from(["plain", "step", "t"]))
def test_reshape(data, dynamic, view):
    n = data.draw(st.sampled_from([0, 1, 6, 12, 24, 30]))
    src = _factor(n, data) if n else (2, 0, 3)
    dst = _factor(n, data) if n else (0, 5)
    rng = np.random.default_rng(3)
    x = strided_view(rng, rng.standard_normal(src).astype(np.float32), view)
    t = TensorType(src, f32)

    def build(b, v):
        return b("prim.neg", b("prim.reshape", v, shape=dst))

    layouts = (layout_of(x),) if view != "plain" else None
    got = _run1(group([dyn(t) if dynamic else t], build), layouts, x)
    np.testing.assert_array_equal(got, -x.reshape(dst))


def test_iota_const_and_dynamic_broadcast_onto_static():
    t = TensorType((3, 4), f32)

    def build(b, v, w):
        io = b("prim.iota", shape=(3, 4), dim=1, dtype=f32)
        c = b("prim.const", value=10.0, shape=(3, 4), dtype=f32)
        wb = b("prim.broadcast", w, shape=(3, 4), dims=(1,))  # ? onto 4: 1 or 4 at run time
        return b("prim.add", b("prim.add", v, io), b("prim.mul", c, wb))

    module = group([t, TensorType((None,), f32)], build)
    x = np.ones((3, 4), np.float32)
    for w in (np.arange(4, dtype=np.float32), np.array([5.0], np.float32)):
        got = _run1(module, None, x, w)
        np.testing.assert_array_equal(got, x + np.arange(4) + 10 * np.broadcast_to(w, (4,)))
    idx = group([TensorType((5,), i64)],
                lambda b, v: b("prim.add", v, b("prim.iota", shape=(5,), dim=0, dtype=i64)))
    np.testing.assert_array_equal(_run1(idx, None, np.full(5, 3, np.int64)), 3 + np.arange(5))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(ALL_DTYPES), view=st.sampled_from(["step", "t"]),
       dynamic=st.booleans())
def test_copy_group_from_views(shape, dtype, view, dynamic):
    rng = np.random.default_rng(4)
    x = strided_view(rng, random_values(rng, shape, dtype), view)
    t = TensorType(shape, SCALARS[dtype])
    module = group([dyn(t) if dynamic else t], lambda b, v: v)
    got = _run1(module, (layout_of(x),), x)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, x)
