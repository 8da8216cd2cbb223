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


def test_unanalysable_loops_are_not_checked():
    body = """  %n = loop.dim %out {axis = 0} : index
  %m = loop.sub %n, %c1 : index
  %q = loop.mul %m, %c1 : index
  loop.parallel %c0, %q, %c1 (%i: index) {
    %v = loop.load %a, %i : f32
    loop.store %v, %out, %i
  }"""
    g, _ = _kernel("%a: memref<?xf32>, %out: memref<?xf32>", body)
    assert derive_bounds(g) == ()
