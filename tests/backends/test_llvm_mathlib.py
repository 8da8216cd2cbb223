"""Accuracy of the generated math functions over their whole range, against float64 numpy.

float32 results must be within a few ulp of the float64 reference, float64 results within
a few 1e-16 relative; special values (inf, nan, signed zeros, overflow, underflow) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamina.backends.llvm import assemble_text

from . import llvm_oracle as O
from .llvm_harness import compile_kernel

RNG = np.random.default_rng(7)
F32_ULPS = 3.0
F64_REL = 2e-15


def _kernel(fn: str, dtype: str, nargs: int = 1, width: int = 0) -> str:
    args = ", ".join(f"%a{k}: memref<?x{dtype}>" for k in range(nargs))
    ty = f"vector<{width}x{dtype}>" if width else dtype
    load = f"loop.vload %a{{k}}, %i {{{{width = {width}}}}}" if width else "loop.load %a{k}, %i"
    loads = "\n".join(f"    %x{k} = " + load.format(k=k) + f" : {ty}" for k in range(nargs))
    operands = ", ".join(f"%x{k}" for k in range(nargs))
    store = "loop.vstore" if width else "loop.store"
    return f"""
kernel @m_{fn}_{dtype}_{width}({args}, %out: memref<?x{dtype}>) {{
  %c0 = loop.const {{value = 0}} : index
  %st = loop.const {{value = {width or 1}}} : index
  %n = loop.dim %out {{axis = 0}} : index
  loop.parallel %c0, %n, %st (%i: index) {{
{loads}
    %r = loop.{fn} {operands} : {ty}
    {store} %r, %out, %i
  }}
}}"""


def _call(fn: str, dtype: str, *xs: np.ndarray, width: int = 0) -> np.ndarray:
    xs = [np.ascontiguousarray(x, O.NP[dtype]) for x in xs]
    out = np.zeros_like(xs[0])
    compile_kernel(_kernel(fn, dtype, len(xs), width))(*xs, out)
    return out


def _wide(dtype: str, n: int, lo_exp: float, hi_exp: float, signed: bool = True) -> np.ndarray:
    """Log-uniform magnitudes 2**lo_exp .. 2**hi_exp (denormals included), random signs."""
    x = np.exp2(RNG.uniform(lo_exp, hi_exp, n))
    if signed:
        x *= RNG.choice([-1.0, 1.0], n)
    return x.astype(O.NP[dtype])


SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, np.inf, -np.inf, np.nan]


def _inputs(fn: str, dtype: str) -> np.ndarray:
    top = 127 if dtype == "f32" else 1023
    bottom = -149 if dtype == "f32" else -1074
    parts = [_wide(dtype, 4000, bottom, top), RNG.uniform(-10, 10, 4000).astype(O.NP[dtype]),
             np.array(SPECIAL, O.NP[dtype])]
    near = {  # where the function does something interesting
        "exp": (-110, 90, -750, 710), "exp2": (-155, 130, -1080, 1025),
        "expm1": (-30, 90, -40, 710), "logistic": (-110, 110, -750, 750),
        "tanh": (-12, 12, -25, 25), "erf": (-7, 7, -7, 7), "sin": (-1e6, 1e6, -1e9, 1e9),
        "cos": (-1e6, 1e6, -1e9, 1e9), "tan": (-1e4, 1e4, -1e9, 1e9),
        "log1p": (-1, 3, -1, 3), "erfinv": (-1, 1, -1, 1),
    }.get(fn)
    if near:
        lo, hi = near[:2] if dtype == "f32" else near[2:]
        parts.append(RNG.uniform(lo, hi, 4000).astype(O.NP[dtype]))
    if fn in ("log1p", "erfinv"):
        parts.append(-_wide(dtype, 1000, bottom, 0, signed=False))
    if fn == "erfinv":
        eps = np.finfo(O.NP[dtype]).eps
        parts.append((1 - np.exp2(RNG.uniform(np.log2(eps) - 1, -1, 1000))).astype(O.NP[dtype]))
    return np.concatenate(parts)


def _reference(fn: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if fn == "logistic":  # 1/(1+e^-x) loses e^x's relative accuracy for x << 0
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return O.FLOAT_UNARY[fn](x)


def check(got: np.ndarray, want: np.ndarray, dtype: str, what: str) -> None:
    """float32: ulp distance to the float64 reference; float64: relative error."""
    g, w = got.astype(np.float64), np.asarray(want, np.float64)
    w_r = w.astype(O.NP[dtype]).astype(np.float64)
    nan = np.isnan(g) != np.isnan(w_r)
    assert not nan.any(), f"{what}: NaN mismatch at {np.flatnonzero(nan)[:5]}"
    special = np.isinf(w_r) | (w_r == 0)
    bad = special & (g != w_r)
    assert not bad.any(), f"{what}: {g[bad][:5]} instead of {w_r[bad][:5]}"
    zero = w_r == 0
    assert np.array_equal(np.signbit(g[zero]), np.signbit(w_r[zero])), f"{what}: sign of zero"
    ok = ~np.isnan(w_r) & ~special
    if dtype == "f32":
        err = np.abs(g[ok] - w[ok]) / np.spacing(np.abs(w_r[ok]).astype(np.float32))
        limit = F32_ULPS
    else:
        # Subnormal results only have absolute precision: measure against 2**-1022.
        err = np.abs(g[ok] - w[ok]) / np.maximum(np.abs(w[ok]), 2.0**-1022)
        limit = F64_REL
    if err.size:
        i = int(np.argmax(err))
        assert err[i] <= limit, (f"{what}: error {err[i]:.3g} at x index {i}: got {g[ok][i]!r}, "
                                 f"want {w[ok][i]!r}")


UNARY = ["exp", "exp2", "expm1", "log", "log2", "log1p", "sin", "cos", "tan", "tanh",
         "logistic", "erf", "erfinv", "sqrt", "rsqrt"]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("fn", UNARY)
def test_unary_accuracy(fn, dtype):
    x = _inputs(fn, dtype)
    check(_call(fn, dtype, x), _reference(fn, x.astype(np.float64)), dtype, f"{fn} {dtype}")


@pytest.mark.parametrize("fn", ["exp", "log", "sin", "tanh", "erf", "pow", "atan2"])
def test_vector_instances_agree_with_scalar(fn):
    n = 2 if fn in ("pow", "atan2") else 1
    xs = [RNG.uniform(0.1, 5, 256).astype(np.float32) for _ in range(n)]
    scalar = _call(fn, "f32", *xs)
    vector = _call(fn, "f32", *xs, width=16)
    err = np.abs(scalar.astype(np.float64) - vector) / np.spacing(np.abs(scalar))
    assert err.max() <= 1


def _grid(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 2.5, -2.5,
                       np.inf, -np.inf, np.nan, 1e-30, -1e30], O.NP[dtype])
    x, y = np.meshgrid(values, values)
    return x.ravel(), y.ravel()


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_pow_matches_numpy_power(dtype):
    t = O.NP[dtype]
    gx, gy = _grid(dtype)
    top = 60 if dtype == "f32" else 500
    x = np.concatenate([gx, np.exp2(RNG.uniform(-top, top, 3000)), RNG.uniform(0, 10, 3000),
                        -RNG.integers(1, 30, 1000).astype(float), RNG.uniform(-3, 3, 1000)])
    y = np.concatenate([gy, RNG.uniform(-4, 4, 3000), RNG.uniform(-40, 40, 3000),
                        RNG.integers(-60, 60, 1000).astype(float),
                        RNG.integers(-9, 9, 1000).astype(float)])
    x, y = x.astype(t), y.astype(t)
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y.astype(np.float64))
    check(_call("pow", dtype, x, y), want, dtype, f"pow {dtype}")


def test_pow_of_exact_powers_is_exact():
    x = np.array([2.0, 3.0, -2.0, 10.0, 0.5, 7.0])
    y = np.array([3.0, 4.0, 5.0, 10.0, -3.0, 2.0])
    np.testing.assert_array_equal(_call("pow", "f64", x, y), x**y)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_atan2_matches_numpy(dtype):
    t = O.NP[dtype]
    gx, gy = _grid(dtype)
    top = 120 if dtype == "f32" else 1000
    y = np.concatenate([gy, _wide(dtype, 4000, -top, top), RNG.standard_normal(2000)])
    x = np.concatenate([gx, _wide(dtype, 4000, -top, top), RNG.standard_normal(2000)])
    y, x = y.astype(t), x.astype(t)
    want = np.arctan2(y.astype(np.float64), x.astype(np.float64))
    check(_call("atan2", dtype, y, x), want, dtype, f"atan2 {dtype}")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_trig_near_multiples_of_pi_over_2(dtype):
    # The hardest inputs for argument reduction: closest to k*pi/2 in the format.
    t = O.NP[dtype]
    k = np.concatenate([np.arange(1, 2000), RNG.integers(1, 2**40, 2000)]).astype(np.float64)
    x = (k * (math.pi / 2)).astype(t)
    x = np.concatenate([x, np.nextafter(x, t(np.inf)), np.nextafter(x, t(-np.inf))])
    if dtype == "f32":
        x = np.concatenate([x, np.array([16367173 * 2.0**72, 1.6e38, -3.4e38], t)])
    else:
        x = np.concatenate([x, np.array([6381956970095103 * 2.0**797, 1.7e308], t)])
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 400
    for fn in ("sin", "cos"):
        want = np.array([float(getattr(mp, fn)(mp.mpf(float(v)))) for v in x])
        check(_call(fn, dtype, x), want, dtype, f"{fn} {dtype} near k*pi/2")


@pytest.mark.parametrize("fn", UNARY + ["pow", "atan2"])
def test_f32_math_kernels_vectorize(fn):
    text = _kernel(fn, "f32", 2 if fn in ("pow", "atan2") else 1)
    opt = assemble_text(compile_kernel(text).llvm_ir)
    assert any(f"<{w} x {e}>" in opt for w in (8, 16) for e in ("float", "double")), fn
