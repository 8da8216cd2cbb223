"""Scalar semantics of the loop dialect in LLVM IR: element types, constants, math, casts.

Values live in registers in a *compute* type: f16 and bf16 as ``float`` holding a
value of the narrow format (rounded after every operation that can leave it),
i1 as ``i1``, index as ``i64``. Memory holds the *storage* type: ``half``,
bf16 as ``i16`` bits, i1 as an ``i8`` byte. Every function here works the same on
a scalar and on a vector of the type.

Semantics (shared with the loop interpreter): integer division truncates and
``rem`` has the sign of the dividend; division or remainder by zero gives 0 and
MIN / -1 wraps, so no input can trap; shifts by an amount outside [0, bits)
give 0 (left) or the sign fill (right); float max/min propagate NaN; float
comparisons are ordered except ``ne``; float -> int casts truncate and saturate
(NaN gives 0); float narrowing rounds once to nearest even, also from f64 to
f16/bf16 (through float rounded to odd).
"""

from __future__ import annotations

import math

import numpy as np

from lamina.backends.llvm import mathlib
from lamina.backends.llvm.builder import FnBuilder, LType, const, float_literal
from lamina.ir.types import ScalarType, VectorType

_COMPUTE = {"f16": "float", "bf16": "float", "f32": "float", "f64": "double", "i1": "i1",
            "i8": "i8", "i32": "i32", "i64": "i64", "index": "i64"}
_STORAGE = dict(_COMPUTE, f16="half", bf16="i16", i1="i8")
_NARROW = ("f16", "bf16")


def compute_type(t: ScalarType | VectorType) -> LType:
    """The register type of an IR scalar or vector type."""
    if isinstance(t, VectorType):
        return LType(_COMPUTE[t.dtype.name], t.width)
    return LType(_COMPUTE[t.name])


def storage_type(dtype: ScalarType, width: int = 0) -> LType:
    return LType(_STORAGE[dtype.name], width)


# -- constants ---------------------------------------------------------------------
def _round_bf16(v: float) -> float:
    if math.isnan(v) or math.isinf(v) or v == 0:
        return v
    e = max(math.frexp(v)[1], -125)  # below 2**-126 bf16 is subnormal: quantum 2**-133
    r = math.ldexp(round(math.ldexp(v, 8 - e)), e - 8)
    return r if abs(r) < 2.0**128 else math.copysign(math.inf, v)


def constant(dtype: ScalarType, value: float | int | bool, width: int = 0) -> str:
    """The literal of ``value`` converted to ``dtype`` (rounded once for floats)."""
    t = compute_type(VectorType(width, dtype) if width else dtype)
    if dtype.is_float:
        v = float(value)
        if dtype.name == "f16":
            v = float(np.float16(v))
        elif dtype.name == "bf16":
            v = _round_bf16(v)
        s = float_literal(t.elem, v)
        return s if width == 0 else f"splat ({t.elem} {s})"
    if not dtype.is_bool and isinstance(value, float):
        value = int(value)
    return const(t, value)


# -- storage and narrowing -------------------------------------------------------------
def _bf16_bits(b: FnBuilder, x: str, t: LType) -> str:
    """float -> the i32 whose high half is the bf16 rounded to nearest even (NaN stays NaN)."""
    it = t.like("i32")
    bits = b.conv("bitcast", x, t, it)
    lsb = b.bin("and", it, b.bin("lshr", it, bits, const(it, 16)), const(it, 1))
    rounded = b.bin("add", it, bits, b.bin("add", it, lsb, const(it, 0x7FFF)))
    quiet = b.bin("or", it, bits, const(it, 0x400000))
    nan = b.cmp("uno", t, x, x)
    return b.bin("and", it, b.select(nan, it, quiet, rounded), const(it, 0xFFFF0000))


def narrow(b: FnBuilder, x: str, dtype: ScalarType, t: LType) -> str:
    """Round a float holding an f16/bf16 result to that format; other types pass through."""
    if dtype.name == "f16":
        h = b.conv("fptrunc", x, t, t.like("half"))
        return b.conv("fpext", h, t.like("half"), t)
    if dtype.name == "bf16":
        return b.conv("bitcast", _bf16_bits(b, x, t), t.like("i32"), t)
    return x


def from_storage(b: FnBuilder, v: str, dtype: ScalarType, width: int = 0) -> str:
    """A loaded storage value as a compute value."""
    st, ct = storage_type(dtype, width), compute_type(VectorType(width, dtype) if width else dtype)
    if dtype.name == "f16":
        return b.conv("fpext", v, st, ct)
    if dtype.name == "bf16":
        it = st.like("i32")
        wide = b.bin("shl", it, b.conv("zext", v, st, it), const(it, 16))
        return b.conv("bitcast", wide, it, ct)
    if dtype.is_bool:
        return b.cmp("ne", st, v, const(st, 0))
    return v


def to_storage(b: FnBuilder, v: str, dtype: ScalarType, width: int = 0) -> str:
    """A compute value as the value to store."""
    st, ct = storage_type(dtype, width), compute_type(VectorType(width, dtype) if width else dtype)
    if dtype.name == "f16":
        return b.conv("fptrunc", v, ct, st)
    if dtype.name == "bf16":
        it = st.like("i32")
        bits = b.conv("bitcast", v, ct, it)
        return b.conv("trunc", b.bin("lshr", it, bits, const(it, 16)), it, st)
    if dtype.is_bool:
        return b.conv("zext", v, ct, st)
    return v


# -- unary -------------------------------------------------------------------------------
def _float_unary(b: FnBuilder, fn: str, t: LType, x: str) -> str:
    if fn == "neg":
        return b.fneg(t, x)
    if fn in mathlib.FUNCTIONS:
        return mathlib.call(b, fn, t, [x])
    simple = {"abs": "fabs", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil",
              "trunc": "trunc", "round": "roundeven"}
    if fn in simple:
        return b.intrinsic(simple[fn], t, [(t, x)])
    if fn == "rsqrt":
        return b.bin("fdiv", t, const(t, 1.0), b.intrinsic("sqrt", t, [(t, x)]))
    if fn == "sign":
        zero = b.select(b.cmp("uno", t, x, x), t, x, const(t, 0.0))
        neg = b.select(b.cmp("olt", t, x, const(t, 0.0)), t, const(t, -1.0), zero)
        return b.select(b.cmp("ogt", t, x, const(t, 0.0)), t, const(t, 1.0), neg)
    if fn == "isnan":
        return b.cmp("uno", t, x, x)
    raise KeyError(fn)


def _int_unary(b: FnBuilder, fn: str, t: LType, x: str) -> str:
    if fn == "neg":
        return b.bin("sub", t, const(t, 0), x)
    if fn == "abs":
        return b.intrinsic("abs", t, [(t, x), (LType("i1"), "false")])
    if fn == "sign":
        neg = b.select(b.cmp("slt", t, x, const(t, 0)), t, const(t, -1), const(t, 0))
        return b.select(b.cmp("sgt", t, x, const(t, 0)), t, const(t, 1), neg)
    if fn == "not":
        return b.bin("xor", t, x, const(t, -1))
    raise KeyError(fn)


_EXACT = frozenset({"neg", "abs", "sign", "floor", "ceil", "trunc", "round", "isnan", "not",
                    "max", "min", "and", "or", "xor"})


def unary(b: FnBuilder, fn: str, dtype: ScalarType, t: LType, x: str) -> str:
    """``loop.<fn>`` on a compute value of element type ``dtype``."""
    r = _float_unary(b, fn, t, x) if dtype.is_float else _int_unary(b, fn, t, x)
    return r if fn in _EXACT else narrow(b, r, dtype, t)


# -- binary ------------------------------------------------------------------------------
def _safe_divisor(b: FnBuilder, t: LType, y: str) -> tuple[str, str, str]:
    """(y or 1 where y is 0 or -1, y == 0, y == -1): sdiv/srem would trap on those."""
    zero = b.cmp("eq", t, y, const(t, 0))
    minus1 = b.cmp("eq", t, y, const(t, -1))
    bad = b.bin("or", t.like("i1"), zero, minus1)
    return b.select(bad, t, const(t, 1), y), zero, minus1


def _int_div(b: FnBuilder, t: LType, x: str, y: str, rem: bool) -> str:
    safe, zero, minus1 = _safe_divisor(b, t, y)
    r = b.bin("srem" if rem else "sdiv", t, x, safe)
    special = const(t, 0) if rem else b.bin("sub", t, const(t, 0), x)
    r = b.select(minus1, t, special, r)
    return b.select(zero, t, const(t, 0), r)


def _shift(b: FnBuilder, t: LType, x: str, y: str, left: bool) -> str:
    inside = b.cmp("ult", t, y, const(t, t.bits))
    amount = b.bin("and", t, y, const(t, t.bits - 1))
    if left:
        return b.select(inside, t, b.bin("shl", t, x, amount), const(t, 0))
    fill = b.bin("ashr", t, x, const(t, t.bits - 1))
    return b.select(inside, t, b.bin("ashr", t, x, amount), fill)


def _ipow(b: FnBuilder, t: LType, x: str, y: str) -> str:
    """x ** y wrapping; a negative exponent gives trunc(1 / x**-y): 1, +-1 for x = -1, else 0."""
    name = f"lamina.ipow.{t.mangled}"
    if not b.module.has(name):
        fb = FnBuilder(b.module)
        acc, base, e = const(t, 1), "%x", "%y"
        for _ in range(t.bits):
            odd = fb.cmp("ne", t, fb.bin("and", t, e, const(t, 1)), const(t, 0))
            acc = fb.select(odd, t, fb.bin("mul", t, acc, base), acc)
            base = fb.bin("mul", t, base, base)
            e = fb.bin("lshr", t, e, const(t, 1))
        odd_y = fb.cmp("ne", t, fb.bin("and", t, "%y", const(t, 1)), const(t, 0))
        inv = fb.select(fb.cmp("eq", t, "%x", const(t, 1)), t, const(t, 1), const(t, 0))
        minus1 = fb.select(odd_y, t, const(t, -1), const(t, 1))
        inv = fb.select(fb.cmp("eq", t, "%x", const(t, -1)), t, minus1, inv)
        neg = fb.cmp("slt", t, "%y", const(t, 0))
        r = fb.select(neg, t, inv, acc)
        body = "\n".join(fb.lines)
        b.module.define(name, f"define internal {t} @{name}({t} %x, {t} %y) nounwind {{\n"
                              f"entry:\n{body}\n  ret {t} {r}\n}}")
    return b.call(t, name, [(t, x), (t, y)])


def binary(b: FnBuilder, fn: str, dtype: ScalarType, t: LType, x: str, y: str,
           reduction: bool = False) -> str:
    """``loop.<fn>``; ``reduction`` marks the update of a loop-carried float sum/product,
    which may then be reassociated so the loop vectorizer can split it into lanes."""
    if dtype.is_float:
        flags = "reassoc contract" if reduction and fn in ("add", "mul") else ""
        ops = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv", "rem": "frem"}
        if fn in ops:
            r = b.bin(ops[fn], t, x, y, flags)
        elif fn in ("max", "min"):
            r = b.intrinsic("maximum" if fn == "max" else "minimum", t, [(t, x), (t, y)])
        elif fn in ("pow", "atan2"):
            r = mathlib.call(b, fn, t, [x, y])
        else:
            raise KeyError(fn)
        return r if fn in _EXACT else narrow(b, r, dtype, t)
    ops = {"add": "add", "sub": "sub", "mul": "mul", "and": "and", "or": "or", "xor": "xor"}
    if fn in ops:
        return b.bin(ops[fn], t, x, y)
    if fn in ("div", "rem"):
        return _int_div(b, t, x, y, fn == "rem")
    if fn in ("max", "min"):
        return b.intrinsic("smax" if fn == "max" else "smin", t, [(t, x), (t, y)])
    if fn in ("shl", "shr"):
        return _shift(b, t, x, y, fn == "shl")
    if fn == "pow":
        return _ipow(b, t, x, y)
    raise KeyError(fn)


_FCMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
_ICMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
_UCMP = {"eq": "eq", "ne": "ne", "lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge"}


def compare(b: FnBuilder, fn: str, dtype: ScalarType, t: LType, x: str, y: str) -> str:
    table = _FCMP if dtype.is_float else _UCMP if dtype.is_bool else _ICMP
    return b.cmp(table[fn], t, x, y)


# -- casts -------------------------------------------------------------------------------
def _f64_to_f32_odd(b: FnBuilder, x: str, dt: LType) -> str:
    """double -> float rounded to odd, so a second rounding to f16/bf16 is exact."""
    ft, it = dt.like("float"), dt.like("i32")
    r = b.conv("fptrunc", x, dt, ft)
    back = b.conv("fpext", r, ft, dt)
    inexact = b.cmp("one", dt, back, x)
    ab = b.intrinsic("fabs", dt, [(dt, back)])
    ax = b.intrinsic("fabs", dt, [(dt, x)])
    away = b.bin("and", dt.like("i1"), inexact, b.cmp("ogt", dt, ab, ax))
    bits = b.conv("bitcast", r, ft, it)
    bits = b.bin("sub", it, bits, b.conv("zext", away, it.like("i1"), it))
    bits = b.bin("or", it, bits, b.conv("zext", inexact, it.like("i1"), it))
    return b.conv("bitcast", bits, it, ft)


def cast(b: FnBuilder, x: str, src: ScalarType, dst: ScalarType, width: int = 0) -> str:
    """``loop.cast`` of a compute value from ``src`` to ``dst`` elements."""
    st = compute_type(VectorType(width, src) if width else src)
    dt = compute_type(VectorType(width, dst) if width else dst)
    if src == dst or (st == dt and not src.is_float and not dst.is_float):
        return x
    if dst.is_bool:
        return b.cmp("une" if src.is_float else "ne", st, x, const(st, 0))
    if src.is_bool:
        return b.conv("uitofp" if dst.is_float else "zext", x, st, dt)
    if not src.is_float and not dst.is_float:
        return b.conv("sext" if dt.bits > st.bits else "trunc", x, st, dt)
    if src.is_float and not dst.is_float:
        return b.intrinsic("fptosi.sat", dt, [(st, x)], overload=[dt, st])
    if not src.is_float:
        if dst.name in ("f32", "f64"):
            return b.conv("sitofp", x, st, dt)
        x = b.conv("sitofp", x, st, st.like("double"))
        st, src = st.like("double"), ScalarType("f64")
    if dst.name == "f64":
        return x if st == dt else b.conv("fpext", x, st, dt)
    if src.name == "f64":
        if dst.name == "f32":
            return b.conv("fptrunc", x, st, dt)
        x = _f64_to_f32_odd(b, x, st)
    return narrow(b, x, dst, dt)


def vreduce(b: FnBuilder, fn: str, dtype: ScalarType, vt: LType, v: str) -> str:
    """``loop.vreduce``: combine the lanes of ``v`` (max/min of floats propagate NaN)."""
    t = LType(vt.elem)
    if dtype.is_float:
        if fn in ("sum", "prod"):
            name = "fadd" if fn == "sum" else "fmul"
            start = const(t, -0.0 if fn == "sum" else 1.0)
            r = b.intrinsic(f"vector.reduce.{name}", t, [(t, start), (vt, v)], overload=[vt],
                            flags="reassoc")
            return narrow(b, r, dtype, t)
        name = "fmaximum" if fn == "max" else "fminimum"
        return b.intrinsic(f"vector.reduce.{name}", t, [(vt, v)], overload=[vt])
    if dtype.is_bool:
        name = "or" if fn in ("sum", "max") else "and"
    else:
        name = {"sum": "add", "prod": "mul", "max": "smax", "min": "smin"}[fn]
    return b.intrinsic(f"vector.reduce.{name}", t, [(vt, v)], overload=[vt])
