"""Short trailing axes of plain kernels run as one loop (output_nest.flat_axes): same values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.passes import lower_loops


def _kernel_text(f, *args) -> str:
    return f.lower(*args).as_text("loop")


def test_channel_broadcast_add_is_one_flat_loop():
    x = np.random.default_rng(0).standard_normal((64, 16, 8, 8)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    f = lamina.compile(lambda x, b: x + b[None, :, None, None] * 0.5)
    out = f(lamina.from_numpy(x), lamina.from_numpy(b)).numpy()
    np.testing.assert_array_equal(out, x + b[None, :, None, None] * np.float32(0.5))
    text = _kernel_text(f, lamina.from_numpy(x), lamina.from_numpy(b))
    assert "loop.const {value = 64}" in text and "loop.rem" in text and "loop.div" in text
    # parallel over the batch, a loop over channels, one loop over the 8x8 image
    kernel = text.split("func @")[0]
    assert kernel.count("loop.for") == 2 and kernel.count("loop.parallel") == 1


def test_unit_leading_axis_keeps_its_nest():
    x = np.random.default_rng(0).standard_normal((1, 4, 3)).astype(np.float32)
    f = lamina.compile(lambda x: x * 2.0)
    np.testing.assert_array_equal(f(lamina.from_numpy(x)).numpy(), x * 2)
    assert "loop.rem" not in _kernel_text(f, lamina.from_numpy(x))


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=3, max_size=5),
       channel=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_flattened_kernels_match_numpy_and_the_nested_form(shape, channel, seed):
    """Elementwise and two-output kernels over shapes with short trailing axes, with a
    broadcast along one middle axis, vs numpy and vs the same kernels without flattening."""
    shape = tuple(shape)
    axis = min(channel, len(shape) - 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    c = rng.standard_normal(shape[axis]).astype(np.float32)
    view = [None] * len(shape)
    view[axis] = slice(None)

    def fn(x, c):
        y = x * c[tuple(view)] + 1.0
        return y, lamina.relu(y) * x

    def ref(x, c):
        y = x * c[tuple(view)] + np.float32(1.0)
        return y, np.maximum(y, 0) * x

    results = []
    for flat in (True, False):
        old = lower_loops.FLATTEN
        lower_loops.FLATTEN = flat
        try:
            f = lamina.compile(fn)
            outs = f(lamina.from_numpy(x), lamina.from_numpy(c))
        finally:
            lower_loops.FLATTEN = old
        results.append([o.numpy() for o in outs])
    for got, want in zip(results[0], ref(x, c)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7, 2, 2, 2, 2), (3, 17, 5)])
def test_reductions_over_the_flattened_axes(shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    f = lamina.compile(lambda x: lamina.exp(x - x.amax(0, keepdim=True)))
    np.testing.assert_allclose(f(lamina.from_numpy(x)).numpy(),
                               np.exp(x - x.max(0, keepdims=True)), rtol=1e-6, atol=1e-6)
