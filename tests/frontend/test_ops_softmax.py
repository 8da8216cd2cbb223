"""lamina.softmax / log_softmax (one tensor-dialect op each): values vs numpy, gradients vs
PyTorch, dtypes, views, edge shapes and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lamina
from lamina.frontend import dispatch
from tests.frontend.oracle import needs_torch, torch


def _np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data(),
       scale=st.sampled_from([1.0, 100.0]))
def test_matches_numpy(shape, data, scale):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = (np.random.default_rng(len(shape)).standard_normal(shape) * scale).astype(np.float32)
    want = _np_log_softmax(x, dim)
    np.testing.assert_allclose(lamina.log_softmax(lamina.tensor(x), dim).numpy(), want,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lamina.tensor(x).softmax(dim).numpy(), np.exp(want), rtol=1e-5,
                               atol=1e-6)


def test_views_dtypes_and_edge_shapes():
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    t = lamina.tensor(x).t()  # non-contiguous
    np.testing.assert_allclose(lamina.softmax(t, 1).numpy(), np.exp(_np_log_softmax(x.T, 1)),
                               rtol=1e-5, atol=1e-6)
    h = lamina.softmax(lamina.tensor(x).half(), 0)
    assert h.dtype == lamina.float16
    np.testing.assert_allclose(h.float().numpy(), np.exp(_np_log_softmax(x, 0)), atol=1e-3)
    d = lamina.log_softmax(lamina.tensor(x), 1, dtype=lamina.float64)
    assert d.dtype == lamina.float64
    assert lamina.softmax(lamina.tensor(3.0), 0).item() == 1.0
    assert lamina.log_softmax(lamina.tensor(3.0), -1).item() == 0.0
    assert lamina.softmax(lamina.zeros(0, 3), 1).shape == (0, 3)
    inf = lamina.tensor([[0.0, -float("inf")], [1.0, 1.0]])
    np.testing.assert_allclose(lamina.softmax(inf, 1).numpy(), [[1.0, 0.0], [0.5, 0.5]])
    with pytest.raises(IndexError, match="Dimension out of range"):
        lamina.softmax(lamina.zeros(2, 3), 2)
    with pytest.raises(RuntimeError, match="not implemented for 'Int64'"):
        lamina.softmax(lamina.tensor([1, 2]), 0)


def test_one_program_per_signature():
    x = lamina.randn(3, 5)
    lamina.softmax(x, 1)
    before = dispatch.eager_signatures()
    lamina.softmax(lamina.randn(7, 9), 1)  # new sizes: no new program
    assert dispatch.eager_signatures() == before


@needs_torch
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gradients_vs_torch(name, dim):
    x = np.random.default_rng(2).standard_normal((3, 4, 5)).astype(np.float32)
    w = np.random.default_rng(3).standard_normal((3, 4, 5)).astype(np.float32)
    lx, tx = lamina.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (getattr(lamina, name)(lx, dim) * lamina.tensor(w)).sum().backward()
    (getattr(torch, name)(tx, dim) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
