"""Lowered kernels compiled by the LLVM backend and run natively, against numpy and the loop
interpreter. Eager-style programs (all sizes ?) are compiled once and called on many sizes
and views, so edges (0, 1, partial tiles and vectors) run without recompiling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir import TensorType
from lamina.ir.types import SCALARS, f32, i64
from tests.passes.lower_util import group, layout_of, lower, random_values, run, values

pytest.importorskip("lamina.backends.llvm.emit")
runtime = pytest.importorskip("lamina.runtime")

_programs: dict = {}


def native(key, module_fn, layouts):
    """The compiled program of ``module_fn()`` lowered with ``layouts`` (cached per test run)."""
    k = (key, layouts)
    if k not in _programs:
        loop = lower(module_fn(), layouts)
        _programs[k] = (runtime.compile_program(loop, "f"), loop)
    return _programs[k]


def dyn(rank, dtype=f32):
    return TensorType((None,) * rank, dtype)


def views(draw, shape, dtype, rng):
    kind = draw(st.sampled_from(["plain", "step", "bcast"]))
    base = random_values(rng, shape, dtype)
    if kind == "step" and base.ndim:
        big = np.zeros(tuple(2 * d + 1 for d in shape[:-1]) + shape[-1:], base.dtype)
        v = big[tuple(slice(1, None, 2) for _ in shape[:-1])]
        v[...] = base
        return v
    if kind == "bcast" and base.ndim and shape[0] > 1:
        return np.broadcast_to(base[:1], shape)
    return base


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.sampled_from([0, 1, 2, 5, 17, 70]), min_size=1, max_size=3).map(
    tuple), dtype=st.sampled_from(["f32", "f64", "i32", "i8", "f16", "bf16"]), data=st.data())
def test_eager_elementwise(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = views(data.draw, shape, dtype, rng)
    y = views(data.draw, shape, dtype, rng)
    t = SCALARS[dtype]

    def build(b, u, v):
        s = b("prim.mul", b("prim.add", u, v), u)
        return b("prim.max", s, v)

    prog, loop = native(("ew", dtype, x.ndim), lambda: group([dyn(x.ndim, t)] * 2, build),
                        (layout_of(x), layout_of(y)))
    got = prog(x, y)[0]
    want = run(loop, x, y)[0]
    np.testing.assert_array_equal(values(got, dtype), values(want, dtype))


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from([0, 1, 3, 16, 33, 300]), m=st.sampled_from([0, 1, 5, 31, 32, 300]),
       axis=st.integers(0, 1), fn=st.sampled_from(["reduce_sum", "reduce_max", "argmax",
                                                   "argmin"]), data=st.data())
def test_eager_reductions(n, m, axis, fn, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((n, m)).astype(np.float32)
    if x.size and data.draw(st.booleans()):
        x.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
    attrs = {"axis": axis} if fn.startswith("arg") else {"axes": (axis,)}
    prog, loop = native(("red", fn, axis), lambda: group(
        [dyn(2)], lambda b, v: b(f"prim.{fn}", v, **attrs)), (layout_of(x),))
    got = prog(x)[0]
    with np.errstate(all="ignore"):
        if fn == "reduce_sum":
            np.testing.assert_allclose(got, x.astype(np.float64).sum(axis), rtol=1e-5,
                                       atol=1e-4)
        elif fn == "reduce_max":
            np.testing.assert_array_equal(got, np.max(x, axis, initial=-np.inf))
        else:
            np.testing.assert_array_equal(got, run(loop, x)[0])


def _matmul_module(form: str):
    def build(b, xv, wv, bias):
        rc = (0,) if form == "kn" else (1,)
        d = b("prim.dot_general", xv, wv, lhs_batch=(), rhs_batch=(), lhs_contract=(1,),
              rhs_contract=rc)
        bb = b("prim.broadcast", bias, shape=(None, None), dims=(1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=f32),
                 shape=(None, None), dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    return group([dyn(2), dyn(2), dyn(1)], build)


@settings(max_examples=30, deadline=None)
@given(m=st.sampled_from([0, 1, 7, 8, 9, 33]), k=st.sampled_from([0, 1, 5, 16, 40]),
       n=st.sampled_from([0, 1, 15, 16, 31, 32, 33, 70]), form=st.sampled_from(["kn", "nk"]),
       layout=st.sampled_from(["unit", "strided"]), data=st.data())
def test_eager_matmul_bias_relu(m, k, n, form, layout, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if form == "kn" else (n, k)).astype(np.float32)
    if layout == "strided":
        w = np.asfortranarray(w)
    bias = rng.standard_normal(n).astype(np.float32)
    lay = (layout_of(x), (None, None) if layout == "strided" else layout_of(w), layout_of(bias))
    prog, _ = native(("mm", form, layout), lambda: _matmul_module(form), lay)
    got = prog(x, w, bias)[0]
    wm = w if form == "kn" else w.T
    want = np.maximum(x.astype(np.float64) @ wm + bias, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(k, 1))


def test_batched_int_matmul_and_movement():
    rng = np.random.default_rng(3)
    x = rng.integers(-5, 5, (3, 9, 13)).astype(np.int64)
    w = rng.integers(-5, 5, (3, 13, 20)).astype(np.int64)

    def bmm(b, xv, wv):
        return b("prim.dot_general", xv, wv, lhs_batch=(0,), rhs_batch=(0,),
                 lhs_contract=(2,), rhs_contract=(1,))

    prog, _ = native(("bmm",), lambda: group([dyn(3, i64)] * 2, bmm), None)
    np.testing.assert_array_equal(prog(x, w)[0], x @ w)

    def moves(b, v):
        p = b("prim.pad", v, low=(1, 0), high=(2, 3), value=-1.0)
        s = b("prim.slice", p, start=(0, 1), stop=(p.type.shape[0], p.type.shape[1]),
              step=(2, 1))
        return b("prim.concat", s, s, axis=1)

    y = rng.standard_normal((5, 6)).astype(np.float32)
    prog, loop = native(("moves",), lambda: group([TensorType((5, 6), f32)], moves), None)
    np.testing.assert_array_equal(prog(y)[0], run(loop, y)[0])
