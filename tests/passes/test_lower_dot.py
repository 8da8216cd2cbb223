"""lower-loops on contraction groups: tiled kernel structure, and batched matrix products
with epilogues run by the loop interpreter against numpy (layouts, edges, dtypes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir import TensorType
from lamina.ir.types import SCALARS, f32
from lamina.passes.lower_dot import MR, NV
from tests.passes.filecheck import filecheck
from tests.passes.lower_util import (
    group,
    layout_of,
    lower,
    random_values,
    run,
    storage,
    values,
)

DYN2 = TensorType((None, None), f32)


def matmul_group(rhs_form: str = "kn"):
    """``relu(x @ w + bias)``; ``rhs_form`` "nk" contracts w's last axis (x @ w.T)."""

    def build(b, x, w, bias):
        rc = (0,) if rhs_form == "kn" else (1,)
        d = b("prim.dot_general", x, w, lhs_batch=(), rhs_batch=(), lhs_contract=(1,),
              rhs_contract=rc)
        shape = d.type.shape
        bb = b("prim.broadcast", bias, shape=shape, dims=(1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=f32),
                 shape=shape, dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    return group([DYN2, DYN2, TensorType((None,), f32)], build)


def test_b_row_tiles():
    out = str(lower(matmul_group(), ((None, 1), (None, 1), (1,))))
    acc = f"vector<{512 // 32}xf32>"
    filecheck(out, f"""
        CHECK: kernel @k0(
        CHECK: loop.parallel
        CHECK: loop.for
        CHECK: loop.for
        CHECK-SAME: {", ".join([acc] * (MR * NV))}
        CHECK: loop.vload %in1
        CHECK: loop.load %in0
        CHECK: loop.splat
        CHECK: loop.mul
        CHECK: loop.add
        CHECK: loop.yield
        CHECK: loop.vload %in2
        CHECK: loop.max
        CHECK-SAME: : {acc}
        CHECK: loop.vstore
    """)
    assert "loop.vreduce" not in out


def test_k_vector_tiles_for_a_transposed_rhs():
    out = str(lower(matmul_group("nk"), ((None, 1), (None, 1), (1,))))
    assert "loop.vreduce" in out and "loop.vload %in0" in out and "loop.vload %in1" in out
    assert out.index("loop.parallel") < out.index("loop.vload")


def test_strided_inner_axes_fall_back_to_scalar_loops():
    out = str(lower(matmul_group("nk"), ((None, 1), (None, None), (1,))))
    assert "vload" not in out and "vector" not in out and "loop.parallel" in out
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32).T  # (4, 5) with strides (1, 4)
    bias = rng.standard_normal(4).astype(np.float32)
    got = run(lower(matmul_group("nk"), (layout_of(x), layout_of(w), (1,))), x, w, bias)[0]
    np.testing.assert_allclose(got, np.maximum(x @ w.T + bias, 0), rtol=1e-5, atol=1e-6)


# -- numerics ----------------------------------------------------------------------------------
SIZES = st.sampled_from([0, 1, 2, 3, 7, 9, 17, 33, 40])


def np_matmul(x: np.ndarray, w: np.ndarray, dtype: str) -> np.ndarray:
    """The exact product (float64 / int64), rounded or wrapped to ``dtype``."""
    t = SCALARS[dtype]
    if t.is_float:
        r = values(x, dtype).astype(np.float64) @ values(w, dtype).astype(np.float64)
        return storage(r.astype(np.float32) if dtype == "bf16" else r, dtype)
    r = np.matmul(x.astype(np.int64), w.astype(np.int64))
    return r != 0 if t.is_bool else r.astype(t.numpy)


def check(got: np.ndarray, want: np.ndarray, dtype: str, k: int) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    if SCALARS[dtype].is_float:
        tol = {"f16": 1e-2, "bf16": 2e-2, "f32": 1e-5, "f64": 1e-12}[dtype]
        np.testing.assert_allclose(values(got, dtype), values(want, dtype), rtol=tol,
                                   atol=tol * max(k, 1) * 4)
    else:
        np.testing.assert_array_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(m=SIZES, k=SIZES, n=SIZES, data=st.data(),
       dtype=st.sampled_from(["f32", "f64", "i32", "i64", "i8", "f16", "bf16", "i1"]),
       form=st.sampled_from(["kn", "nk", "km"]), dynamic=st.booleans())
def test_matmul(m, k, n, data, dtype, form, dynamic):
    """x @ w with w as (K, N) rows, (N, K) (contracting its last axis), or x given as
    (K, M) and permuted inside the group; static or ? sizes; i1 is an or of ands."""
    t = SCALARS[dtype]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = random_values(rng, (k, m) if form == "km" else (m, k), dtype)
    w = random_values(rng, (n, k) if form == "nk" else (k, n), dtype)

    def tt(shape):
        return TensorType((None,) * len(shape) if dynamic else shape, t)

    def build(b, xv, wv):
        if form == "km":
            xv = b("prim.permute", xv, perm=(1, 0))
        rc = (1,) if form == "nk" else (0,)
        return b("prim.dot_general", xv, wv, lhs_batch=(), rhs_batch=(), lhs_contract=(1,),
                 rhs_contract=rc)

    module = group([tt(x.shape), tt(w.shape)], build)
    (got,) = run(lower(module, (layout_of(x), layout_of(w))), x, w)
    xm = x.T if form == "km" else x
    wm = w.T if form == "nk" else w
    check(got, np_matmul(xm, wm, dtype), dtype, k)


@settings(max_examples=30, deadline=None)
@given(batch=st.lists(st.sampled_from([0, 1, 2, 3]), min_size=1, max_size=2), m=SIZES,
       k=SIZES, n=SIZES, data=st.data(), broadcast_rhs=st.booleans())
def test_batched_matmul_with_bias_relu(batch, m, k, n, data, broadcast_rhs):
    """batch x M x K @ batch x K x N (or K x N broadcast over the batch) + bias, relu."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    nb = len(batch)
    x = rng.standard_normal((*batch, m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if broadcast_rhs else (*batch, k, n)).astype(np.float32)
    bias = rng.standard_normal((n,)).astype(np.float32)
    if data.draw(st.booleans()):
        x = np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)  # K-major x
    dyn = data.draw(st.booleans())

    def tt(a):
        return TensorType((None,) * a.ndim if dyn else a.shape, f32)

    def build(b, xv, wv, bv):
        if broadcast_rhs:
            shape = (*x.shape[:nb], k, n) if not dyn else (*([None] * nb), None, None)
            wv = b("prim.broadcast", wv, shape=shape, dims=(nb, nb + 1))
        batch_axes = tuple(range(nb))
        d = b("prim.dot_general", xv, wv, lhs_batch=batch_axes, rhs_batch=batch_axes,
              lhs_contract=(nb + 1,), rhs_contract=(nb,))
        bb = b("prim.broadcast", bv, shape=d.type.shape, dims=(nb + 1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=f32),
                 shape=d.type.shape, dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    module = group([tt(x), tt(w), tt(bias)], build)
    (got,) = run(lower(module, (layout_of(x), layout_of(w), layout_of(bias))), x, w, bias)
    want = np.maximum(np.matmul(x.astype(np.float64), w.astype(np.float64)) + bias, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(k, 1))


@pytest.mark.parametrize("form", ["kn", "nk"])
def test_epilogue_reading_other_inputs_and_stride_zero_bias(form):
    """A residual read through the product's index, and a bias broadcast by strides."""
    rng = np.random.default_rng(1)
    m, k, n = 11, 20, 37
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if form == "kn" else (n, k)).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    bias = np.broadcast_to(rng.standard_normal((1, n)).astype(np.float32), (m, n))

    def build(b, xv, wv, rv, bv):
        rc = (0,) if form == "kn" else (1,)
        d = b("prim.dot_general", xv, wv, lhs_batch=(), rhs_batch=(), lhs_contract=(1,),
              rhs_contract=rc)
        return b("prim.tanh", b("prim.add", b("prim.mul", d, rv), bv))

    module = group([DYN2] * 4, build)
    out = lower(module, tuple(layout_of(a) for a in (x, w, res, bias)))
    assert "vload" in str(out)
    (got,) = run(out, x, w, res, bias)
    wm = w if form == "kn" else w.T
    want = np.tanh((x.astype(np.float64) @ wm) * res + bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_matrix_vector_and_several_contracted_axes_use_the_scalar_nest():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    module = group([TensorType(x.shape, f32), TensorType(w.shape, f32)],
                   lambda b, xv, wv: b("prim.dot_general", xv, wv, lhs_batch=(),
                                       rhs_batch=(), lhs_contract=(1, 2),
                                       rhs_contract=(0, 1)))
    out = lower(module)
    assert "vector" not in str(out)
    np.testing.assert_allclose(run(out, x, w)[0], np.einsum("mab,ab->m", x, w), rtol=1e-5)
