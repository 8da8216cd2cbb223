"""static_work: ops a kernel call executes, from the static trip counts of its loops."""

from __future__ import annotations

import numpy as np

import lamina
from lamina.ir import parse_graph
from lamina.runtime import kernel as K
from lamina.runtime.work import static_work

_NEST = """
kernel @k(%in0: memref<64x32xf32>, %out: memref<64x32xf32>) {
  %0 = loop.const {value = 64} : index
  %1 = loop.const {value = 0} : index
  %2 = loop.const {value = 1} : index
  %3 = loop.const {value = 32} : index
  %4 = loop.const {value = 3} : index
  loop.parallel %1, %0, %2 (%i: index) {
    loop.for %1, %3, %4 (%j: index) {
      %5 = loop.load %in0, %i, %j : f32
      %6 = loop.mul %5, %5 : f32
      loop.store %6, %out, %i, %j
    }
  }
}
"""


def test_ops_weighted_by_static_trip_counts():
    # 64 parallel trips x ceil(32 / 3) = 11 trips x 3 ops
    assert static_work(parse_graph(_NEST)) == 64 * 11 * 3


def test_unknown_parallel_trips_make_the_estimate_unknown():
    text = _NEST.replace("memref<64x32xf32>", "memref<?x32xf32>").replace(
        "%0 = loop.const {value = 64} : index", "%0 = loop.dim %in0 {axis = 0} : index")
    assert static_work(parse_graph(text)) is None


def test_a_dynamic_inner_loop_counts_once():
    text = _NEST.replace("loop.for %1, %3, %4", "loop.for %1, %i, %4")
    assert static_work(parse_graph(text)) == 64 * 3


def test_matmul_kernels_are_heavy_but_small_elementwise_are_not():
    """A 64x128 @ 128x128 product (16 Ki elements per buffer, 1 Mi multiply-adds) is split
    over threads; an add of two 64x128 tensors is not."""
    rng = np.random.default_rng(0)
    a = lamina.from_numpy(rng.standard_normal((64, 128)).astype(np.float32))
    w = lamina.from_numpy(rng.standard_normal((128, 128)).astype(np.float32))
    for fn, heavy in ((lambda x, y: x @ y, True), (lambda x, y: x + y[:64], False)):
        f = lamina.compile(fn)
        out = f(a, w).numpy()
        ref = fn(a.numpy(), w.numpy())
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        kernels = list(f._last[1].lowered.program.compiled.kernels.values())
        assert any(k.heavy for k in kernels) is heavy, [(k.name, k.work) for k in kernels]
        assert all(k.work is not None and k.work < K.PARALLEL_MIN_WORK or k.heavy
                   for k in kernels)
