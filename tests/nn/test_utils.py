"""nn.utils: gradient clipping and parameter vectors, against numpy and PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lamina
import lamina.nn as nn
from lamina.nn.utils import (
    clip_grad_norm_,
    clip_grad_value_,
    parameters_to_vector,
    vector_to_parameters,
)
from tests.frontend.oracle import needs_torch, torch


def _params_with_grads(seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 2)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * scale for s in shapes]
    params = [nn.Parameter(lamina.tensor(a)) for a in arrays]
    for p, g in zip(params, grads):
        p.grad = lamina.tensor(g)
    return params, grads


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_numpy(norm_type, max_norm):
    params, grads = _params_with_grads(1, 2.0)
    flat = np.concatenate([g.reshape(-1) for g in grads]).astype(np.float64)
    total = (np.abs(flat).max() if norm_type == math.inf
             else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type))
    got = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert float(got) == pytest.approx(total, rel=1e-5)
    coef = min(1.0, max_norm / (total + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-5, atol=1e-7)


@needs_torch
def test_clip_grad_norm_vs_torch_on_a_model():
    tm = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    lm = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    lm.load_state_dict({k: lamina.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((7, 5)).astype(np.float32) * 10
    (tm(torch.tensor(x)) ** 2).sum().backward()
    (lm(lamina.tensor(x)) ** 2).sum().backward()
    tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
    ln = clip_grad_norm_(lm.parameters(), 1.0)
    assert float(ln) == pytest.approx(float(tn), rel=1e-5)
    for (name, lp), tp in zip(lm.named_parameters(), tm.parameters()):
        np.testing.assert_allclose(lp.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_clip_grad_norm_edge_cases():
    params, _ = _params_with_grads()
    params[1].grad = None
    assert float(clip_grad_norm_(params[1], 1.0)) == 0.0
    t = clip_grad_norm_(params[0], 1.0)  # a single tensor is accepted
    assert float(t) > 0
    params[0].grad = lamina.full((3, 4), math.inf)
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    params, grads = _params_with_grads(3, 3.0)
    clip_grad_value_(params, 0.5)
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -0.5, 0.5))


def test_parameters_to_vector_and_back():
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))
    vec = parameters_to_vector(m.parameters())
    want = np.concatenate([p.detach().numpy().reshape(-1) for p in m.parameters()])
    np.testing.assert_array_equal(vec.numpy(), want)
    new = lamina.arange(float(vec.numel()))
    vector_to_parameters(new, m.parameters())
    np.testing.assert_array_equal(parameters_to_vector(m.parameters()).numpy(),
                                  np.arange(vec.numel(), dtype=np.float32))
    assert all(isinstance(p, nn.Parameter) and p.is_leaf for p in m.parameters())
    with pytest.raises(RuntimeError, match="elements"):
        vector_to_parameters(lamina.zeros(3), m.parameters())
    with pytest.raises(TypeError, match="expected torch.Tensor"):
        vector_to_parameters([1.0], m.parameters())
