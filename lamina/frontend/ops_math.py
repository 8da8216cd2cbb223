"""Tensor operations: the elementwise math functions beyond the core set of ``ops``.

Every function here is one elementwise *composite*: a single tensor-dialect
build over the op's own (broadcasting) arguments, so a trace and autograd see
one node and eager execution runs one fused kernel. Python numbers are kernel
arguments, never constants baked into the kernel, so a new ``min=`` or
``value=`` does not compile anything.

Dtypes follow PyTorch: float-only functions of integer tensors compute in the
default float dtype, composites of float16/bfloat16 compute in float32 and
round once at the end (PyTorch's "opmath" type), integer floor division and
remainders stay exact integers, predicates (``isinf``) return bool.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from lamina.frontend import dispatch
from lamina.frontend import dtypes as dt
from lamina.frontend.ops import (
    _apply_elementwise,
    _cast,
    _check_tensor,
    _dtypes_of,
    _unary,
    amax,
    clone,
    eq,
    full,
)
from lamina.frontend.tensor import Tensor
from lamina.ir import Builder, Value

__all__ = [
    "acos", "acosh", "addcdiv", "addcmul", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
    "arctan2", "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_and",
    "bitwise_left_shift", "bitwise_not", "bitwise_or", "bitwise_right_shift", "bitwise_xor",
    "clamp", "clamp_max", "clamp_min", "clip", "copysign", "cosh", "deg2rad", "erfinv",
    "float_power", "floor_divide", "fmod", "frac", "hypot", "isfinite", "isinf", "isneginf",
    "isposinf", "lerp", "log10", "logaddexp", "logaddexp2", "logit", "nan_to_num", "positive",
    "rad2deg", "reciprocal", "remainder", "sgn", "sinh", "square", "xlogy",
]

_TORCH_NAMES = {"bool": "Bool", "int8": "Char", "int32": "Int", "int64": "Long",
                "float16": "Half", "bfloat16": "BFloat16", "float32": "Float",
                "float64": "Double"}
_HALF = (dt.float16, dt.bfloat16)
_LN2 = math.log(2.0)


class _E:
    """Spells elementwise expressions over tensor-dialect values of one compute dtype."""

    def __init__(self, b: Builder, dtype: dt.dtype):
        self.b, self.dtype = b, dtype

    def __call__(self, fn: str, *xs: Value) -> Value:
        return self.b(f"tensor.{fn}", *xs)

    def c(self, value: float | int | bool, dtype: dt.dtype | None = None) -> Value:
        """A 0-d constant (only for fixed constants: user numbers are kernel arguments)."""
        return self.b("tensor.full", value=value, shape=(), dtype=(dtype or self.dtype).ir)

    def where(self, cond: Value, x: Value, y: Value) -> Value:
        return self.b("tensor.where", cond, x, y)

    def cast(self, v: Value, dtype: dt.dtype) -> Value:
        return _cast(self.b, v, dtype)


Body = Callable[..., Value]


def _composite(name: str, body: Body, args: tuple, compute: dt.dtype, out: dt.dtype,
               key: tuple = ()) -> Tensor:
    """Run ``body(e, *values)`` (values cast to ``compute``) as one elementwise op whose
    result is cast to ``out``. ``key`` names whatever else the body depends on."""

    def build(b: Builder, *vals: Value) -> Value:
        e = _E(b, compute)
        return _cast(b, body(e, *(_cast(b, v, compute) for v in vals)), out)

    return _apply_elementwise((name, name, compute.name, out.name) + key, build, args,
                              compute, out)


def _tname(d: dt.dtype) -> str:
    return _TORCH_NAMES[d.name]


def _opmath(d: dt.dtype) -> dt.dtype:
    """The dtype composites compute in: float32 for the 16-bit floats."""
    return dt.float32 if d in _HALF else d


def _float_of(d: dt.dtype) -> dt.dtype:
    return d if d.is_floating_point else dt.default_float


def _not_implemented(kernel: str, d: dt.dtype) -> NotImplementedError:
    return NotImplementedError(f'"{kernel}" not implemented for \'{_tname(d)}\'')


def _promote(op: str, *args: Any) -> dt.dtype:
    if not any(isinstance(a, Tensor) for a in args):
        raise TypeError(f"{op}(): expected at least one Tensor argument")
    return dt.result_type(*_dtypes_of(args))


def _need_tensors(op: str, **named: Any) -> None:
    for i, (arg, x) in enumerate(named.items()):
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}(): argument '{arg}' (position {i + 1}) must be Tensor, not "
                            f"{type(x).__name__}")


# -- unary --------------------------------------------------------------------------------------
def _float_unary(name: str, body: Body, x: Tensor, key: tuple = (), extra: tuple = ()
                 ) -> Tensor:
    """A float function of ``x`` (ints compute in the default float dtype)."""
    _check_tensor(x, name)
    out = _float_of(x._dtype)
    return _composite(name, body, (x,) + extra, _opmath(out), out, key)


def reciprocal(input: Tensor) -> Tensor:
    """1 / x (integers give floats)."""
    return _float_unary("reciprocal", lambda e, x: e("div", e.c(1.0), x), input)


def square(input: Tensor) -> Tensor:
    """x * x (bool gives int64, like PyTorch's ``pow(x, 2)``)."""
    x = _check_tensor(input, "square")
    out = dt.int64 if x._dtype is dt.bool_ else x._dtype
    return _composite("square", lambda e, v: e("mul", v, v), (x,), out, out)


def log10(input: Tensor) -> Tensor:
    """Base-10 logarithm."""
    return _float_unary("log10", lambda e, x: e("mul", e("log", x), e.c(1.0 / math.log(10.0))),
                        input)


def erfinv(input: Tensor) -> Tensor:
    """The inverse error function."""
    return _unary("erfinv", _check_tensor(input, "erfinv"))


def frac(input: Tensor) -> Tensor:
    """x - trunc(x) (floats only, like PyTorch)."""
    x = _check_tensor(input, "frac")
    if not x._dtype.is_floating_point:
        raise _not_implemented("frac_cpu", x._dtype)
    return _composite("frac", lambda e, v: e("sub", v, e("trunc", v)), (x,), x._dtype,
                      x._dtype)


def sgn(input: Tensor) -> Tensor:
    """The sign of real numbers (-1, 0 or 1; 0 for NaN); bool tensors are their own sign."""
    x = _check_tensor(input, "sgn")
    if x._dtype is dt.bool_:
        return clone(x)
    if not x._dtype.is_floating_point:
        return _composite("sgn", lambda e, v: e("sign", v), (x,), x._dtype, x._dtype)

    def body(e: _E, v: Value) -> Value:  # PyTorch's sign of NaN is 0
        return e.where(e("isnan", v), e.c(0.0), e("sign", v))

    return _composite("sgn", body, (x,), x._dtype, x._dtype)


def positive(input: Tensor) -> Tensor:
    """``+x``: the tensor itself."""
    x = _check_tensor(input, "positive")
    if x._dtype is dt.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return x


def deg2rad(input: Tensor) -> Tensor:
    return _float_unary("deg2rad", lambda e, x: e("mul", x, e.c(math.pi / 180.0)), input)


def rad2deg(input: Tensor) -> Tensor:
    return _float_unary("rad2deg", lambda e, x: e("mul", x, e.c(180.0 / math.pi)), input)


def _logit(e: _E, x: Value) -> Value:
    """log(x / (1 - x)); from x = 1/4 up as log1p((2x - 1) / (1 - x)), whose numerator and
    denominator are exact there, so results near 0 (x near 1/2) keep their digits."""
    one = e.c(1.0)
    rest = e("sub", one, x)
    near_half = e("log1p", e("div", e("sub", e("add", x, x), one), rest))
    return e.where(e("lt", x, e.c(0.25)), e("log", e("div", x, rest)), near_half)


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    """log(x / (1 - x)), with x clamped to [eps, 1 - eps] when ``eps`` is given."""
    if eps is None:
        return _float_unary("logit", _logit, input)

    def body(e: _E, x: Value, lo: Value, hi: Value) -> Value:
        return _logit(e, e("minimum", e("maximum", x, lo), hi))

    return _float_unary("logit_eps", body, input, extra=(float(eps), 1.0 - float(eps)))


def asin(input: Tensor) -> Tensor:
    """arcsin as atan2(x, sqrt((1 - x)(1 + x))) (NaN outside [-1, 1])."""

    def body(e: _E, x: Value) -> Value:
        one = e.c(1.0)
        return e("atan2", x, e("sqrt", e("mul", e("sub", one, x), e("add", one, x))))

    return _float_unary("asin", body, input)


def acos(input: Tensor) -> Tensor:
    """arccos as atan2(sqrt((1 - x)(1 + x)), x) (NaN outside [-1, 1])."""

    def body(e: _E, x: Value) -> Value:
        one = e.c(1.0)
        return e("atan2", e("sqrt", e("mul", e("sub", one, x), e("add", one, x))), x)

    return _float_unary("acos", body, input)


def atan(input: Tensor) -> Tensor:
    return _float_unary("atan", lambda e, x: e("atan2", x, e.c(1.0)), input)


def sinh(input: Tensor) -> Tensor:
    """(expm1(x) - expm1(-x)) / 2: accurate near 0."""

    def body(e: _E, x: Value) -> Value:
        return e("mul", e("sub", e("expm1", x), e("expm1", e("neg", x))), e.c(0.5))

    return _float_unary("sinh", body, input)


def cosh(input: Tensor) -> Tensor:
    def body(e: _E, x: Value) -> Value:
        return e("mul", e("add", e("exp", x), e("exp", e("neg", x))), e.c(0.5))

    return _float_unary("cosh", body, input)


# Above this magnitude sqrt(x*x +- 1) == |x| in every float format: asinh/acosh = log(2|x|),
# and x*x could overflow.
_BIG = 1e8


def asinh(input: Tensor) -> Tensor:
    """sign(x) * log1p(|x| + x^2 / (1 + sqrt(1 + x^2))): accurate near 0, no overflow."""

    def body(e: _E, x: Value) -> Value:
        a = e("abs", x)
        a2 = e("mul", a, a)
        small = e("log1p", e("add", a, e("div", a2, e("add", e.c(1.0),
                                                       e("sqrt", e("add", e.c(1.0), a2))))))
        big = e("add", e("log", a), e.c(_LN2))
        r = e.where(e("gt", a, e.c(_BIG)), big, small)
        return e.where(e("lt", x, e.c(0.0)), e("neg", r), r)

    return _float_unary("asinh", body, input)


def acosh(input: Tensor) -> Tensor:
    """log1p((x - 1) + sqrt((x - 1)(x + 1))): accurate near 1, no overflow."""

    def body(e: _E, x: Value) -> Value:
        t = e("sub", x, e.c(1.0))
        small = e("log1p", e("add", t, e("sqrt", e("mul", t, e("add", x, e.c(1.0))))))
        big = e("add", e("log", x), e.c(_LN2))
        r = e.where(e("gt", x, e.c(_BIG)), big, small)
        return e.where(e("lt", x, e.c(1.0)), e.c(math.nan), r)  # t * (x + 1) may overflow

    return _float_unary("acosh", body, input)


def atanh(input: Tensor) -> Tensor:
    """(log1p(x) - log1p(-x)) / 2: accurate near 0 and near +-1."""

    def body(e: _E, x: Value) -> Value:
        return e("mul", e("sub", e("log1p", x), e("log1p", e("neg", x))), e.c(0.5))

    return _float_unary("atanh", body, input)


arcsin, arccos, arctan = asin, acos, atan
arcsinh, arccosh, arctanh = asinh, acosh, atanh


# -- predicates ---------------------------------------------------------------------------------
def _float_predicate(name: str, body: Body, input: Tensor, int_value: bool) -> Tensor:
    x = _check_tensor(input, name)
    if not x._dtype.is_floating_point:  # integers are always finite
        return full(tuple(x.shape), int_value, dtype=dt.bool_)
    return _composite(name, body, (x,), x._dtype, dt.bool_)


def isinf(input: Tensor) -> Tensor:
    return _float_predicate("isinf", lambda e, x: e("eq", e("abs", x), e.c(math.inf)), input,
                            False)


def isposinf(input: Tensor) -> Tensor:
    return _float_predicate("isposinf", lambda e, x: e("eq", x, e.c(math.inf)), input, False)


def isneginf(input: Tensor) -> Tensor:
    return _float_predicate("isneginf", lambda e, x: e("eq", x, e.c(-math.inf)), input, False)


def isfinite(input: Tensor) -> Tensor:
    """Not inf and not NaN (``|x| < inf`` is false for NaN)."""
    return _float_predicate("isfinite", lambda e, x: e("lt", e("abs", x), e.c(math.inf)),
                            input, True)


def nan_to_num(input: Tensor, nan: float = 0.0, posinf: float | None = None,
               neginf: float | None = None) -> Tensor:
    """NaN, +inf and -inf replaced (by default with 0 and the dtype's largest/lowest finite
    value); integer tensors are copied unchanged."""
    x = _check_tensor(input, "nan_to_num")
    d = x._dtype
    if not d.is_floating_point:
        return clone(x)
    big = _finfo_max(d)
    posinf = big if posinf is None else float(posinf)
    neginf = -big if neginf is None else float(neginf)

    def body(e: _E, v: Value, n: Value, p: Value, m: Value) -> Value:
        v2 = e.where(e("eq", v, e.c(math.inf)), p, v)
        v2 = e.where(e("eq", v, e.c(-math.inf)), m, v2)
        return e.where(e("isnan", v), n, v2)

    return _composite("nan_to_num", body, (x, float(nan), posinf, neginf), d, d)


def _finfo_max(d: dt.dtype) -> float:
    if d is dt.bfloat16:
        return float.fromhex("0x1.fep127")
    return float(np.finfo(d.numpy).max)


# -- binary -------------------------------------------------------------------------------------
def atan2(input: Tensor, other: Tensor) -> Tensor:
    """atan2(input, other) in the quadrant of (other, input); integers give floats."""
    _need_tensors("atan2", input=input, other=other)
    out = _float_of(_promote("atan2", input, other))
    return _composite("atan2", lambda e, y, x: e("atan2", y, x), (input, other), _opmath(out),
                      out)


arctan2 = atan2


def _float_binary(name: str, body: Body, input: Tensor, other: Tensor) -> Tensor:
    """A float-only binary function (integer inputs are refused, like PyTorch)."""
    _need_tensors(name, input=input, other=other)
    d = _promote(name, input, other)
    if not d.is_floating_point:
        raise _not_implemented(f"{name}_cpu", d)
    return _composite(name, body, (input, other), _opmath(d), d)


def hypot(input: Tensor, other: Tensor) -> Tensor:
    """sqrt(x^2 + y^2) without overflow or underflow in between."""

    def body(e: _E, x: Value, y: Value) -> Value:
        ax, ay = e("abs", x), e("abs", y)
        inf = e.c(math.inf)
        if e.dtype is dt.float32:  # float64 holds the squares of every float32 exactly
            x64, y64 = e.cast(x, dt.float64), e.cast(y, dt.float64)
            r = e.cast(e("sqrt", e("add", e("mul", x64, x64), e("mul", y64, y64))), dt.float32)
        else:
            hi, lo = e("maximum", ax, ay), e("minimum", ax, ay)
            q = e("div", lo, hi)
            r = e("mul", hi, e("sqrt", e("add", e.c(1.0), e("mul", q, q))))
            r = e.where(e("eq", hi, e.c(0.0)), e.c(0.0), r)
        # an infinite side wins over a NaN one (C's hypot)
        return e.where(e("or", e("eq", ax, inf), e("eq", ay, inf)), inf, r)

    return _float_binary("hypot", body, input, other)


def logaddexp(input: Tensor, other: Tensor) -> Tensor:
    """log(exp(x) + exp(y)) = max + log1p(exp(-|x - y|)); equal infinities stay themselves."""

    def body(e: _E, x: Value, y: Value) -> Value:
        m = e("maximum", x, y)
        r = e("add", m, e("log1p", e("exp", e("neg", e("abs", e("sub", x, y))))))
        same_inf = e("and", e("eq", e("abs", x), e.c(math.inf)), e("eq", x, y))
        return e.where(same_inf, x, r)

    return _float_binary("logaddexp", body, input, other)


def logaddexp2(input: Tensor, other: Tensor) -> Tensor:
    """log2(2^x + 2^y) = max + log1p(2^-|x - y|) / ln 2."""

    def body(e: _E, x: Value, y: Value) -> Value:
        m = e("maximum", x, y)
        t = e("log1p", e("exp2", e("neg", e("abs", e("sub", x, y)))))
        r = e("add", m, e("mul", t, e.c(1.0 / _LN2)))
        same_inf = e("and", e("eq", e("abs", x), e.c(math.inf)), e("eq", x, y))
        return e.where(same_inf, x, r)

    return _float_binary("logaddexp2", body, input, other)


def copysign(input: Any, other: Any) -> Tensor:
    """|input| with the sign of ``other`` (a zero's sign counts; integers give floats)."""
    out = _float_of(_promote("copysign", input, other))

    def body(e: _E, x: Value, s: Value) -> Value:
        zero = e.c(0.0)
        neg = e("or", e("lt", s, zero),
                e("and", e("eq", s, zero), e("lt", e("div", e.c(1.0), s), zero)))
        a = e("abs", x)
        return e.where(neg, e("neg", a), a)

    return _composite("copysign", body, (input, other), _opmath(out), out)


def float_power(input: Any, exponent: Any) -> Tensor:
    """input ** exponent computed in float64."""
    _promote("float_power", input, exponent)
    return _composite("float_power", lambda e, x, y: e("pow", x, y), (input, exponent),
                      dt.float64, dt.float64)


def xlogy(input: Any, other: Any) -> Tensor:
    """x * log(y), 0 where x == 0 (unless y is NaN)."""
    out = _float_of(_promote("xlogy", input, other))

    def body(e: _E, x: Value, y: Value) -> Value:
        r = e.where(e("eq", x, e.c(0.0)), e.c(0.0), e("mul", x, e("log", y)))
        return e.where(e("isnan", y), y, r)

    return _composite("xlogy", body, (input, other), _opmath(out), out)


# -- division with rounding ---------------------------------------------------------------------
def _check_divisor(other: Any) -> None:
    """Eager integer division by zero raises (PyTorch's ZeroDivisionError); traced, the
    kernel's defined result (0) stands."""
    if isinstance(other, Tensor):
        if other.numel() and bool(amax(eq(other, 0))):
            raise RuntimeError("ZeroDivisionError")
    elif other == 0:
        raise RuntimeError("ZeroDivisionError")


def _division(name: str, kernel: str, input: Any, other: Any, body_int: Body,
              body_float: Body) -> Tensor:
    d = _promote(name, input, other)
    if d is dt.bool_:
        raise _not_implemented(kernel, d)
    if d.is_floating_point:
        return _composite(name, body_float, (input, other), _opmath(d), d)

    def build(b: Builder, *vals: Value) -> Value:
        return body_int(_E(b, d), *(_cast(b, v, d) for v in vals))

    def eager() -> Tensor:
        # inside the eager path, so the zero check is never recorded as an op
        _check_divisor(other)
        return _apply_elementwise((name, name, d.name, d.name), build, args, d, d)

    args = (input, other)
    return dispatch.apply(name, build, args, eager, d)


def _wrong_sign(e: _E, r: Value, y: Value) -> Value:
    """r != 0 and sign(r) != sign(y): a C remainder that floor semantics must adjust."""
    zero = e.c(0) if not e.dtype.is_floating_point else e.c(0.0)
    return e("and", e("ne", r, zero), e("ne", e("lt", r, zero), e("lt", y, zero)))


def fmod(input: Tensor, other: Any) -> Tensor:
    """C remainder: the result has the sign of the dividend."""
    _check_tensor(input, "fmod")
    return _division("fmod", "fmod_cpu", input, other,
                     lambda e, x, y: e("rem", x, y), lambda e, x, y: e("rem", x, y))


def remainder(input: Any, other: Any) -> Tensor:
    """Python's modulus: the result has the sign of the divisor."""

    def body(e: _E, x: Value, y: Value) -> Value:
        r = e("rem", x, y)
        return e.where(_wrong_sign(e, r, y), e("add", r, y), r)

    return _division("remainder", "remainder_cpu", input, other, body, body)


def floor_divide(input: Any, other: Any) -> Tensor:
    """Division rounded toward -inf; exact for integers (PyTorch's ``div_floor``)."""

    def body_int(e: _E, x: Value, y: Value) -> Value:
        q = e("div", x, y)  # truncates toward zero
        fix = _wrong_sign(e, e("rem", x, y), y)
        return e("sub", q, e.cast(fix, e.dtype))

    def body_float(e: _E, x: Value, y: Value) -> Value:
        zero, one = e.c(0.0), e.c(1.0)
        mod = e("rem", x, y)
        div = e("div", e("sub", x, mod), y)  # exact multiple of y, so nearly an integer
        div = e.where(_wrong_sign(e, mod, y), e("sub", div, one), div)
        fl = e("floor", div)
        fl = e.where(e("gt", e("sub", div, fl), e.c(0.5)), e("add", fl, one), fl)
        q = e("div", x, y)
        r = e.where(e("ne", div, zero), fl, e("mul", zero, q))  # a zero with q's sign
        return e.where(e("eq", y, zero), q, r)

    return _division("floor_divide", "div_floor_cpu", input, other, body_int, body_float)


# -- clamp, interpolation, fused multiply-add -----------------------------------------------------
def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """min(max(input, min), max) with numbers or tensors; either bound may be None."""
    x = _check_tensor(input, "clamp")
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    bounds = tuple(v for v in (min, max) if v is not None)
    d = dt.result_type(*_dtypes_of((x,) + bounds))
    has = (min is not None, max is not None)
    if d is dt.bool_ and not any(isinstance(v, Tensor) for v in bounds):
        kernel = {(True, False): "clamp_min", (False, True): "clamp_max"}.get(has, "clamp")
        raise _not_implemented(f"{kernel}_scalar_cpu", d)

    def body(e: _E, v: Value, *bs: Value) -> Value:
        it = iter(bs)
        for fn, pick in (("lt", has[0]), ("gt", has[1])):
            if not pick:
                continue
            bound = next(it)
            if d is dt.bool_:  # max is "or", min is "and"
                v = e("or" if fn == "lt" else "and", v, bound)
                continue
            # a select, not max/min: at x == bound the gradient flows to x, like PyTorch's;
            # a NaN bound (bound != bound) gives NaN, a NaN x stays NaN
            v = e.where(e("or", e(fn, v, bound), e("ne", bound, bound)), bound, v)
        return v

    return _composite("clamp", body, (x,) + bounds, d, d, has)


clip = clamp


def clamp_min(input: Tensor, min: Any) -> Tensor:  # noqa: A002
    return clamp(input, min=min)


def clamp_max(input: Tensor, max: Any) -> Tensor:  # noqa: A002
    return clamp(input, max=max)


_C10_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
              "bfloat16": "c10::BFloat16", "int64": "long int", "int32": "int",
              "int8": "signed char", "bool": "bool"}


def lerp(input: Tensor, end: Tensor, weight: Any) -> Tensor:
    """input + weight * (end - input), evaluated from the nearer end (PyTorch's formula)."""
    _need_tensors("lerp", input=input, end=end)
    d = input._dtype
    for what, v in (("end", end), ("weight", weight)):
        if isinstance(v, Tensor) and v._dtype is not d:
            raise RuntimeError(f"expected dtype {_C10_NAMES[d.name]} for `{what}` but got dtype "
                               f"{_C10_NAMES[v._dtype.name]}")
    if not d.is_floating_point:
        raise _not_implemented("lerp_kernel_scalar", d)

    def body(e: _E, s: Value, t: Value, w: Value) -> Value:
        diff = e("sub", t, s)
        near_start = e("add", s, e("mul", w, diff))
        near_end = e("sub", t, e("mul", diff, e("sub", e.c(1.0), w)))
        return e.where(e("lt", e("abs", w), e.c(0.5)), near_start, near_end)

    return _composite("lerp", body, (input, end, weight), _opmath(d), d)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    _need_tensors("addcmul", input=input, tensor1=tensor1, tensor2=tensor2)
    d = _promote("addcmul", input, tensor1, tensor2)

    def body(e: _E, x: Value, a: Value, b: Value, v: Value) -> Value:
        return e("add", x, e("mul", e("mul", v, a), b))

    return _composite("addcmul", body, (input, tensor1, tensor2, value), _opmath(d), d)


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """input + value * tensor1 / tensor2 (integer tensor1 and tensor2 are refused)."""
    _need_tensors("addcdiv", input=input, tensor1=tensor1, tensor2=tensor2)
    if not tensor1._dtype.is_floating_point and not tensor2._dtype.is_floating_point:
        raise RuntimeError(
            "Integer division with addcdiv is no longer supported, and in a future  release "
            "addcdiv will perform a true division of tensor1 and tensor2. The historic addcdiv "
            "behavior can be implemented as (input + value * torch.trunc(tensor1 / tensor2))."
            "to(input.dtype) for integer inputs and as (input + value * tensor1 / tensor2) for "
            "float inputs. The future addcdiv behavior is just the latter implementation: "
            "(input + value * tensor1 / tensor2), for all dtypes.")
    d = _promote("addcdiv", input, tensor1, tensor2)

    def body(e: _E, x: Value, a: Value, b: Value, v: Value) -> Value:
        return e("add", x, e("div", e("mul", v, a), b))

    return _composite("addcdiv", body, (input, tensor1, tensor2, value), _opmath(d), d)


# -- bitwise ------------------------------------------------------------------------------------
def _bitwise(name: str, fn: str, input: Any, other: Any, kernel: str) -> Tensor:
    d = _promote(name, input, other)
    if d.is_floating_point or (d is dt.bool_ and fn in ("shl", "shr")):
        raise _not_implemented(kernel, d)
    return _composite(name, lambda e, x, y: e(fn, x, y), (input, other), d, d)


def bitwise_and(input: Any, other: Any) -> Tensor:
    return _bitwise("bitwise_and", "and", input, other, "bitwise_and_cpu")


def bitwise_or(input: Any, other: Any) -> Tensor:
    return _bitwise("bitwise_or", "or", input, other, "bitwise_or_cpu")


def bitwise_xor(input: Any, other: Any) -> Tensor:
    return _bitwise("bitwise_xor", "xor", input, other, "bitwise_xor_cpu")


def bitwise_left_shift(input: Any, other: Any) -> Tensor:
    """input << other; shifts by a negative amount or by the bit width or more give 0."""
    return _bitwise("bitwise_left_shift", "shl", input, other, "lshift_cpu")


def bitwise_right_shift(input: Any, other: Any) -> Tensor:
    """Arithmetic input >> other; shifts past the bit width give 0 or -1 (the sign)."""
    return _bitwise("bitwise_right_shift", "shr", input, other, "rshift_cpu")


def bitwise_not(input: Tensor) -> Tensor:
    x = _check_tensor(input, "bitwise_not")
    if x._dtype.is_floating_point:
        raise _not_implemented("bitwise_not_cpu", x._dtype)
    return _composite("bitwise_not", lambda e, v: e("not", v), (x,), x._dtype, x._dtype)


def _invert(self: Tensor) -> Tensor:
    """``~x``: bitwise not of integers, logical not of bools."""
    if self._dtype.is_floating_point:
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type "
                        "tensors")
    return bitwise_not(self)


def _rev(fn: Callable[[Any, Any], Tensor]) -> Callable[[Tensor, Any], Tensor]:
    return lambda self, other: fn(other, self)


# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {name: globals()[name] for name in __all__}
TENSOR_METHODS.update({
    "__and__": bitwise_and, "__rand__": _rev(bitwise_and), "__or__": bitwise_or,
    "__ror__": _rev(bitwise_or), "__xor__": bitwise_xor, "__rxor__": _rev(bitwise_xor),
    "__invert__": _invert, "__lshift__": bitwise_left_shift,
    "__rlshift__": _rev(bitwise_left_shift), "__rshift__": bitwise_right_shift,
    "__rrshift__": _rev(bitwise_right_shift), "__floordiv__": floor_divide,
    "__rfloordiv__": _rev(floor_divide), "__mod__": remainder, "__rmod__": _rev(remainder),
})
