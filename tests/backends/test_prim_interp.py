"""The prim interpreter against independent oracles.

Floats are checked against Python's ``math`` (libm) on exact values, rounded to the
result format with exact rational arithmetic (``fractions``); integers against Python
integers wrapped to the bit width; movement ops against numpy indexing; contractions
against ``np.einsum`` in float64 or on Python integers; PyTorch where installed.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import TABLE, run
from lamina.backends.interp.prim_interp import unsupported_ops
from lamina.ir import OPS, Builder, Graph, IRError, TensorType, parse
from lamina.ir.core import Return
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import SCALARS, ScalarType

FLOATS = [SCALARS[n] for n in ("f16", "bf16", "f32", "f64")]
INTS = [SCALARS[n] for n in ("i8", "i32", "i64", "index")]
BOOL = SCALARS["i1"]
ALL = FLOATS + INTS + [BOOL]
# precision (bits), minimum and maximum exponent of each float format
FORMATS = {"f16": (11, -14, 15), "bf16": (8, -126, 127), "f32": (24, -126, 127),
           "f64": (53, -1022, 1023)}
BITS = {"i8": 8, "i32": 32, "i64": 64, "index": 64}
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, -2.5, math.inf, -math.inf, math.nan]


# -- exact oracles ------------------------------------------------------------------------
def round_to(v: float | int, fmt: str) -> float:
    """``v`` rounded once to nearest even in the float format ``fmt``, computed exactly."""
    if isinstance(v, float) and not math.isfinite(v):
        return v
    q = Fraction(v)
    if q == 0:
        return v if isinstance(v, float) else 0.0
    p, emin, emax = FORMATS[fmt]
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    ulp = Fraction(2) ** (max(e, emin) - p + 1)
    r = round(a / ulp) * ulp  # Fraction rounds half to even
    out = math.inf if r >= Fraction(2) ** (emax + 1) else float(r)
    return -out if q < 0 else out


def wrap(v: int, t: ScalarType) -> int:
    """``v`` modulo 2**bits as a signed integer."""
    b = BITS[t.name]
    return ((v + 2 ** (b - 1)) % 2**b) - 2 ** (b - 1)


def values(x: np.ndarray, t: ScalarType) -> np.ndarray:
    """Exact values of a storage array: float64 for floats, the stored ints/bools otherwise."""
    if t.name == "bf16":
        return (x.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return x.astype(np.float64) if t.is_float else x


def pylist(x: np.ndarray, t: ScalarType) -> list:
    return values(x, t).ravel().tolist()


def storage(vals: Any, t: ScalarType) -> np.ndarray:
    """Storage of values (rounded by numpy for f16/f32, truncated to bf16: just test data)."""
    v = np.asarray(vals, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if t.name == "bf16":
            return (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return v.astype(t.numpy)


def make(seed: int, shape: tuple[int, ...], t: ScalarType, special: bool = True,
         lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Random test data of dtype ``t``: floats with specials, ints across their range."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape, dtype=np.int64))
    if t.is_float:
        if lo is not None:
            v = rng.uniform(lo, hi, n)
        else:
            v = rng.standard_normal(n) * np.exp2(rng.integers(-6, 8, n))
        if special:
            mask = rng.random(n) < 0.25
            v[mask] = rng.choice(SPECIALS, int(mask.sum()))
        return storage(v, t).reshape(shape)
    if t.is_bool:
        return (rng.random(n) < 0.5).reshape(shape)
    info = np.iinfo(t.numpy)
    wide = rng.integers(info.min, info.max, n, endpoint=True, dtype=np.int64)
    small = rng.integers(-9, 10, n)
    pick = rng.random(n)
    v = np.where(pick < 0.4, small, wide)
    v = np.where(pick > 0.9, rng.choice([0, 1, -1, info.min, info.max], n), v)
    return v.astype(t.numpy).reshape(shape)


def run1(name: str, xs: list[np.ndarray], dtypes: list[ScalarType], dynamic: bool = False,
         **attrs: Any) -> np.ndarray:
    """Run one prim op on ``xs`` through a func (with ``?`` sizes if ``dynamic``)."""
    types = [TensorType(tuple(None if dynamic else d for d in x.shape), t)
             for x, t in zip(xs, dtypes)]
    g = Graph("f", types)
    b = Builder(g.body)
    g.body.append(Return([b(name, *g.args, **attrs)], []))
    (out,) = run(g, *xs)
    return out


def ulp(e: np.ndarray, fmt: str) -> np.ndarray:
    p, emin, _ = FORMATS[fmt]
    with np.errstate(divide="ignore"):
        ex = np.floor(np.log2(np.abs(e)))
    return np.exp2(np.maximum(ex, emin) - p + 1)


def check(got: np.ndarray, t: ScalarType, expected: list, ulps: float = 0,
          signed_zero: bool = True) -> None:
    """``got`` (storage of dtype ``t``) holds ``expected`` (flat) within ``ulps``."""
    assert got.dtype == t.numpy
    if not t.is_float:
        assert got.ravel().tolist() == list(expected)
        return
    g = values(got, t).ravel()
    e = np.asarray(expected, np.float64).ravel()
    assert g.shape == e.shape
    nan = np.isnan(e)
    np.testing.assert_array_equal(np.isnan(g), nan)
    g, e = g[~nan], e[~nan]
    np.testing.assert_array_equal(np.isinf(g), np.isinf(e))
    if ulps == 0:
        np.testing.assert_array_equal(g, e)
        if signed_zero:
            np.testing.assert_array_equal(np.signbit(g), np.signbit(e))
    else:
        with np.errstate(invalid="ignore"):
            bad = ~((g == e) | (np.abs(g - e) <= ulps * ulp(e, t.name)))
        assert not bad.any(), f"got {g[bad]}, expected {e[bad]}"


seeds = st.integers(0, 2**32 - 1)
shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)


def accepting(kind: str) -> list[ScalarType]:
    return [t for t in ALL if ew.accepts(kind, t)]


# -- elementwise: float oracles on exact values through libm -------------------------------
def _safe(f: Callable[..., float]) -> Callable[..., float]:
    def g(*v: float) -> float:
        try:
            return f(*v)
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError):
            return math.nan

    return g


def _log(f: Callable[[float], float], pole: float) -> Callable[[float], float]:
    return lambda v: -math.inf if v == pole else math.inf if v == math.inf else _safe(f)(v)


def _same_sign(f: Callable[[float], float]) -> Callable[[float], float]:
    # floor/ceil/trunc/round: integral, and a zero result keeps the sign of the input
    return lambda v: v if not math.isfinite(v) else math.copysign(float(f(v)), v)


def _logistic(v: float) -> float:
    if math.isnan(v):
        return v
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = _safe(math.exp)(v)
    return e / (1.0 + e)


def _erfinv(v: float) -> float:
    special = pytest.importorskip("scipy.special")
    return float(special.erfinv(v))


# fn -> (oracle on a float, allowed error in ulps of the result: libm's transcendental
# functions may be 2 ulps off in float64, e.g. tanh)
F_UNARY: dict[str, tuple[Callable[[float], Any], float]] = {
    "neg": (lambda v: -v, 0), "abs": (abs, 0),
    "sign": (lambda v: 0.0 if math.isnan(v) else float((v > 0) - (v < 0)), 0),
    "exp": (_safe(math.exp), 2), "exp2": (_safe(math.exp2), 2), "expm1": (_safe(math.expm1), 2),
    "log": (_log(math.log, 0.0), 2), "log2": (_log(math.log2, 0.0), 2),
    "log1p": (_log(math.log1p, -1.0), 2), "sqrt": (_safe(math.sqrt), 0),
    "rsqrt": (lambda v: math.copysign(math.inf, v) if v == 0 else
              0.0 if v == math.inf else _safe(lambda u: 1.0 / math.sqrt(u))(v), 2),
    "sin": (_safe(math.sin), 2), "cos": (_safe(math.cos), 2), "tan": (_safe(math.tan), 2),
    "tanh": (math.tanh, 2), "logistic": (_logistic, 2), "erf": (math.erf, 2),
    "erfinv": (_erfinv, 4), "floor": (_same_sign(math.floor), 0),
    "ceil": (_same_sign(math.ceil), 0), "trunc": (_same_sign(math.trunc), 0),
    "round": (_same_sign(round), 0), "isnan": (math.isnan, 0),
}
I_UNARY: dict[str, Callable[[int], int]] = {
    "neg": lambda v: -v, "abs": abs, "sign": lambda v: (v > 0) - (v < 0), "not": lambda v: ~v,
}


def _cdiv(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _cpow(a: int, e: int, t: ScalarType) -> int:
    if e < 0:
        return 1 if a == 1 else (-1 if e % 2 else 1) if a == -1 else 0
    return pow(a, e, 2 ** BITS[t.name])


def _shl(a: int, s: int, t: ScalarType) -> int:
    return a << s if 0 <= s < BITS[t.name] else 0


def _shr(a: int, s: int, t: ScalarType) -> int:
    if s < 0:
        return 0
    return a >> min(s, BITS[t.name] - 1) if s < BITS[t.name] else (-1 if a < 0 else 0)


I_BINARY: dict[str, Callable[[int, int, ScalarType], int]] = {
    "add": lambda a, b, t: a + b, "sub": lambda a, b, t: a - b, "mul": lambda a, b, t: a * b,
    "div": lambda a, b, t: _cdiv(a, b), "rem": lambda a, b, t: a - b * _cdiv(a, b) if b else 0,
    "pow": _cpow, "max": lambda a, b, t: max(a, b), "min": lambda a, b, t: min(a, b),
    "and": lambda a, b, t: a & b, "or": lambda a, b, t: a | b, "xor": lambda a, b, t: a ^ b,
    "shl": _shl, "shr": _shr,
}


def _fdiv(a: float, b: float) -> float:
    if b != 0 or math.isnan(b):
        return a / b if math.isfinite(b) or math.isfinite(a) else math.nan
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _fpow(a: float, b: float) -> float:
    """C99 pow: poles and overflow keep the sign of a negative base to an odd integer power."""
    odd = math.isfinite(b) and b == math.floor(b) and b % 2 == 1
    if a == 0 and b < 0:
        return math.copysign(math.inf, a) if odd else math.inf
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and odd else math.inf
    except ValueError:
        return math.nan


def _fmax(a: float, b: float, pick: Callable[[float, float], float]) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else pick(a, b)


# fn -> (oracle on two floats, ulps, signed zeros checked)
F_BINARY: dict[str, tuple[Callable[[float, float], float], float, bool]] = {
    "add": (lambda a, b: a + b, 0, False), "sub": (lambda a, b: a - b, 0, False),
    "mul": (_safe(lambda a, b: a * b), 0, True), "div": (_fdiv, 0, True),
    "rem": (lambda a, b: a if math.isinf(b) and math.isfinite(a) else _safe(math.fmod)(a, b),
            0, True),
    "pow": (_fpow, 2, True),
    "max": (lambda a, b: _fmax(a, b, max), 0, False),
    "min": (lambda a, b: _fmax(a, b, min), 0, False),
    "atan2": (_safe(math.atan2), 2, True),
}
COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}


@pytest.mark.parametrize("fn", sorted(ew.UNARY))
@given(data=st.data())
def test_unary(fn: str, data: st.DataObject):
    t = data.draw(st.sampled_from(accepting(ew.UNARY[fn])))
    seed, shape = data.draw(seeds), data.draw(shapes)
    x = make(seed, shape, t, lo=-1.1 if fn == "erfinv" else None, hi=1.1)
    got = run1(f"prim.{fn}", [x], [t], dynamic=data.draw(st.booleans()))
    out = BOOL if fn in ew.UNARY_PREDICATES else t
    assert got.shape == x.shape
    xs = pylist(x, t)
    if t.is_float:
        f, ulps = F_UNARY[fn]
        expected = [f(v) for v in xs]
        if out.is_float:
            expected = [round_to(v, t.name) for v in expected]
        check(got, out, expected, ulps)
    elif t.is_bool:
        check(got, out, [not v for v in xs])
    else:
        check(got, out, [wrap(I_UNARY[fn](v), t) for v in xs])


@pytest.mark.parametrize("fn", sorted(ew.BINARY) + list(ew.COMPARE))
@given(data=st.data())
def test_binary(fn: str, data: st.DataObject):
    t = data.draw(st.sampled_from(accepting(ew.BINARY.get(fn, "any"))))
    shape = data.draw(shapes)
    x, y = make(data.draw(seeds), shape, t), make(data.draw(seeds), shape, t)
    if fn in ("shl", "shr"):
        rng = np.random.default_rng(data.draw(seeds))
        y = rng.integers(-3, BITS[t.name] + 3, shape).astype(t.numpy)
    if fn == "pow" and t.is_int:
        rng = np.random.default_rng(data.draw(seeds))
        y = np.where(rng.random(shape) < 0.5, y, rng.integers(-3, 70, shape)).astype(t.numpy)
    got = run1(f"prim.{fn}", [x, y], [t, t], dynamic=data.draw(st.booleans()))
    assert got.shape == shape
    pairs = list(zip(pylist(x, t), pylist(y, t)))
    if fn in COMPARE:
        check(got, BOOL, [COMPARE[fn](a, b) for a, b in pairs])
    elif t.is_float:
        f, ulps, signed = F_BINARY[fn]
        check(got, t, [round_to(f(a, b), t.name) for a, b in pairs], ulps, signed)
    elif t.is_bool:
        ops = {"and": lambda a, b: a and b, "or": lambda a, b: a or b, "xor": lambda a, b: a != b}
        check(got, t, [ops[fn](a, b) for a, b in pairs])
    else:
        check(got, t, [wrap(I_BINARY[fn](a, b, t), t) for a, b in pairs])


def test_integer_division_semantics():
    i32 = SCALARS["i32"]
    a = np.array([7, -7, 7, -7, 5, 0, -2**31, -2**31, 3], np.int32)
    b = np.array([2, 2, -2, -2, 0, 0, -1, 1, 7], np.int32)
    assert run1("prim.div", [a, b], [i32, i32]).tolist() == [3, -3, -3, 3, 0, 0, -2**31, -2**31,
                                                             0]
    assert run1("prim.rem", [a, b], [i32, i32]).tolist() == [1, -1, 1, -1, 0, 0, 0, 0, 3]
    f = SCALARS["f32"]
    r = run1("prim.rem", [np.float32([7, -7, 5.5]), np.float32([2, 2, -2])], [f, f])
    assert r.tolist() == [1.0, -1.0, 1.5]  # fmod: the sign of the dividend


def test_shift_and_pow_edge_cases_match_torch():
    torch = pytest.importorskip("torch")
    i32 = SCALARS["i32"]
    a = np.array([1, -8, 5, -8, 3, 2, -1, 0], np.int32)
    s = np.array([31, 33, -1, 40, 0, 3, 32, 5], np.int32)
    for fn, op in (("shl", torch.bitwise_left_shift), ("shr", torch.bitwise_right_shift)):
        expected = op(torch.from_numpy(a), torch.from_numpy(s)).numpy()
        np.testing.assert_array_equal(run1(f"prim.{fn}", [a, s], [i32, i32]), expected)
    e = np.array([-1, -2, -1, 0, 3, -3, 2, 31], np.int32)
    base = np.array([2, 1, -1, 0, -3, -1, 0, 2], np.int32)
    expected = torch.from_numpy(base.astype(np.int64)).pow(torch.from_numpy(e.astype(np.int64)))
    got = run1("prim.pow", [base, e], [i32, i32])
    np.testing.assert_array_equal(got, expected.numpy().astype(np.int32))


def test_sign_nan_and_argmax_nan_match_torch():
    torch = pytest.importorskip("torch")
    f = SCALARS["f32"]
    x = np.float32([[1.0, np.nan, 3.0, np.nan], [-0.0, -2.0, 5.0, 5.0], [np.nan, 0, 0, 0]])
    np.testing.assert_array_equal(run1("prim.sign", [x], [f]), torch.sign(torch.from_numpy(x)))
    for fn in ("argmax", "argmin"):
        for axis in (0, 1):
            expected = getattr(torch, fn)(torch.from_numpy(x), dim=axis).numpy()
            np.testing.assert_array_equal(run1(f"prim.{fn}", [x], [f], axis=axis), expected)


def test_erfinv_edges_and_tails():
    special = pytest.importorskip("scipy.special")
    y = np.array([1e-300, -1e-20, 1e-10, 0.5, -0.5, 1 - 1e-16, -(1 - 2**-53), 0.999999, 1.0, -1.0,
                  0.0, -0.0, math.nan, 1.5, -1.0000001])
    f64 = SCALARS["f64"]
    got = run1("prim.erfinv", [y], [f64])
    check(got, f64, special.erfinv(y).tolist(), ulps=3)
    inner = np.abs(y) < 1
    np.testing.assert_allclose(special.erf(got[inner]), y[inner], rtol=1e-15, atol=0)


# -- casts ----------------------------------------------------------------------------------
def cast_oracle(v: Any, src: ScalarType, dst: ScalarType) -> Any:
    if dst.is_bool:
        return v != 0
    if dst.is_float:
        return round_to(float(v) if src.is_bool else v, dst.name)
    if not src.is_float:
        return wrap(int(v), dst)
    info = np.iinfo(dst.numpy)
    if math.isnan(v):
        return 0
    if math.isinf(v):
        return info.max if v > 0 else info.min
    return min(max(math.trunc(v), info.min), info.max)


@pytest.mark.parametrize("dst", [t for t in ALL if t.name != "index"], ids=str)
@pytest.mark.parametrize("src", ALL, ids=str)
@settings(max_examples=15)
@given(seed=seeds, shape=shapes)
def test_cast(src: ScalarType, dst: ScalarType, seed: int, shape: tuple[int, ...]):
    x = make(seed, shape, src)
    if src.is_float:  # add values out of every integer range
        rng = np.random.default_rng(seed)
        big = storage(rng.choice([3e9, -3e9, 1e20, -1e20, 200.7, -200.7], x.shape), src)
        x = np.where(rng.random(x.shape) < 0.2, big, x)
    got = run1("prim.cast", [x], [src], dtype=dst)
    assert got.shape == x.shape
    check(got, dst, [cast_oracle(v, src, dst) for v in pylist(x, src)])


@pytest.mark.parametrize("value,dst,expected", [
    (1 + 2**-8 + 2**-40, "bf16", 1 + 2**-7),  # via f32 this would tie and round to 1.0
    (1 + 2**-8, "bf16", 1.0),  # an exact tie goes to even
    (1 + 3 * 2**-8, "bf16", 1 + 2**-6),
    (1 + 2**-11 + 2**-40, "f16", 1 + 2**-10),
    (3.4e38, "bf16", math.inf),  # above the largest bf16, rounds to inf
    (-1e-45, "bf16", -0.0),
    (2.0**-133, "bf16", 2.0**-133),  # smallest bf16 subnormal
])
def test_float_narrowing_rounds_once(value: float, dst: str, expected: float):
    got = run1("prim.cast", [np.float64([value])], [SCALARS["f64"]], dtype=SCALARS[dst])
    check(got, SCALARS[dst], [expected])
    assert round_to(value, dst) == expected


def test_integer_to_bf16_rounds_once():
    i64 = SCALARS["i64"]
    x = np.array([2**60 + 2**52 + 1, 2**60 + 2**52, -(2**62) - 2**54 - 1, 2**63 - 1, -(2**63),
                  257, 255], np.int64)
    got = run1("prim.cast", [x], [i64], dtype=SCALARS["bf16"])
    check(got, SCALARS["bf16"], [round_to(int(v), "bf16") for v in x])
    assert values(got, SCALARS["bf16"])[0] == 2**60 + 2**53


def test_bf16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[~np.isnan(x)]
    got = run1("prim.cast", [x], [SCALARS["f32"]], dtype=SCALARS["bf16"])
    expected = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(got, expected)


# -- where, const, iota ---------------------------------------------------------------------
@pytest.mark.parametrize("t", ALL, ids=str)
@given(seed=seeds, shape=shapes)
def test_where(t: ScalarType, seed: int, shape: tuple[int, ...]):
    c, x, y = make(seed, shape, BOOL), make(seed + 1, shape, t), make(seed + 2, shape, t)
    got = run1("prim.where", [c, x, y], [BOOL, t, t])
    assert got.dtype == t.numpy
    assert got.tobytes() == np.where(c, x, y).tobytes()


@pytest.mark.parametrize("value,dtype,expected", [
    (1.5, "f32", 1.5), (1.5, "bf16", 1.5), (0.1, "bf16", round_to(0.1, "bf16")),
    (1e10, "f16", math.inf), (-math.inf, "f64", -math.inf), (math.nan, "f16", math.nan),
    (3, "f16", 3.0), (True, "f32", 1.0), (-128, "i8", -128), (2**63 - 1, "i64", 2**63 - 1),
    (4.0, "i32", 4), (1, "i1", True), (False, "i1", False), (7, "index", 7),
])
def test_const(value: Any, dtype: str, expected: Any):
    t = SCALARS[dtype]
    g = Graph("f", [])
    b = Builder(g.body)
    g.body.append(Return([b("prim.const", value=value, shape=(2, 0, 3) if dtype == "i8" else
                            (2, 3), dtype=t)], []))
    (got,) = run(g)
    assert got.shape == ((2, 0, 3) if dtype == "i8" else (2, 3))
    check(got, t, [expected] * got.size)


@pytest.mark.parametrize("value,dtype,message", [
    (128, "i8", "value 128 is out of range for i8"),
    (2.5, "i32", "value 2.5 is not representable in i32"),
    (math.inf, "i64", "value inf is not representable in i64"),
    (2, "i1", "value 2 is not representable in i1"),
])
def test_const_that_does_not_fit_is_an_error(value: Any, dtype: str, message: str):
    g = Graph("f", [])
    b = Builder(g.body)
    g.body.append(Return([b("prim.const", value=value, shape=(2,), dtype=SCALARS[dtype])], []))
    with pytest.raises(ValueError, match=f"prim.const: {message}"):
        run(g)


@pytest.mark.parametrize("t", [t for t in ALL if t != BOOL], ids=str)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple), data=st.data())
def test_iota(t: ScalarType, shape: tuple[int, ...], data: st.DataObject):
    dim = data.draw(st.integers(0, len(shape) - 1))
    g = Graph("f", [])
    b = Builder(g.body)
    g.body.append(Return([b("prim.iota", shape=shape, dim=dim, dtype=t)], []))
    (got,) = run(g)
    idx = np.indices(shape)[dim] if all(shape) else np.zeros(shape, np.int64)
    check(got, t, [float(v) if t.is_float else v for v in idx.ravel().tolist()])


def test_iota_of_i1_needs_at_most_two_indices():
    g = Graph("f", [])
    b = Builder(g.body)
    g.body.append(Return([b("prim.iota", shape=(3,), dim=0, dtype=BOOL)], []))
    with pytest.raises(ValueError, match="prim.iota: value 2 is not representable in i1"):
        run(g)


# -- reductions -------------------------------------------------------------------------------
def _reduce_py(x: np.ndarray, t: ScalarType, axes: tuple[int, ...]) -> tuple[tuple, list]:
    """The kept shape, and for each kept index the list of reduced values (exact)."""
    kept = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    vals = np.moveaxis(values(x, t).astype(object), axes, range(x.ndim - len(axes), x.ndim))
    vals = vals.reshape(kept + (n,))
    return kept, [vals[idx].tolist() for idx in np.ndindex(*kept)]


def _fsum_exact(vs: list[float]) -> float:
    if any(math.isnan(v) for v in vs) or (math.inf in vs and -math.inf in vs):
        return math.nan
    if math.inf in vs or -math.inf in vs:
        return math.inf if math.inf in vs else -math.inf
    return float(sum(Fraction(v) for v in vs))


@pytest.mark.parametrize("fn", ["sum", "prod", "max", "min"])
@given(data=st.data())
def test_reduce(fn: str, data: st.DataObject):
    options = ALL if fn in ("max", "min") else FLOATS + INTS
    t = data.draw(st.sampled_from(options))
    shape = data.draw(shapes)
    axes = tuple(data.draw(st.permutations(range(len(shape))))[:data.draw(
        st.integers(0, len(shape)))])
    seed = data.draw(seeds)
    x = make(seed, shape, t, lo=-2.0, hi=2.0) if fn == "prod" else make(seed, shape, t)
    if fn == "sum" and t.is_float:  # keep away from overflow of the accumulator
        x = np.where(np.abs(values(x, t)) > 1e4, storage(1.0, t), x).astype(x.dtype)
    got = run1(f"prim.reduce_{fn}", [x], [t], axes=axes)
    kept, groups = _reduce_py(x, t, axes)
    assert got.shape == kept
    if fn in ("max", "min"):
        pick = max if fn == "max" else min
        if t.is_float:
            ident = -math.inf if fn == "max" else math.inf
            expected = [math.nan if any(math.isnan(v) for v in vs) else pick(vs, default=ident)
                        for vs in groups]
        elif t.is_bool:
            expected = [pick(vs, default=fn == "min") for vs in groups]
        else:
            info = np.iinfo(t.numpy)
            expected = [pick(vs, default=info.min if fn == "max" else info.max) for vs in groups]
        check(got, t, expected, signed_zero=False)  # max(-0.0, 0.0) may be either zero
    elif t.is_int:
        expected = [wrap(sum(vs) if fn == "sum" else math.prod(vs), t) for vs in groups]
        check(got, t, expected)
    else:
        # accumulating in f32 (f64 for f64) and rounding once: the error is bounded by
        # n * eps_acc * sum|v| for a sum and n * eps_acc * |prod| for a product
        eps = 2.0**-53 if t.name == "f64" else 2.0**-24
        g = values(got, t).ravel()
        for k, vs in enumerate(groups):
            exact = _fsum_exact(vs) if fn == "sum" else (
                math.nan if any(math.isnan(v) for v in vs) else _safe(math.prod)(vs))
            if not math.isfinite(exact) or not math.isfinite(round_to(exact, t.name)):
                assert g[k] == round_to(exact, t.name) or (math.isnan(exact) and math.isnan(
                    g[k])) or (fn == "prod" and math.isnan(exact))
                continue
            mag = sum(abs(v) for v in vs) if fn == "sum" else abs(exact)
            tol = (len(vs) + 1) * eps * mag + float(ulp(np.float64(exact), t.name))
            assert abs(g[k] - exact) <= tol, (vs, g[k], exact)


def test_half_precision_sums_accumulate_in_f32():
    # an f16 (bf16) accumulator holding 2048 (256) drops every added 1
    for name, big, exact in (("f16", 2048.0, 6144.0), ("bf16", 256.0, 4352.0)):
        t = SCALARS[name]
        row = np.ones(4096)
        row[0] = big
        x = storage(np.stack([row, row[::-1]]), t)
        got = run1("prim.reduce_sum", [x], [t], axes=(1,))
        check(got, t, [exact, exact])
        dot = run1("prim.dot_general", [x, storage(np.ones((4096, 3)), t)], [t, t],
                   lhs_batch=(), rhs_batch=(), lhs_contract=(1,), rhs_contract=(0,))
        check(dot, t, [exact] * 6)


def test_integer_sums_wrap():
    i8 = SCALARS["i8"]
    got = run1("prim.reduce_sum", [np.int8([[100, 100], [-128, -1]])], [i8], axes=(1,))
    assert got.tolist() == [-56, 127]


def _arg_oracle(vs: list, fn: str) -> int:
    for i, v in enumerate(vs):
        if isinstance(v, float) and math.isnan(v):
            return i
    best = max(vs) if fn == "max" else min(vs)
    return vs.index(best)


@pytest.mark.parametrize("fn", ["max", "min"])
@given(t=st.sampled_from(ALL), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3)
       .map(tuple), seed=seeds, data=st.data())
def test_argreduce(fn: str, t: ScalarType, shape: tuple[int, ...], seed: int,
                   data: st.DataObject):
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = make(seed, shape, t)
    got = run1(f"prim.arg{fn}", [x], [t], axis=axis)
    kept, groups = _reduce_py(x, t, (axis,))
    assert got.shape == kept and got.dtype == np.int64
    assert got.ravel().tolist() == [_arg_oracle(vs, fn) for vs in groups]


def test_argmax_of_an_empty_axis_is_an_error():
    f = SCALARS["f32"]
    with pytest.raises(ValueError, match=r"prim\.argmax: argmax over an empty axis 1"):
        run1("prim.argmax", [np.zeros((2, 0), np.float32)], [f], axis=1)
    assert run1("prim.argmax", [np.zeros((0, 3), np.float32)], [f], axis=1).shape == (0,)


def test_argmin_reads_bf16_values_not_bits():
    t = SCALARS["bf16"]
    x = storage([1.0, -3.0, 2.0, -1.0], t)  # negative values have the largest bit patterns
    assert run1("prim.argmin", [x], [t], axis=0).tolist() == 1
    assert run1("prim.argmax", [x], [t], axis=0).tolist() == 2


# -- movement -----------------------------------------------------------------------------------
def _same_bits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes()


dtypes = st.sampled_from(ALL)


@given(t=dtypes, shape=shapes, seed=seeds, choice=st.integers(0, 3))
def test_reshape(t, shape, seed, choice):
    x = make(seed, shape, t)
    n = x.size
    target = [(n,), (n, 1), (1,) + shape, tuple(reversed(shape))][choice]
    got = run1("prim.reshape", [x], [t], dynamic=choice == 0, shape=target)
    _same_bits(got, x.reshape(target))


@given(t=dtypes, shape=shapes, seed=seeds, data=st.data())
def test_permute(t, shape, seed, data):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = make(seed, shape, t)
    _same_bits(run1("prim.permute", [x], [t], perm=perm), np.transpose(x, perm))


@given(t=dtypes, out=st.lists(st.integers(0, 3), max_size=4).map(tuple), seed=seeds,
       data=st.data())
def test_broadcast(t, out, seed, data):
    dims = tuple(sorted(data.draw(st.permutations(range(len(out))))[:data.draw(
        st.integers(0, len(out)))]))
    src = tuple(data.draw(st.sampled_from([1, out[d]])) for d in dims)
    x = make(seed, src, t)
    view = [1] * len(out)
    for s, d in zip(src, dims):
        view[d] = s
    got = run1("prim.broadcast", [x], [t], shape=out, dims=dims)
    _same_bits(got, np.broadcast_to(x.reshape(view), out))


@given(t=dtypes, shape=shapes, seed=seeds, data=st.data())
def test_slice(t, shape, seed, data):
    start, stop, step = [], [], []
    for n in shape:
        a = data.draw(st.integers(0, n))
        start.append(a)
        stop.append(data.draw(st.integers(a, n)))
        step.append(data.draw(st.integers(1, 3)))
    x = make(seed, shape, t)
    got = run1("prim.slice", [x], [t], start=tuple(start), stop=tuple(stop), step=tuple(step))
    _same_bits(got, x[tuple(slice(a, b, s) for a, b, s in zip(start, stop, step))])


PAD_VALUES = {"f16": -math.inf, "bf16": 1.5, "f32": 0.25, "f64": math.nan, "i8": -7, "i32": 3,
              "i64": -(2**40), "index": 5, "i1": True}


@given(t=dtypes, shape=shapes, seed=seeds, data=st.data())
def test_pad(t, shape, seed, data):
    low = tuple(data.draw(st.integers(0, 2)) for _ in shape)
    high = tuple(data.draw(st.integers(0, 2)) for _ in shape)
    value = PAD_VALUES[t.name]
    x = make(seed, shape, t)
    got = run1("prim.pad", [x], [t], low=low, high=high, value=value)
    fill = storage(value, t) if t.is_float else value
    _same_bits(got, np.pad(x, list(zip(low, high)), constant_values=fill) if shape else x)


def test_pad_value_must_fit():
    with pytest.raises(ValueError, match=r"prim\.pad: value 0\.5 is not representable in i32"):
        run1("prim.pad", [np.int32([1])], [SCALARS["i32"]], low=(1,), high=(0,), value=0.5)


@given(t=dtypes, shape=st.lists(st.integers(0, 3), min_size=1, max_size=3).map(tuple),
       seed=seeds, data=st.data())
def test_concat(t, shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    xs = [make(seed + i, shape[:axis] + (n,) + shape[axis + 1:], t) for i, n in enumerate(sizes)]
    got = run1("prim.concat", xs, [t] * len(xs), axis=axis)
    _same_bits(got, np.concatenate(xs, axis=axis))


# -- contraction ----------------------------------------------------------------------------------
@st.composite
def dot_problems(draw):
    """Random dot_general operands: axes of each role in a random order on each side."""
    nb, nc, nl, nr = (draw(st.integers(0, 2)) for _ in range(4))
    size = st.integers(0, 3)
    roles = {f"b{i}": draw(size) for i in range(nb)} | {f"c{i}": draw(size) for i in range(nc)}
    lfree = {f"l{i}": draw(size) for i in range(nl)}
    rfree = {f"r{i}": draw(size) for i in range(nr)}
    shared = list(roles)
    lhs = draw(st.permutations(shared + list(lfree)))
    rhs = draw(st.permutations(shared + list(rfree)))
    sizes = roles | lfree | rfree
    attrs = {"lhs_batch": tuple(lhs.index(f"b{i}") for i in range(nb)),
             "rhs_batch": tuple(rhs.index(f"b{i}") for i in range(nb)),
             "lhs_contract": tuple(lhs.index(f"c{i}") for i in range(nc)),
             "rhs_contract": tuple(rhs.index(f"c{i}") for i in range(nc))}
    letters = {k: chr(ord("a") + i) for i, k in enumerate(sizes)}
    out = ([f"b{i}" for i in range(nb)] + [k for k in lhs if k in lfree]
           + [k for k in rhs if k in rfree])
    spec = ("".join(letters[k] for k in lhs) + "," + "".join(letters[k] for k in rhs) + "->"
            + "".join(letters[k] for k in out))
    return (tuple(sizes[k] for k in lhs), tuple(sizes[k] for k in rhs), attrs, spec,
            max(1, int(np.prod([roles[f"c{i}"] for i in range(nc)]))))


@given(t=dtypes, problem=dot_problems(), seed=seeds)
def test_dot_general(t, problem, seed):
    lshape, rshape, attrs, spec, k = problem
    a = make(seed, lshape, t, special=False)
    b = make(seed + 1, rshape, t, special=False)
    got = run1("prim.dot_general", [a, b], [t, t], **attrs)
    if t.is_bool:
        exact = np.einsum(spec, a.astype(object) * 1, b.astype(object) * 1)
        check(got, t, [bool(v) for v in np.asarray(exact).ravel().tolist()])
    elif t.is_int:
        exact = np.einsum(spec, a.astype(object), b.astype(object))
        check(got, t, [wrap(int(v), t) for v in np.asarray(exact).ravel().tolist()])
    else:
        av, bv = values(a, t), values(b, t)
        exact = np.einsum(spec, av, bv).ravel()
        mag = np.einsum(spec, np.abs(av), np.abs(bv)).ravel()
        eps = 2.0**-53 if t.name == "f64" else 2.0**-24
        g = values(got, t).ravel()
        assert got.shape == np.einsum(spec, av, bv).shape
        rounded = np.array([round_to(float(v), t.name) for v in exact])
        finite = np.isfinite(rounded)
        np.testing.assert_array_equal(g[~finite], rounded[~finite])
        tol = (k + 1) * eps * mag + ulp(exact, t.name)
        assert np.all(np.abs(g - exact)[finite] <= tol[finite])


def test_dot_general_matmul_matches_numpy():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    f64 = SCALARS["f64"]
    got = run1("prim.dot_general", [a, b], [f64, f64], dynamic=True, lhs_batch=(),
               rhs_batch=(), lhs_contract=(1,), rhs_contract=(0,))
    np.testing.assert_allclose(got, a @ b, rtol=1e-13)


# -- whole funcs -----------------------------------------------------------------------------
FUSED = """func @f(%x: tensor<?x3xf32>, %b: tensor<3xf32>) -> (tensor<?x3xf32>, tensor<?xf32>, \
tensor<3xf32>) {
  %0 = prim.fusion %x, %b {name = "k0"} : tensor<?x3xf32> \
(%a: tensor<?x3xf32>, %c: tensor<3xf32>) {
    %1 = prim.broadcast %c {dims = [1], shape = [?, 3]} : tensor<?x3xf32>
    %2 = prim.add %a, %1 : tensor<?x3xf32>
    %3 = prim.const {dtype = f32, shape = [], value = 0.0} : tensor<f32>
    %4 = prim.broadcast %3 {dims = [], shape = [?, 3]} : tensor<?x3xf32>
    %5 = prim.max %2, %4 : tensor<?x3xf32>
    prim.yield %5
  }
  %6 = prim.fusion %0 {name = "k1"} : tensor<?xf32> (%y: tensor<?x3xf32>) {
    %7 = prim.reduce_sum %y {axes = [1]} : tensor<?xf32>
    prim.yield %7
  }
  return %0, %6, %b
}"""


@given(rows=st.integers(0, 5), seed=seeds)
def test_fusion_groups_run_in_order(rows, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    relu, sums, b_out = run(parse(FUSED), x, b)
    np.testing.assert_array_equal(relu, np.maximum(x + b, 0))
    np.testing.assert_allclose(sums, np.maximum(x + b, 0).sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(b_out, b)
    b_out[0] = 99.0
    assert b[0] != 99.0  # results are fresh arrays


STRETCH = """func @f(%x: tensor<?x?xf32>, %b: tensor<?xf32>) -> (tensor<?x?xf32>) {
  %0 = prim.const {dtype = f32, shape = [], value = 0.0} : tensor<f32>
  %1 = prim.broadcast %0 {dims = [], shape = [?, ?]} : tensor<?x?xf32>
  %2 = prim.max %1, %x : tensor<?x?xf32>
  %3 = prim.broadcast %b {dims = [1], shape = [?, ?]} : tensor<?x?xf32>
  %4 = prim.permute %3 {perm = [1, 0]} : tensor<?x?xf32>
  %5 = prim.permute %4 {perm = [1, 0]} : tensor<?x?xf32>
  %6 = prim.add %2, %5 : tensor<?x?xf32>
  return %6
}"""


@pytest.mark.parametrize("bsize", [1, 4])
def test_broadcast_to_unknown_sizes_stretches_to_the_other_operands(bsize):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(bsize).astype(np.float32)
    (got,) = run(parse(STRETCH), x, b)
    np.testing.assert_array_equal(got, np.maximum(x, 0) + b)


def test_stretchy_values_flow_into_fusion_groups():
    text = """func @f(%x: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
  %0 = prim.const {dtype = f32, shape = [], value = 1.5} : tensor<f32>
  %1 = prim.broadcast %0 {dims = [], shape = [?, ?]} : tensor<?x?xf32>
  %2 = prim.fusion %1, %x {name = "k"} : tensor<?x?xf32> \
(%a: tensor<?x?xf32>, %b: tensor<?x?xf32>) {
    %3 = prim.mul %a, %b : tensor<?x?xf32>
    prim.yield %3
  }
  return %2
}"""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(run(parse(text), x)[0], x * 1.5)


def test_broadcast_to_an_unknown_size_that_nothing_determines_is_an_error():
    text = STRETCH.replace("%6 = prim.add %2, %5", "%6 = prim.add %5, %5").replace(
        "return %6", "return %6")
    with pytest.raises(ValueError, match=r"result 0 of @f has axis 0 from a broadcast to a \?"):
        run(parse(text), np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
    reduced = """func @f(%x: tensor<f32>) -> (tensor<f32>) {
  %0 = prim.broadcast %x {dims = [], shape = [?]} : tensor<?xf32>
  %1 = prim.reduce_sum %0 {axes = [0]} : tensor<f32>
  return %1
}"""
    with pytest.raises(ValueError, match=r"prim\.reduce_sum needs the run-time size of axis 0"):
        run(parse(reduced), np.float32(1))


def test_every_prim_op_has_a_rule():
    assert unsupported_ops() == []
    assert all(name in OPS and name.startswith("prim.") for name in TABLE)


# -- errors ----------------------------------------------------------------------------------------
def _dyn(body: str, args: str = "%x: tensor<?xf32>, %y: tensor<?xf32>",
         result: str = "tensor<?xf32>") -> Graph:
    return parse(f"func @f({args}) -> ({result}) {{\n  {body}\n  return %0\n}}").graphs[0]


@pytest.mark.parametrize("body,arrays,message", [
    ("%0 = prim.add %x, %y : tensor<?xf32>", [3, 4],
     r"^prim\.add: operand shapes differ at run time \(operands \[3\] f32, \[4\] f32\)$"),
    ("%0 = prim.reshape %x {shape = [4]} : tensor<4xf32>", [5],
     r"^prim\.reshape: cannot reshape 5 elements to \[4\]"),
    ("%0 = prim.slice %x {start = [1], step = [1], stop = [4]} : tensor<3xf32>", [3],
     r"^prim\.slice: slice stop 4 is past the size 3 of axis 0"),
    ("%0 = prim.broadcast %x {dims = [0], shape = [3]} : tensor<3xf32>", [2],
     r"^prim\.broadcast: cannot broadcast to \[3\] with dims \[0\] \(operands \[2\] f32\)"),
    ("%0 = prim.dot_general %x, %y {lhs_batch = [], lhs_contract = [0], rhs_batch = [], "
     "rhs_contract = [0]} : tensor<f32>", [2, 3],
     r"^prim\.dot_general: lhs axis 0 \(size 2\) does not match rhs axis 0 \(size 3\)"),
])
def test_run_time_shape_errors_name_the_op_and_shapes(body, arrays, message):
    args = "%x: tensor<?xf32>, %y: tensor<?xf32>" if len(arrays) == 2 else "%x: tensor<?xf32>"
    g = _dyn(body, args, result=body.rsplit(": ", 1)[1])
    with pytest.raises(ValueError, match=message):
        run(g, *[np.zeros(n, np.float32) for n in arrays])


def test_concat_checks_run_time_sizes():
    g = _dyn("%0 = prim.concat %x, %y {axis = 0} : tensor<?x?xf32>",
             "%x: tensor<?x?xf32>, %y: tensor<?x?xf32>", "tensor<?x?xf32>")
    with pytest.raises(ValueError, match=r"prim\.concat: concat along axis 0: other sizes"):
        run(g, np.zeros((1, 2), np.float32), np.zeros((1, 3), np.float32))


def test_location_is_named_in_run_time_errors():
    g = parse('func @f(%x: tensor<?xf32>, %y: tensor<?xf32>) -> (tensor<?xf32>) {\n'
              '  %0 = prim.add %x, %y : tensor<?xf32> loc("net.py":7)\n  return %0\n}')
    with pytest.raises(ValueError, match=r"^prim\.add at net\.py:7: operand shapes differ"):
        run(g, np.zeros(2, np.float32), np.zeros(3, np.float32))


def test_arguments_are_checked_against_the_signature():
    g = _dyn("%0 = prim.add %x, %y : tensor<3xf32>", "%x: tensor<?xf32>, %y: tensor<3xf32>",
             "tensor<3xf32>")
    ok = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=r"@f\(tensor<\?xf32>, tensor<3xf32>\) takes 2 "
                                        r"arguments, got 1"):
        run(g, ok)
    with pytest.raises(TypeError, match="argument 1 of @f must have dtype float32 for "
                                        r"tensor<3xf32>, got float64"):
        run(g, ok, np.zeros(3))
    with pytest.raises(ValueError, match=r"argument 1 of @f: expected tensor<3xf32> "
                                         r"\(numpy float32\), got float32 array of shape \[4\]"):
        run(g, ok, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"got float32 array of shape \[3, 1\]"):
        run(g, ok, np.zeros((3, 1), np.float32))
    with pytest.raises(TypeError, match="argument 0 of @f must be a numpy array, got list"):
        run(g, [0.0, 0.0, 0.0], ok)
    bf = parse("func @f(%x: tensor<2xbf16>) -> (tensor<2xbf16>) {\n  return %x\n}")
    with pytest.raises(TypeError, match=r"must have dtype uint16 for tensor<2xbf16>"):
        run(bf, np.zeros(2, np.float32))
    assert run(bf, np.uint16([0x3F80, 0]))[0].tolist() == [0x3F80, 0]


def test_function_selection():
    text = ("func @a(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n  return %x\n}\n\n"
            "func @b(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n"
            "  %0 = prim.neg %x : tensor<2xf32>\n  return %0\n}\n\n"
            "kernel @k(%m: memref<2xf32>) {\n}")
    m = parse(text)
    x = np.float32([1, 2])
    assert run(m, x, func_name="b")[0].tolist() == [-1, -2]
    assert run(m.graphs[0], x, func_name="a")[0].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"the module has 2 funcs \(@a, @b\); pass func_name"):
        run(m, x)
    with pytest.raises(TypeError, match="@k is a kernel; the prim interpreter runs funcs"):
        run(m, x, func_name="k")
    with pytest.raises(KeyError):
        run(m, x, func_name="nope")
    with pytest.raises(KeyError, match="graph is @a, not @b"):
        run(m.graphs[0], x, func_name="b")


def test_tensor_ops_must_be_decomposed_first():
    g = parse("func @f(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n"
              "  %0 = tensor.relu %x : tensor<2xf32>\n  return %0\n}")
    with pytest.raises(NotImplementedError, match="tensor.relu is not a prim op; decompose"):
        run(g, np.zeros(2, np.float32))


def test_the_graph_is_verified_first():
    g = parse("func @f(%x: tensor<2xf32>) -> (tensor<2xf64>) {\n"
              "  %0 = prim.neg %x : tensor<2xf64>\n  return %0\n}")
    with pytest.raises(IRError, match=r"prim\.neg: result types tensor<2xf64>"):
        run(g, np.zeros(2, np.float32))
