"""The whole CPU path: tensor IR -> passes -> LLVM backend -> runtime, against numpy.

Skipped until the pipeline and the LLVM emitter are importable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.ir import parse
from lamina.runtime import ArgumentMismatch, cache_stats, compile_program, kernel, threads

pipeline = pytest.importorskip("lamina.passes.pipeline")
pytest.importorskip("lamina.backends.llvm.emit")

MLP = """
func @f(%x: tensor<?x?xf32>, %w: tensor<?x?xf32>, %b: tensor<?xf32>)
    -> (tensor<?x?xf32>, tensor<?xf32>) {
  %0 = tensor.matmul %x, %w : tensor<?x?xf32>
  %1 = tensor.add %0, %b : tensor<?x?xf32>
  %2 = tensor.relu %1 : tensor<?x?xf32>
  %3 = tensor.sum %2 {dims = [1], keepdim = false} : tensor<?xf32>
  return %2, %3
}
"""

EAGER_ADD = """
func @add(%a: tensor<?x?xf32>, %b: tensor<?x?xf32>) -> (tensor<?x?xf32>) {
  %0 = tensor.add %a, %b : tensor<?x?xf32>
  return %0
}
"""

SHARED = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def mlp(cache_dir):
    return compile_program(pipeline.lower(parse(MLP)).loop)


@settings(max_examples=15, deadline=None, suppress_health_check=SHARED)
@given(m=st.integers(0, 40), k=st.integers(1, 40), n=st.integers(0, 70),
       seed=st.integers(0, 2**31))
def test_matmul_bias_relu_sum_matches_numpy(mlp, m, k, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y, s = mlp(x, w, b)
    ref = np.maximum(x.astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s, ref.sum(1), rtol=1e-4, atol=1e-3)
    assert cache_stats()["compiles"] == 1  # sizes are run-time values: one compile


def test_inconsistent_shapes_raise_instead_of_reading_out_of_bounds(mlp):
    x = np.ones((8, 32), np.float32)
    w = np.ones((32, 16), np.float32)
    b = np.ones(16, np.float32)
    with pytest.raises(ArgumentMismatch, match=r"argument 1 .* size 30 on axis 0"):
        mlp(x, np.ones((30, 16), np.float32), b)
    with pytest.raises(ArgumentMismatch, match=r"argument 2 .* size 10 on axis 0"):
        mlp(x, w, np.ones(10, np.float32))
    mlp(x, w, b)


def test_eager_layouts_broadcast_views_and_threads(cache_dir, monkeypatch):
    stages = pipeline.lower(parse(EAGER_ADD), arg_layouts=[(None, 1), (0, 1)])
    p = compile_program(stages.loop)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    row = np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4))
    np.testing.assert_array_equal(p(a, row)[0], a + row)
    with pytest.raises(ArgumentMismatch, match=r"argument 1 \(%b\).*stride 4 \(elements\) on "
                                                "axis 0, expected 0"):
        p(a, a)
    # A large call is split over the thread pool and gives the same numbers.
    big_a = np.random.default_rng(0).standard_normal((600, 300)).astype(np.float32)
    big_b = np.broadcast_to(np.linspace(0, 1, 300, dtype=np.float32), (600, 300))
    threads.set_num_threads(2)
    try:
        split = p(big_a, big_b)[0]
        monkeypatch.setattr(kernel, "PARALLEL_MIN_ELEMENTS", 1 << 40)
        single = p(big_a, big_b)[0]
    finally:
        threads.set_num_threads(threads._default_size())
    np.testing.assert_array_equal(split, single)
    np.testing.assert_array_equal(split, big_a + big_b)
