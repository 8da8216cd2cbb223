"""lower-loops on reduction groups: kernel structure, and reductions / arg-reductions with
epilogues run by the loop interpreter against numpy (every dtype, NaN, empty axes, views)."""

from __future__ import annotations

import re

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir import TensorType, parse
from lamina.ir.types import SCALARS, f32
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

ROW_SUM = """
func @f(%x: tensor<?x?xf32>) -> (tensor<?xf32>) {
  %0 = prim.fusion %x {name = "k0"} : tensor<?xf32> (%a: tensor<?x?xf32>) {
    %1 = prim.exp %a : tensor<?x?xf32>
    %2 = prim.reduce_sum %1 {axes = [AXIS]} : tensor<?xf32>
    prim.yield %2
  }
  return %0
}"""


def test_last_axis_sum_is_vectorized():
    out = str(lower(parse(ROW_SUM.replace("AXIS", "1")), layouts=((None, 1),)))
    filecheck(out, """
        CHECK: kernel @k0(%in0: memref<?x?xf32, strided<[?, 1]>>, %out: memref<?xf32>)
        CHECK: loop.splat
        CHECK: loop.parallel
        CHECK: loop.for
        CHECK-SAME: vector<16xf32>, vector<16xf32>
        CHECK: loop.vload %in0
        CHECK: loop.exp
        CHECK-SAME: vector<16xf32>
        CHECK: loop.vload %in0
        CHECK: loop.yield
        CHECK: loop.for
        CHECK: loop.vload
        CHECK: loop.for
        CHECK: loop.load %in0
        CHECK: loop.vreduce
        CHECK-SAME: {fn = "sum"}
        CHECK: loop.store
    """)


def test_kept_last_axis_stores_vectors():
    out = str(lower(parse(ROW_SUM.replace("AXIS", "0"))))
    filecheck(out, """
        CHECK: loop.parallel
        CHECK: loop.for
        CHECK: loop.for
        CHECK-SAME: : vector<256xf32>
        CHECK: loop.vload %in0
        CHECK: loop.vstore
        CHECK: loop.for
        CHECK: loop.for
        CHECK-SAME: : vector<16xf32>
        CHECK: loop.vload %in0
        CHECK: loop.vstore
        CHECK: loop.for
        CHECK: loop.load %in0
        CHECK: loop.store
    """)
    assert "loop.vreduce" not in out


def test_unit_stride_missing_falls_back_to_scalar():
    out = str(lower(parse(ROW_SUM.replace("AXIS", "1")), layouts=((None, None),)))
    assert "vload" not in out and "loop.parallel" in out
    x = np.arange(12, dtype=np.float32).reshape(3, 4).T
    np.testing.assert_allclose(run(parse(out), x)[0], np.exp(x.astype(np.float64)).sum(1),
                               rtol=1e-6)


# -- numerics ---------------------------------------------------------------------------------
SIZES = st.sampled_from([0, 1, 2, 3, 5, 17, 40])


def identity(fn: str, dtype: str):
    t = SCALARS[dtype]
    if fn == "sum":
        return 0
    if fn == "prod":
        return 1
    if t.is_bool:
        return fn == "min"
    if t.is_float:
        return -np.inf if fn == "max" else np.inf
    info = np.iinfo(t.numpy)
    return info.min if fn == "max" else info.max


def np_reduce(fn: str, x: np.ndarray, axes: tuple[int, ...], dtype: str) -> np.ndarray:
    t = SCALARS[dtype]
    if t.is_float:
        v = values(x, dtype).astype(np.float64)
    else:
        v = x
    with np.errstate(all="ignore"):
        if fn == "sum":
            r = np.sum(v, axis=axes, dtype=None if t.is_float else v.dtype)
        elif fn == "prod":
            r = np.prod(v, axis=axes, dtype=None if t.is_float else v.dtype)
        elif fn == "max":
            r = np.max(v, axis=axes, initial=identity(fn, dtype))
        else:
            r = np.min(v, axis=axes, initial=identity(fn, dtype))
    if t.is_float:
        return storage(np.asarray(r).astype(np.float32 if dtype == "bf16" else t.numpy), dtype)
    return np.asarray(r).astype(t.numpy)


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(SIZES, min_size=1, max_size=3).map(tuple), data=st.data(),
       dtype=st.sampled_from(ALL_DTYPES), dynamic=st.booleans(),
       view=st.sampled_from(["plain", "step", "t"]))
def test_reductions(shape, data, dtype, dynamic, view):
    t = SCALARS[dtype]
    fn = data.draw(st.sampled_from(["max", "min"] if t.is_bool else ["sum", "prod", "max",
                                                                      "min"]))
    rank = len(shape)
    axes = tuple(sorted(data.draw(st.lists(st.integers(0, rank - 1), min_size=1, unique=True))))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = random_values(rng, shape, dtype)
    if fn == "prod" and t.is_float:
        x = storage(np.sign(values(x, dtype)) * (1 + 0.01 * np.abs(values(x, dtype))), dtype)
    if t.is_float and fn in ("max", "min") and x.size and data.draw(st.booleans()):
        v = values(x, dtype).copy()
        v.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
        x = storage(v, dtype)
    x = strided_view(rng, x, view)
    tt = TensorType(shape, t)
    module = group([dyn(tt) if dynamic else tt],
                   lambda b, v: b(f"prim.reduce_{fn}", v, axes=axes))
    (got,) = run(lower(module, (layout_of(x),) if view != "plain" else None), x)
    want = np_reduce(fn, x, axes, dtype)
    assert got.shape == want.shape and got.dtype == want.dtype
    if t.is_float and fn in ("sum", "prod"):
        tol = {"f16": 1e-2, "bf16": 2e-2, "f32": 1e-5, "f64": 1e-12}[dtype]
        terms = int(np.prod([shape[a] for a in axes]))
        np.testing.assert_allclose(values(got, dtype), values(want, dtype), rtol=tol,
                                   atol=tol * max(terms, 10))
    else:
        np.testing.assert_array_equal(values(got, dtype), values(want, dtype))


def np_arg(fn: str, x: np.ndarray, axis: int) -> np.ndarray:
    """torch.argmax/argmin: the first extreme index; NaN is the extreme; 0 for empty axes."""
    moved = np.moveaxis(x, axis, -1)
    out = np.zeros(moved.shape[:-1], dtype=np.int64)
    for idx in np.ndindex(out.shape):
        row = moved[idx]
        if row.size == 0:
            continue
        nan = np.flatnonzero(np.isnan(row)) if row.dtype.kind == "f" else []
        if len(nan):
            out[idx] = nan[0]
        else:
            out[idx] = np.argmax(row) if fn == "max" else np.argmin(row)
    return out


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(SIZES, min_size=1, max_size=3).map(tuple), data=st.data(),
       dtype=st.sampled_from(ALL_DTYPES), fn=st.sampled_from(["max", "min"]),
       dynamic=st.booleans())
def test_argmax_argmin(shape, data, dtype, fn, dynamic):
    axis = data.draw(st.integers(0, len(shape) - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = random_values(rng, shape, dtype)
    if SCALARS[dtype].is_float:
        v = np.round(values(x, dtype))  # ties
        if x.size and data.draw(st.booleans()):
            v.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
        x = storage(v, dtype)
    tt = TensorType(shape, SCALARS[dtype])
    module = group([dyn(tt) if dynamic else tt], lambda b, v: b(f"prim.arg{fn}", v, axis=axis))
    (got,) = run(lower(module), x)
    np.testing.assert_array_equal(got, np_arg(fn, values(x, dtype), axis))


@settings(max_examples=30, deadline=None)
@given(n=SIZES, m=SIZES, dynamic=st.booleans())
def test_mean_epilogue_keepdim_and_two_reductions(n, m, dynamic):
    """sum * (1/m) reshaped to keep the axis, and max - min in one group."""
    rng = np.random.default_rng(n * 100 + m)
    x = rng.standard_normal((n, m)).astype(np.float32)
    tt = TensorType((n, m), f32)

    def mean(b, v):
        s = b("prim.reduce_sum", v, axes=(1,))
        c = b("prim.const", value=1.0 / max(m, 1), shape=(n,), dtype=f32)
        return b("prim.reshape", b("prim.mul", s, c), shape=(n, 1))

    got = run(lower(group([tt], mean)), x)[0]
    np.testing.assert_allclose(got, x.sum(1, keepdims=True) / max(m, 1), rtol=1e-5, atol=1e-6)

    def spread(b, v):
        return b("prim.sub", b("prim.reduce_max", v, axes=(1,)),
                 b("prim.reduce_min", v, axes=(1,)))

    got = run(lower(group([dyn(tt) if dynamic else tt], spread)), x)[0]
    want = (np.max(x, 1, initial=-np.inf) - np.min(x, 1, initial=np.inf)).astype(np.float32)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(SIZES, min_size=1, max_size=3).map(tuple), data=st.data())
def test_eager_reduction_of_broadcast_views(shape, data):
    """All sizes ?, an input broadcast by strides 0: vector loads become splats."""
    axes = tuple(sorted(data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1,
                                           unique=True))))
    rng = np.random.default_rng(5)
    small = tuple(1 if i in axes and data.draw(st.booleans()) else d
                  for i, d in enumerate(shape))
    y = np.broadcast_to(rng.standard_normal(small).astype(np.float32), shape)
    x = rng.standard_normal(shape).astype(np.float32)
    tt = TensorType((None,) * len(shape), f32)
    module = group([tt, tt], lambda b, u, v: b("prim.reduce_sum", b("prim.mul", u, v),
                                                axes=axes))
    (got,) = run(lower(module, (layout_of(x), layout_of(y))), x, y)
    terms = int(np.prod([shape[a] for a in axes]))  # f32 rounding grows with the count
    np.testing.assert_allclose(got, (x.astype(np.float64) * y).sum(axis=axes), rtol=1e-5,
                               atol=1e-6 * max(terms, 10))


def test_full_reduction_to_a_scalar():
    x = np.arange(1, 41, dtype=np.int32).reshape(5, 8)
    module = group([TensorType((None, None), SCALARS["i32"])],
                   lambda b, v: b("prim.reduce_sum", v, axes=(0, 1)))
    out = lower(module)
    (got,) = run(out, x)
    assert got.shape == () and got == x.sum()
    assert "loop.parallel" not in str(out)  # nothing to split: one accumulation


def test_wide_vector_tiers_of_a_kept_last_axis():
    """Past 256 kept columns the widest vectors run, then 16-lane ones, then scalars."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 300)).astype(np.float32)
    x[1, 7] = np.nan
    x[2, 290] = np.nan
    tt = TensorType((None, None), f32)
    for fn, ref in (("reduce_max", lambda v: np.max(v, 0)), ("argmax", lambda v: np_arg(
            "max", v, 0)), ("reduce_sum", lambda v: v.astype(np.float64).sum(0))):
        attrs = {"axis": 0} if fn == "argmax" else {"axes": (0,)}
        module = group([tt], lambda b, v, fn=fn, attrs=attrs: b(f"prim.{fn}", v, **attrs))
        out = lower(module)
        widths = [int(w) for w in re.findall(r"loop.vload .*\{width = (\d+)\}", str(out))]
        assert max(widths) >= 128 and min(widths) <= 16
        (got,) = run(out, x)
        np.testing.assert_allclose(got, ref(x), rtol=1e-6, atol=1e-5)
    y = np.broadcast_to(x[:1], (4, 300))
    module = group([tt], lambda b, v: b("prim.reduce_sum", v, axes=(0,)))
    (got,) = run(lower(module, (layout_of(y),)), y)
    np.testing.assert_allclose(got, 4 * x[0].astype(np.float64), rtol=1e-6)
