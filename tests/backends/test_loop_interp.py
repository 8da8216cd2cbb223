"""The loop-dialect interpreter against numpy: scalar semantics, vectors, strides, bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp.loop_interp import (
    LoopInterpError,
    bf16_to_f32,
    f32_to_bf16,
    run_kernel,
    run_program,
)
from lamina.ir import parse, verify
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import SCALARS

NP = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i8": np.int8,
      "i32": np.int32, "i64": np.int64, "i1": np.bool_}


def kernel(text: str):
    m = parse(text)
    verify(m)
    return m.graphs[0] if len(m.graphs) == 1 else m


def elementwise_kernel(fn: str, t: str, rt: str, arity: int) -> str:
    args = ", ".join(f"%x{k}: memref<?x{t}>" for k in range(arity))
    loads = "\n".join(f"    %v{k} = loop.load %x{k}, %i : {t}" for k in range(arity))
    operands = ", ".join(f"%v{k}" for k in range(arity))
    return f"""
kernel @k({args}, %out: memref<?x{rt}>) {{
  %c0 = loop.const {{value = 0}} : index
  %c1 = loop.const {{value = 1}} : index
  %n = loop.dim %x0 {{axis = 0}} : index
  loop.parallel %c0, %n, %c1 (%i: index) {{
{loads}
    %r = loop.{fn} {operands} : {rt}
    loop.store %r, %out, %i
  }}
}}"""


def apply(fn: str, t: str, *xs: np.ndarray, rt: str | None = None) -> np.ndarray:
    rt = rt or t
    g = kernel(elementwise_kernel(fn, t, rt, len(xs)))
    out = np.zeros(len(xs[0]), dtype=SCALARS[rt].numpy)
    run_kernel(g, *xs, out)
    return out


# -- integer arithmetic ------------------------------------------------------------------
INTS = st.sampled_from(["i8", "i32", "i64"])


@settings(max_examples=30, deadline=None)
@given(t=INTS, data=st.data())
def test_int_div_rem_truncate_and_zero_divisor(t, data):
    info = np.iinfo(NP[t])
    vals = st.integers(max(info.min + 1, -1000), min(info.max, 1000))
    a = np.array(data.draw(st.lists(vals, min_size=1, max_size=12)), dtype=NP[t])
    b = np.array(data.draw(st.lists(vals, min_size=len(a), max_size=len(a))), dtype=NP[t])
    b[0] = 0
    safe = np.where(b == 0, 1, b)
    q = np.array([int(x / y) for x, y in zip(a.tolist(), safe.tolist())], dtype=NP[t])
    np.testing.assert_array_equal(apply("div", t, a, b), np.where(b == 0, 0, q))
    r = np.fmod(a, safe)  # C remainder: the sign of the dividend
    np.testing.assert_array_equal(apply("rem", t, a, b), np.where(b == 0, 0, r))


def test_int_overflow_wraps_and_shifts():
    a = np.array([127, -128, 5, -7], dtype=np.int8)
    b = np.array([1, -1, 3, 1], dtype=np.int8)
    np.testing.assert_array_equal(apply("add", "i8", a, b), np.array([-128, 127, 8, -6], np.int8))
    np.testing.assert_array_equal(apply("div", "i8", a, b), np.array([127, -128, 1, -7], np.int8))
    np.testing.assert_array_equal(apply("neg", "i8", a), np.array([-127, -128, -5, 7], np.int8))
    x = np.array([1, -8, 3, -1], dtype=np.int32)
    s = np.array([3, 1, 40, -1], dtype=np.int32)
    np.testing.assert_array_equal(apply("shl", "i32", x, s), np.array([8, -16, 0, 0], np.int32))
    np.testing.assert_array_equal(apply("shr", "i32", x, s), np.array([0, -4, 0, -1], np.int32))


def test_int_pow():
    a = np.array([2, -3, 1, -1, 0, 2], dtype=np.int64)
    b = np.array([10, 3, -5, -3, 0, -1], dtype=np.int64)
    np.testing.assert_array_equal(apply("pow", "i64", a, b), [1024, -27, 1, -1, 1, 0])


# -- floats -------------------------------------------------------------------------------
SPECIAL = np.array([0.0, -0.0, 1.5, -2.5, 0.5, np.inf, -np.inf, np.nan, 1e-30, 3.0],
                   dtype=np.float64)


@pytest.mark.parametrize("t", ["f32", "f64"])
def test_float_max_min_propagate_nan(t):
    a = SPECIAL.astype(NP[t])
    b = np.roll(a, 3)
    np.testing.assert_array_equal(apply("max", t, a, b), np.maximum(a, b))
    np.testing.assert_array_equal(apply("min", t, a, b), np.minimum(a, b))


def test_round_half_even_and_friends():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6], dtype=np.float32)
    np.testing.assert_array_equal(apply("round", "f32", x), [0, 2, 2, -0, -2, 2, -3])
    np.testing.assert_array_equal(apply("trunc", "f32", x), np.trunc(x))
    np.testing.assert_array_equal(apply("floor", "f32", x), np.floor(x))
    np.testing.assert_array_equal(apply("ceil", "f32", x), np.ceil(x))


def test_float_rem_is_fmod_and_compares_ordered():
    a = np.array([7.5, -7.5, 1.0, np.nan], dtype=np.float32)
    b = np.array([2.0, 2.0, 0.0, 1.0], dtype=np.float32)
    got = apply("rem", "f32", a, b)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(got, np.fmod(a, b))
    assert list(apply("lt", "f32", a, b, rt="i1")) == [False, True, False, False]
    assert list(apply("ne", "f32", a, b, rt="i1")) == [True, True, True, True]
    assert list(apply("eq", "f32", a, a, rt="i1")) == [True, True, True, False]


MATH = {"exp": np.exp, "exp2": np.exp2, "expm1": np.expm1, "log": np.log, "log2": np.log2,
        "log1p": np.log1p, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "sin": np.sin,
        "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
        "logistic": lambda x: 1 / (1 + np.exp(-x)),
        "erf": np.vectorize(math.erf), "abs": np.abs, "sign": np.sign, "neg": np.negative}


@pytest.mark.parametrize("fn", sorted(MATH))
@pytest.mark.parametrize("t", ["f16", "f32", "f64"])
def test_float_math_matches_numpy(fn, t):
    x = np.linspace(-3, 3, 13).astype(NP[t])
    if fn in ("log", "log2", "sqrt", "rsqrt"):
        x = np.abs(x) + NP[t](0.25)
    if fn == "log1p":
        x = np.abs(x)
    with np.errstate(all="ignore"):
        ref = MATH[fn](x.astype(np.float64)).astype(NP[t])
    tol = {"f16": 2e-3, "f32": 2e-6, "f64": 1e-13}[t]
    np.testing.assert_allclose(apply(fn, t, x).astype(np.float64), ref.astype(np.float64),
                               rtol=tol, atol=tol)


def test_erfinv_inverts_erf_and_edges():
    y = np.array([-0.999, -0.5, 0.0, 0.3, 0.9, 0.999999, 1.0, -1.0, 1.5, np.nan])
    got = apply("erfinv", "f64", y)
    for v, x in zip(y[:6], got[:6]):
        assert math.erf(x) == pytest.approx(v, abs=1e-12)
    assert got[6] == np.inf and got[7] == -np.inf
    assert np.isnan(got[8]) and np.isnan(got[9])


def test_isnan_and_not():
    x = np.array([1.0, np.nan, -np.inf], dtype=np.float32)
    assert list(apply("isnan", "f32", x, rt="i1")) == [False, True, False]
    b = np.array([True, False])
    assert list(apply("not", "i1", b)) == [False, True]
    np.testing.assert_array_equal(apply("not", "i32", np.array([0, 5], np.int32)), [-1, -6])


def test_every_elementwise_function_runs():
    """Each name of the shared table has an interpreter rule (a new one fails here)."""
    x = np.array([0.25, 0.5], dtype=np.float32)
    i = np.array([3, 4], dtype=np.int32)
    for fn, kind in ew.UNARY.items():
        t = "f32" if kind in ("float", "num", "any") else "i32"
        rt = "i1" if fn in ew.UNARY_PREDICATES else t
        assert apply(fn, t, x if t == "f32" else i, rt=rt).shape == (2,)
    for fn, kind in ew.BINARY.items():
        t = "f32" if kind in ("float", "num") else "i32"
        a = x if t == "f32" else i
        assert apply(fn, t, a, a).shape == (2,)
    for fn in ew.COMPARE:
        assert apply(fn, "i32", i, i[::-1].copy(), rt="i1").dtype == np.bool_


# -- casts and bf16 ---------------------------------------------------------------------------
def cast_kernel(src: str, dst: str) -> str:
    return f"""
kernel @k(%x: memref<?x{src}>, %out: memref<?x{dst}>) {{
  %c0 = loop.const {{value = 0}} : index
  %c1 = loop.const {{value = 1}} : index
  %n = loop.dim %x {{axis = 0}} : index
  loop.parallel %c0, %n, %c1 (%i: index) {{
    %v = loop.load %x, %i : {src}
    %r = loop.cast %v {{dtype = {dst}}} : {dst}
    loop.store %r, %out, %i
  }}
}}"""


def cast(x: np.ndarray, src: str, dst: str) -> np.ndarray:
    out = np.zeros(len(x), dtype=SCALARS[dst].numpy)
    run_kernel(kernel(cast_kernel(src, dst)), x, out)
    return out


def test_casts():
    f = np.array([2.9, -2.9, 0.0, np.nan, 1e10, -1e10], dtype=np.float32)
    np.testing.assert_array_equal(cast(f, "f32", "i32"),
                                  [2, -2, 0, 0, 2**31 - 1, -(2**31)])
    np.testing.assert_array_equal(cast(f, "f32", "i1"), [True, True, False, True, True, True])
    np.testing.assert_array_equal(cast(np.array([True, False]), "i1", "f32"), [1.0, 0.0])
    np.testing.assert_array_equal(cast(np.array([300, -129], np.int32), "i32", "i8"),
                                  [44, 127])
    np.testing.assert_array_equal(cast(np.array([1.5, 2**60], np.float64), "f64", "i64"),
                                  [1, 2**60])


def test_bf16_rounds_to_nearest_even_and_computes_in_f32():
    x = np.array([1.0, 1.00390625, 1.01171875, 3.0, -0.0, np.inf], dtype=np.float32)
    bits = f32_to_bf16(x)
    np.testing.assert_array_equal(bf16_to_f32(bits), [1.0, 1.0, 1.015625, 3.0, -0.0, np.inf])
    doubled = apply("add", "bf16", bits, bits)
    np.testing.assert_array_equal(bf16_to_f32(doubled), 2 * bf16_to_f32(bits))
    assert cast(bits, "bf16", "f32")[2] == np.float32(1.015625)


# -- memory, loops, vectors ---------------------------------------------------------------------
STRIDED_SUM = """
kernel @k(%x: memref<?x?xf64, strided<[?, ?]>>, %out: memref<?xf64>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f64
  %n = loop.dim %x {axis = 0} : index
  %m = loop.dim %x {axis = 1} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    %s = loop.for %c0, %m, %c1, %z : f64 (%j: index, %acc: f64) {
      %v = loop.load %x, %i, %j : f64
      %a = loop.add %acc, %v : f64
      loop.yield %a
    }
    loop.store %s, %out, %i
  }
}"""


def test_loads_honour_view_strides_including_zero():
    g = kernel(STRIDED_SUM)
    base = np.arange(30, dtype=np.float64).reshape(5, 6)
    for view in (base[::2, 1::2], base.T, np.broadcast_to(base[:1], (4, 6)),
                 np.broadcast_to(base[:, :1], (5, 3))):
        out = np.zeros(view.shape[0])
        run_kernel(g, view, out)
        np.testing.assert_array_equal(out, view.sum(1))


def test_static_strides_and_contiguity_are_checked():
    g = kernel(STRIDED_SUM.replace("strided<[?, ?]>", "strided<[0, 1]>"))
    ok = np.broadcast_to(np.arange(3.0), (4, 3))
    out = np.zeros(4)
    run_kernel(g, ok, out)
    np.testing.assert_array_equal(out, [3.0] * 4)
    with pytest.raises(LoopInterpError, match="stride"):
        run_kernel(g, np.ones((4, 3)), out)
    g2 = kernel(STRIDED_SUM.replace(", strided<[?, ?]>", ""))
    with pytest.raises(LoopInterpError, match="contiguous"):
        run_kernel(g2, np.ones((4, 6))[:, ::2], out)
    with pytest.raises(LoopInterpError, match="dtype"):
        run_kernel(g2, np.ones((4, 3), np.float32), out)


def test_out_of_bounds_access_raises():
    text = elementwise_kernel("neg", "f32", "f32", 1).replace(
        "%v0 = loop.load %x0, %i", "%i2 = loop.add %i, %c1 : index\n    %v0 = loop.load %x0, %i2")
    with pytest.raises(LoopInterpError, match="out of bounds for axis 0 of size 4"):
        run_kernel(kernel(text), np.zeros(4, np.float32), np.zeros(4, np.float32))


VECTOR = """
kernel @k(%x: memref<?xf32>, %out: memref<?xf32>, %red: memref<f32>) {
  %c0 = loop.const {value = 0} : index
  %c4 = loop.const {value = 4} : index
  %n = loop.dim %x {axis = 0} : index
  %two = loop.const {value = 2.0} : f32
  %s = loop.splat %two {width = 4} : vector<4xf32>
  %ninf = loop.const {value = -inf} : f32
  %init = loop.splat %ninf {width = 4} : vector<4xf32>
  %m = loop.for %c0, %n, %c4, %init : vector<4xf32> (%i: index, %acc: vector<4xf32>) {
    %v = loop.vload %x, %i {width = 4} : vector<4xf32>
    %w = loop.mul %v, %s : vector<4xf32>
    %gt = loop.gt %w, %s : vector<4xi1>
    %sel = loop.select %gt, %w, %s : vector<4xf32>
    loop.vstore %sel, %out, %i
    %acc2 = loop.max %acc, %v : vector<4xf32>
    loop.yield %acc2
  }
  %r = loop.vreduce %m {fn = "max"} : f32
  loop.store %r, %red
}"""


def test_vector_ops():
    g = kernel(VECTOR)
    x = np.array([0.5, 3, -1, 2, 7, 0, 1, 1.5], dtype=np.float32)
    out, red = np.zeros(8, np.float32), np.zeros((), np.float32)
    run_kernel(g, x, out, red)
    np.testing.assert_array_equal(out, np.maximum(2 * x, 2))
    assert red == 7
    x[5] = np.nan
    run_kernel(g, x, out, red)
    assert np.isnan(red)
    with pytest.raises(LoopInterpError, match=r"\[8, 12\) out of bounds"):
        run_kernel(g, np.zeros(10, np.float32), np.zeros(10, np.float32), red)


PROGRAM = """
kernel @twice(%x: memref<?x?xi32, strided<[?, 1]>>, %out: memref<?x?xi32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %n = loop.dim %out {axis = 0} : index
  %m = loop.dim %out {axis = 1} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    loop.for %c0, %m, %c1 (%j: index) {
      %v = loop.load %x, %i, %j : i32
      %w = loop.add %v, %v : i32
      loop.store %w, %out, %i, %j
    }
  }
}

func @p(%x: memref<?x?xi32, strided<[?, 1]>>) -> (memref<?x?xi32>, memref<?x?xi32>) {
  %0 = loop.dim %x {axis = 0} : index
  %1 = loop.dim %x {axis = 1} : index
  %2 = loop.alloc %0, %1 : memref<?x?xi32>
  loop.call %x, %2 {kernel = @twice}
  %3 = loop.alloc %0, %1 : memref<?x?xi32>
  loop.call %2, %3 {kernel = @twice}
  return %2, %3
}"""


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 4), m=st.integers(0, 5))
def test_program_allocates_and_calls(n, m):
    module = parse(PROGRAM)
    verify(module)
    x = np.arange(n * m * 2, dtype=np.int32).reshape(n, 2 * m)[:, :m]
    a, b = run_program(module, "p", x)
    np.testing.assert_array_equal(a, 2 * x)
    np.testing.assert_array_equal(b, 4 * x)
    assert a.flags.c_contiguous


def test_program_errors_and_poison():
    module = parse(PROGRAM.replace("loop.call %2, %3 {kernel = @twice}", ""))
    _, b = run_program(module, "p", np.ones((2, 2), np.int32))
    assert (b == np.iinfo(np.int32).min + 77).all()  # never written: still poison
    with pytest.raises(LoopInterpError, match="takes 1 buffers, got 2"):
        run_program(module, "p", np.ones((2, 2), np.int32), np.ones((2, 2), np.int32))
    with pytest.raises(LoopInterpError, match="not a program func"):
        run_program(module, "twice", np.ones((2, 2), np.int32))


def test_parallel_runs_in_reverse_and_step_must_be_positive():
    text = """
kernel @k(%out: memref<4xi64>, %last: memref<i64>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %c4 = loop.const {value = 4} : index
  loop.parallel %c0, %c4, %c1 (%i: index) {
    %v = loop.cast %i {dtype = i64} : i64
    loop.store %v, %out, %i
    loop.store %v, %last
  }
}"""
    out, last = np.zeros(4, np.int64), np.zeros((), np.int64)
    run_kernel(kernel(text), out, last)
    np.testing.assert_array_equal(out, [0, 1, 2, 3])
    assert last == 0  # the iterations ran 3, 2, 1, 0
    bad = text.replace("%c0, %c4, %c1", "%c0, %c4, %c0")
    with pytest.raises(LoopInterpError, match="step must be positive"):
        run_kernel(kernel(bad), out, last)
