"""numpy/Python reference semantics of loop-dialect scalar ops, for the LLVM backend tests.

Written independently of the emitter: floats are computed in float64 (or exact
Python ints) and rounded once to the result type; bf16 is uint16 bit patterns.
"""

from __future__ import annotations

import math

import numpy as np

NP = {"f16": np.float16, "bf16": np.uint16, "f32": np.float32, "f64": np.float64,
      "i1": np.bool_, "i8": np.int8, "i32": np.int32, "i64": np.int64, "index": np.int64}
BITS = {"i8": 8, "i32": 32, "i64": 64, "index": 64}
FLOATS = ("f16", "bf16", "f32", "f64")
INTS = ("i8", "i32", "i64", "index")
ALL = FLOATS + ("i1",) + INTS


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float64 values rounded once (nearest even) to bf16 values, as float64."""
    x = np.asarray(x, np.float64)
    out = x.copy()
    fin = np.isfinite(x) & (x != 0)
    _, e = np.frexp(x[fin])
    e = np.maximum(e, -125)
    r = np.ldexp(np.round(np.ldexp(x[fin], 8 - e)), e - 8)
    out[fin] = np.where(np.abs(r) >= 2.0**128, np.copysign(np.inf, r), r)
    return out


def to_bits(x64: np.ndarray) -> np.ndarray:
    """bf16 values (float64, already rounded) to their uint16 patterns."""
    f = np.asarray(x64, np.float64).astype(np.float32)
    bits = (f.view(np.uint32) >> 16).astype(np.uint16)
    return np.where(np.isnan(f), np.uint16(0x7FC0), bits)


def from_bits(b: np.ndarray) -> np.ndarray:
    return (np.asarray(b, np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def decode(a: np.ndarray, dtype: str) -> np.ndarray:
    """Storage array -> float64 values (floats) or int64/bool values."""
    if dtype == "bf16":
        return from_bits(a)
    if dtype in FLOATS:
        return a.astype(np.float64)
    return a.astype(np.int64) if dtype in INTS else a.astype(bool)


def encode(v: np.ndarray, dtype: str) -> np.ndarray:
    """float64/int values -> storage array of ``dtype``, rounding floats once."""
    with np.errstate(all="ignore"):
        if dtype == "bf16":
            return to_bits(bf16_round(v))
        if dtype in FLOATS:
            return np.asarray(v, np.float64).astype(NP[dtype])
        if dtype == "i1":
            return np.asarray(v).astype(bool)
        return np.array([wrap(int(x), dtype) for x in np.asarray(v).ravel()],
                        NP[dtype]).reshape(np.shape(v))


def wrap(v: int, dtype: str) -> int:
    bits = BITS[dtype]
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def values(dtype: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Storage values of ``dtype`` with the special cases mixed in."""
    if dtype in FLOATS:
        special = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -2.5, 3.0, np.inf, -np.inf, np.nan, 1e-3,
                   65504.0, 1e30]
        x = np.concatenate([special, rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)])
        return encode(x, dtype)
    if dtype == "i1":
        return rng.integers(0, 2, n + 4).astype(bool)
    bits = BITS[dtype]
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    special = [0, 1, -1, 2, -2, 7, -7, lo, hi, lo + 1]
    rand = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64)
    small = rng.integers(-10, 70, n)
    return np.concatenate([special, rand, small]).astype(NP[dtype])


def spacing(v: np.ndarray, dtype: str) -> np.ndarray:
    """One ulp of float values of ``dtype`` (float64 in, float64 out)."""
    a = np.abs(np.asarray(v, np.float64))
    if dtype == "bf16":
        _, e = np.frexp(np.where(a > 0, a, 2.0**-126))
        return np.ldexp(1.0, np.maximum(e, -125) - 8)
    t = NP[dtype]
    with np.errstate(all="ignore"):
        return np.spacing(a.astype(t)).astype(np.float64)


def assert_ulp(got: np.ndarray, want64: np.ndarray, dtype: str, ulps: float, what: str = ""):
    """``got`` (storage) within ``ulps`` of the float64 reference (NaN/inf must match);
    ``ulps == 0`` asks for the correctly rounded result."""
    g = decode(got, dtype)
    w = np.asarray(want64, np.float64)
    w_r = decode(encode(w, dtype), dtype)
    nan = np.isnan(w_r)
    assert np.array_equal(np.isnan(g), nan), f"{what}: NaN mismatch"
    inf = np.isinf(w_r)
    assert np.array_equal(g[inf], w_r[inf]), f"{what}: inf mismatch {g[inf]} vs {w_r[inf]}"
    ok = ~nan & ~inf
    if ulps == 0:  # correctly rounded
        bad = np.flatnonzero(g[ok] != w_r[ok])
        assert bad.size == 0, f"{what}: {g[ok][bad[:5]]} vs rounded {w_r[ok][bad[:5]]}"
        return
    with np.errstate(all="ignore"):
        err = np.abs(g[ok] - w[ok]) / spacing(w_r[ok], dtype)
    if err.size:
        i = int(np.argmax(err))
        assert err[i] <= ulps, f"{what}: {err[i]:.2f} ulp at {i}: {g[ok][i]!r} vs {w[ok][i]!r}"


# -- integer semantics ---------------------------------------------------------------
def int_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def int_rem(a: int, b: int) -> int:
    return 0 if b == 0 else a - int_div(a, b) * b


def int_pow(a: int, b: int, bits: int) -> int:
    if b < 0:
        return 1 if a == 1 else (-1 if b % 2 else 1) if a == -1 else 0
    return pow(a, b, 1 << bits)


def shift(a: int, s: int, bits: int, left: bool) -> int:
    if 0 <= s < bits:
        return a << s if left else a >> s
    return 0 if left else (-1 if a < 0 else 0)


INT_BINARY = {
    "add": lambda a, b, n: a + b, "sub": lambda a, b, n: a - b, "mul": lambda a, b, n: a * b,
    "div": lambda a, b, n: int_div(a, b), "rem": lambda a, b, n: int_rem(a, b),
    "pow": int_pow, "max": lambda a, b, n: max(a, b), "min": lambda a, b, n: min(a, b),
    "and": lambda a, b, n: a & b, "or": lambda a, b, n: a | b, "xor": lambda a, b, n: a ^ b,
    "shl": lambda a, b, n: shift(a, b, n, True), "shr": lambda a, b, n: shift(a, b, n, False),
}

FLOAT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "rem": np.fmod,
    "pow": np.power, "max": np.maximum, "min": np.minimum, "atan2": np.arctan2,
}


def _erfinv(y: float) -> float:
    if math.isnan(y) or abs(y) > 1:
        return math.nan
    if abs(y) == 1:
        return math.copysign(math.inf, y)
    if abs(y) < 1e-300:
        return y * math.sqrt(math.pi) / 2  # the next term is y**3 smaller
    # Bisection on the monotone erf (or erfc near 1, where 1 - |y| is exact): slow,
    # obviously right.
    a = abs(y)
    tail = a > 0.5
    target = 1.0 - a if tail else a
    lo, hi = 0.0, 30.0
    for _ in range(1100):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        below = math.erfc(mid) > target if tail else math.erf(mid) < target
        lo, hi = (mid, hi) if below else (lo, mid)
    return math.copysign((lo + hi) / 2, y)


FLOAT_UNARY = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "exp2": np.exp2, "expm1": np.expm1,
    "log": np.log, "log2": np.log2, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "tanh": np.tanh, "logistic": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "erf": np.vectorize(math.erf, otypes=[np.float64]),
    "erfinv": np.vectorize(_erfinv, otypes=[np.float64]),
    "floor": np.floor, "ceil": np.ceil, "round": np.rint, "trunc": np.trunc,
    "sign": lambda x: np.where(x > 0, 1.0, np.where(x < 0, -1.0, np.where(np.isnan(x), x, 0.0))),
}
