"""Elementwise math composites against numpy (always) and PyTorch (when installed)."""

from __future__ import annotations

import decimal
import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import assert_close, needs_torch, torch

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 7.0, 1e-30, -1e30, np.inf, -np.inf,
                    np.nan], np.float64)


def values(shape, dtype, rng, lo=-4.0, hi=4.0, special=True):
    """Random values of ``dtype``; floats include the special values now and then."""
    if np.dtype(dtype).kind == "b":
        return np.asarray(rng.integers(0, 2, size=shape)).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return np.asarray(rng.integers(-9, 10, size=shape)).astype(dtype)
    a = np.asarray(rng.uniform(lo, hi, size=shape))
    if special and a.size:
        mask = rng.random(shape) < 0.25
        a = np.where(mask, rng.choice(SPECIAL, size=shape), a)
    return a.astype(dtype)


def strided(a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def lam(a):
    return lamina.from_numpy(np.asarray(a)) if isinstance(a, (np.ndarray, np.generic)) else a


def f64(a):
    return np.asarray(a, np.float64)


def close(out, ref, dtype, ulps=4, scale=None):
    """Compare with a float64 reference rounded to ``dtype``: within ``ulps`` ulps of the
    result, or of ``scale`` (the size of the terms a result cancels from); NaNs equal."""
    got = out.numpy()
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    want = np.asarray(ref).astype(dtype)
    assert got.shape == want.shape
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    eps = np.finfo(dtype).eps
    g, w = got.astype(np.float64), want.astype(np.float64)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    mag = np.abs(w) if scale is None else np.maximum(np.abs(w), np.abs(f64(scale)))
    ok = same | (np.abs(g - w) <= ulps * eps * mag + ulps * np.finfo(dtype).tiny)
    assert ok.all(), f"got {got[~ok]}, want {want[~ok]}"


# -- unary --------------------------------------------------------------------------------------
with np.errstate(all="ignore"):
    UNARY = {
        "reciprocal": (lambda a: 1.0 / a, None),
        "log10": (np.log10, (0.0, 50.0)),
        "frac": (lambda a: a - np.trunc(a), None),
        "deg2rad": (np.deg2rad, None),
        "rad2deg": (np.rad2deg, None),
        "logit": (lambda a: np.vectorize(_logit, otypes=[np.float64])(a), (0.0, 1.0)),
        "asin": (np.arcsin, (-1.2, 1.2)),
        "acos": (np.arccos, (-1.2, 1.2)),
        "atan": (np.arctan, None),
        "sinh": (np.sinh, (-20.0, 20.0)),
        "cosh": (np.cosh, (-20.0, 20.0)),
        "asinh": (np.arcsinh, (-1e3, 1e3)),
        "acosh": (np.arccosh, (0.5, 1e3)),
        "atanh": (np.arctanh, (-1.2, 1.2)),
        "square": (np.square, None),
        "erfinv": (None, (-1.0, 1.0)),
        "sgn": (lambda a: np.where(np.isnan(a), 0.0, np.sign(a)), None),
    }


def _logit(x: float) -> float:
    """log(x / (1 - x)) in 40-digit decimal arithmetic: float64's own log(x / (1 - x))
    loses most digits near x = 1/2, where the result is near 0."""
    if not 0.0 < x < 1.0:
        return -math.inf if x == 0.0 else math.inf if x == 1.0 else math.nan
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        d = decimal.Decimal(x)
        return float((d / (1 - d)).ln())


def _erfinv(y: float) -> float:
    """erfinv in float64: the normal quantile, then Newton steps on math.erf."""
    if not -1 <= y <= 1:
        return math.nan
    if abs(y) == 1:
        return math.copysign(math.inf, y)
    x = statistics.NormalDist().inv_cdf((y + 1) / 2) / math.sqrt(2)
    for _ in range(3):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
       op=st.sampled_from(sorted(UNARY)), dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=50)
def test_unary_float(shape, op, dtype, layout, seed):
    ref, rng_range = UNARY[op]
    lo, hi = rng_range or (-4.0, 4.0)
    a = values(shape, dtype, np.random.default_rng(seed), lo, hi)
    out = getattr(lamina, op)(lam(strided(a) if layout else a))
    if op == "erfinv":
        ref = np.vectorize(_erfinv, otypes=[np.float64])
    with np.errstate(all="ignore"):
        want = ref(f64(a)) if a.size else np.zeros(a.shape)
    # the composites round a few times in their own dtype: a handful of ulps, more for
    # the ones that subtract nearby numbers (acos near 1, cosh's two exponentials)
    close(out, want, dtype, ulps=8 if dtype == np.float32 else 64)


@pytest.mark.parametrize("op", ["reciprocal", "log10", "deg2rad", "rad2deg", "asin", "atan",
                                "sinh", "erfinv", "logit", "square", "sgn"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_unary_dtypes_of_integers(op, dtype):
    a = values((5,), dtype, np.random.default_rng(1))
    out = getattr(lamina, op)(lam(a))
    if op in ("square",):
        want = np.int64 if dtype == np.bool_ else dtype
    elif op == "sgn":
        want = dtype
    else:
        want = np.float32
    assert out.dtype == lamina.from_numpy(np.zeros(0, want)).dtype
    if torch is not None:
        t = getattr(torch, op)(torch.from_numpy(a))
        assert_close(out.numpy(), t.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["reciprocal", "square", "hypot", "logaddexp", "atan2",
                                "remainder", "floor_divide", "lerp", "asinh", "sinh"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_rounds_once(op, dtype):
    a = np.array([0.5, -1.5, 3.0, 100.0, 1e-3, -7.25], np.float32)
    b = np.array([2.0, 0.75, -3.0, 7.0, 5.0, 0.5], np.float32)
    d = getattr(lamina, dtype)
    x, y = lamina.tensor(a, dtype=d), lamina.tensor(b, dtype=d)
    xa, ya = x.float().numpy().astype(np.float64), y.float().numpy().astype(np.float64)
    fns = {
        "reciprocal": (lambda: lamina.reciprocal(x), lambda: 1 / xa),
        "square": (lambda: lamina.square(x), lambda: xa * xa),
        "hypot": (lambda: lamina.hypot(x, y), lambda: np.hypot(xa, ya)),
        "logaddexp": (lambda: lamina.logaddexp(x, y), lambda: np.logaddexp(xa, ya)),
        "atan2": (lambda: lamina.atan2(x, y), lambda: np.arctan2(xa, ya)),
        "remainder": (lambda: lamina.remainder(x, y), lambda: np.remainder(xa, ya)),
        "floor_divide": (lambda: x // y, lambda: np.floor_divide(xa, ya)),
        "lerp": (lambda: lamina.lerp(x, y, 0.3), lambda: xa + 0.3 * (ya - xa)),
        "asinh": (lambda: lamina.asinh(x), lambda: np.arcsinh(xa)),
        "sinh": (lambda: lamina.sinh(x), lambda: np.sinh(xa)),
    }
    run, ref = fns[op]
    out = run()
    assert out.dtype is d
    want = lamina.tensor(ref().astype(np.float32), dtype=d).float().numpy()
    # one rounding of the float32 result: equal, or one 16-bit ulp apart on a near-tie
    np.testing.assert_allclose(out.float().numpy(), want, rtol=2 ** -7 if dtype == "bfloat16"
                               else 2 ** -10)


def test_positive_and_sgn_of_bool():
    x = lamina.tensor([1.0, -2.0])
    assert lamina.positive(x) is x
    b = lamina.tensor([True, False])
    assert lamina.sgn(b).tolist() == [True, False]
    with pytest.raises(RuntimeError, match=r"The `\+` operator, on a bool tensor is not "
                                           "supported."):
        lamina.positive(b)


def test_logit_eps_clamps():
    a = np.array([0.0, 1e-9, 0.3, 1.0], np.float32)
    out = lamina.logit(lam(a), eps=1e-3)
    # the bounds are float32 numbers, like PyTorch's
    c = np.clip(f64(a), f64(np.float32(1e-3)), f64(np.float32(1 - 1e-3)))
    close(out, np.log(c / (1 - c)), np.float32)
    if torch is not None:
        assert_close(out.numpy(), torch.logit(torch.from_numpy(a), eps=1e-3).numpy())


# -- predicates ---------------------------------------------------------------------------------
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.bool_]),
       seed=st.integers(0, 2**16))
def test_predicates_and_nan_to_num(shape, dtype, seed):
    a = values(shape, dtype, np.random.default_rng(seed))
    x = lam(a)
    for op, ref in (("isinf", np.isinf), ("isfinite", np.isfinite),
                    ("isposinf", np.isposinf), ("isneginf", np.isneginf)):
        close(getattr(lamina, op)(x), ref(a), np.bool_)
    close(lamina.nan_to_num(x), np.nan_to_num(a), dtype)
    if a.dtype.kind == "f":
        close(x.nan_to_num(nan=1.5, posinf=9.0, neginf=-9.0),
              np.nan_to_num(a, nan=1.5, posinf=9.0, neginf=-9.0), dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_nan_to_num_half_defaults(dtype):
    x = lamina.tensor([math.inf, -math.inf, math.nan, 2.0], dtype=getattr(lamina, dtype))
    big = 65504.0 if dtype == "float16" else float.fromhex("0x1.fep127")
    assert x.nan_to_num().float().tolist() == [big, -big, 0.0, 2.0]


# -- binary -------------------------------------------------------------------------------------
def _floor_divide_ref(a, b):
    with np.errstate(all="ignore"):
        if a.dtype.kind == "f":
            return np.floor_divide(a, b)
        return np.floor_divide(a, b)


with np.errstate(all="ignore"):
    BINARY = {
        "atan2": (lambda a, b: np.arctan2(f64(a), f64(b)), True),
        "fmod": (lambda a, b: np.fmod(a, b), False),
        "remainder": (lambda a, b: np.remainder(a, b), False),
        "floor_divide": (_floor_divide_ref, False),
        "hypot": (lambda a, b: np.hypot(f64(a), f64(b)), True),
        "logaddexp": (lambda a, b: np.logaddexp(f64(a), f64(b)), True),
        "logaddexp2": (lambda a, b: np.logaddexp2(f64(a), f64(b)), True),
        "copysign": (lambda a, b: np.copysign(f64(a), f64(b)), True),
        "float_power": (lambda a, b: np.float_power(f64(a), f64(b)), True),
        "xlogy": (lambda a, b: np.where(np.isnan(f64(b)), np.nan, np.where(
            f64(a) == 0, 0.0, f64(a) * np.log(f64(b)))), True),
    }


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=4),
       op=st.sampled_from(sorted(BINARY)), dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=50)
def test_binary_float(shapes, op, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    a, b = (values(s, dtype, rng) for s in shapes.input_shapes)
    if layout:
        a = strided(a)
    ref, _ = BINARY[op]
    out = getattr(lamina, op)(lam(a), lam(b))
    with np.errstate(all="ignore"):
        want = ref(a, b)
    if op == "float_power":
        close(out, want, np.float64)
        return
    scale = None
    if op in ("logaddexp", "logaddexp2"):  # max + log1p(...) cancels near 0
        with np.errstate(invalid="ignore"):
            scale = np.nan_to_num(np.maximum(np.abs(f64(a)), np.abs(f64(b))), posinf=0.0)
    if op == "floor_divide" and out.numel():
        # numpy and PyTorch agree except in the sign of a zero quotient from huge divisors
        got = out.numpy()
        both_zero = (got == 0) & (np.asarray(want) == 0)
        want = np.where(both_zero, got, want)
    close(out, want, dtype, scale=scale)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=4),
       op=st.sampled_from(["fmod", "remainder", "floor_divide"]),
       dtype=st.sampled_from([np.int32, np.int64]), seed=st.integers(0, 2**16))
def test_integer_division_is_exact(shapes, op, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = (values(s, dtype, rng) for s in shapes.input_shapes)
    b[b == 0] = 3
    out = getattr(lamina, op)(lam(a), lam(b))
    ref = {"fmod": np.fmod, "remainder": np.remainder, "floor_divide": np.floor_divide}[op]
    close(out, ref(a, b), dtype)


def test_integer_extremes_and_scalars():
    a = np.array([np.iinfo(np.int64).min, -7, 7, 0], np.int64)
    x = lam(a)
    close(x // 2, np.floor_divide(a, 2), np.int64)
    close(x % -3, np.remainder(a, -3), np.int64)
    close(lamina.fmod(x, -3), np.fmod(a, -3), np.int64)
    close(7 // lam(np.array([2, -2, 3])), np.array([3, -4, 2]), np.int64)
    close(7 % lam(np.array([2, -2, 3])), np.array([1, -1, 1]), np.int64)
    close(lamina.remainder(5, lam(np.array([3, -3]))), np.array([2, -1]), np.int64)
    close(lam(np.array([5.5, -5.5], np.float32)) % 2, np.array([1.5, 0.5]), np.float32)
    close(lam(np.array([3, 4])) // 2.5, np.array([1.0, 1.0]), np.float32)


@pytest.mark.parametrize("call", [
    lambda: lamina.tensor([1, 2]) // 0,
    lambda: lamina.tensor([1, 2]) % 0,
    lambda: lamina.fmod(lamina.tensor([1, 2]), lamina.tensor([1, 0])),
    lambda: lamina.floor_divide(lamina.tensor([1, 2]), lamina.tensor([0])),
])
def test_integer_division_by_zero_raises(call):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        call()


def test_float_division_by_zero_follows_ieee():
    x = lamina.tensor([1.0, -1.0, 0.0])
    assert (x // 0.0).tolist()[:2] == [math.inf, -math.inf]
    assert math.isnan((x // 0.0).tolist()[2])
    assert all(math.isnan(v) for v in (x % 0.0).tolist())


# -- clamp, lerp, addcmul, addcdiv --------------------------------------------------------------
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=4),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]),
       kind=st.sampled_from(["tensors", "numbers", "min_only", "max_only"]),
       seed=st.integers(0, 2**16))
def test_clamp(shapes, dtype, kind, seed):
    rng = np.random.default_rng(seed)
    a, lo, hi = (values(s, dtype, rng) for s in shapes.input_shapes)
    x = lam(a)
    if kind == "numbers":
        lo, hi = (-2, 3) if np.dtype(dtype).kind == "i" else (-1.5, 2.5)
    with np.errstate(invalid="ignore"):
        if kind == "min_only":
            out, want = lamina.clamp(x, min=lam(lo)), np.maximum(a, lo)
        elif kind == "max_only":
            out, want = x.clamp_max(lam(hi)), np.minimum(a, hi)
        else:
            out = lamina.clip(x, lam(lo), lam(hi))
            want = np.minimum(np.maximum(a, lo), hi)
    close(out, want, dtype)


def test_clamp_dtypes_follow_promotion():
    i = lamina.tensor([1, -2, 3])
    assert lamina.clamp(i, min=0.5).dtype == lamina.float32
    assert lamina.clamp(i, min=0.5).tolist() == [1.0, 0.5, 3.0]
    assert i.clamp(min=0).dtype == lamina.int64
    assert lamina.clamp(i, min=lamina.tensor([0.0, 0.0, 4.0])).tolist() == [1.0, 0.0, 4.0]
    f = lamina.tensor([0.5, math.nan])
    assert math.isnan(f.clamp(0, 1).tolist()[1])
    assert f.clamp(min=1, max=0).tolist()[0] == 0.0  # min > max gives max, like PyTorch


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
       dtype=st.sampled_from([np.float32, np.float64]), tensor_weight=st.booleans(),
       seed=st.integers(0, 2**16))
def test_lerp_addcmul_addcdiv(shape, dtype, tensor_weight, seed):
    rng = np.random.default_rng(seed)
    a, b, c = (values(shape, dtype, rng, special=False) for _ in range(3))
    w = rng.uniform(-0.5, 1.5, size=shape).astype(dtype) if tensor_weight else 0.7
    out = lamina.lerp(lam(a), lam(b), lam(w))
    wa = f64(w)
    want = np.where(np.abs(wa) < 0.5, f64(a) + wa * (f64(b) - f64(a)),
                    f64(b) - (f64(b) - f64(a)) * (1 - wa))
    close(out, want, dtype, scale=np.abs(f64(a)) + np.abs(f64(b)))
    close(lamina.addcmul(lam(a), lam(b), lam(c), value=0.5),
          f64(a) + 0.5 * f64(b) * f64(c), dtype, scale=np.abs(f64(a)) + np.abs(f64(b) * c))
    c = np.where(c == 0, 1, c).astype(dtype)
    close(lam(a).addcdiv(lam(b), lam(c), value=-2), f64(a) - 2 * f64(b) / f64(c), dtype,
          scale=np.abs(f64(a)) + np.abs(2 * f64(b) / c))


def test_addcmul_integer_and_mixed():
    i = lamina.tensor([1, -2, 3])
    assert lamina.addcmul(i, i, i, value=2).tolist() == [3, 6, 21]
    f = lamina.tensor([1.5, -2.5, 0.0])
    out = lamina.addcmul(i, f, f)
    assert out.dtype == lamina.float32 and out.tolist() == [3.25, 4.25, 3.0]


# -- bitwise ------------------------------------------------------------------------------------
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=0, max_side=4),
       dtype=st.sampled_from([np.int8, np.int32, np.int64, np.bool_]),
       seed=st.integers(0, 2**16))
def test_bitwise_matches_numpy(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = (values(s, dtype, rng) for s in shapes.input_shapes)
    x, y = lam(a), lam(b)
    close(lamina.bitwise_and(x, y), a & b, dtype)
    close(x | y, a | b, dtype)
    close(x ^ y, a ^ b, dtype)
    close(~x, ~a, dtype)
    close(lamina.bitwise_not(y), ~b, dtype)
    if dtype != np.bool_:
        s = np.abs(b) % 8
        close(x << lam(s), np.left_shift(a, s), dtype)
        close(x >> lam(s), np.right_shift(a, s), dtype)


def test_bitwise_scalars_and_out_of_range_shifts():
    i = lamina.tensor([1, -2, 3])
    assert (i & 3).tolist() == [1, 2, 3]
    assert (6 | i).tolist() == [7, -2, 7]
    assert (True ^ lamina.tensor([True, False])).tolist() == [False, True]
    assert (i & True).dtype == lamina.int64
    assert (i << 70).tolist() == [0, 0, 0]
    assert (i >> 70).tolist() == [0, -1, 0]
    assert (1 << lamina.tensor([0, 3])).tolist() == [1, 8]
    assert (lamina.tensor([16]) >> lamina.tensor([2])).tolist() == [4]


# -- one kernel per composite -------------------------------------------------------------------
def _unary_case(name):
    return lambda x: getattr(lamina, name)(x)


def _binary_case(name):
    return lambda x: getattr(lamina, name)(x, x * 2)


def _int_case(name):
    return lambda x: getattr(lamina, name)(x.long(), 3)


COMPOSITES = {
    **{name: _unary_case(name) for name in (
        "reciprocal", "square", "log10", "erfinv", "frac", "sgn", "deg2rad", "rad2deg",
        "logit", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "isinf",
        "isposinf", "isneginf", "isfinite", "nan_to_num")},
    **{name: _binary_case(name) for name in (
        "atan2", "fmod", "remainder", "floor_divide", "hypot", "logaddexp", "logaddexp2",
        "copysign", "float_power", "xlogy")},
    **{f"int_{name}": _int_case(name) for name in (
        "fmod", "remainder", "floor_divide", "bitwise_and", "bitwise_or", "bitwise_xor",
        "bitwise_left_shift", "bitwise_right_shift")},
    "int_floordiv_operator": lambda x: x.long() // 3,
    "int_mod_operator": lambda x: x.long() % -3,
    "bitwise_not": lambda x: ~(x.long() & 6),
    "clamp": lambda x: x.clamp(-1, 1),
    "clamp_tensors": lambda x: x.clamp(x * 0.5, x * 2 + 1),
    "lerp": lambda x: lamina.lerp(x, x * 2, 0.25),
    "lerp_tensor": lambda x: lamina.lerp(x, x * 2, x.sigmoid()),
    "addcdiv": lambda x: lamina.addcdiv(x, x, x * 2 + 10, value=0.5),
    "addcmul": lambda x: x.addcmul(x, x),
    "logit_eps": lambda x: x.sigmoid().logit(1e-4),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composites_compile_to_one_kernel(name):
    fn = COMPOSITES[name]
    x = lamina.from_numpy(np.array([[1.5, -2.0, 0.25], [3.0, 0.0, -0.5]], np.float32))
    f = lamina.compile(fn)
    loop = f.lower(x).as_text("loop")
    assert loop.count("kernel @") == 1, loop
    assert_close(f(x).numpy(), fn(x).numpy(), rtol=1e-6, atol=1e-6)


def test_scalars_are_arguments_not_new_kernels():
    from lamina.frontend import dispatch

    x = lamina.tensor([0.5, -3.0, 2.0])
    x.clamp(-1.0, 1.0)
    lamina.lerp(x, x, 0.1)
    before = dispatch.eager_signatures()
    for v in (0.25, 0.5, 2.0):
        assert x.clamp(-v, v).tolist() == [min(max(t, -v), v) for t in (0.5, -3.0, 2.0)]
        lamina.lerp(x, x, v)
    assert dispatch.eager_signatures() == before


# -- errors and dtypes against PyTorch ----------------------------------------------------------
ERRORS = [
    ("frac_int", lambda m: m.frac(m.tensor([1])), NotImplementedError,
     "\"frac_cpu\" not implemented for 'Long'"),
    ("hypot_int", lambda m: m.hypot(m.tensor([1]), m.tensor([1])), NotImplementedError,
     "\"hypot_cpu\" not implemented for 'Long'"),
    ("hypot_number", lambda m: m.hypot(m.tensor([1.0]), 2), TypeError,
     r"hypot\(\): argument 'other' \(position 2\) must be Tensor, not int"),
    ("logaddexp_int", lambda m: m.logaddexp(m.tensor([1]), m.tensor([1])),
     NotImplementedError, "\"logaddexp_cpu\" not implemented for 'Long'"),
    ("floor_divide_bool", lambda m: m.floor_divide(m.tensor([True]), m.tensor([True])),
     NotImplementedError, "\"div_floor_cpu\" not implemented for 'Bool'"),
    ("remainder_bool", lambda m: m.remainder(m.tensor([True]), m.tensor([True])),
     NotImplementedError, "\"remainder_cpu\" not implemented for 'Bool'"),
    ("clamp_none", lambda m: m.clamp(m.tensor([1.0])), RuntimeError,
     "torch.clamp: At least one of 'min' or 'max' must not be None"),
    ("clamp_bool", lambda m: m.clamp(m.tensor([True]), min=False), NotImplementedError,
     "\"clamp_min_scalar_cpu\" not implemented for 'Bool'"),
    ("clamp_bool2", lambda m: m.clamp(m.tensor([True]), False, True), NotImplementedError,
     "\"clamp_scalar_cpu\" not implemented for 'Bool'"),
    ("lerp_int", lambda m: m.lerp(m.tensor([1]), m.tensor([2]), 0.5), NotImplementedError,
     "\"lerp_kernel_scalar\" not implemented for 'Long'"),
    ("lerp_dtype", lambda m: m.lerp(m.tensor([1.0]), m.tensor([2.0], dtype=m.float64), 0.5),
     RuntimeError, "expected dtype float for `end` but got dtype double"),
    ("lerp_weight", lambda m: m.lerp(m.tensor([1.0]), m.tensor([2.0]),
                                     m.tensor([0.5], dtype=m.float64)),
     RuntimeError, "expected dtype float for `weight` but got dtype double"),
    ("addcdiv_int", lambda m: m.addcdiv(m.tensor([1]), m.tensor([1]), m.tensor([1])),
     RuntimeError, "Integer division with addcdiv is no longer supported"),
    ("bitwise_float", lambda m: m.bitwise_and(m.tensor([1.0]), m.tensor([1.0])),
     NotImplementedError, "\"bitwise_and_cpu\" not implemented for 'Float'"),
    ("and_float", lambda m: m.tensor([1.0]) & m.tensor([1.0]), NotImplementedError,
     "\"bitwise_and_cpu\" not implemented for 'Float'"),
    ("not_float", lambda m: m.bitwise_not(m.tensor([1.0])), NotImplementedError,
     "\"bitwise_not_cpu\" not implemented for 'Float'"),
    ("invert_float", lambda m: ~m.tensor([1.0]), TypeError,
     r"~ \(operator.invert\) is only implemented on integer and Boolean-type tensors"),
    ("lshift_bool", lambda m: m.tensor([True]) << m.tensor([True]), NotImplementedError,
     "\"lshift_cpu\" not implemented for 'Bool'"),
    ("int_zero", lambda m: m.tensor([1, 2]) // m.tensor([1, 0]), RuntimeError,
     "ZeroDivisionError"),
]


@pytest.mark.parametrize("name,call,exc,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_match_pytorch(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call(lamina)
    if torch is not None:
        with pytest.raises(exc, match=match):
            call(torch)


@needs_torch
@pytest.mark.parametrize("op", ["atan2", "fmod", "remainder", "floor_divide", "copysign",
                                "float_power", "bitwise_and", "bitwise_xor", "logaddexp",
                                "hypot", "xlogy"])
@pytest.mark.parametrize("lhs", ["f32", "f64", "i32", "i64", "bool"])
@pytest.mark.parametrize("rhs", ["f32", "i64", "bool", "f64_0d", "int", "float"])
def test_binary_dtypes_and_values_match_torch(op, lhs, rhs):
    def make(spec, lib):
        if spec in ("int", "float"):
            return {"int": 3, "float": 2.5}[spec]
        name, _, zero = spec.partition("_")
        dtype = {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64",
                 "bool": "bool"}[name]
        data = [[3, -5, 7], [2, 9, -4]] if not zero else 3
        if name == "bool":
            data = [[True, False, True], [False, True, True]]
        return lib.tensor(data, dtype=getattr(lib, dtype))

    def run(lib):
        fn = getattr(lib, op)
        try:
            return fn(make(lhs, lib), make(rhs, lib))
        except (RuntimeError, TypeError, NotImplementedError) as e:
            return type(e)

    got, want = run(lamina), run(torch)
    if isinstance(want, type):
        assert got is want, (got, want)
        return
    assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1]
    assert_close(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)


@needs_torch
@given(shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=5),
       seed=st.integers(0, 2**16))
def test_float_division_family_matches_torch_on_special_values(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = values(shape, np.float32, rng), values(shape, np.float32, rng)
    for op in ("fmod", "remainder", "floor_divide", "copysign"):  # the same formulas: exact
        got = getattr(lamina, op)(lam(a), lam(b)).numpy()
        want = getattr(torch, op)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        np.testing.assert_array_equal(got, want, err_msg=op)
        num = ~np.isnan(want)  # signed zeros too
        np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]), err_msg=op)
    with np.errstate(invalid="ignore"):
        scale = np.nan_to_num(np.maximum(np.abs(f64(a)), np.abs(f64(b))), posinf=0.0)
    for op in ("logaddexp", "hypot"):
        want = getattr(torch, op)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        close(getattr(lamina, op)(lam(a), lam(b)), want, np.float32, ulps=2, scale=scale)


# -- gradients: the builds are what autograd differentiates -------------------------------------
GRADS = {
    "reciprocal": (lambda m, x: m.reciprocal(x), 1, (0.5, 2.0)),
    "log10": (lambda m, x: m.log10(x), 1, (0.5, 2.0)),
    "asin": (lambda m, x: m.asin(x), 1, (-0.8, 0.8)),
    "acos": (lambda m, x: m.acos(x), 1, (-0.8, 0.8)),
    "atan": (lambda m, x: m.atan(x), 1, (-2.0, 2.0)),
    "sinh": (lambda m, x: m.sinh(x), 1, (-2.0, 2.0)),
    "cosh": (lambda m, x: m.cosh(x), 1, (-2.0, 2.0)),
    "asinh": (lambda m, x: m.asinh(x), 1, (-2.0, 2.0)),
    "acosh": (lambda m, x: m.acosh(x), 1, (1.5, 3.0)),
    "atanh": (lambda m, x: m.atanh(x), 1, (-0.8, 0.8)),
    "logit": (lambda m, x: m.logit(x), 1, (0.2, 0.8)),
    "square": (lambda m, x: m.square(x), 1, (-2.0, 2.0)),
    "atan2": (lambda m, x, y: m.atan2(x, y), 2, (0.5, 2.0)),
    "hypot": (lambda m, x, y: m.hypot(x, y), 2, (0.5, 2.0)),
    "logaddexp": (lambda m, x, y: m.logaddexp(x, y), 2, (-2.0, 2.0)),
    "logaddexp2": (lambda m, x, y: m.logaddexp2(x, y), 2, (-2.0, 2.0)),
    "remainder": (lambda m, x, y: m.remainder(x * 5 - 2, y), 2, (0.3, 0.9)),
    "fmod": (lambda m, x, y: m.fmod(x * 5 - 2, y), 2, (0.3, 0.9)),
    "xlogy": (lambda m, x, y: m.xlogy(x, y), 2, (0.5, 2.0)),
    "float_power": (lambda m, x, y: m.float_power(x, y), 2, (0.5, 2.0)),
    "clamp": (lambda m, x, lo, hi: m.clamp(x, lo - 1, hi), 3, (-1.0, 1.0)),
    "clamp_numbers": (lambda m, x: m.clamp(x, -0.5, 0.5) + x.clamp_min(0.1), 1, (-1.0, 1.0)),
    "lerp": (lambda m, x, y, w: m.lerp(x, y, w), 3, (-1.0, 1.0)),
    "lerp_scalar": (lambda m, x, y: m.lerp(x, y, 0.7), 2, (-1.0, 1.0)),
    "addcmul": (lambda m, x, y, z: m.addcmul(x, y, z, value=0.5), 3, (-1.0, 1.0)),
    "addcdiv": (lambda m, x, y, z: m.addcdiv(x, y, z + 2, value=-2), 3, (-1.0, 1.0)),
    "nan_to_num": (lambda m, x: m.nan_to_num(x), 1, (-1.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients(name):
    fn, n, (lo, hi) = GRADS[name]
    rng = np.random.default_rng(len(name))
    arrays = [rng.uniform(lo, hi, size=(2, 3)) for _ in range(n)]
    xs = [lamina.tensor(a, requires_grad=True) for a in arrays]
    assert lamina.autograd.gradcheck(lambda *t: fn(lamina, *t), xs)
    if torch is None:
        return
    g = rng.standard_normal((2, 3))
    fn(lamina, *xs).backward(lamina.tensor(g))
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(torch, *ts).backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-7, atol=1e-10)


def test_clamp_gradient_at_the_bounds_flows_to_the_input():
    x = lamina.tensor([-1.0, 0.0, 1.0, 2.0], requires_grad=True)
    x.clamp(-1.0, 1.0).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0]  # PyTorch's subgradient
