"""Transcendental functions as branch-free LLVM IR, so loops that use them vectorize.

Each function is emitted once per module and type as ``internal alwaysinline``
(``@lamina.exp.v8f32``): the inliner runs before the vectorizers, and the
bodies are straight-line code (selects, no branches, no libm calls), so the
loop vectorizer widens them like any arithmetic. Algorithms are classic: an
argument reduction that is exact where it matters (Cody-Waite splits of ln2
and pi/2), then a polynomial (Taylor where it converges fast, otherwise the
fits in ``coeffs.py``), then a reconstruction and explicit selects for the
special values (inf, nan, zeros, overflow, underflow).

float32 results come either from a float32 algorithm (exp, exp2, log, log2,
tanh, logistic, erf: the hot activation functions, 16 lanes per AVX-512 vector)
or from the double algorithm with float32-sized polynomials, rounded once at
the end (the rest). Accuracy, measured by the tests against float64 references
over the whole range: at most about 2.5 ulp in float32 (0.5 for the double-based
ones), about 5e-16 relative in float64. sin/cos/tan reduce large arguments
exactly (Payne-Hanek: integer arithmetic for float32, double-double for float64),
so they are accurate up to the largest finite input; the float64 reduction is
the one expensive path of this module.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from typing import Callable

from lamina.backends.llvm import coeffs as C
from lamina.backends.llvm.builder import FnBuilder, LType, const

getcontext().prec = 60
_LN2 = Decimal("0.693147180559945309417232121458176568075500134360255254120680")
_PIO2 = Decimal("1.57079632679489661923132169163975144209858469968755291048747")


def _split(v: Decimal, bits: int) -> tuple[float, float]:
    """``v`` as hi + lo where hi keeps ``bits`` significant bits (so n*hi is exact)."""
    m, e = math.frexp(float(v))
    hi = math.ldexp(math.floor(m * 2**bits), e - bits)
    return hi, float(v - Decimal(hi))


def _parts(v: Decimal, n: int) -> list[float]:
    """``v`` as a sum of ``n`` doubles, each the rounding of what is left."""
    out = []
    for _ in range(n):
        out.append(float(v))
        v -= Decimal(out[-1])
    return out


LN2_HI_32, LN2_LO_32 = _split(_LN2, 16)
LN2_HI_64, LN2_LO_64 = _split(_LN2, 40)
PIO2_PARTS = _parts(_PIO2, 3)
PI_HI, PI_LO = _parts(2 * _PIO2, 2)
PIO2_HI, PIO2_LO = _parts(_PIO2, 2)
PIO4_HI, PIO4_LO = _parts(_PIO2 / 2, 2)


class F:
    """Float arithmetic on one LLVM type (scalar or vector) for writing approximations."""

    def __init__(self, b: FnBuilder, t: LType):
        self.b, self.t = b, t
        self.double = t.elem == "double"
        self.it = t.like("i64" if self.double else "i32")
        self.mt = t.like("i1")
        self.mant = 52 if self.double else 23
        self.bias = 1023 if self.double else 127

    def c(self, v: float) -> str:
        return const(self.t, v)

    def ci(self, v: int) -> str:
        return const(self.it, v)

    def _f(self, v: str | float) -> str:
        return v if isinstance(v, str) else self.c(v)

    def add(self, a, b) -> str:
        return self.b.bin("fadd", self.t, self._f(a), self._f(b))

    def sub(self, a, b) -> str:
        return self.b.bin("fsub", self.t, self._f(a), self._f(b))

    def mul(self, a, b) -> str:
        return self.b.bin("fmul", self.t, self._f(a), self._f(b))

    def div(self, a, b) -> str:
        return self.b.bin("fdiv", self.t, self._f(a), self._f(b))

    def neg(self, a: str) -> str:
        return self.b.fneg(self.t, a)

    def _call(self, name: str, *args) -> str:
        return self.b.intrinsic(name, self.t, [(self.t, self._f(a)) for a in args])

    def fma(self, a, b, c) -> str:
        """Exact fused multiply-add (a library call on hosts without FMA)."""
        return self._call("fma", a, b, c)

    def muladd(self, a, b, c) -> str:
        """a*b+c, fused where the host can: for polynomials, where either is accurate."""
        return self._call("fmuladd", a, b, c)

    def abs(self, a: str) -> str:
        return self._call("fabs", a)

    def rint(self, a: str) -> str:
        return self._call("roundeven", a)

    def floor(self, a: str) -> str:
        return self._call("floor", a)

    def trunc(self, a: str) -> str:
        return self._call("trunc", a)

    def sqrt(self, a: str) -> str:
        return self._call("sqrt", a)

    def copysign(self, a: str, s: str) -> str:
        return self._call("copysign", a, s)

    def cmp(self, pred: str, a, b) -> str:
        return self.b.cmp(pred, self.t, self._f(a), self._f(b))

    def lt(self, a, b) -> str:
        return self.cmp("olt", a, b)

    def le(self, a, b) -> str:
        return self.cmp("ole", a, b)

    def gt(self, a, b) -> str:
        return self.cmp("ogt", a, b)

    def ge(self, a, b) -> str:
        return self.cmp("oge", a, b)

    def eq(self, a, b) -> str:
        return self.cmp("oeq", a, b)

    def ne(self, a, b) -> str:
        return self.cmp("une", a, b)

    def isnan(self, a: str) -> str:
        return self.cmp("uno", a, a)

    def both(self, m1: str, m2: str) -> str:
        return self.b.bin("and", self.mt, m1, m2)

    def either(self, m1: str, m2: str) -> str:
        return self.b.bin("or", self.mt, m1, m2)

    def negate(self, m: str) -> str:
        return self.b.bin("xor", self.mt, m, const(self.mt, 1))

    def sel(self, m: str, a, b) -> str:
        return self.b.select(m, self.t, self._f(a), self._f(b))

    def signbit(self, a: str) -> str:
        return self.b.cmp("slt", self.it, self.bits(a), self.ci(0))

    def bits(self, a: str) -> str:
        return self.b.conv("bitcast", a, self.t, self.it)

    def from_bits(self, i: str) -> str:
        return self.b.conv("bitcast", i, self.it, self.t)

    def ibin(self, op: str, a: str, b: str | int) -> str:
        return self.b.bin(op, self.it, a, b if isinstance(b, str) else self.ci(b))

    def clamp(self, x: str, lo: float, hi: float) -> str:
        """x limited to [lo, hi]; nan becomes 0 so later integer conversions stay defined."""
        x = self.sel(self.isnan(x), 0.0, x)
        x = self.sel(self.gt(x, hi), hi, x)
        return self.sel(self.lt(x, lo), lo, x)

    def poly(self, x: str, coeffs) -> str:
        """Horner evaluation of sum(coeffs[k] * x**k)."""
        r = self.c(coeffs[-1])
        for k in reversed(coeffs[:-1]):
            r = self.muladd(r, x, k)
        return r

    def fit(self, v: str, f: C.Fit) -> str:
        return self.poly(self.sub(v, f.center), f.coeffs)

    def pow2(self, n: str) -> str:
        """2**n for an integral float n in the normal exponent range."""
        i = self.b.conv("fptosi", n, self.t, self.it)
        i = self.ibin("add", i, self.bias)
        return self.from_bits(self.ibin("shl", i, self.mant))

    def scale(self, q: str, n: str) -> str:
        """q * 2**n for |n| up to twice the exponent range, rounding once (denormals)."""
        n1 = self.trunc(self.mul(n, 0.5))
        n2 = self.sub(n, n1)
        return self.mul(self.mul(q, self.pow2(n1)), self.pow2(n2))


_INV_FACT = [1.0 / math.factorial(k) for k in range(20)]
_MAX_DOUBLE = 1.7976931348623157e308


def _ln2(o: F) -> tuple[float, float]:
    return (LN2_HI_64, LN2_LO_64) if o.double else (LN2_HI_32, LN2_LO_32)


def exp(o: F, p: int, x: str) -> str:
    lo, hi = (-746.0, 709.9) if o.double else (-104.0, 88.8)
    xs = o.clamp(x, lo, hi)
    n = o.rint(o.mul(xs, 1 / math.log(2)))
    ln2_hi, ln2_lo = _ln2(o)
    r = o.sub(o.sub(xs, o.mul(n, ln2_hi)), o.mul(n, ln2_lo))
    q = o.poly(r, _INV_FACT[: (14 if p == 64 else 8)])
    return o.sel(o.isnan(x), x, o.scale(q, n))


def exp2(o: F, p: int, x: str) -> str:
    lo, hi = (-1076.0, 1024.5) if o.double else (-151.0, 128.5)
    xs = o.clamp(x, lo, hi)
    n = o.rint(xs)
    r = o.sub(xs, n)
    ln2 = math.log(2)
    q = o.poly(r, [ln2**k * _INV_FACT[k] for k in range(14 if p == 64 else 8)])
    return o.sel(o.isnan(x), x, o.scale(q, n))


def expm1(o: F, p: int, x: str) -> str:
    # expm1 = 2**n * expm1(r) + (2**n - 1): no cancellation for small x. Past `big`
    # the -1 is below rounding and exp(x) handles overflow.
    big = 40.0 if o.double else 20.0
    xs = o.clamp(x, -big, big)
    n = o.rint(o.mul(xs, 1 / math.log(2)))
    ln2_hi, ln2_lo = _ln2(o)
    r = o.sub(o.sub(xs, o.mul(n, ln2_hi)), o.mul(n, ln2_lo))
    q = o.mul(r, o.poly(r, _INV_FACT[1 : (15 if p == 64 else 9)]))
    s = o.pow2(n)
    res = o.add(o.mul(s, q), o.sub(s, 1.0))
    res = o.sel(o.gt(x, big), exp(o, p, x), res)
    # expm1(x) rounds to x below 2**-54 (and keeps the sign of -0); nan passes too.
    return o.sel(o.either(o.lt(o.abs(x), 2.0**-54), o.isnan(x)), x, res)


def _log_reduce(o: F, x: str) -> tuple[str, str]:
    """(e, f) with x = 2**e * (1 + f), 1 + f in [sqrt(1/2), sqrt(2)); junk for x <= 0, inf, nan."""
    k = 64 if o.double else 32
    tiny = o.lt(x, 2.0 ** (-1022 if o.double else -126))
    bits = o.bits(o.sel(tiny, o.mul(x, 2.0**k), x))
    e_int = o.ibin("sub", o.ibin("lshr", bits, o.mant), o.bias)
    m = o.from_bits(o.ibin("or", o.ibin("and", bits, (1 << o.mant) - 1), o.bias << o.mant))
    up = o.gt(m, math.sqrt(2))
    m = o.sel(up, o.mul(m, 0.5), m)
    e = o.b.conv("sitofp", e_int, o.it, o.t)
    e = o.sub(o.add(e, o.sel(up, 1.0, 0.0)), o.sel(tiny, float(k), 0.0))
    return e, o.sub(m, 1.0)


def _atanh_terms(p: int) -> list[float]:
    return [1.0 / (2 * j + 3) for j in range(10 if p == 64 else 4)]


def _log_parts(o: F, p: int, x: str) -> tuple[str, str]:
    """(e, log(m)) with x = m * 2**e: log(m) = 2 atanh(s), s = f / (2 + f)."""
    e, f = _log_reduce(o, x)
    s = o.div(f, o.add(f, 2.0))
    z = o.mul(s, s)
    big_r = o.mul(z, o.poly(z, _atanh_terms(p)))
    two_s = o.add(s, s)
    return e, o.muladd(two_s, big_r, two_s)


def _log_specials(o: F, x: str, res: str) -> str:
    inf = math.inf
    res = o.sel(o.eq(x, inf), inf, res)
    res = o.sel(o.eq(x, 0.0), -inf, res)
    return o.sel(o.either(o.lt(x, 0.0), o.isnan(x)), math.nan, res)


def log(o: F, p: int, x: str) -> str:
    e, lm = _log_parts(o, p, x)
    ln2_hi, ln2_lo = _ln2(o)
    res = o.add(o.mul(e, ln2_hi), o.muladd(e, ln2_lo, lm))
    return _log_specials(o, x, res)


def log2(o: F, p: int, x: str) -> str:
    e, lm = _log_parts(o, p, x)
    return _log_specials(o, x, o.muladd(lm, 1 / math.log(2), e))


def log1p(o: F, p: int, x: str) -> str:
    # log(u) * x / (u - 1) with u = 1 + x corrects the rounding of u (Goldberg).
    u = o.add(x, 1.0)
    d = o.sub(u, 1.0)
    res = o.mul(log(o, p, u), o.div(x, d))
    res = o.sel(o.eq(d, 0.0), x, res)
    return o.sel(o.eq(x, math.inf), x, res)


def tanh(o: F, p: int, x: str) -> str:
    a = o.abs(x)
    z = o.mul(a, a)
    small = o.muladd(o.mul(a, z), o.fit(z, C.TANH64 if p == 64 else C.TANH32), a)
    e = exp(o, p, o.add(a, a))
    large = o.sub(1.0, o.div(2.0, o.add(e, 1.0)))
    return o.copysign(o.sel(o.lt(a, 0.625), small, large), x)


def logistic(o: F, p: int, x: str) -> str:
    e = exp(o, p, o.neg(o.abs(x)))
    d = o.add(e, 1.0)
    return o.sel(o.ge(x, 0.0), o.div(1.0, d), o.div(e, d))


def _pi_fixed(bits: int) -> int:
    """floor(pi * 2**bits), from Machin's formula in integer arithmetic."""
    guard = bits + 32
    one = 1 << guard

    def atan_inv(n: int) -> int:
        total, term, k, sign = 0, one // n, 1, 1
        while term:
            total += sign * (term // k)
            term //= n * n
            k, sign = k + 2, -sign
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 32


_CHUNK = 53
# 2/pi in 53-bit integer chunks: 2/pi = sum(c[i] * 2**(-53*(i+1))). 26 chunks reach
# 2**-1378, past what the largest double (2**1024) times the 53 + 62 bits needed call for.
_TWO_OVER_PI_BITS = (1 << (2 * 26 * _CHUNK + 65)) // _pi_fixed(26 * _CHUNK + 64)
TWO_OVER_PI_CHUNKS = [float((_TWO_OVER_PI_BITS >> (_CHUNK * (25 - i))) & ((1 << _CHUNK) - 1))
                      for i in range(26)]


def _reduce_big(o: F, p: int, x: str) -> tuple[str, str]:
    """(r, q) with x = r + q*pi/2 mod 2pi exactly, for any finite x >= 2**20 in magnitude.

    Payne-Hanek: with |x| = M * 2**(E-L) (M an integer of L+1 bits), x*2/pi mod 4 only
    needs the chunks of 2/pi from index s = (E-L-2) // 53 on; the products M*chunk are
    split exactly (two-product) and reduced mod 4 term by term, then summed in
    double-double. float32 inputs (p == 32) need 3 chunks, doubles 5.
    """
    mant = 52 if p == 64 else 23
    ax = o.abs(x)
    e = o.ibin("sub", o.ibin("lshr", o.bits(ax), 52), 1023)
    m = o.mul(ax, o.from_bits(o.ibin("shl", o.ibin("sub", o.ci(1023 + mant), e), 52)))
    ef = o.b.conv("sitofp", e, o.it, o.t)
    # s = max((e - mant - 2) // 53, 0), in floats: vector i64 division is slow.
    sf = o.floor(o.mul(o.sub(ef, mant + 1.5), 1 / _CHUNK))
    sf = o.sel(o.lt(sf, 0.0), 0.0, sf)
    last = ((1023 if p == 64 else 127) - mant - 2) // _CHUNK  # the largest s of a finite x
    # 2**(e - mant - 53*(s+1)), the weight of chunk s's last bit, times 2**53
    scale = o.scale(o.c(1.0), o.sub(o.sub(ef, mant), o.mul(sf, float(_CHUNK))))
    terms = []
    for j in range(5 if p == 64 else 3):
        # chunk s + j, picked by selects (a gather per lane is far slower)
        chunk = o.c(TWO_OVER_PI_CHUNKS[j])
        for k in range(1, last + 1):
            chunk = o.sel(o.eq(sf, float(k)), TWO_OVER_PI_CHUNKS[k + j], chunk)
        c = o.mul(o.mul(chunk, scale), 2.0 ** (-_CHUNK * (j + 1)))
        hi = o.mul(m, c)
        terms += [hi, o.fma(m, c, o.neg(hi))]
    # Each term mod 4 is exact; their sum, in double-double, is x*2/pi mod 4.
    mods = [o.sub(t, o.mul(o.rint(o.mul(t, 0.25)), 4.0)) for t in terms]
    f_hi, f_lo = mods[0], o.c(0.0)
    for t in mods[1:]:
        f_hi, err = _two_sum(o, f_hi, t)
        f_lo = o.add(f_lo, err)
    k = o.rint(f_hi)
    f_hi = o.sub(f_hi, k)
    q = o.sub(k, o.mul(o.floor(o.mul(k, 0.25)), 4.0))
    f = o.add(f_hi, f_lo)
    r_hi = o.mul(f, PIO2_HI)
    r = o.add(r_hi, o.add(o.fma(f, PIO2_HI, o.neg(r_hi)), o.mul(f, PIO2_LO)))
    q = o.sel(o.lt(x, 0.0), o.sub(4.0, q), q)  # x = -|x|: quadrant and r change sign
    q = o.sel(o.eq(q, 4.0), 0.0, q)
    return o.sel(o.lt(x, 0.0), o.neg(r), r), q


# floor(2/pi * 2**224) as 64-bit words: word j holds bits [32j, 32j + 64).
_G224 = _TWO_OVER_PI_BITS >> (26 * _CHUNK - 224)
_G_WORDS = [(_G224 >> (32 * j)) & ((1 << 64) - 1) for j in range(7)]


def _reduce_big_f32(o: F, x: str) -> tuple[str, str]:
    """(r, q) for a float32 x (held in a double) of magnitude >= 2**20, exactly.

    Payne-Hanek in 64-bit integers: |x| = M * 2**(E-23) with a 24-bit M, and
    x*2/pi mod 4 = M * G * 2**(E-23-224) mod 4 with G = floor(2/pi * 2**224). Only
    96 bits of G matter (a window starting at bit 153 - E); M times that window,
    shifted, is x*2/pi mod 4 as a fixed-point number with 62 fraction bits.
    """
    b, it = o.b, o.it
    bits = o.bits(o.abs(x))
    e = o.ibin("sub", o.ibin("lshr", bits, 52), 1023)
    m = o.ibin("lshr", o.ibin("or", o.ibin("and", bits, (1 << 52) - 1), 1 << 52), 29)
    start = o.ibin("sub", o.ci(153), e)
    start = b.intrinsic("smin", it, [(it, start), (it, o.ci(133))])
    start = b.intrinsic("smax", it, [(it, start), (it, o.ci(0))])
    word, shift = o.ibin("lshr", start, 5), o.ibin("and", start, 31)
    window = []
    for j in range(3):
        v = o.ci(_G_WORDS[j])
        for w in range(1, 5):
            is_w = b.cmp("eq", it, word, o.ci(w))
            v = b.select(is_w, it, o.ci(_G_WORDS[w + j] - (1 << 64) * (_G_WORDS[w + j] >> 63)), v)
        window.append(o.ibin("and", o.ibin("lshr", v, shift), 0xFFFFFFFF))
    p0, p1, p2 = (o.ibin("mul", m, w) for w in window)
    fixed = o.ibin("add", o.ibin("add", o.ibin("lshr", p0, 32), p1), o.ibin("shl", p2, 32))
    k = o.ibin("lshr", o.ibin("add", fixed, 1 << 61), 62)
    frac = o.ibin("sub", fixed, o.ibin("shl", k, 62))
    f = o.mul(b.conv("sitofp", frac, it, o.t), 2.0**-62)
    r = o.mul(f, math.pi / 2)
    q = b.conv("sitofp", k, it, o.t)
    neg = o.lt(x, 0.0)
    q = o.sel(neg, o.sub(4.0, q), q)
    q = o.sel(o.eq(q, 4.0), 0.0, q)
    return o.sel(neg, o.neg(r), r), q


def _sincos(o: F, p: int, x: str) -> tuple[str, str, str]:
    """(sin r, cos r, quadrant q in 0..3 as a float) with x = r + q*pi/2 (mod 2 pi)."""
    k = o.rint(o.mul(x, 2 / math.pi))
    nk = o.neg(k)
    r = x
    for part in PIO2_PARTS:
        r = o.fma(nk, part, r)
    q = o.sub(k, o.mul(o.floor(o.mul(k, 0.25)), 4.0))
    # Three parts of pi/2 with fused multiply-adds are exact while k is small.
    big = o.both(o.ge(o.abs(x), 2.0**20), o.lt(o.abs(x), math.inf))
    r_big, q_big = _reduce_big(o, p, x) if p == 64 else _reduce_big_f32(o, x)
    r, q = o.sel(big, r_big, r), o.sel(big, q_big, q)
    z = o.mul(r, r)
    n_sin, n_cos = (8, 9) if p == 64 else (5, 6)
    sin_c = [(-1) ** (j + 1) * _INV_FACT[2 * j + 3] for j in range(n_sin - 1)]
    cos_c = [(-1) ** j * _INV_FACT[2 * j] for j in range(n_cos)]
    sr = o.muladd(o.mul(r, z), o.poly(z, sin_c), r)
    cr = o.poly(z, cos_c)
    return sr, cr, q


def _odd(o: F, q: str) -> str:
    return o.either(o.eq(q, 1.0), o.eq(q, 3.0))


def sin(o: F, p: int, x: str) -> str:
    sr, cr, q = _sincos(o, p, x)
    v = o.sel(_odd(o, q), cr, sr)
    v = o.sel(o.ge(q, 2.0), o.neg(v), v)
    return o.sel(o.lt(o.abs(x), 2.0**-27), x, v)


def cos(o: F, p: int, x: str) -> str:
    sr, cr, q = _sincos(o, p, x)
    v = o.sel(_odd(o, q), sr, cr)
    return o.sel(o.either(o.eq(q, 1.0), o.eq(q, 2.0)), o.neg(v), v)


def tan(o: F, p: int, x: str) -> str:
    sr, cr, q = _sincos(o, p, x)
    v = o.sel(_odd(o, q), o.neg(o.div(cr, sr)), o.div(sr, cr))
    return o.sel(o.lt(o.abs(x), 2.0**-27), x, v)


def erf(o: F, p: int, x: str) -> str:
    a = o.abs(x)
    z = o.mul(a, a)
    small = o.mul(a, o.fit(z, C.ERF64 if p == 64 else C.ERF32))
    u = o.div(1.0, a)
    cut = 6.0 if p == 64 else 4.0
    # exp(-a*a) with a*a = z + z_lo exactly: the rounding of z would cost up to 16 ulp.
    z_lo = o.fma(a, a, o.neg(z))
    e = o.mul(exp(o, p, o.neg(z)), o.sub(1.0, z_lo))
    erfc = o.mul(o.mul(e, o.fit(u, C.ERFC64 if p == 64 else C.ERFC32)), u)
    res = o.sel(o.le(a, 1.0), small, o.sel(o.ge(a, cut), 1.0, o.sub(1.0, erfc)))
    return o.copysign(res, x)


def erfinv(o: F, p: int, y: str) -> str:
    a = o.abs(y)
    w = o.neg(log(o, 64, o.mul(o.sub(1.0, a), o.add(1.0, a))))
    s = o.sqrt(w)
    if p == 64:
        tail = o.sel(o.lt(w, 16.0), o.fit(s, C.ERFINV64_S1), o.fit(s, C.ERFINV64_S2))
        central = o.fit(w, C.ERFINV64_W)
    else:
        tail, central = o.fit(s, C.ERFINV32_S), o.fit(w, C.ERFINV32_W)
    res = o.mul(a, o.sel(o.lt(w, 6.25), central, tail))
    res = o.sel(o.eq(a, 1.0), math.inf, res)
    return o.copysign(res, y)


def _two_sum(o: F, a: str, b: str) -> tuple[str, str]:
    s = o.add(a, b)
    bb = o.sub(s, a)
    err = o.add(o.sub(a, o.sub(s, bb)), o.sub(b, bb))
    return s, err


def pow(o: F, p: int, x: str, y: str) -> str:
    ax = o.abs(x)
    if p == 64:
        lh, ll = _log_dd_hi_lo(o, ax)
        th = o.mul(y, lh)
        tl = o.muladd(y, ll, o.fma(y, lh, o.neg(th)))
        r = exp(o, 64, th)
        corr = o.fma(r, tl, r)
        r = o.sel(o.lt(o.abs(corr), math.inf), corr, r)
    else:
        r = exp(o, 64, o.mul(y, log(o, 64, ax)))
    y_int = o.eq(o.floor(y), y)
    y_odd = o.both(o.both(y_int, o.lt(o.abs(y), 2.0**53)),
                   o.ne(o.mul(o.floor(o.mul(y, 0.5)), 2.0), y))
    r = o.sel(o.both(o.signbit(x), y_odd), o.neg(r), r)
    bad = o.both(o.both(o.lt(x, 0.0), o.gt(x, -math.inf)), o.negate(y_int))
    r = o.sel(bad, math.nan, r)
    r = o.sel(o.both(o.eq(ax, 1.0), o.eq(o.abs(y), math.inf)), 1.0, r)
    return o.sel(o.either(o.eq(x, 1.0), o.eq(y, 0.0)), 1.0, r)


def _log_dd_hi_lo(o: F, x: str) -> tuple[str, str]:
    """log(x) for x >= 0 as hi + lo (double-double), enough for pow's y*log(x) in double."""
    e, f = _log_reduce(o, x)
    g = o.add(f, 2.0)
    g_err = o.sub(f, o.sub(g, 2.0))  # 2 + f == g + g_err exactly
    s = o.div(f, g)
    rem = o.sub(o.fma(o.neg(s), g, f), o.mul(s, g_err))
    s_lo = o.div(rem, g)
    z = o.mul(s, s)
    tail = o.mul(o.mul(o.add(s, s), z), o.poly(z, _atanh_terms(64)))
    hi, lo = _two_sum(o, o.add(s, s), o.add(tail, o.add(s_lo, s_lo)))
    eh = o.mul(e, LN2_HI_64)
    hi, err = _two_sum(o, eh, hi)
    lo = o.add(o.add(lo, err), o.mul(e, LN2_LO_64))
    hi, lo = _two_sum(o, hi, lo)
    inf = math.inf
    hi = o.sel(o.eq(x, inf), inf, o.sel(o.eq(x, 0.0), -inf, hi))
    hi = o.sel(o.either(o.lt(x, 0.0), o.isnan(x)), math.nan, hi)
    return hi, lo


def atan2(o: F, p: int, y: str, x: str) -> str:
    ay, ax = o.abs(y), o.abs(x)
    swap = o.gt(ay, ax)
    num, den = o.sel(swap, ax, ay), o.sel(swap, ay, ax)
    t = o.div(num, den)
    t = o.sel(o.eq(den, 0.0), 0.0, t)
    t = o.sel(o.both(o.eq(ax, math.inf), o.eq(ay, math.inf)), 1.0, t)
    red = o.gt(t, math.tan(math.pi / 8))
    u = o.sel(red, o.div(o.sub(t, 1.0), o.add(t, 1.0)), t)
    z = o.mul(u, u)
    a = o.muladd(o.mul(u, z), o.fit(z, C.ATAN64 if p == 64 else C.ATAN32), u)
    a = o.sel(red, o.add(o.add(a, PIO4_LO), PIO4_HI), a)
    a = o.sel(swap, o.add(o.sub(PIO2_LO, a), PIO2_HI), a)
    a = o.sel(o.signbit(x), o.add(o.sub(PI_LO, a), PI_HI), a)
    return o.sel(o.either(o.isnan(x), o.isnan(y)), o.add(x, y), o.copysign(a, y))


# name -> (algorithm, number of arguments, whether float32 uses the double algorithm)
_FUNCS: dict[str, tuple[Callable[..., str], int, bool]] = {
    "exp": (exp, 1, False), "exp2": (exp2, 1, False), "expm1": (expm1, 1, True),
    "log": (log, 1, False), "log2": (log2, 1, False), "log1p": (log1p, 1, True),
    "sin": (sin, 1, True), "cos": (cos, 1, True), "tan": (tan, 1, True),
    "tanh": (tanh, 1, False), "logistic": (logistic, 1, False), "erf": (erf, 1, False),
    "erfinv": (erfinv, 1, True), "pow": (pow, 2, True), "atan2": (atan2, 2, True),
}
FUNCTIONS = frozenset(_FUNCS)


def call(b: FnBuilder, fn: str, t: LType, args: list[str]) -> str:
    """Call math function ``fn`` on ``float``/``double`` values (scalar or vector) of type ``t``."""
    if t.elem not in ("float", "double"):
        raise TypeError(f"mathlib.{fn}: needs float or double values, got {t}")
    name = f"lamina.{fn}.{t.mangled}"
    if not b.module.has(name):
        b.module.define(name, _define(b, fn, t, name))
    return b.call(t, name, [(t, a) for a in args])


def _define(caller: FnBuilder, fn: str, t: LType, name: str) -> str:
    impl, nargs, via_double = _FUNCS[fn]
    fb = FnBuilder(caller.module)
    params = [f"%a{i}" for i in range(nargs)]
    ct = t.like("double") if t.elem == "float" and via_double else t
    args = params if ct == t else [fb.conv("fpext", a, t, ct) for a in params]
    r = impl(F(fb, ct), 64 if t.elem == "double" else 32, *args)
    if ct != t:
        r = fb.conv("fptrunc", r, ct, t)
    sig = ", ".join(f"{t} {a}" for a in params)
    body = "\n".join(fb.lines)
    return (f"define internal {t} @{name}({sig}) alwaysinline nounwind {{\nentry:\n{body}\n"
            f"  ret {t} {r}\n}}")
