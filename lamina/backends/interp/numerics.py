"""Bit-exact numerics of the prim dialect on numpy arrays: storage formats, casts, C integer math.

The interpreter keeps every tensor in its *storage* form (``ScalarType.numpy``:
bf16 as uint16 bit patterns). Arithmetic on floats runs on float64 *values*
and every result is rounded once to its dtype; these helpers do the decoding,
the single correctly rounded narrowing, and the integer operations whose C
semantics numpy does not give directly (truncating division, defined results
for division by zero and out-of-range shifts).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from lamina.ir.types import ScalarType


# -- bf16 -------------------------------------------------------------------------
def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen bf16 bit patterns (uint16) to the float32 values they encode (exact)."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bf16 bit patterns, to nearest even; NaNs stay (quiet) NaNs."""
    x = np.asarray(x, np.float32)
    u = x.view(np.uint32)
    with np.errstate(over="ignore"):
        rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16
    quiet = (u >> 16) | np.uint32(0x0040)
    return np.where(np.isnan(x), quiet, rounded).astype(np.uint16)


# -- single rounding through an intermediate format ---------------------------------
# Narrowing f64 -> f32 -> bf16 (or f16) rounds twice and can be off by one ulp at ties.
# Rounding to odd in the intermediate step keeps the final rounding exact, because the
# intermediate format has at least two more bits than the final one.
def f64_to_f32_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd (truncate, then set the last bit if inexact)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        r = x.astype(np.float32)
        back = r.astype(np.float64)
        inexact = (back != x) & ~np.isnan(x)
        too_big = inexact & (np.abs(back) > np.abs(x))
        r = np.where(too_big, np.nextafter(r, np.float32(0)), r).astype(np.float32)
    return (r.view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)


def int_to_f64_odd(x: np.ndarray) -> np.ndarray:
    """int64 -> float64 rounded to odd (exact below 2**53)."""
    x = np.asarray(x).astype(np.int64)
    hi = (x >> 32) << 32  # floor-aligned, so lo is in [0, 2**32): both convert exactly
    lo = x - hi
    fh, fl = hi.astype(np.float64), lo.astype(np.float64)
    s = fh + fl
    bb = s - fh
    err = (fh - (s - bb)) + (fl - bb)  # TwoSum: s + err == hi + lo exactly
    inexact = err != 0
    too_big = inexact & ((err < 0) == (s > 0))
    s = np.where(too_big, np.nextafter(s, 0.0), s)
    return (s.view(np.uint64) | inexact.astype(np.uint64)).view(np.float64)


# -- values and storage --------------------------------------------------------------
def decode(x: np.ndarray, t: ScalarType) -> np.ndarray:
    """The values of a storage array: bf16 widens to float32, everything else is as stored."""
    return bf16_to_f32(x) if t.name == "bf16" else np.asarray(x)


def as_f64(x: np.ndarray, t: ScalarType) -> np.ndarray:
    """Float values of a float storage array, widened exactly to float64."""
    return decode(x, t).astype(np.float64)


def _float_to_int(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # Truncate toward zero. Out of range saturates and NaN gives 0: the dialect leaves both
    # implementation-defined, this choice just never warns or crashes.
    info = np.iinfo(dtype)
    t = np.trunc(x.astype(np.float64))
    nan = np.isnan(t)
    big = t >= float(info.max)
    small = t <= float(info.min)
    mid = np.where(big | small | nan, 0.0, t).astype(dtype)
    return np.where(big, info.max, np.where(small, info.min, mid)).astype(dtype)


def _to_float(x: np.ndarray, dst: ScalarType) -> np.ndarray:
    if x.dtype == np.bool_:
        x = x.astype(np.float32)
    elif x.dtype.kind in "iu":
        if dst.name == "f64":
            return x.astype(np.float64)
        x = int_to_f64_odd(x)
    elif x.dtype == np.float16:
        x = x.astype(np.float32)
    if dst.name == "f64":
        return x.astype(np.float64)
    if dst.name == "f32":
        with np.errstate(over="ignore"):
            return x.astype(np.float32)
    if x.dtype == np.float64:
        x = f64_to_f32_odd(x)
    if dst.name == "bf16":
        return f32_to_bf16(x)
    with np.errstate(over="ignore"):
        return x.astype(np.float16)


def convert(x: np.ndarray, dst: ScalarType) -> np.ndarray:
    """Convert a value array (any numpy dtype; bf16 already decoded) to storage of ``dst``.

    Floats round once to nearest even; floats to ints truncate toward zero; ints wrap
    modulo 2**bits; anything to i1 is ``!= 0`` (NaN is true).
    """
    x = np.asarray(x)
    if dst.is_bool:
        return x != 0
    if dst.is_float:
        return _to_float(x, dst)
    if x.dtype.kind == "f":
        return _float_to_int(x, dst.numpy)
    return x.astype(dst.numpy)


def scalar_storage(value: int | float | bool, dst: ScalarType, what: str) -> np.ndarray:
    """A 0-d storage array holding ``value`` exactly representable in ``dst`` (else an error)."""
    if dst.is_float:
        return convert(np.array(float(value), np.float64), dst)
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{what}: value {value!r} is not representable in {dst}")
    if dst.is_bool:
        if value not in (0, 1):
            raise ValueError(f"{what}: value {value!r} is not representable in i1")
        return np.array(bool(value))
    info = np.iinfo(dst.numpy)
    if not info.min <= int(value) <= info.max:
        raise ValueError(f"{what}: value {value!r} is out of range for {dst}")
    return np.array(int(value), dst.numpy)


# -- integer operations with C semantics ------------------------------------------------
def int_rem(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C remainder: the sign of the dividend; 0 where b == 0."""
    safe = np.where(b == 0, 1, b).astype(a.dtype)
    return np.where(b == 0, 0, np.fmod(a, safe)).astype(a.dtype)


def int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C division: truncate toward zero; 0 where b == 0; MIN / -1 wraps to MIN."""
    safe = np.where(b == 0, 1, b).astype(a.dtype)
    with np.errstate(all="ignore"):
        exact = a - np.fmod(a, safe)  # divisible by b, so floor division is exact
        q = np.floor_divide(exact, safe)
    return np.where(b == 0, 0, q).astype(a.dtype)


def int_pow(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """a ** e wrapping modulo 2**bits; a negative exponent gives trunc(1 / a**-e)."""
    neg = e < 0
    with np.errstate(all="ignore"):
        p = np.power(a, np.where(neg, 0, e).astype(e.dtype))
    odd = (e % 2) != 0
    inv = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0))
    return np.where(neg, inv, p).astype(a.dtype)


def shl(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """a << s; shift amounts outside [0, bits) give 0 (like torch)."""
    ok = (s >= 0) & (s < a.dtype.itemsize * 8)
    r = np.left_shift(a, np.where(ok, s, 0).astype(a.dtype))
    return np.where(ok, r, 0).astype(a.dtype)


def shr(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Arithmetic a >> s; s >= bits fills with the sign bit, s < 0 gives 0 (like torch)."""
    bits = a.dtype.itemsize * 8
    ok = (s >= 0) & (s < bits)
    r = np.right_shift(a, np.where(ok, s, 0).astype(a.dtype))
    return np.where(ok, r, np.where(s >= bits, np.where(a < 0, -1, 0), 0)).astype(a.dtype)


# -- special functions on float64 ---------------------------------------------------------
_erf = np.vectorize(math.erf, otypes=[np.float64])
_NORMAL = statistics.NormalDist()
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (float64)."""
    x = np.asarray(x, np.float64)
    return _erf(x) if x.size else x.copy()


def _erfinv1(y: float) -> float:
    if math.isnan(y) or abs(y) > 1.0:
        return math.nan
    if abs(y) == 1.0:
        return math.copysign(math.inf, y)
    if y == 0.0:
        return y
    a = abs(y)
    # A normal-quantile start point, then Newton steps; in the tail erfc keeps 1 - a exact.
    x = -_NORMAL.inv_cdf((1.0 - a) / 2.0) / math.sqrt(2.0)
    for _ in range(3):
        f = math.erf(x) - a if a <= 0.5 else (1.0 - a) - math.erfc(x)
        x -= f / (_TWO_OVER_SQRT_PI * math.exp(-x * x))
    return math.copysign(x, y)


_erfinv = np.vectorize(_erfinv1, otypes=[np.float64])


def erfinv(y: np.ndarray) -> np.ndarray:
    """The inverse error function (float64): erf(erfinv(y)) == y on [-1, 1], NaN outside."""
    y = np.asarray(y, np.float64)
    return _erfinv(y) if y.size else y.copy()
