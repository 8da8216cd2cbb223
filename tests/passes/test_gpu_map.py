"""gpu-map: top-level parallel loops become loop.gpu_parallel (block size, cooperative lanes);
IR text, and the CPU build of target="cuda" loops vs numpy (target independence)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.ir import parse, verify
from lamina.ir.core import IRError
from lamina.ir.printer import print_module
from lamina.passes.gpu_map import GpuMap
from lamina.passes.manager import parse_pipeline
from lamina.passes.rewrite import clone_module
from lamina.runtime import compile_program

ELEMENTWISE = """
kernel @k(%a: memref<1000xf32>, %b: memref<1000xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1000} : index
  %2 = loop.const {value = 1} : index
  loop.parallel %0, %1, %2 (%i: index) {
    %3 = loop.load %a, %i : f32
    %4 = loop.exp %3 : f32
    loop.store %4, %b, %i
  }
}
"""

ROWSUM = """
kernel @r(%a: memref<?x?xf32>, %b: memref<?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f32
  %n = loop.dim %a {axis = 0} : index
  %m = loop.dim %a {axis = 1} : index
  loop.parallel %0, %n, %1 (%i: index) {
    %s = loop.for %0, %m, %1, %z : f32 (%j: index, %acc: f32) {
      %x = loop.load %a, %i, %j : f32
      %y = loop.add %acc, %x : f32
      loop.yield %y
    }
    loop.store %s, %b, %i
  }
}
"""

SMALL = ELEMENTWISE.replace("1000", "40")


def _mapped(text: str, **kw) -> str:
    m = GpuMap(**kw).run(parse(text))
    verify(m)
    out = print_module(m)
    assert print_module(parse(out)) == out  # round-trips through the parser
    return out


def test_elementwise_gets_256_threads():
    out = _mapped(ELEMENTWISE, unroll=1)
    assert "loop.gpu_parallel %0, %1, %2 {block = 256} (%i: index)" in out
    assert "loop.parallel" not in out


def test_reduction_rows_get_128_threads_and_stay_sequential_inside_without_coop():
    out = _mapped(ROWSUM, coop=False)
    assert "{block = 128}" in out
    assert "loop.for" in out and "lane" not in out  # each thread accumulates its row


def test_small_static_trip_count_rounds_to_a_warp_multiple():
    assert "{block = 64}" in _mapped(SMALL, unroll=1)


def test_forced_block_and_bad_block():
    assert "{block = 512}" in _mapped(ELEMENTWISE, block=512, unroll=1)
    assert "{block = 512, unroll = 4}" in _mapped(ELEMENTWISE, block=512, unroll=4)
    with pytest.raises(ValueError, match="multiple of 32"):
        GpuMap(block=100).run(parse(ELEMENTWISE))


def test_idempotent_and_kernels_without_parallel_untouched():
    for unroll in (1, 4):
        once = _mapped(ELEMENTWISE, unroll=unroll)
        assert _mapped(once) == once
    seq = ELEMENTWISE.replace("loop.parallel", "loop.for")
    assert _mapped(seq) == print_module(parse(seq))


def test_named_in_textual_pipelines():
    (p,) = parse_pipeline("gpu-map")
    assert isinstance(p, GpuMap)


def test_verifier_rejects_bad_block_attribute():
    bad = _mapped(ELEMENTWISE, unroll=1).replace("{block = 256}", "{block = 33}")
    with pytest.raises(IRError, match="multiple of 32"):
        verify(parse(bad))
    missing = _mapped(ELEMENTWISE, unroll=1).replace(" {block = 256}", "")
    with pytest.raises(IRError, match="block"):
        verify(parse(missing))


# -- cooperative trips ------------------------------------------------------------------------
def test_row_sum_gets_a_warp_per_row():
    out = _mapped(ROWSUM, coop=True)
    assert "loop.gpu_parallel %0, %3, %1 {block = 256, lanes = 32} (%i: index)" in out
    assert '%5 = loop.lane_for %0, %4, %1, %2 {combine = ["add"]} : f32 (%j: index' in out
    assert "loop.lane0_store %5, %b, %i" in out
    assert "loop.for" not in out


def test_kill_switch(monkeypatch):
    monkeypatch.setenv("LAMINA_GPU_COOP", "0")
    assert "lanes" not in _mapped(ROWSUM)
    monkeypatch.setenv("LAMINA_GPU_COOP", "1")
    assert "lanes = 32" in _mapped(ROWSUM)


FEW_LONG_ROWS = ROWSUM.replace("memref<?x?xf32>", "memref<4x?xf32>").replace(
    "%n = loop.dim %a {axis = 0} : index", "%n = loop.const {value = 4} : index")
ONE_ROW = FEW_LONG_ROWS.replace("4x?", "1x?").replace("{value = 4}", "{value = 1}")


def test_few_long_rows_get_a_block_per_row_and_one_row_1024_threads():
    assert "{block = 256, lanes = 256}" in _mapped(FEW_LONG_ROWS, coop=True)
    assert "{block = 1024, lanes = 1024}" in _mapped(ONE_ROW, coop=True)
    short = FEW_LONG_ROWS.replace("%m = loop.dim %a {axis = 1} : index",
                                  "%m = loop.const {value = 40} : index")
    assert "{block = 128, lanes = 32}" in _mapped(short, coop=True)


SOFTMAX_TRIP = """
kernel @s(%a: memref<?x?xf32>, %b: memref<?x?xf32>, %mx: memref<?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f32
  %ninf = loop.const {value = -inf} : f32
  %n = loop.dim %a {axis = 0} : index
  %m = loop.dim %a {axis = 1} : index
  loop.parallel %0, %n, %1 (%i: index) {
    %M = loop.for %0, %m, %1, %ninf : f32 (%j: index, %acc: f32) {
      %x = loop.load %a, %i, %j : f32
      %y = loop.max %acc, %x : f32
      loop.yield %y
    }
    %S = loop.for %0, %m, %1, %z : f32 (%j2: index, %acc2: f32) {
      %x2 = loop.load %a, %i, %j2 : f32
      %d = loop.sub %x2, %M : f32
      %e = loop.exp %d : f32
      %y2 = loop.add %acc2, %e : f32
      loop.yield %y2
    }
    loop.for %0, %m, %1 (%j3: index) {
      %x3 = loop.load %a, %i, %j3 : f32
      %d3 = loop.sub %x3, %M : f32
      %e3 = loop.exp %d3 : f32
      %q = loop.div %e3, %S : f32
      loop.store %q, %b, %i, %j3
    }
    loop.store %M, %mx, %i
  }
}
"""


def test_later_loops_of_the_trip_are_strided_and_use_the_combined_results():
    out = _mapped(SOFTMAX_TRIP, coop=True)
    assert '%6 = loop.lane_for %0, %5, %1, %3 {combine = ["max"]}' in out
    assert '%9 = loop.lane_for %0, %5, %1, %2 {combine = ["add"]}' in out
    assert "%11 = loop.sub %10, %6 : f32" in out  # the second pass reads the whole max
    assert "loop.lane_for %0, %5, %1 {combine = []} (%j3: index)" in out
    assert "loop.store %17, %b, %i, %j3" in out  # every lane stores its own elements
    assert "loop.lane0_store %6, %mx, %i" in out


ARGMAX = """
kernel @am(%a: memref<?x?xf32>, %b: memref<?xi64>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %ninf = loop.const {value = -inf} : f32
  %k0 = loop.const {value = 0} : i64
  %n = loop.dim %a {axis = 0} : index
  %m = loop.dim %a {axis = 1} : index
  loop.parallel %0, %n, %1 (%i: index) {
    %best, %pos = loop.for %0, %m, %1, %ninf, %k0 : f32, i64 (%j: index, %bv: f32, %bp: i64) {
      %x = loop.load %a, %i, %j : f32
      %t = loop.gt %x, %bv : i1
      %k = loop.cast %j {dtype = i64} : i64
      %nb = loop.select %t, %x, %bv : f32
      %np = loop.select %t, %k, %bp : i64
      loop.yield %nb, %np
    }
    loop.store %pos, %b, %i
  }
}
"""


def test_non_associative_carried_state_is_not_shared():
    out = _mapped(ARGMAX, coop=True)
    assert "lanes" not in out and "lane_for" not in out


def test_mixed_trip_keeps_sequential_loops_redundant_with_lane0_stores():
    mixed = SOFTMAX_TRIP.replace(
        "    loop.store %M, %mx, %i\n",
        "    loop.for %0, %m, %1 (%j4: index) {\n      loop.store %M, %mx, %i\n    }\n")
    out = _mapped(mixed, coop=True)
    assert "lanes = 32" in out
    # its iterations all write one element: every lane runs it, lane 0 stores
    assert "loop.for %0, %5, %1 (%j4: index) {\n      loop.lane0_store %6, %mx, %i" in out


def test_column_sums_and_in_place_kernels_stay_one_trip_per_thread():
    col = ROWSUM.replace("loop.load %a, %i, %j", "loop.load %a, %j, %i")
    assert "lanes" not in _mapped(col, coop=True)
    inplace = ROWSUM.replace("%b: memref<?xf32>", "%b: memref<?x?xf32>").replace(
        "loop.store %s, %b, %i", "loop.store %s, %a, %i, %0")
    assert "lanes" not in _mapped(inplace, coop=True)


def test_sums_from_a_nonzero_start_are_not_shared():
    shifted = ROWSUM.replace("{value = 0.0} : f32", "{value = 2.0} : f32")
    assert "lanes" not in _mapped(shifted, coop=True)


def test_verifier_rejects_bad_lanes_and_combines():
    out = _mapped(ROWSUM, coop=True)
    with pytest.raises(IRError, match="lanes"):
        verify(parse(out.replace("lanes = 32", "lanes = 64")))
    with pytest.raises(IRError, match="combine"):
        verify(parse(out.replace('["add"]', '["sub"]')))


# -- target independence: the CPU build of target="cuda" loops --------------------------------
ROW_LENGTHS = [0, 1, 31, 32, 33, 1000]


def _cpu_run_of_cuda_loops(fn, *arrays):
    ts = [lamina.tensor(a) for a in arrays]
    loop = lamina.compile(fn).lower(*ts, target="cuda").stages.loop
    return [np.asarray(o) for o in compile_program(loop)(*arrays)]


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@settings(max_examples=30, deadline=None)
@given(rows=st.sampled_from([0, 1, 3, 40]), cols=st.sampled_from(ROW_LENGTHS),
       dtype=st.sampled_from(["float32", "float64"]))
def test_cuda_loops_run_on_the_cpu_float(rows, cols, dtype):
    x = np.random.default_rng(rows * 1000 + cols).standard_normal((rows, cols)).astype(dtype)
    outs = _cpu_run_of_cuda_loops(lambda a: (a.sum(1), a.mean(0), a.sum(), a.softmax(1)), x)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(outs[0], x.sum(1), rtol=tol, atol=tol)
    if rows:
        np.testing.assert_allclose(outs[1], x.mean(0), rtol=tol, atol=tol)
    np.testing.assert_allclose(outs[2], x.sum(), rtol=tol, atol=tol * (1 + x.size))
    if cols:
        np.testing.assert_allclose(outs[3], _softmax(x), rtol=tol, atol=tol)
        assert len(_cpu_run_of_cuda_loops(lambda a: a.amax(1), x)) == 1


@settings(max_examples=25, deadline=None)
@given(rows=st.sampled_from([1, 2, 17]), cols=st.sampled_from(ROW_LENGTHS[1:]),
       dtype=st.sampled_from(["int32", "int64", "float16"]))
def test_cuda_loops_run_on_the_cpu_other_dtypes(rows, cols, dtype):
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((rows, cols)) * 20).astype(dtype)
    s, mx, mn, am = _cpu_run_of_cuda_loops(
        lambda a: (a.sum(1), a.amax(1), a.amin(1), a.argmax(1)), x)
    if dtype == "float16":
        np.testing.assert_allclose(s, x.astype(np.float32).sum(1), rtol=2e-2, atol=0.5)
    else:
        np.testing.assert_array_equal(s, x.sum(1).astype(s.dtype))
    np.testing.assert_array_equal(mx, x.max(1))
    np.testing.assert_array_equal(mn, x.min(1))
    np.testing.assert_array_equal(am, x.argmax(1))


@pytest.mark.parametrize("cols", [1, 33, 1000])
def test_cuda_loops_layer_norm_var_log_softmax_on_the_cpu(cols):
    x = np.random.default_rng(cols).standard_normal((5, cols))
    ln, var, ls = _cpu_run_of_cuda_loops(
        lambda a: (lamina.layer_norm(a, (cols,)), a.var(1, correction=0), a.log_softmax(1)), x)
    mu, v = x.mean(1, keepdims=True), x.var(1, keepdims=True)
    np.testing.assert_allclose(ln, (x - mu) / np.sqrt(v + 1e-5), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(var, x.var(1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ls, np.log(_softmax(x)), rtol=1e-9, atol=1e-9)


# -- unrolled elementwise trips ---------------------------------------------------------------
def test_elementwise_trip_is_unrolled_with_loads_first():
    out = _mapped(ELEMENTWISE, unroll=4)
    assert "{block = 256, unroll = 4}" in out
    # 1000 elements, 4 per trip, 256 trips per block: one block of trips
    assert "loop.gpu_parallel %6, %4, %3 {block = 256, unroll = 4} (%i: index)" in out
    body = out[out.index("loop.gpu_parallel"):]
    loads = [k for k, line in enumerate(body.splitlines()) if "loop.load" in line]
    guards = [k for k, line in enumerate(body.splitlines()) if "loop.for" in line]
    stores = [k for k, line in enumerate(body.splitlines()) if "loop.store" in line]
    assert len(loads) == len(guards) == len(stores) == 4
    assert max(loads) < min(guards)  # every element's load before the first store
    # element u of trip j: (j div 256) * 1024 + u * 256 + j mod 256, clamped for the load
    assert "loop.div %i, %4 : index" in body and "loop.rem %i, %4 : index" in body
    assert body.count("loop.exp") == 4
    # loads read element min(e, n - 1): a tail trip reads in bounds, its guard skips the store
    assert "%5 = loop.const {value = 999} : index" in out
    assert [line.split("=")[1].strip() for line in body.splitlines() if "loop.min" in line][:2] \
        == ["loop.min %13, %5 : index", "loop.min %16, %5 : index"]
    assert "loop.for %13, %26, %3 (%g: index)" in body and "%26 = loop.min %25, %1" in body


def test_unroll_kill_switch_and_factor(monkeypatch):
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "0")
    assert _mapped(ELEMENTWISE) == _mapped(ELEMENTWISE, unroll=1)
    assert "unroll" not in _mapped(ELEMENTWISE)
    assert "loop.gpu_parallel %0, %1, %2 {block = 256} (%i: index)" in _mapped(ELEMENTWISE)
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "8")
    assert "unroll = 8" in _mapped(ELEMENTWISE)
    monkeypatch.delenv("LAMINA_GPU_UNROLL")
    assert "unroll = 4" in _mapped(ELEMENTWISE)
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "many")
    with pytest.raises(ValueError, match="LAMINA_GPU_UNROLL"):
        GpuMap().run(parse(ELEMENTWISE))
    with pytest.raises(ValueError, match="unroll"):
        GpuMap(unroll=99).run(parse(ELEMENTWISE))


def test_small_static_sizes_get_a_narrow_block():
    # 40 elements: 10 trips of 4 -> one warp
    assert "{block = 32, unroll = 4}" in _mapped(SMALL, unroll=4)


def test_what_is_not_unrolled():
    # a row loop inside the trip, a row reduction, an in-place kernel: one element per trip
    assert "unroll" not in _mapped(ROWSUM, unroll=4, coop=False)
    assert "unroll" not in _mapped(ROWSUM, unroll=4, coop=True)
    inplace = ELEMENTWISE.replace("loop.store %4, %b, %i", "loop.store %4, %a, %i")
    out = _mapped(inplace, unroll=4)
    assert "unroll" not in out and "{block = 256}" in out


def test_verifier_rejects_bad_unroll():
    out = _mapped(ELEMENTWISE, unroll=4)
    with pytest.raises(IRError, match="unroll"):
        verify(parse(out.replace("unroll = 4", "unroll = 1")))
    lanes = _mapped(ROWSUM, coop=True).replace("lanes = 32", "lanes = 32, unroll = 4")
    with pytest.raises(IRError, match="one lane"):
        verify(parse(lanes))


def _as_cpu_loops(mapped: str) -> str:
    """The mapped module with its ``loop.gpu_parallel`` relabelled ``loop.parallel``: the CPU
    runtime then runs exactly the rewritten trips (its thread pool splits them)."""
    return re.sub(r"loop\.gpu_parallel (%\S+, %\S+, %\S+) \{[^}]*\}", r"loop.parallel \1", mapped)


def _run_mapped(fn, *arrays, unroll=4):
    """The CPU build of ``fn``'s target="cuda" loops after gpu-map; asserts the unroll."""
    ts = [lamina.tensor(a) for a in arrays]
    loop = lamina.compile(fn).lower(*ts, target="cuda").stages.loop
    mapped = print_module(GpuMap(unroll=unroll).run(clone_module(loop)))
    # a static size 0 leaves an empty kernel; otherwise every kernel is unrolled
    assert mapped.count(f"unroll = {unroll}}}") == (mapped.count("kernel @") if arrays[0].size
                                                     else 0)
    return [np.asarray(o) for o in compile_program(parse(_as_cpu_loops(mapped)))(*arrays)]


SIZES = [0, 1, 255, 256, 1023, 1024, 1025, 4097, 100003]


def _vals(n, dtype, seed=0):
    rng = np.random.default_rng(seed + n)
    if dtype == "bool":
        return rng.random(n) > 0.5
    a = rng.uniform(-3, 3, n)
    return (np.round(a * 20) if np.dtype(dtype).kind in "iu" else a).astype(dtype)


@pytest.mark.parametrize("n", SIZES)
def test_unrolled_chain_on_the_cpu(n):
    x = _vals(n, "float32")
    (y,) = _run_mapped(lambda a: ((a * 2 + 1).relu() * a).tanh(), x)
    ref = np.tanh(np.maximum(x * 2 + 1, 0) * x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("unroll", [2, 3, 8])
def test_other_factors_on_the_cpu(n, unroll):
    x = _vals(n, "float64")
    (y,) = _run_mapped(lambda a: a * a - 1, x, unroll=unroll)
    np.testing.assert_array_equal(y, x * x - 1)


CPU_OPS = {
    "float32": (lambda a, b: a * b + a.exp(), lambda a, b: a * b + np.exp(a)),
    "float64": (lambda a, b: (a - b).abs().sqrt(), lambda a, b: np.sqrt(np.abs(a - b))),
    "float16": (lambda a, b: a * b - a, lambda a, b: a * b - a),
    "int32": (lambda a, b: a * b - a // (b.abs() + 1), lambda a, b: a * b - a // (abs(b) + 1)),
    "bool": (lambda a, b: a & ~b, lambda a, b: a & ~b),
}


@settings(max_examples=40, deadline=None)
@given(n=st.sampled_from(SIZES), dtype=st.sampled_from(sorted(CPU_OPS)))
def test_unrolled_binary_ops_on_the_cpu(n, dtype):
    fn, ref = CPU_OPS[dtype]
    a, b = _vals(n, dtype), _vals(n, dtype, seed=7)
    (y,) = _run_mapped(fn, a, b)
    want = ref(a, b)
    assert y.dtype == want.dtype
    if dtype.startswith("float"):
        tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    else:
        np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("n", SIZES)
def test_unrolled_broadcast_strided_and_casts_on_the_cpu(n):
    x, big, s = _vals(n, "float32"), _vals(3 * n, "float32", 1), _vals(1, "float32", 2)
    i = _vals(n, "int32", 3)
    outs = _run_mapped(lambda a, b, c, k: (a + c, b[::3] * a.flip(0), (k.float() + a).half(),
                                           (a > 0).int() + k), x, big, s, i)
    np.testing.assert_allclose(outs[0], x + s, rtol=1e-6)
    np.testing.assert_allclose(outs[1], big[::3] * x[::-1], rtol=1e-6)
    np.testing.assert_allclose(outs[2], (i.astype(np.float32) + x).astype(np.float16),
                               rtol=1e-3)
    np.testing.assert_array_equal(outs[3], (x > 0).astype(np.int32) + i)


DYNAMIC = """
kernel @k(%a: memref<?xf32, strided<[?]>>, %c: memref<?xf32, strided<[0]>>, %o: memref<?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %n = loop.dim %o {axis = 0} : index
  loop.parallel %0, %n, %1 (%i: index) {
    %x = loop.load %a, %i : f32
    %y = loop.load %c, %i : f32
    %z = loop.mul %x, %y : f32
    loop.store %z, %o, %i
  }
}

func @f(%a: memref<?xf32, strided<[?]>>, %c: memref<?xf32, strided<[0]>>) -> (memref<?xf32>) {
  %n = loop.dim %a {axis = 0} : index
  %o = loop.alloc %n : memref<?xf32>
  loop.call %a, %c, %o {kernel = @k}
  return %o
}
"""


def test_dynamic_sizes_strided_and_broadcast_buffers_on_the_cpu():
    out = _mapped(DYNAMIC, unroll=4)
    assert "{block = 256, unroll = 4}" in out and "loop.max" in out  # n = max(dim, 0)
    assert re.search(r"(%\d+) = loop.sub (%\d+), %\d+ : index\n(.|\n)*loop.min %\d+, \1",
                     out)  # loads clamped to n - 1
    prog = compile_program(parse(_as_cpu_loops(out)))
    for n in SIZES:
        big = _vals(2 * n, "float32")
        c = np.broadcast_to(np.float32(1.5), (n,))
        (y,) = prog(big[::2], c)
        np.testing.assert_array_equal(np.asarray(y), big[::2] * np.float32(1.5))


def test_eager_cuda_ops_run_the_unrolled_kernels_on_the_host_stand_in(monkeypatch):
    """Eager CUDA ops (``?`` sizes, strided and broadcast layouts, in-place updates) with the
    host stand-in running the CPU build of the *mapped* kernels (trip counts included)."""
    from lamina.frontend import dispatch
    from lamina.runtime import cache
    from lamina.runtime.cuda import driver as D
    from lamina.runtime.cuda import fake
    from lamina.runtime.cuda import program as cuda_program

    real, unrolled = cache.compile_module, []

    def mapped_build(loop):
        text = print_module(GpuMap(unroll=4).run(clone_module(loop)))
        unrolled.append(text.count("unroll = 4"))
        return real(parse(_as_cpu_loops(text)))

    monkeypatch.setattr(cache, "compile_module", mapped_build)
    monkeypatch.setattr(cuda_program, "_CACHE", {})
    monkeypatch.setattr(dispatch, "_cuda_programs", {})
    installed = not D.available()
    if installed:
        fake.install()
    try:
        for n in [1, 255, 1025, 4097, 100003]:
            a, b = _vals(n, "float32", 1), _vals(2 * n, "float32", 2)
            k = _vals(n, "int32", 3)
            x, y, i = (lamina.tensor(v).cuda() for v in (a, b, k))
            np.testing.assert_allclose((x * y[::2] + 1).cpu().numpy(), a * b[::2] + 1,
                                       rtol=1e-6)
            np.testing.assert_allclose((x.exp() - 2.5).half().cpu().numpy(),
                                       (np.exp(a) - 2.5).astype(np.float16), rtol=2e-3)
            np.testing.assert_array_equal(((i * 3) // 2 + (x > 0).int()).cpu().numpy(),
                                          (k * 3) // 2 + (a > 0).astype(np.int32))
            p = lamina.tensor(a).cuda()
            p.mul_(0.9).add_(x, alpha=-0.5)
            np.testing.assert_allclose(p.cpu().numpy(), a * np.float32(0.9) - 0.5 * a,
                                       rtol=1e-6, atol=1e-7)
    finally:
        if installed:
            fake.uninstall()
    assert sum(unrolled) >= 5  # the elementwise kernels above were unrolled
