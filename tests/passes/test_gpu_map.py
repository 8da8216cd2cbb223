"""gpu-map: top-level parallel loops become loop.gpu_parallel (block size, cooperative lanes);
IR text, and the CPU build of target="cuda" loops vs numpy (target independence)."""

from __future__ import annotations

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
    out = _mapped(ELEMENTWISE)
    assert "loop.gpu_parallel %0, %1, %2 {block = 256} (%i: index)" in out
    assert "loop.parallel" not in out


def test_reduction_rows_get_128_threads_and_stay_sequential_inside_without_coop():
    out = _mapped(ROWSUM, coop=False)
    assert "{block = 128}" in out
    assert "loop.for" in out and "lane" not in out  # each thread accumulates its row


def test_small_static_trip_count_rounds_to_a_warp_multiple():
    assert "{block = 64}" in _mapped(SMALL)


def test_forced_block_and_bad_block():
    assert "{block = 512}" in _mapped(ELEMENTWISE, block=512)
    with pytest.raises(ValueError, match="multiple of 32"):
        GpuMap(block=100).run(parse(ELEMENTWISE))


def test_idempotent_and_kernels_without_parallel_untouched():
    once = _mapped(ELEMENTWISE)
    assert _mapped(once) == once
    seq = ELEMENTWISE.replace("loop.parallel", "loop.for")
    assert _mapped(seq) == print_module(parse(seq))


def test_named_in_textual_pipelines():
    (p,) = parse_pipeline("gpu-map")
    assert isinstance(p, GpuMap)


def test_verifier_rejects_bad_block_attribute():
    bad = _mapped(ELEMENTWISE).replace("{block = 256}", "{block = 33}")
    with pytest.raises(IRError, match="multiple of 32"):
        verify(parse(bad))
    missing = _mapped(ELEMENTWISE).replace(" {block = 256}", "")
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
