"""nn.init: PyTorch's gains, fans and scales; distributions checked statistically (the
random streams are Lamina's own); in-place on parameters without recording history."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lamina
import lamina.nn as nn
from lamina.nn import init
from tests.frontend.oracle import needs_torch, torch


@needs_torch
@pytest.mark.parametrize("name,param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None),
    ("conv_transpose3d", None),
])
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(
        torch.nn.init.calculate_gain(name, param))


def test_gain_and_fan_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(lamina.empty(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(lamina.empty(3, 3), mode="fan_avg")


@needs_torch
def test_fans_match_torch():
    for shape in [(3, 4), (8, 4, 3, 3), (2, 6, 5)]:
        assert init._calculate_fan_in_and_fan_out(lamina.empty(shape)) == (
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape)))


def _stats(t: lamina.Tensor) -> tuple[float, float, float, float]:
    a = t.numpy().astype(np.float64)
    return a.mean(), a.std(), a.min(), a.max()


def test_uniform_normal_constant():
    lamina.manual_seed(0)
    t = lamina.empty(200, 300)
    assert init.uniform_(t, -2.0, 3.0) is t
    mean, std, lo, hi = _stats(t)
    assert -2.0 <= lo and hi < 3.0
    assert mean == pytest.approx(0.5, abs=0.02) and std == pytest.approx(5 / math.sqrt(12),
                                                                         rel=0.01)
    init.normal_(t, 1.0, 0.5)
    mean, std, _, _ = _stats(t)
    assert mean == pytest.approx(1.0, abs=0.01) and std == pytest.approx(0.5, rel=0.01)
    init.constant_(t, 0.25)
    assert np.all(t.numpy() == 0.25)
    init.ones_(t)
    assert np.all(t.numpy() == 1.0)
    init.zeros_(t)
    assert not np.any(t.numpy())


def test_init_is_in_place_on_parameters_without_history():
    p = nn.Parameter(lamina.empty(4, 5))
    for fn in (init.xavier_uniform_, init.kaiming_normal_, init.orthogonal_, init.zeros_,
               init.trunc_normal_, init.eye_):
        assert fn(p) is p
        assert p.is_leaf and p.requires_grad and p.grad_fn is None


@pytest.mark.parametrize("shape", [(300, 200), (64, 32, 3, 3)])
def test_xavier_and_kaiming_scales(shape):
    lamina.manual_seed(1)
    fan_in = shape[1] * int(np.prod(shape[2:]))
    fan_out = shape[0] * int(np.prod(shape[2:]))
    t = lamina.empty(shape)
    bound = math.sqrt(6 / (fan_in + fan_out)) * 2.0
    init.xavier_uniform_(t, gain=2.0)
    _, std, lo, hi = _stats(t)
    assert -bound <= lo and hi <= bound and std == pytest.approx(bound / math.sqrt(3), rel=0.02)
    init.xavier_normal_(t)
    assert _stats(t)[1] == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    init.kaiming_uniform_(t, a=math.sqrt(5))
    bound = math.sqrt(3) * math.sqrt(2 / 6) / math.sqrt(fan_in)  # = 1 / sqrt(fan_in)
    _, std, lo, hi = _stats(t)
    assert -bound <= lo and hi <= bound and bound == pytest.approx(1 / math.sqrt(fan_in))
    init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert _stats(t)[1] == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)


def test_kaiming_zero_element_warns():
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        init.kaiming_uniform_(lamina.empty(0, 3))


def test_trunc_normal_bounds_and_moments():
    lamina.manual_seed(2)
    t = lamina.empty(100_000)
    init.trunc_normal_(t, mean=0.5, std=2.0, a=-1.0, b=3.0)
    a = t.numpy().astype(np.float64)
    assert a.min() >= -1.0 and a.max() <= 3.0
    # moments of the truncated normal: alpha = (a - mu)/sigma, beta = (b - mu)/sigma
    al, be = (-1.0 - 0.5) / 2.0, (3.0 - 0.5) / 2.0

    def pdf(x):
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)

    def cdf(x):
        return (1 + math.erf(x / math.sqrt(2))) / 2

    z = cdf(be) - cdf(al)
    mean = 0.5 + 2.0 * (pdf(al) - pdf(be)) / z
    var = 4.0 * (1 + (al * pdf(al) - be * pdf(be)) / z - ((pdf(al) - pdf(be)) / z) ** 2)
    assert a.mean() == pytest.approx(mean, abs=0.02)
    assert a.var() == pytest.approx(var, rel=0.02)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5), (8, 2, 3), (1, 7)])
def test_orthogonal(shape):
    lamina.manual_seed(3)
    t = lamina.empty(shape)
    init.orthogonal_(t, gain=1.5)
    m = t.numpy().reshape(shape[0], -1).astype(np.float64) / 1.5
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)


def test_orthogonal_is_random_and_seeded():
    lamina.manual_seed(4)
    a = init.orthogonal_(lamina.empty(5, 5)).numpy().copy()
    lamina.manual_seed(4)
    b = init.orthogonal_(lamina.empty(5, 5)).numpy()
    c = init.orthogonal_(lamina.empty(5, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(b, c)
    with pytest.raises(ValueError, match="Only tensors with 2 or more dimensions"):
        init.orthogonal_(lamina.empty(3))


def test_eye_and_generator():
    t = init.eye_(lamina.empty(3, 4))
    np.testing.assert_array_equal(t.numpy(), np.eye(3, 4))
    g1 = lamina.Generator().manual_seed(7)
    g2 = lamina.Generator().manual_seed(7)
    a = init.normal_(lamina.empty(10), generator=g1).numpy().copy()
    b = init.normal_(lamina.empty(10), generator=g2).numpy()
    np.testing.assert_array_equal(a, b)


def test_sparse_zeroes_a_fraction_of_each_column():
    lamina.manual_seed(5)
    t = init.sparse_(lamina.empty(10, 40), sparsity=0.3, std=0.5)
    a = t.numpy()
    assert np.all((a == 0).sum(0) == 3)
    assert 0.3 < a[a != 0].std() < 0.7
    rows_hit = {tuple(np.flatnonzero(a[:, j] == 0)) for j in range(40)}
    assert len(rows_hit) > 1  # different rows in different columns
