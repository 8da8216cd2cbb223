"""CPU-tiled contraction kernels (``lower_dot``, target "cpu") compiled to machine code and
run against a float64 numpy reference: sizes across the register-tile and column-block
edges, transposed / strided / broadcast-batched operands, a fused bias + relu epilogue,
and column blocks forced narrow so products of moderate size cross many blocks."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import runtime
from lamina.ir import TensorType
from lamina.ir.types import ScalarType
from lamina.passes import lower_dot
from tests.passes.filecheck import filecheck
from tests.passes.lower_util import group, layout_of, lower

SIZES = (0, 1, 7, 16, 17, 33, 257, 1030)
TOL = {"f32": 2e-5, "f64": 1e-12, "f16": 2e-3}


def _build(batched: bool, rhs_form: str, epilogue: bool):
    """``x @ w`` (``rhs_form`` "kn") or ``x @ w.T`` ("nk", contracting w's last axis),
    optionally batched on axis 0 and followed by ``relu(. + bias)``."""
    nb = 1 if batched else 0

    def build(b, x, w, *bias):
        rc = (nb,) if rhs_form == "kn" else (nb + 1,)
        d = b("prim.dot_general", x, w, lhs_batch=tuple(range(nb)), rhs_batch=tuple(range(nb)),
              lhs_contract=(nb + 1,), rhs_contract=rc)
        if not epilogue:
            return d
        shape, dtype = d.type.shape, d.type.dtype
        bb = b("prim.broadcast", bias[0], shape=shape, dims=(nb + 1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=dtype),
                 shape=shape, dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    return build


@functools.cache
def _program(dtype: str, batched: bool, rhs_form: str, epilogue: bool,
             layouts: tuple, panel_bytes: int) -> runtime.Program:
    """One compiled kernel per signature (all sizes dynamic), so examples reuse it."""
    t = ScalarType(dtype)
    rank = 3 if batched else 2
    types = [TensorType((None,) * rank, t)] * 2
    if epilogue:
        types.append(TensorType((None,), t))
    module = group(types, _build(batched, rhs_form, epilogue))
    old = lower_dot.PANEL_BYTES
    lower_dot.PANEL_BYTES = panel_bytes
    try:
        loop = lower(module, layouts)
    finally:
        lower_dot.PANEL_BYTES = old
    return runtime.compile_program(loop, "f")


def _view(rng: np.random.Generator, base: np.ndarray, kind: str) -> np.ndarray:
    """``base``'s values contiguous, transposed in memory, or every other element."""
    if kind == "t":
        return np.ascontiguousarray(np.swapaxes(base, -1, -2)).swapaxes(-1, -2)
    if kind == "step":
        big = np.zeros(tuple(2 * s for s in base.shape), dtype=base.dtype)
        view = big[tuple(slice(None, None, 2) for _ in base.shape)]
        view[...] = base
        return view
    return base


def _check(m: int, k: int, n: int, *, dtype: str = "f32", batch: int | None = None,
           rhs_form: str = "kn", epilogue: bool = False, a_kind: str = "c",
           b_kind: str = "c", b_bcast: bool = False, panel_bytes: int | None = None,
           seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np_t = ScalarType(dtype).numpy
    lead = () if batch is None else (batch,)
    x = rng.standard_normal((*lead, m, k)).astype(np_t)
    w_shape = (k, n) if rhs_form == "kn" else (n, k)
    if b_bcast:
        w = np.broadcast_to(rng.standard_normal(w_shape).astype(np_t), (*lead, *w_shape))
    else:
        w = rng.standard_normal((*lead, *w_shape)).astype(np_t)
        w = _view(rng, w, b_kind)
    x = _view(rng, x, a_kind)
    args = [x, w]
    if epilogue:
        args.append(rng.standard_normal(n).astype(np_t))
    layouts = tuple(layout_of(a) for a in args)
    prog = _program(dtype, batch is not None, rhs_form, epilogue, layouts,
                    panel_bytes or lower_dot.PANEL_BYTES)
    out = prog(*args)[0]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    ref = x64 @ (w64 if rhs_form == "kn" else np.swapaxes(w64, -1, -2))
    if epilogue:
        ref = np.maximum(ref + args[2].astype(np.float64), 0.0)
    assert out.shape == ref.shape and out.dtype == np_t
    scale = np.sqrt(max(k, 1))
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=0,
                               atol=TOL[dtype] * scale * 4, err_msg=f"{m}x{k}x{n}")


@settings(max_examples=40, deadline=None)
@given(m=st.sampled_from(SIZES), k=st.sampled_from(SIZES), n=st.sampled_from(SIZES),
       dtype=st.sampled_from(["f32", "f64"]), rhs_form=st.sampled_from(["kn", "nk"]),
       epilogue=st.booleans(), a_kind=st.sampled_from(["c", "t", "step"]),
       b_kind=st.sampled_from(["c", "t", "step"]))
def test_matrix_products(m, k, n, dtype, rhs_form, epilogue, a_kind, b_kind):
    if m * k * n > 300_000_000:  # one 1030-cube is enough work per example
        k = 257
    _check(m, k, n, dtype=dtype, rhs_form=rhs_form, epilogue=epilogue, a_kind=a_kind,
           b_kind=b_kind)


@settings(max_examples=25, deadline=None)
@given(batch=st.sampled_from([1, 3]), m=st.sampled_from(SIZES[:6]),
       k=st.sampled_from(SIZES[:7]), n=st.sampled_from(SIZES[:7]),
       rhs_form=st.sampled_from(["kn", "nk"]), b_bcast=st.booleans(), epilogue=st.booleans())
def test_batched_products(batch, m, k, n, rhs_form, b_bcast, epilogue):
    _check(m, k, n, batch=batch, rhs_form=rhs_form, b_bcast=b_bcast, epilogue=epilogue)


@settings(max_examples=25, deadline=None)
@given(m=st.sampled_from(SIZES[:7]), k=st.sampled_from(SIZES[:7]),
       n=st.sampled_from([1, 33, 100, 257, 300]), rhs_form=st.sampled_from(["kn", "nk"]),
       epilogue=st.booleans(), dtype=st.sampled_from(["f32", "f64"]))
def test_narrow_column_blocks(m, k, n, rhs_form, epilogue, dtype):
    """A tiny panel budget gives one register tile per block: every block edge and the
    tail columns of the last block are exercised."""
    _check(m, k, n, rhs_form=rhs_form, epilogue=epilogue, dtype=dtype, panel_bytes=1)


@pytest.mark.parametrize("rhs_form", ["kn", "nk"])
def test_f16_products(rhs_form):
    _check(33, 40, 70, dtype="f16", rhs_form=rhs_form, epilogue=True, panel_bytes=2048)


@pytest.mark.parametrize("m,k,n", [(1024, 1024, 4096), (40, 4096, 300)])
def test_wide_products(m, k, n):
    """The sizes of the GELU-MLP block (several column blocks at the default budget)."""
    _check(m, k, n)


def test_column_blocks_in_parallel_trips():
    """Static K: the block width folds to a constant and the parallel trip count covers
    (column blocks x row tiles); a small product keeps one block and static bounds."""
    def text(k: int, n: int) -> str:
        f32 = ScalarType("f32")
        module = group([TensorType((64, k), f32), TensorType((k, n), f32)],
                       _build(False, "kn", False))
        return str(lower(module, ((None, 1), (None, 1))))

    tile_cols = lower_dot.NV * 16
    cols = lower_dot.PANEL_BYTES // (1024 * 4 * tile_cols) * tile_cols
    trips = (4096 // cols) * (64 // lower_dot.MR)
    head = text(1024, 4096).split("loop.parallel")[0]
    assert f"loop.const {{value = {trips}}} : index" in head
    assert f"loop.const {{value = {cols}}} : index" in head
    small = text(64, 128)
    filecheck(small, f"""
        CHECK: loop.const {{value = {64 // lower_dot.MR}}} : index
        CHECK: loop.parallel
    """)
    # only the row tile is decoded from the trip number: no column-block arithmetic
    assert small.split("loop.parallel")[1].split("loop.for")[0].count("loop.rem") == 1
