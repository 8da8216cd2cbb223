"""The index prims through fusion and lower-loops: kernel structure as text, the loop
interpreter (bounds-checked) against the prim interpreter and numpy, native runs through the
LLVM backend, bad indices that never reach memory, and the VJP rules against finite
differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run as prim_run
from lamina.ir import IRError, TensorType, parse
from lamina.ir.types import SCALARS, f64, i1, i32, i64
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.fusion import group_kind
from tests.passes.filecheck import filecheck, func
from tests.passes.lower_util import (
    dyn,
    group,
    layout_of,
    lower,
    random_values,
    run,
    strided_view,
)
from tests.passes.test_vjp_rules import fd_check

DTYPES = ("f16", "bf16", "f32", "f64", "i1", "i8", "i32", "i64")
shapes = st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple)


def T(shape, dtype="f32"):
    return TensorType(tuple(shape), SCALARS[dtype] if isinstance(dtype, str) else dtype)


def check_group(arg_types, build, arrays):
    """One group, lowered with ``?`` sizes and the arrays' layouts, run by the loop
    interpreter == the prim oracle."""
    m = group([dyn(t) for t in arg_types], build)
    want = prim_run(m, *arrays)[0]
    got = run(lower(m, tuple(layout_of(a) for a in arrays)), *arrays)[0]
    np.testing.assert_array_equal(got, want)
    return got


# -- fusion ----------------------------------------------------------------------------------
def fused(text: str) -> str:
    return str(PassManager(parse_pipeline("fuse")).run(parse(text)))


def test_gather_and_reverse_fuse_with_elementwise_producers():
    out = fused("""func @f(%x: tensor<4x3xf32>, %i: tensor<2x3xi64>) -> (tensor<2x3xf32>) {
  %0 = prim.exp %x : tensor<4x3xf32>
  %1 = prim.reverse %0 {axes = [1]} : tensor<4x3xf32>
  %2 = prim.gather %1, %i {axis = 0} : tensor<2x3xf32>
  %3 = prim.neg %2 : tensor<2x3xf32>
  return %3
}""")
    assert out.count("prim.fusion") == 1
    filecheck(out, """
        CHECK: prim.exp
        CHECK: prim.reverse
        CHECK: prim.gather
        CHECK: prim.neg
    """)


def test_opaque_prims_get_groups_of_their_own():
    text = """func @f(%x: tensor<4x3xf32>) -> (tensor<4x3xf32>) {
  %0 = prim.exp %x : tensor<4x3xf32>
  %1 = prim.cumulative %0 {axis = 0, fn = "sum"} : tensor<4x3xf32>
  %2 = prim.neg %1 : tensor<4x3xf32>
  return %2
}"""
    m = PassManager(parse_pipeline("fuse")).run(parse(text))
    groups = [op for op in m.graphs[0].ops if op.name == "prim.fusion"]
    assert [[o.name for o in g.regions[0].ops[:-1]] for g in groups] == [
        ["prim.exp"], ["prim.cumulative"], ["prim.neg"]]
    assert [group_kind(g) for g in groups] == ["elementwise", "opaque", "elementwise"]
    assert str(PassManager(parse_pipeline("fuse")).run(m)) == str(m)  # idempotent


def test_group_kind_refuses_an_opaque_prim_with_company():
    m = group([T((4,))], lambda b, x: b("prim.cumulative", b("prim.exp", x), axis=0, fn="max"))
    with pytest.raises(IRError, match="must be alone"):
        group_kind(m.graphs[0].ops[0])


# -- kernel structure ------------------------------------------------------------------------
def test_gather_kernel_clamps_the_loaded_index_and_guards_an_empty_axis():
    m = group([dyn(T((4, 3))), dyn(T((2, 3), "i64"))],
              lambda b, x, i: b("prim.gather", x, i, axis=0))
    filecheck(str(lower(m)), """
        CHECK: kernel @k0(%in0: memref<?x?xf32>, %in1: memref<?x?xi64>, %out: memref<?x?xf32>)
        CHECK: loop.dim %in0 {axis = 0}
        CHECK: loop.parallel
        CHECK: loop.load %in1
        CHECK: loop.cast
        CHECK-SAME: {dtype = index}
        CHECK: loop.max
        CHECK: loop.min
        CHECK: loop.for
        CHECK: loop.load %in0
        CHECK: loop.store
    """)


def test_gather_of_a_static_axis_needs_no_guard():
    m = group([T((4, 3)), T((2, 3), "i64")], lambda b, x, i: b("prim.gather", x, i, axis=0))
    text = str(lower(m))
    kernel = text.split("func @f")[0]
    assert kernel.count("loop.for") == 1 and "loop.parallel" in kernel  # the nest only


def test_scatter_is_a_copy_then_a_guarded_accumulation():
    m = group([dyn(T((5, 3))), dyn(T((2, 3), "i64")), dyn(T((2, 3)))],
              lambda b, x, i, s: b("prim.scatter_add", x, i, s, axis=0))
    filecheck(str(lower(m)), """
        CHECK: kernel @k0_copy(%base: memref<?x?xf32>, %out: memref<?x?xf32>)
        CHECK: loop.parallel
        CHECK: loop.store
        CHECK: kernel @k0(%index: memref<?x?xi64>, %src: memref<?x?xf32>, %out: memref<?x?xf32>)
        CHECK: loop.parallel
        CHECK: loop.for
        CHECK: loop.load %index
        CHECK: loop.ge
        CHECK: loop.lt
        CHECK: loop.for
        CHECK: loop.load %src
        CHECK: loop.load %out
        CHECK: loop.add
        CHECK: loop.store
        CHECK: func @f
        CHECK: loop.alloc
        CHECK: loop.call %a0, %2 {kernel = @k0_copy}
        CHECK: loop.call %a1, %a2, %2 {kernel = @k0}
    """)


def test_scan_kernel_carries_a_wider_accumulator():
    m = group([dyn(T((5, 3), "f16"))], lambda b, x: b("prim.cumulative", x, axis=1, fn="sum"))
    filecheck(str(lower(m)), """
        CHECK: loop.parallel
        CHECK: loop.for
        CHECK-SAME: : f32
        CHECK: loop.load %x
        CHECK: loop.cast
        CHECK-SAME: {dtype = f32}
        CHECK: loop.add
        CHECK: loop.cast
        CHECK-SAME: {dtype = f16}
        CHECK: loop.store
        CHECK: loop.yield
    """)


def test_sort_program_allocates_its_scratch_buffers():
    m = group([dyn(T((5, 3)))], lambda b, x: b("prim.argsort", x, axis=0, descending=False))
    text = str(lower(m))
    filecheck(text, """
        CHECK: kernel @k0(%x: memref<?x?xf32>, %out: memref<?x?xi64>, %scratch: memref<?x?xi64>
        CHECK-SAME: %keys: memref<?x?xf32>, %keys_scratch: memref<?x?xf32>)
        CHECK: loop.parallel
        CHECK: loop.store
        CHECK-SAME: %out
        CHECK: loop.load %x
        CHECK: loop.store
        CHECK-SAME: %keys
        CHECK: loop.load %out
        CHECK: loop.load %keys
        CHECK: loop.for
        CHECK: loop.isnan
        CHECK: loop.store
        CHECK-SAME: %scratch
        CHECK: loop.store
        CHECK-SAME: %keys_scratch
        CHECK: loop.load %out
        CHECK: loop.yield
        CHECK: loop.load %scratch
        CHECK: loop.store
        CHECK-SAME: %out
        CHECK: func @f
        CHECK-COUNT-4: loop.alloc
        CHECK: loop.call %a0, %2, %3, %4, %5 {kernel = @k0}
        CHECK: return %2
    """)
    kernel = text.split("func @f")[0]
    assert kernel.count("loop.load %x") == 1  # keys are read once, then travel with indices


# -- numbers: loop interpreter vs the prim interpreter (and numpy) ---------------------------
@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_reverse_and_gather(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    rank = len(shape)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, rank - 1)))))
    x = random_values(rng, shape, dtype)
    got = check_group([T(shape, dtype)], lambda b, v: b("prim.reverse", v, axes=axes), [x])
    np.testing.assert_array_equal(got, np.flip(x, axes))
    axis = data.draw(st.integers(0, rank - 1))
    ishape = [data.draw(st.integers(0, d)) for d in shape]  # no larger off the axis
    ishape[axis] = data.draw(st.integers(0, 4)) if shape[axis] else 0
    ind = rng.integers(0, max(shape[axis], 1), ishape).astype(
        data.draw(st.sampled_from([np.int64, np.int32])))
    x = strided_view(rng, x, data.draw(st.sampled_from(["plain", "step", "t"])))
    got = check_group([T(shape, dtype), T(ishape, ind.dtype.name.replace("int", "i"))],
                      lambda b, v, i: b("prim.gather", v, i, axis=axis), [x, ind])
    part = x[tuple(slice(None) if a == axis else slice(0, n) for a, n in enumerate(ishape))]
    np.testing.assert_array_equal(got, np.take_along_axis(part, ind, axis))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), add=st.booleans(), data=st.data())
def test_scatters(shape, dtype, add, data):
    if add and dtype == "i1":
        dtype = "i32"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    ishape = [data.draw(st.integers(0, d)) for d in shape]  # no larger off the axis
    ishape[axis] = data.draw(st.integers(0, 6)) if shape[axis] else 0
    base = random_values(rng, shape, dtype)
    src = random_values(rng, tuple(ishape), dtype)
    if dtype in ("f16", "bf16"):  # small integers: every sum is exact in any order
        src = random_values(rng, tuple(ishape), "i8").astype(np.float16).astype(base.dtype) \
            if dtype == "f16" else src
    ind = rng.integers(0, max(shape[axis], 1), ishape)
    name = "prim.scatter_add" if add else "prim.scatter"
    got = check_group([T(shape, dtype), T(ishape, "i64"), T(ishape, dtype)],
                      lambda b, x, i, s: b(name, x, i, s, axis=axis), [base, ind, src])
    if dtype not in ("bf16", "i1") and add:
        want = base.copy()
        grid = np.indices(ind.shape, sparse=True)
        coords = [grid[a] if a != axis else ind for a in range(len(shape))]
        np.add.at(want, tuple(coords), src)
        np.testing.assert_allclose(got, want, rtol=1e-2 if dtype == "f16" else 1e-5)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), fn=st.sampled_from(["sum", "prod", "max",
                                                                        "min"]), data=st.data())
def test_cumulative(shape, dtype, fn, data):
    if dtype == "i1" and fn in ("sum", "prod"):
        dtype = "i8"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = random_values(rng, shape, dtype)
    if dtype in ("f32", "f64") and x.size:
        x.flat[rng.integers(0, x.size)] = np.nan
    x = strided_view(rng, x, data.draw(st.sampled_from(["plain", "step", "t"])))
    got = check_group([T(shape, dtype)], lambda b, v: b("prim.cumulative", v, axis=axis, fn=fn),
                      [x])
    if dtype in ("f32", "f64", "i32", "i64"):
        ref = {"sum": np.cumsum, "prod": np.cumprod, "max": np.maximum.accumulate,
               "min": np.minimum.accumulate}[fn]
        np.testing.assert_allclose(got, ref(x, axis=axis), rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES), descending=st.booleans(), data=st.data())
def test_argsort_is_a_stable_sort_with_nan_largest(shape, dtype, descending, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = random_values(rng, shape, dtype)
    if x.dtype.kind == "f" and x.size:
        x.flat[rng.integers(0, x.size, 2)] = np.nan
    if x.dtype.kind in "iu":
        x = x % 3  # many ties
    got = check_group([T(shape, dtype)],
                      lambda b, v: b("prim.argsort", v, axis=axis, descending=descending), [x])
    line_sorted = np.sort(np.moveaxis(got, axis, -1), axis=-1)
    assert (line_sorted == np.arange(shape[axis])).all()  # each line is a permutation
    if dtype in ("f32", "f64", "i32", "i64", "i1", "i8"):
        key = -x.astype(np.float64) if descending else x.astype(np.float64)
        if descending and x.dtype.kind == "f":
            key = np.where(np.isnan(x), -np.inf, key)  # NaN first when descending
        np.testing.assert_array_equal(got, np.argsort(key, axis=axis, kind="stable"))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), extra=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_compact(n, extra, seed):
    mask = np.random.default_rng(seed).random(n) < 0.4
    size = max(0, int(mask.sum()) + extra)
    like = np.zeros(size, np.float32)
    got = check_group([T((n,), "i1"), T((size,))], lambda b, m, s: b("prim.compact", m, s),
                      [mask, like])
    if extra == 0:
        np.testing.assert_array_equal(got, np.flatnonzero(mask))


# -- bad indices never reach memory (the loop interpreter checks every access) ---------------
def test_bad_indices_are_clamped_or_skipped():
    x = np.arange(4.0, dtype=np.float32)
    ind = np.array([-7, 2, 99], np.int64)
    m = group([dyn(T((4,))), dyn(T((3,), "i64"))], lambda b, v, i: b("prim.gather", v, i, axis=0))
    np.testing.assert_array_equal(run(lower(m), x, ind)[0], [0.0, 2.0, 3.0])
    m = group([dyn(T((4,))), dyn(T((3,), "i64")), dyn(T((3,)))],
              lambda b, v, i, s: b("prim.scatter_add", v, i, s, axis=0))
    got = run(lower(m), x, ind, np.ones(3, np.float32))[0]
    np.testing.assert_array_equal(got, [0.0, 1.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="out of range"):
        prim_run(m, x, ind, np.ones(3, np.float32))


def test_gather_from_an_empty_axis_reads_nothing():
    m = group([dyn(T((0,))), dyn(T((2,), "i64"))], lambda b, v, i: b("prim.gather", v, i, axis=0))
    got = run(lower(m), np.zeros(0, np.float32), np.array([0, 5], np.int64))[0]
    np.testing.assert_array_equal(got, [0.0, 0.0])


# -- native through LLVM -------------------------------------------------------------------
def test_native_program_of_every_index_prim():
    runtime = pytest.importorskip("lamina.runtime")
    from lamina.passes.pipeline import lower as pipeline_lower

    head = ("func @f(%x: tensor<?x?xf32>, %i: tensor<?x?xi64>, %m: tensor<?xi1>, "
            "%l: tensor<?xi1>) -> (tensor<?x?xf32>, tensor<?x?xf32>, tensor<?x?xf32>, "
            "tensor<?x?xi64>, tensor<?xi64>, tensor<?x?xf32>) {")
    m = parse(head + """
  %e = tensor.exp %x : tensor<?x?xf32>
  %0 = prim.gather %e, %i {axis = 0} : tensor<?x?xf32>
  %1 = prim.scatter_add %x, %i, %0 {axis = 0} : tensor<?x?xf32>
  %2 = prim.cumulative %x {axis = 1, fn = "sum"} : tensor<?x?xf32>
  %3 = prim.argsort %x {axis = 0, descending = true} : tensor<?x?xi64>
  %4 = prim.compact %m, %l : tensor<?xi64>
  %5 = prim.reverse %x {axes = [0, 1]} : tensor<?x?xf32>
  return %0, %1, %2, %3, %4, %5
}""")
    stages = pipeline_lower(m)
    prog = runtime.compile_program(stages.loop, "f")
    rng = np.random.default_rng(1)
    for rows, cols in ((5, 4), (1, 1), (300, 7), (3, 0)):
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        ind = rng.integers(0, max(rows, 1), (rows, cols))
        mask = rng.random(2 * rows) < 0.5
        like = np.zeros(int(mask.sum()), bool)
        got = prog(x, ind, mask, like)
        want = prim_run(stages.prim, x, ind, mask, like)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-6)


# -- VJP rules against finite differences ------------------------------------------------------
def _fd(build, arg_types, arrays, seed=0, fused=False):
    m = func(build, *arg_types)
    return fd_check(m, arrays, np.random.default_rng(seed), fused=fused)


@pytest.mark.parametrize("fused", [False, True])
def test_vjp_of_gather_and_scatters(fused):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3))
    ind = np.array([[0, 3, 3], [2, 0, 3]])
    src = rng.standard_normal((2, 3))
    _fd(lambda b, v, i: b("prim.gather", b("prim.sin", v), i, axis=0),
        [T((4, 3), f64), T((2, 3), i64)], [x, ind], fused=fused)
    unique = np.array([[0, 3, 1], [2, 0, 3]])  # PyTorch's scatter VJP assumes no repeats
    for name, i in (("prim.scatter_add", ind), ("prim.scatter", unique)):
        _fd(lambda b, v, i, s, name=name: b("prim.mul", b(name, v, i, b("prim.exp", s), axis=0),
                                             v),
            [T((4, 3), f64), T((2, 3), i64), T((2, 3), f64)], [x, i, src], fused=fused)


@pytest.mark.parametrize("fn", ["sum", "prod", "max", "min"])
def test_vjp_of_scans(fn):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5))
    if fn == "prod":
        x[0, 1] = 0.0
        x[1, 2] = x[1, 4] = 0.0
    _fd(lambda b, v: b("prim.cumulative", v, axis=1, fn=fn), [T((3, 5), f64)], [x])
    _fd(lambda b, v: b("prim.reverse", b("prim.cumulative", v, axis=0, fn=fn), axes=(1,)),
        [T((3, 5), f64)], [x], fused=True)


def test_cummax_vjp_goes_to_the_last_holder_on_ties():
    from lamina.passes.vjp_rules import VJP
    from tests.passes.test_vjp_rules import _NumpyEmitter

    _NumpyEmitter.types.setdefault(np.dtype("int64"), i64)
    e = _NumpyEmitter()
    x = np.array([1.0, 3.0, 3.0, 2.0, np.nan, 5.0])
    y = np.array([1.0, 3.0, 3.0, 3.0, np.nan, np.nan])
    (gx,) = VJP["prim.cumulative"](e, {"axis": 0, "fn": "max"}, [x], [y], [np.ones(6)])
    np.testing.assert_array_equal(gx, [1.0, 1.0, 2.0, 0.0, 2.0, 0.0])


def test_index_prims_without_derivatives():
    from lamina.ir import Builder
    from lamina.passes.vjp_rules import VJP, IREmitter

    m = func(lambda b, v: b("prim.argsort", v, axis=0, descending=False), T((3,), f64))
    g = m.graphs[0]
    op = g.ops[0]
    e = IREmitter(Builder(g.body))
    assert VJP["prim.argsort"](e, op.attrs, op.operands, op.results, [op.result]) == [None]
    assert VJP["prim.compact"](e, {}, [g.args[0], g.args[0]], [op.result], [None]) == [
        None, None]


def test_shape_rules_name_the_op():
    with pytest.raises(IRError, match="prim.gather: index must be an i32 or i64"):
        func(lambda b, v: b("prim.gather", v, v, axis=0), T((3,)))
    with pytest.raises(IRError, match="prim.scatter_add: cannot add i1"):
        func(lambda b, v, i: b("prim.scatter_add", v, i, v, axis=0), T((3,), i1),
             T((3,), i32))
    with pytest.raises(IRError, match="prim.cumulative: fn must be one of"):
        func(lambda b, v: b("prim.cumulative", v, axis=0, fn="mean"), T((3,)))
    with pytest.raises(IRError, match="larger than the operand"):
        func(lambda b, v, i: b("prim.gather", v, i, axis=0), T((3, 2)), T((3, 4), i64))
