"""prepare-loops: folding, hoisting, parallelising and collapsing, as text in / text out,
and unchanged results on lowered kernels (loop interpreter)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp.loop_interp import run_kernel
from lamina.ir import TensorType, parse, verify
from lamina.ir.types import f32
from lamina.passes.manager import parse_pipeline
from lamina.passes.prepare_loops import PrepareLoops
from tests.passes.filecheck import check_ir
from tests.passes.lower_util import group, lower, run


def prepared(text: str) -> str:
    m = parse(text)
    verify(m)
    out = PrepareLoops().run(m)
    verify(out)
    return str(out)


def test_registered_by_name():
    (p,) = parse_pipeline("prepare-loops")
    assert isinstance(p, PrepareLoops)


def test_fold_and_hoist():
    check_ir("""
kernel @k(%x: memref<4x?xf32>, %out: memref<4x?xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %c2 = loop.const {value = 2} : index
  %c4 = loop.const {value = 4} : index
  %n = loop.dim %x {axis = 1} : index
  loop.parallel %c0, %c4, %c1 (%i: index) {
    loop.for %c0, %n, %c1 (%j: index) {
      %two = loop.mul %c2, %c1 : index
      %i2 = loop.add %i, %c0 : index
      %w = loop.const {value = 3.0} : f32
      %s = loop.cast %i2 {dtype = f32} : f32
      %t = loop.mul %s, %w : f32
      %v = loop.load %x, %i2, %j : f32
      %r = loop.add %v, %t : f32
      loop.store %r, %out, %i2, %j
    }
  }
}""", "prepare-loops", """
kernel @k(%x: memref<4x?xf32>, %out: memref<4x?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %2 = loop.const {value = 4} : index
  %3 = loop.dim %x {axis = 1} : index
  %4 = loop.const {value = 3.0} : f32
  loop.parallel %0, %2, %1 (%i: index) {
    %5 = loop.cast %i {dtype = f32} : f32
    %6 = loop.mul %5, %4 : f32
    loop.for %0, %3, %1 (%j: index) {
      %7 = loop.load %x, %i, %j : f32
      %8 = loop.add %7, %6 : f32
      loop.store %8, %out, %i, %j
    }
  }
}""")


LOADS = """
kernel @k(%x: memref<8xf32>, %y: memref<?xf32>, %out: memref<8x8xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %c8 = loop.const {value = 8} : index
  %n = loop.dim %y {axis = 0} : index
  loop.parallel %c0, %c8, %c1 (%i: index) {
    loop.for %c0, INNER, %c1 (%j: index) {
      %v = loop.load %x, %i : f32
      %u = loop.load %y, %c0 : f32
      %o = loop.load %out, %i, %c0 : f32
      %s = loop.add %v, %u : f32
      %t = loop.add %s, %o : f32
      loop.store %t, %out, %i, %j
    }
  }
}"""


def test_loads_leave_only_loops_that_surely_run():
    out = prepared(LOADS.replace("INNER", "%c8"))
    body = out.split("loop.for")
    assert "loop.load %x" in body[0] and "loop.load %y" in body[0]  # hoisted out of the for
    assert "loop.load %out" in body[1]  # a buffer the kernel writes: stays
    assert out.index("loop.parallel") < out.index("loop.load %x")  # never to the top level
    kept = prepared(LOADS.replace("INNER", "%n"))  # may run 0 times: y may be empty
    assert "loop.load" not in kept.split("loop.for")[0]


PAR = """
kernel @k(%x: memref<?x?xf32>, %out: memref<OUT>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %n = loop.dim %x {axis = 0} : index
  %m = loop.dim %x {axis = 1} : index
  loop.for %c0, %n, %c1 (%i: index) {
    loop.for %c0, %m, %c1 (%j: index) {
      %v = loop.load %x, %i, %j : f32
      loop.store %v, %out, STORE
    }
  }
}"""


def test_top_level_for_becomes_parallel_only_when_writes_are_disjoint():
    yes = prepared(PAR.replace("OUT", "?x?xf32").replace("STORE", "%i, %j"))
    assert yes.count("loop.parallel") == 1 and yes.index("loop.parallel") < yes.index("for")
    same_row = prepared(PAR.replace("OUT", "?x?xf32").replace("STORE", "%j, %j"))
    assert "loop.parallel" not in same_row
    aliased = prepared(PAR.replace("OUT", "?x?xf32, strided<[0, 1]>").replace("STORE", "%i, %j"))
    assert "loop.parallel" not in aliased
    reads_out = PAR.replace("OUT", "?x?xf32").replace("STORE", "%i, %j").replace(
        "%v = loop.load %x, %i, %j", "%v = loop.load %out, %j, %i")
    assert "loop.parallel" not in prepared(reads_out)


def test_unit_parallel_loop_collapses_into_the_inner_loop():
    check_ir("""
kernel @k(%x: memref<1x?xf32>, %out: memref<1x?xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %m = loop.dim %x {axis = 1} : index
  loop.parallel %c0, %c1, %c1 (%i: index) {
    loop.for %c0, %m, %c1 (%j: index) {
      %v = loop.load %x, %i, %j : f32
      %w = loop.neg %v : f32
      loop.store %w, %out, %i, %j
    }
  }
}""", "prepare-loops", """
kernel @k(%x: memref<1x?xf32>, %out: memref<1x?xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 1} : index
  %2 = loop.dim %x {axis = 1} : index
  loop.parallel %0, %2, %1 (%j: index) {
    %3 = loop.load %x, %0, %j : f32
    %4 = loop.neg %3 : f32
    loop.store %4, %out, %0, %j
  }
}""")


def test_collapse_keeps_a_reduction_loop_sequential():
    text = """
kernel @k(%x: memref<1x?xf32>, %out: memref<1xf32>) {
  %c0 = loop.const {value = 0} : index
  %c1 = loop.const {value = 1} : index
  %z = loop.const {value = 0.0} : f32
  %m = loop.dim %x {axis = 1} : index
  loop.parallel %c0, %c1, %c1 (%i: index) {
    %s = loop.for %c0, %m, %c1, %z : f32 (%j: index, %acc: f32) {
      %v = loop.load %x, %i, %j : f32
      %a = loop.add %acc, %v : f32
      loop.yield %a
    }
    loop.store %s, %out, %i
  }
}"""
    out = prepared(text)
    assert "loop.parallel %0, %1, %1" in out


@pytest.mark.parametrize("shape", [(1, 37), (1, 1, 5), (3, 1), (1,)])
def test_prepared_kernels_compute_the_same(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    module = group([TensorType(shape, f32)],
                   lambda b, v: b("prim.mul", b("prim.exp", v), v))
    plain = lower(module, prepare=False)
    ready = lower(module)
    np.testing.assert_array_equal(run(plain, x)[0], run(ready, x)[0])
    kernel = ready.get("k0")
    (top,) = [op for op in kernel.ops if op.name == "loop.parallel"]
    ub = top.operands[1].owner.attrs["value"]
    want = next((d for d in shape if d != 1), 1)  # unit leading axes collapsed away
    assert ub == want


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 6), m=st.integers(0, 6), trips=st.integers(0, 3))
def test_hoisting_never_changes_results(n, m, trips):
    """A kernel with invariant loads and math in loops of 0..3 trips, before and after."""
    text = f"""
kernel @k(%x: memref<?x?xf32>, %y: memref<?xf32>, %out: memref<?x?xf32>) {{
  %c0 = loop.const {{value = 0}} : index
  %c1 = loop.const {{value = 1}} : index
  %ct = loop.const {{value = {trips}}} : index
  %n = loop.dim %x {{axis = 0}} : index
  %m = loop.dim %x {{axis = 1}} : index
  loop.parallel %c0, %n, %c1 (%i: index) {{
    loop.for %c0, %m, %c1 (%j: index) {{
      %r = loop.for %c0, %ct, %c1, %c0 : index (%t: index, %acc: index) {{
        %k = loop.add %acc, %c1 : index
        loop.yield %k
      }}
      %e = loop.mul %i, %c1 : index
      %v = loop.load %x, %e, %j : f32
      %c = loop.cast %r {{dtype = f32}} : f32
      %s = loop.add %v, %c : f32
      loop.store %s, %out, %i, %j
    }}
  }}
}}"""
    x = np.arange(n * m, dtype=np.float32).reshape(n, m)
    y = np.zeros(0, np.float32)
    a, b = np.zeros((n, m), np.float32), np.zeros((n, m), np.float32)
    run_kernel(parse(text).graphs[0], x, y, a)
    run_kernel(parse(prepared(text)).graphs[0], x, y, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, x + trips)
