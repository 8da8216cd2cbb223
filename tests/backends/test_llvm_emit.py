"""The LLVM backend against numpy: every loop op and element type, layouts, loops, the ABI."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.llvm import assemble_text, native_asm
from lamina.backends.llvm.emit import emit_kernel, emit_module
from lamina.ir import IRError, parse
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import SCALARS

from . import llvm_oracle as O
from .llvm_harness import compile_kernel

RNG = np.random.default_rng(1234)
TRANSCENDENTAL = {"exp", "exp2", "expm1", "log", "log2", "log1p", "sin", "cos", "tan", "tanh",
                  "logistic", "erf", "erfinv", "sqrt", "rsqrt", "pow", "atan2"}


def _1d(name: str, ins: list[str], out: str, body: list[str], width: int = 0) -> str:
    """A kernel over 1-d buffers; ``body`` reads %x0.. and defines %r (scalars or vectors)."""
    args = ", ".join(f"%a{k}: memref<?x{t}>" for k, t in enumerate(ins))
    step = width or 1
    load = "loop.vload" if width else "loop.load"
    attr = f" {{width = {width}}}" if width else ""
    ty = (lambda t: f"vector<{width}x{t}>") if width else (lambda t: t)
    loads = [f"    %x{k} = {load} %a{k}, %i{attr} : {ty(t)}" for k, t in enumerate(ins)]
    store = "loop.vstore" if width else "loop.store"
    return "\n".join([
        f"kernel @{name}({args}, %out: memref<?x{out}>) {{",
        "  %c0 = loop.const {value = 0} : index",
        f"  %st = loop.const {{value = {step}}} : index",
        "  %n = loop.dim %out {axis = 0} : index",
        "  loop.parallel %c0, %n, %st (%i: index) {",
        *loads, *("    " + line for line in body),
        f"    {store} %r, %out, %i",
        "  }",
        "}",
    ])


def _run(text: str, inputs: list[np.ndarray], out_dtype: str) -> np.ndarray:
    out = np.zeros(len(inputs[0]), O.NP[out_dtype])
    compile_kernel(text)(*inputs, out)
    return out


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    if not width:
        return a
    return np.resize(a, (len(a) + width - 1) // width * width)


# -- binary ops -----------------------------------------------------------------------
BINARY_CASES = [(fn, d) for fn, kind in ew.BINARY.items() for d in O.ALL
                if ew.accepts(kind, SCALARS[d])]


@pytest.mark.parametrize("width", [0, 8])
@pytest.mark.parametrize("fn,dtype", BINARY_CASES)
def test_binary(fn, dtype, width):
    n = 200
    a = _pad(O.values(dtype, n, RNG), width)
    b = _pad(RNG.permutation(O.values(dtype, n, RNG))[: len(a)], width)
    if fn in ("shl", "shr"):
        b = _pad(RNG.integers(-3, O.BITS[dtype] + 3, len(a)).astype(O.NP[dtype]), width)
    if fn == "pow" and dtype in O.INTS:
        b = (b.astype(np.int64) % 12 - 2).astype(O.NP[dtype])
    ty = f"vector<{width}x{dtype}>" if width else dtype
    text = _1d(f"bin_{fn}_{dtype}_{width}", [dtype, dtype], dtype,
               [f"%r = loop.{fn} %x0, %x1 : {ty}"], width)
    got = _run(text, [a, b], dtype)
    if dtype in O.FLOATS:
        with np.errstate(all="ignore"):
            want = O.FLOAT_BINARY[fn](O.decode(a, dtype), O.decode(b, dtype))
        ulps = 2 if fn in TRANSCENDENTAL else 0
        if dtype in ("f16", "bf16") and fn in TRANSCENDENTAL:
            ulps = 1
        O.assert_ulp(got, want, dtype, ulps, f"{fn} {dtype}")
    elif dtype == "i1":
        ops = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}
        np.testing.assert_array_equal(got, ops[fn](a, b))
    else:
        bits = O.BITS[dtype]
        want = [O.wrap(O.INT_BINARY[fn](int(x), int(y), bits), dtype) for x, y in zip(a, b)]
        np.testing.assert_array_equal(got.astype(np.int64), want, err_msg=f"{fn} {dtype}")


@pytest.mark.parametrize("fn", sorted(O.FLOAT_BINARY.keys() - {"pow", "atan2"}))
def test_float_binary_reference_is_exact_in_f64(fn):
    # The exact ops must match a once-rounded float64 result bit for bit, also for f64.
    a, b = O.values("f64", 300, RNG), O.values("f64", 300, RNG)
    text = _1d(f"exact_{fn}", ["f64", "f64"], "f64", [f"%r = loop.{fn} %x0, %x1 : f64"])
    got = _run(text, [a, b], "f64")
    with np.errstate(all="ignore"):
        want = O.FLOAT_BINARY[fn](a, b)
    np.testing.assert_array_equal(got, want)


# -- comparisons -------------------------------------------------------------------------
@pytest.mark.parametrize("width", [0, 16])
@pytest.mark.parametrize("fn", ew.COMPARE)
@pytest.mark.parametrize("dtype", O.ALL)
def test_compare(fn, dtype, width):
    a = _pad(O.values(dtype, 100, RNG), width)
    b = a.copy()
    b[::2] = RNG.permutation(a)[::2]
    i1 = f"vector<{width}xi1>" if width else "i1"
    text = _1d(f"cmp_{fn}_{dtype}_{width}", [dtype, dtype], "i1",
               [f"%r = loop.{fn} %x0, %x1 : {i1}"], width)
    got = _run(text, [a, b], "i1")
    x, y = O.decode(a, dtype), O.decode(b, dtype)
    ops = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
           "gt": np.greater, "ge": np.greater_equal}
    np.testing.assert_array_equal(got, ops[fn](x, y))


# -- unary ops ---------------------------------------------------------------------------
UNARY_CASES = [(fn, d) for fn, kind in ew.UNARY.items() for d in O.ALL
               if ew.accepts(kind, SCALARS[d])]


@pytest.mark.parametrize("width", [0, 4])
@pytest.mark.parametrize("fn,dtype", UNARY_CASES)
def test_unary(fn, dtype, width):
    a = _pad(O.values(dtype, 200, RNG), width)
    if fn == "erfinv" and dtype in O.FLOATS:
        a = O.encode(np.concatenate([RNG.uniform(-1.2, 1.2, 100), [1, -1, 0, -0.0, np.nan]]),
                     dtype)
        a = _pad(a, width)
    out = "i1" if fn == "isnan" else dtype
    ty = f"vector<{width}x{out}>" if width else out
    text = _1d(f"un_{fn}_{dtype}_{width}", [dtype], out, [f"%r = loop.{fn} %x0 : {ty}"], width)
    got = _run(text, [a], out)
    if fn == "isnan":
        np.testing.assert_array_equal(got, np.isnan(O.decode(a, dtype)))
    elif fn == "not":
        want = ~a if dtype != "i1" else np.logical_not(a)
        np.testing.assert_array_equal(got, want)
    elif dtype in O.FLOATS:
        with np.errstate(all="ignore"):
            want = O.FLOAT_UNARY[fn](O.decode(a, dtype))
        ulps = 0
        if fn in TRANSCENDENTAL:
            ulps = 1 if dtype in ("f16", "bf16") else 4
        O.assert_ulp(got, want, dtype, ulps, f"{fn} {dtype}")
    else:
        x = a.astype(np.int64)
        want = {"neg": lambda v: -v, "abs": abs,
                "sign": lambda v: (v > 0) - (v < 0)}[fn]
        np.testing.assert_array_equal(got.astype(np.int64),
                                      [O.wrap(want(int(v)), dtype) for v in x])


def test_sign_of_zero_and_nan():
    a = np.array([-0.0, 0.0, np.nan, -np.inf, 3.0], np.float32)
    got = _run(_1d("sign_z", ["f32"], "f32", ["%r = loop.sign %x0 : f32"]), [a], "f32")
    assert not np.signbit(got[0]) and not np.signbit(got[1]) and np.isnan(got[2])
    assert list(got[3:]) == [-1.0, 1.0]


# -- casts -------------------------------------------------------------------------------
def _cast_want(a: np.ndarray, src: str, dst: str) -> np.ndarray:
    x = O.decode(a, src)
    if dst == "i1":
        return x != 0
    if src == "i1":
        return O.encode(x.astype(np.int64), dst)
    if src in O.FLOATS and dst in O.INTS:
        bits = O.BITS[dst]
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        out = [0 if np.isnan(v) else min(max(int(np.trunc(v)), lo), hi)
               if np.isfinite(v) else (hi if v > 0 else lo) for v in x]
        return np.array(out, O.NP[dst])
    if src in O.INTS and dst in O.FLOATS:
        if dst == "f32":
            return x.astype(np.float32)  # numpy's int64 -> float32 rounds once
        return O.encode(np.array([float(int(v)) for v in x]), dst)
    return O.encode(x, dst)


@pytest.mark.parametrize("width", [0, 8])
@pytest.mark.parametrize("dst", O.ALL)
@pytest.mark.parametrize("src", O.ALL)
def test_cast(src, dst, width):
    a = _pad(O.values(src, 200, RNG), width)
    if src in O.FLOATS:  # values near the integer limits and fractions
        extra = O.encode(np.array([127.9, -128.9, 2.0**31, -(2.0**31) - 1, 2.0**63, 1e20,
                                   -1e20, 0.99, -0.99, 1.5, 2.5, -2.5]), src)
        a = _pad(np.concatenate([a, extra]), width)
    ty = f"vector<{width}x{dst}>" if width else dst
    text = _1d(f"cast_{src}_{dst}_{width}", [src], dst,
               [f"%r = loop.cast %x0 {{dtype = {dst}}} : {ty}"], width)
    got = _run(text, [a], dst)
    want = _cast_want(a, src, dst)
    if dst in O.FLOATS:
        np.testing.assert_array_equal(np.isnan(O.decode(got, dst)), np.isnan(O.decode(want, dst)))
        ok = ~np.isnan(O.decode(want, dst))
        np.testing.assert_array_equal(got[ok], want[ok], err_msg=f"{src}->{dst}")
    else:
        np.testing.assert_array_equal(got, want, err_msg=f"{src}->{dst}")


@pytest.mark.parametrize("dst,half_ulp", [("f16", 2.0**-11), ("bf16", 2.0**-8)])
def test_f64_to_narrow_floats_rounds_once(dst, half_ulp):
    # Just above the midpoint between 1 and its successor: rounding to float32 first
    # would make it an exact tie and round down to 1.
    x = np.array([1.0 + half_ulp + 2.0**-40, 1.0 + half_ulp, -(1.0 + half_ulp + 2.0**-40)])
    text = _1d(f"round_once_{dst}", ["f64"], dst,
               [f"%r = loop.cast %x0 {{dtype = {dst}}} : {dst}"])
    got = O.decode(_run(text, [x], dst), dst)
    np.testing.assert_array_equal(got, [1.0 + 2 * half_ulp, 1.0, -(1.0 + 2 * half_ulp)])


# -- constants, select, splat, vreduce ------------------------------------------------------
@pytest.mark.parametrize("dtype", O.ALL)
def test_const_and_select(dtype):
    a = O.values(dtype, 50, RNG)
    value = {"i1": True, "f16": 0.1, "bf16": 0.1, "f32": 0.1, "f64": 0.1}.get(dtype, -5)
    text = _1d(f"csel_{dtype}", [dtype], dtype, [
        f"%k = loop.const {{value = {str(value).lower()}}} : {dtype}",
        "%m = loop.lt %x0, %k : i1",
        f"%r = loop.select %m, %k, %x0 : {dtype}",
    ])
    got = _run(text, [a], dtype)
    k = O.encode(np.full(len(a), value), dtype)  # the constant, rounded once to dtype
    want = np.where(O.decode(a, dtype) < O.decode(k, dtype), k, a)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fn", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("dtype", ["f32", "f64", "f16", "bf16", "i32", "i64", "i8", "i1"])
def test_vreduce_and_splat(fn, dtype):
    w = 8
    n = 64
    a = O.values(dtype, n, RNG)[:n]
    if dtype in O.FLOATS:
        a = O.encode(RNG.uniform(0.5, 1.5, n), dtype)
        a[13] = O.encode(np.array([np.nan]), dtype)[0] if fn in ("max", "min") else a[13]
    text = "\n".join([
        f"kernel @vred_{fn}_{dtype}(%a: memref<?x{dtype}>, %out: memref<?x{dtype}>) {{",
        "  %c0 = loop.const {value = 0} : index",
        f"  %w = loop.const {{value = {w}}} : index",
        "  %n = loop.dim %a {axis = 0} : index",
        "  loop.parallel %c0, %n, %w (%i: index) {",
        f"    %v = loop.vload %a, %i {{width = {w}}} : vector<{w}x{dtype}>",
        f"    %s = loop.vreduce %v {{fn = \"{fn}\"}} : {dtype}",
        f"    %b = loop.splat %s {{width = {w}}} : vector<{w}x{dtype}>",
        "    loop.vstore %b, %out, %i",
        "  }",
        "}",
    ])
    out = np.zeros_like(a)
    compile_kernel(text)(a, out)
    x = O.decode(a, dtype).reshape(-1, w)
    if dtype == "i1":
        red = {"sum": np.any, "max": np.any, "prod": np.all, "min": np.all}[fn](x, axis=1)
    elif dtype in O.INTS:
        red = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}[fn](x, axis=1)
        red = O.encode(np.array([O.wrap(int(v), dtype) for v in red]), dtype)
    else:
        red = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}[fn](x, axis=1)
    want = np.repeat(red, w)
    if dtype in O.FLOATS:
        O.assert_ulp(out, want, dtype, 4 if dtype in ("f32", "f64") else 1, f"vreduce {fn}")
    else:
        np.testing.assert_array_equal(out, np.asarray(want).astype(out.dtype))


# -- layouts: strides, broadcasts, views, sizes 0 and 1 ----------------------------------------
_ADD2D = """
kernel @add2d_{tag}(%a: memref<?x?xf32, strided<[{sa}]>>, %b: memref<?x?xf32, strided<[{sb}]>>,
                    %out: memref<?x?xf32>) {{
  %c0 = loop.const {{value = 0}} : index
  %c1 = loop.const {{value = 1}} : index
  %n0 = loop.dim %out {{axis = 0}} : index
  %n1 = loop.dim %out {{axis = 1}} : index
  loop.parallel %c0, %n0, %c1 (%i: index) {{
    loop.for %c0, %n1, %c1 (%j: index) {{
      %x = loop.load %a, %i, %j : f32
      %y = loop.load %b, %i, %j : f32
      %s = loop.mul %x, %y : f32
      %r = loop.add %s, %x : f32
      loop.store %r, %out, %i, %j
    }}
  }}
}}"""


def _views(draw_shape, kind: str, rng) -> np.ndarray:
    r, c = draw_shape
    base = rng.standard_normal((r + 3, 2 * c + 3)).astype(np.float32)
    if kind == "contig":
        return np.ascontiguousarray(base[:r, :c])
    if kind == "rowslice":
        return base[1 : r + 1, 2 : c + 2]
    if kind == "colstep":
        return base[:r, : 2 * c : 2]
    if kind == "transposed":
        return np.ascontiguousarray(rng.standard_normal((c, r)).astype(np.float32)).T
    if kind == "bcast_row":
        return np.broadcast_to(rng.standard_normal(c).astype(np.float32), (r, c))
    if kind == "bcast_col":
        return np.broadcast_to(rng.standard_normal((r, 1)).astype(np.float32), (r, c))
    if kind == "reversed":
        return base[:r, :c][::-1, ::-1]
    raise KeyError(kind)


_LAYOUT = {"contig": "?, 1", "rowslice": "?, 1", "colstep": "?, ?", "transposed": "?, ?",
           "bcast_row": "0, 1", "bcast_col": "?, 0", "reversed": "?, ?"}


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(0, 9), st.integers(0, 37)),
       ka=st.sampled_from(sorted(_LAYOUT)), kb=st.sampled_from(sorted(_LAYOUT)),
       dynamic=st.booleans())
def test_strided_and_broadcast_inputs(shape, ka, kb, dynamic):
    rng = np.random.default_rng(zlib.crc32(repr((shape, ka, kb)).encode()))
    a, b = _views(shape, ka, rng), _views(shape, kb, rng)
    sa = "?, ?" if dynamic else _LAYOUT[ka]
    sb = "?, ?" if dynamic else _LAYOUT[kb]
    tag = f"{ka}_{kb}_{int(dynamic)}"
    text = _ADD2D.format(tag=tag, sa=sa, sb=sb)
    out = np.full(shape, -7.0, np.float32)
    compile_kernel(text)(a, b, out)
    np.testing.assert_array_equal(out, a * b + a)


def test_static_shapes_and_strides_are_constants():
    text = """
kernel @static(%a: memref<4x1x8xf32, strided<[0, 0, 1]>>, %out: memref<4x1x8xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %n0 = loop.dim %out {axis = 0} : index
  %n2 = loop.dim %out {axis = 2} : index
  loop.parallel %c0, %n0, %c1 (%i: index) {
    loop.for %c0, %n2, %c1 (%k: index) {
      %x = loop.load %a, %i, %c0, %k : f32
      %r = loop.exp %x : f32
      loop.store %r, %out, %i, %c0, %k
    }
  }
}"""
    k = compile_kernel(text)
    # Only the two data pointers are read from args: sizes and strides are all static.
    main = k.llvm_ir.split("define void @static")[1].split("\n}")[0]
    assert main.count("load i64") == 0 and main.count("load ptr") == 2
    row = RNG.standard_normal(8).astype(np.float32)
    a = np.broadcast_to(row, (4, 1, 8))
    out = np.zeros((4, 1, 8), np.float32)
    assert k.trips(a, out) == 4
    k(a, out)
    O.assert_ulp(out, np.broadcast_to(np.exp(row.astype(np.float64)), (4, 1, 8)), "f32", 1)


def test_in_place_and_overlapping_buffers():
    text = _1d("inplace", ["f32", "f32"], "f32", ["%r = loop.add %x0, %x1 : f32"])
    k = compile_kernel(text)
    a = RNG.standard_normal(1000).astype(np.float32)
    want = a + a
    k(a, a, a)  # out aliases both inputs
    np.testing.assert_array_equal(a, want)
    buf = np.arange(1001, dtype=np.float32)
    x, y = buf[:-1].copy(), buf[1:]  # out overlaps an input shifted by one element
    k(x, np.ones(1000, np.float32), y)
    np.testing.assert_array_equal(buf[1:], np.arange(1000, dtype=np.float32) + 1)


# -- loops: reductions, carried values, ranges ---------------------------------------------
_ROWSUM = """
kernel @rowsum_{tag}(%a: memref<?x?x{t}>, %out: memref<?x{t}>) {{
  %c0 = loop.const {{value = 0}} : index
  %c1 = loop.const {{value = 1}} : index
  %z = loop.const {{value = {init}}} : {t}
  %n0 = loop.dim %a {{axis = 0}} : index
  %n1 = loop.dim %a {{axis = 1}} : index
  loop.parallel %c0, %n0, %c1 (%i: index) {{
    %s = loop.for %c0, %n1, %c1, %z : {t} (%j: index, %acc: {t}) {{
      %x = loop.load %a, %i, %j : {t}
      %y = loop.{fn} %acc, %x : {t}
      loop.yield %y
    }}
    loop.store %s, %out, %i
  }}
}}"""


@pytest.mark.parametrize("fn,t,init", [("add", "f32", "0.0"), ("add", "f64", "0.0"),
                                       ("max", "f32", "-inf"), ("min", "f64", "inf"),
                                       ("add", "i32", "0"), ("max", "i64", "-9000"),
                                       ("mul", "f64", "1.0"), ("add", "bf16", "0.0")])
@pytest.mark.parametrize("shape", [(3, 1000), (5, 0), (1, 1), (0, 4), (7, 33)])
def test_row_reductions_with_carried_values(fn, t, init, shape):
    text = _ROWSUM.format(tag=f"{fn}_{t}", t=t, fn=fn, init=init)
    if t in O.FLOATS:
        a = O.encode(RNG.uniform(0.9, 1.1, shape), t)
        if fn == "max" and a.size > 5:
            a.flat[5] = np.nan
    else:
        a = RNG.integers(-1000, 1000, shape).astype(O.NP[t])
    out = np.zeros(shape[0], O.NP[t])
    compile_kernel(text)(a, out)
    x = O.decode(a, t)
    red = {"add": np.sum, "max": np.max, "min": np.min, "mul": np.prod}[fn]
    start = {"add": 0.0, "mul": 1.0, "max": -np.inf, "min": np.inf}[fn]
    want = np.array([red(np.concatenate([[start if t in O.FLOATS else float(init)], row]))
                     for row in x]) if shape[0] else np.zeros(0)
    if t == "bf16":  # every step rounds to bf16: the sum stalls where ulp/2 exceeds the terms
        want = np.zeros(shape[0])
        for r, row in enumerate(x):
            acc = 0.0
            for v in row:
                acc = O.bf16_round(np.array([acc + v]))[0]
            want[r] = acc
    if t in O.FLOATS:
        # bf16 rounds the sum after every step; the reassociated order may differ a little.
        rel = {"bf16": 3e-2, "f32": 1e-5, "f64": 1e-12}[t]
        got = O.decode(out, t)
        np.testing.assert_allclose(got, want, rtol=rel)
        assert np.array_equal(np.isnan(got), np.isnan(want))
    else:
        np.testing.assert_array_equal(out, want)


def test_float_sum_reduction_is_vectorized():
    text = _ROWSUM.format(tag="vec", t="f32", fn="add", init="0.0")
    opt = assemble_text(compile_kernel(text).llvm_ir)
    assert "<16 x float>" in opt or "<8 x float>" in opt


_VSUM = """
kernel @vsum(%a: memref<?xf32>, %out: memref<1xf32>) {
  %c0 = loop.const {value = 0} : index
  %w = loop.const {value = 8} : index
  %zero = loop.const {value = 0.0} : f32
  %n = loop.dim %a {axis = 0} : index
  %z = loop.splat %zero {width = 8} : vector<8xf32>
  %acc = loop.for %c0, %n, %w, %z : vector<8xf32> (%i: index, %v: vector<8xf32>) {
    %x = loop.vload %a, %i {width = 8} : vector<8xf32>
    %y = loop.add %v, %x : vector<8xf32>
    loop.yield %y
  }
  %s = loop.vreduce %acc {fn = "sum"} : f32
  loop.store %s, %out, %c0
}"""


def test_vector_accumulator_without_parallel_loop():
    k = compile_kernel(_VSUM)
    a = RNG.standard_normal(8 * 50).astype(np.float32)
    out = np.zeros(1, np.float32)
    assert k.trips(a, out) == 1
    k(a, out, begin=0, end=0)  # begin/end are ignored without a top-level parallel loop
    np.testing.assert_allclose(out[0], a.astype(np.float64).sum(), rtol=1e-5)


_RANGE = """
kernel @range_{tag}(%out: memref<?xindex>) {{
  %lb = loop.const {{value = {lb}}} : index
  %ub = loop.const {{value = {ub}}} : index
  %st = loop.const {{value = {step}}} : index
  loop.parallel %lb, %ub, %st (%i: index) {{
    %v = loop.mul %i, %i : index
    loop.store %v, %out, %i
  }}
}}"""


@settings(max_examples=50, deadline=None)
@given(lb=st.integers(0, 30), ub=st.integers(0, 30), step=st.integers(-4, 4).filter(bool),
       begin=st.integers(-3, 15), end=st.integers(-3, 15))
def test_parallel_sub_ranges_and_trips(lb, ub, step, begin, end):
    text = _RANGE.format(tag="c", lb=lb, ub=ub, step=step).replace("@range_c", "@range_c" +
                                                                   f"_{lb}_{ub}_{step}".replace(
                                                                       "-", "m"))
    k = compile_kernel(text)
    out = np.full(32, -1, np.int64)
    iters = list(range(lb, ub, step))
    assert k.trips(out) == len(iters)
    k(out, begin=begin, end=end)
    want = np.full(32, -1, np.int64)
    for t in range(max(begin, 0), min(end, len(iters))):
        want[iters[t]] = iters[t] ** 2
    np.testing.assert_array_equal(out, want)


def test_dynamic_bounds_and_step():
    text = """
kernel @dyn(%a: memref<?xi64>, %out: memref<?xindex>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %c2 = loop.const {value = 2} : index
  %lb = loop.load %a, %c0 : i64
  %ub = loop.load %a, %c1 : i64
  %st = loop.load %a, %c2 : i64
  %lbi = loop.cast %lb {dtype = index} : index
  %ubi = loop.cast %ub {dtype = index} : index
  %sti = loop.cast %st {dtype = index} : index
  loop.parallel %lbi, %ubi, %sti (%i: index) {
    %s = loop.for %lbi, %ubi, %sti, %c0 : index (%j: index, %acc: index) {
      %y = loop.add %acc, %j : index
      loop.yield %y
    }
    loop.store %s, %out, %i
  }
}"""
    k = compile_kernel(text)
    for lb, ub, st_ in [(0, 10, 3), (9, -1, -2), (2, 2, 1), (5, 0, 1), (0, 5, 0), (3, 7, -1)]:
        a = np.array([lb, ub, st_], np.int64)
        out = np.full(12, -1, np.int64)
        iters = list(range(lb, ub, st_)) if st_ else []
        assert k.trips(a, out) == len(iters)
        k(a, out)
        want = np.full(12, -1, np.int64)
        for i in iters:
            want[i] = sum(iters)
        np.testing.assert_array_equal(out, want)


def test_nested_parallel_runs_sequentially():
    text = """
kernel @nested(%out: memref<?x?xi32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %n0 = loop.dim %out {axis = 0} : index
  %n1 = loop.dim %out {axis = 1} : index
  loop.parallel %c0, %n0, %c1 (%i: index) {
    loop.parallel %c0, %n1, %c1 (%j: index) {
      %t = loop.mul %i, %n1 : index
      %u = loop.add %t, %j : index
      %v = loop.cast %u {dtype = i32} : i32
      loop.store %v, %out, %i, %j
    }
  }
}"""
    out = np.zeros((5, 7), np.int32)
    k = compile_kernel(text)
    assert k.trips(out) == 5
    k(out, begin=1, end=4)
    want = np.zeros((5, 7), np.int32)
    want[1:4] = np.arange(35, dtype=np.int32).reshape(5, 7)[1:4]
    np.testing.assert_array_equal(out, want)


# -- the property of the issue: elementwise math vectorizes -------------------------------------
def test_exp_kernel_is_vectorized():
    text = _1d("vexp", ["f32"], "f32", ["%r = loop.exp %x0 : f32"])
    k = compile_kernel(text)
    opt = assemble_text(k.llvm_ir)
    assert "<16 x float>" in opt or "<8 x float>" in opt
    asm = native_asm(k.llvm_ir)
    assert "zmm" in asm or "ymm" in asm
    body = opt.split("define void @vexp")[1].split("\n}")[0]
    calls = [line for line in body.split("\n") if " call " in line]
    assert all("@llvm." in line for line in calls), calls  # inlined: no calls to math


# -- module emission and errors ---------------------------------------------------------------
def test_emit_module_skips_funcs_and_emits_every_kernel():
    text = _1d("ka", ["f32"], "f32", ["%r = loop.neg %x0 : f32"]) + "\n" + \
        _1d("kb", ["f32"], "f32", ["%r = loop.abs %x0 : f32"]) + """
func @prog(%x: memref<?xf32>) -> () {
  return
}"""
    ll = emit_module(parse(text))
    for sym in ("@ka(", "@ka__trips(", "@kb(", "@kb__trips("):
        assert "define " in ll and sym in ll
    assert "@prog" not in ll


def _emit_error(text: str) -> str:
    with pytest.raises(IRError) as e:
        emit_kernel(parse(text).graphs[0])
    return str(e.value)


def test_errors_name_the_problem():
    two = """
kernel @two(%out: memref<?xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %n = loop.dim %out {axis = 0} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
  }
  loop.parallel %c0, %n, %c1 (%i2: index) {
  }
}"""
    assert "one top-level loop.parallel" in _emit_error(two)
    after = """
kernel @after(%out: memref<?xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f32
  %n = loop.dim %out {axis = 0} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
  }
  loop.store %z, %out, %c0
}"""
    assert "may follow" in _emit_error(after)
    zero = """
kernel @zero(%out: memref<?xf32>) {
  %c0 = loop.const {value = 0} : index
  %n = loop.dim %out {axis = 0} : index
  loop.for %c0, %n, %c0 (%i: index) {
  }
}"""
    assert "step is the constant 0" in _emit_error(zero)
    with pytest.raises(IRError, match="needs a kernel graph"):
        emit_kernel(parse("func @f(%x: memref<?xf32>) -> () {\n  return\n}").graphs[0])
