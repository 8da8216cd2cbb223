"""What the runtime derives from a kernel's loops: written arguments and the sizes its
accesses need, checked on buffers before a call."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.ir import parse_graph
from lamina.runtime.bounds import (
    BoundsCheck,
    derive_bounds,
    has_top_level_parallel,
    written_args,
)
from lamina.runtime.errors import ArgumentMismatch


def _kernel(args: str, body: str):
    text = (f"kernel @k({args}) {{\n  %c0 = loop.const {{value = 0}} : index\n"
            f"  %c1 = loop.const {{value = 1}} : index\n{body}\n}}")
    g = parse_graph(text)
    return g, BoundsCheck(derive_bounds(g), "k", [a.type for a in g.args])


def _f(*shape, stride0=False):
    if stride0:
        return np.broadcast_to(np.zeros(shape[1:] or (1,), np.float32)[..., :1], shape)
    return np.zeros(shape, np.float32)


SHIFTED = """  %c2 = loop.const {value = 2} : index
  %n = loop.dim %out {axis = 0} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    %j = loop.add %i, %c2 : index
    %v = loop.load %a, %j : f32
    loop.store %v, %out, %i
  }"""


def test_offset_index_needs_a_longer_input():
    g, check = _kernel("%a: memref<?xf32>, %out: memref<?xf32>", SHIFTED)
    assert written_args(g) == (1,) and has_top_level_parallel(g)
    check([_f(7), _f(5)])  # a[i + 2] for i < 5 reads a[2..6]
    with pytest.raises(ArgumentMismatch, match=r"argument 0 \(memref<\?xf32>\) has size 6 on "
                                                r"axis 0 but the kernel indexes it from 2 to 6"):
        check([_f(6), _f(5)])
    check([_f(0), _f(0)])  # the loop does not run: nothing is read


def test_constant_index_and_negative_offset():
    g, check = _kernel("%a: memref<?xf32>, %out: memref<f32>",
                       "  %c3 = loop.const {value = 3} : index\n"
                       "  %v = loop.load %a, %c3 : f32\n  loop.store %v, %out")
    assert not has_top_level_parallel(g)
    check([_f(4), np.zeros((), np.float32)])
    with pytest.raises(ArgumentMismatch, match="from 3 to 3"):
        check([_f(3), np.zeros((), np.float32)])
    _, back = _kernel("%a: memref<?xf32>, %out: memref<?xf32>",
                      SHIFTED.replace("loop.add %i, %c2", "loop.sub %i, %c1"))
    with pytest.raises(ArgumentMismatch, match="from -1 to 3"):
        back([_f(9), _f(5)])


def test_vector_loads_need_whole_vectors():
    _, check = _kernel("%a: memref<?xf32>, %out: memref<?xf32>", """\
  %c8 = loop.const {value = 8} : index
  %n = loop.dim %a {axis = 0} : index
  loop.for %c0, %n, %c8 (%i: index) {
    %v = loop.vload %a, %i {width = 8} : vector<8xf32>
    loop.vstore %v, %out, %i
  }""")
    check([_f(16), _f(16)])
    with pytest.raises(ArgumentMismatch, match=r"argument 0 .* size 12 .* from 0 to 15"):
        check([_f(12), _f(16)])  # the last vector would read a[8..15]


def test_two_d_guards_and_shapes():
    body = """  %n = loop.dim %out {axis = 0} : index
  %m = loop.dim %out {axis = 1} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    loop.for %c0, %m, %c1 (%j: index) {
      %v = loop.load %a, %j, %i : f32
      loop.store %v, %out, %i, %j
    }
  }"""
    _, check = _kernel("%a: memref<?x?xf32>, %out: memref<?x?xf32>", body)
    check([_f(3, 2), _f(2, 3)])  # a transposed read
    with pytest.raises(ArgumentMismatch, match="axis 1"):
        check([_f(3, 1), _f(2, 3)])
    check([_f(0, 0), _f(0, 3)])  # no outer iteration: the inner accesses never happen
    check([_f(0, 0), _f(2, 0)])


def test_broadcast_axes_are_not_bounded():
    body = """  %n = loop.dim %out {axis = 0} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    %v = loop.load %a, %i : f32
    loop.store %v, %out, %i
  }"""
    g, check = _kernel("%a: memref<?xf32, strided<[0]>>, %out: memref<?xf32>", body)
    assert derive_bounds(g) == ()
    _, dyn = _kernel("%a: memref<?xf32, strided<[?]>>, %out: memref<?xf32>", body)
    dyn([np.broadcast_to(np.float32(1), (1,)), _f(5)])  # a run-time stride of 0 reads a[0]
    dyn([np.broadcast_to(np.float32(1), (5,)), _f(5)])
    with pytest.raises(ArgumentMismatch):
        dyn([np.zeros(1, np.float32), _f(5)])


def test_loops_bounded_by_data_are_not_checked():
    body = """  %z = loop.load %n_buf : index
  loop.parallel %c0, %z, %c1 (%i: index) {
    %v = loop.load %a, %i : f32
    loop.store %v, %out, %i
  }"""
    g, _ = _kernel("%a: memref<?xf32>, %out: memref<?xf32>, %n_buf: memref<index>", body)
    assert derive_bounds(g) == ()


TILED = """  %c16 = loop.const {value = 16} : index
  %c32 = loop.const {value = 32} : index
  %n = loop.dim %out {axis = 0} : index
  %r32 = loop.rem %n, %c32 : index
  %n32 = loop.sub %n, %r32 : index
  %r16 = loop.rem %n, %c16 : index
  %n16 = loop.sub %n, %r16 : index
  loop.for %c0, %n32, %c32 (%i: index) {
    %j = loop.add %i, %c16 : index
    %v = loop.vload %b, %i {width = 16} : vector<16xf32>
    %w = loop.vload %b, %j {width = 16} : vector<16xf32>
    loop.vstore %v, %out, %i
    loop.vstore %w, %out, %j
  }
  loop.for %n32, %n16, %c16 (%k: index) {
    %x = loop.vload %b, %k {width = 16} : vector<16xf32>
    loop.vstore %x, %out, %k
  }
  loop.for %n16, %n, %c1 (%m: index) {
    %y = loop.load %b, %m : f32
    loop.store %y, %out, %m
  }"""


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 33, 48, 63, 64, 100])
def test_tiled_vector_loops_are_checked_exactly(n):
    _, check = _kernel("%b: memref<?xf32>, %out: memref<?xf32>", TILED)
    check([_f(n), _f(n)])
    check([_f(n + 3), _f(n)])
    if n:
        with pytest.raises(ArgumentMismatch, match=r"argument 0 .* but the kernel indexes it "
                                                    rf"from \d+ to {n - 1}"):
            check([_f(n - 1), _f(n)])


GUARDED = """  %n = loop.dim %out {axis = 0} : index
  %m = loop.dim %out {axis = 1} : index
  loop.parallel %c0, %n, %c1 (%i: index) {
    %i1 = loop.add %i, %c1 : index
    %ok = loop.lt %i1, %n : i1
    %t = loop.cast %ok {dtype = index} : index
    loop.for %c0, %t, %c1 (%u: index) {
      loop.for %c0, %m, %c1 (%j: index) {
        %v = loop.load %a, %i1, %j : f32
        loop.store %v, %out, %i, %j
      }
    }
  }"""


def test_guards_that_narrow_the_index_range_disable_its_check():
    g, check = _kernel("%a: memref<?x?xf32>, %out: memref<?x?xf32>", GUARDED)
    # a[i + 1] is guarded by i + 1 < n: axis 0 is not checked, axis 1 (j < m) is.
    assert [(b.arg, b.axis) for b in derive_bounds(g)] == [(0, 1)]
    check([_f(4, 5), _f(4, 5)])
    with pytest.raises(ArgumentMismatch, match="axis 1"):
        check([_f(4, 4), _f(4, 5)])


def test_exact_size_indices():
    body = """  %n = loop.dim %out {axis = 0} : index
  %last = loop.sub %n, %c1 : index
  %pos = loop.gt %n, %c0 : i1
  %t = loop.cast %pos {dtype = index} : index
  loop.for %c0, %t, %c1 (%u: index) {
    %v = loop.load %a, %last : f32
    loop.store %v, %out, %last
  }"""
    g, check = _kernel("%a: memref<?xf32>, %out: memref<?xf32>", body)
    assert len(derive_bounds(g)) == 2
    check([_f(3), _f(3)])
    check([_f(0), _f(0)])  # the guard loop does not run: a[-1] is never read
    with pytest.raises(ArgumentMismatch, match="from 2 to 2"):
        check([_f(2), _f(3)])
