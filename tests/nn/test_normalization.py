"""Normalisation: batch/layer/group norm against numpy references (always) and PyTorch
(outputs, gradients, running statistics), one eager program per normalisation, half
precision, and the BatchNorm/LayerNorm/GroupNorm modules (buffers, state_dict keys,
momentum, train/eval, repr)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from lamina.frontend import dispatch
from tests.frontend.oracle import needs_torch, torch
from tests.nn.test_layers import compare_module

SEEDS = st.integers(0, 2**32 - 1)


def _rand(rng: np.random.Generator, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(dtype)


def ref_normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    v = x.astype(np.float64)
    mean = v.mean(axis=axes, keepdims=True)
    var = ((v - mean) ** 2).mean(axis=axes, keepdims=True)
    return (v - mean) / np.sqrt(var + eps)


# -- batch norm -------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, rank=st.sampled_from([2, 3, 4]), affine=st.booleans(),
       momentum=st.sampled_from([0.1, 0.5]))
def test_batch_norm_training_matches_numpy_and_updates_running_stats(seed, rank, affine,
                                                                     momentum):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 5)), int(rng.integers(1, 4)),
             *(int(rng.integers(1, 5)) for _ in range(rank - 2)))
    x = _rand(rng, shape) * 3 + 1
    c = shape[1]
    w, b = (_rand(rng, (c,)), _rand(rng, (c,))) if affine else (None, None)
    rm0, rv0 = _rand(rng, (c,)), np.abs(_rand(rng, (c,))) + 0.5
    rm, rv = lamina.tensor(rm0), lamina.tensor(rv0)
    y = F.batch_norm(lamina.tensor(x), rm, rv, None if w is None else lamina.tensor(w),
                     None if b is None else lamina.tensor(b), True, momentum, 1e-5)
    axes = (0, *range(2, rank))
    want = ref_normalize(x, axes, 1e-5)
    view = (1, c) + (1,) * (rank - 2)
    if affine:
        want = want * w.reshape(view) + b.reshape(view)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)
    n = x.size // c
    mean = x.astype(np.float64).mean(axis=axes)
    var = x.astype(np.float64).var(axis=axes) * n / (n - 1)  # the running update is unbiased
    np.testing.assert_allclose(rm.numpy(), (1 - momentum) * rm0 + momentum * mean, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(rv.numpy(), (1 - momentum) * rv0 + momentum * var, rtol=1e-5,
                               atol=1e-5)


def test_batch_norm_eval_uses_the_running_stats():
    rng = np.random.default_rng(1)
    x, rm, rv = _rand(rng, (3, 2, 4)), _rand(rng, (2,)), np.abs(_rand(rng, (2,))) + 0.1
    w, b = _rand(rng, (2,)), _rand(rng, (2,))
    y = F.batch_norm(lamina.tensor(x), lamina.tensor(rm), lamina.tensor(rv), lamina.tensor(w),
                     lamina.tensor(b), training=False, eps=1e-3)
    want = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-3) * w[:, None] + b[:, None]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        F.batch_norm(lamina.zeros(1, 3), None, None, training=True)
    with pytest.raises(RuntimeError, match="running_mean and running_var must be defined"):
        F.batch_norm(lamina.zeros(2, 3), None, None, training=False)
    with pytest.raises(RuntimeError, match=r"expected weight of shape \[3\]"):
        F.batch_norm(lamina.zeros(2, 3), None, None, lamina.ones(4), training=True)
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(lamina.zeros(2, 3))


@needs_torch
@settings(max_examples=12, deadline=None)
@given(seed=SEEDS, training=st.booleans(), rank=st.sampled_from([2, 4]))
def test_batch_norm_gradients_match_torch(seed, training, rank):
    rng = np.random.default_rng(seed)
    shape = (4, 3, 5, 2)[:rank]
    x, w, b = _rand(rng, shape), _rand(rng, (3,)), _rand(rng, (3,))
    rm, rv = _rand(rng, (3,)), np.abs(_rand(rng, (3,))) + 0.5
    lin = [lamina.tensor(a, requires_grad=True) for a in (x, w, b)]
    tin = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    lrm, lrv, trm, trv = lamina.tensor(rm), lamina.tensor(rv), torch.tensor(rm), torch.tensor(rv)
    ly = F.batch_norm(lin[0], lrm, lrv, lin[1], lin[2], training, 0.3, 1e-4)
    ty = torch.nn.functional.batch_norm(tin[0], trm, trv, tin[1], tin[2], training, 0.3, 1e-4)
    np.testing.assert_allclose(ly.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lrv.numpy(), trv.numpy(), rtol=1e-5, atol=1e-6)
    g = _rand(rng, shape)
    ly.backward(lamina.tensor(g))
    ty.backward(torch.tensor(g))
    for li, ti in zip(lin, tin):
        np.testing.assert_allclose(li.grad.numpy(), ti.grad.numpy(), rtol=1e-3, atol=1e-4)


# -- layer norm and group norm ------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, k=st.integers(1, 2), affine=st.booleans())
def test_layer_norm_matches_numpy(seed, k, affine):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 6, size=3))
    x = _rand(rng, shape) * 2 + 3
    norm = shape[3 - k:]
    w, b = (_rand(rng, norm), _rand(rng, norm)) if affine else (None, None)
    y = F.layer_norm(lamina.tensor(x), norm, None if w is None else lamina.tensor(w),
                     None if b is None else lamina.tensor(b), eps=1e-5)
    want = ref_normalize(x, tuple(range(3 - k, 3)), 1e-5)
    if affine:
        want = want * w + b
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, groups=st.sampled_from([1, 2, 3]), rank=st.sampled_from([2, 3, 4]))
def test_group_norm_matches_numpy(seed, groups, rank):
    rng = np.random.default_rng(seed)
    c = groups * int(rng.integers(1, 3))
    shape = (int(rng.integers(1, 4)), c, *(int(rng.integers(1, 5)) for _ in range(rank - 2)))
    x, w, b = _rand(rng, shape) * 2 - 1, _rand(rng, (c,)), _rand(rng, (c,))
    y = F.group_norm(lamina.tensor(x), groups, lamina.tensor(w), lamina.tensor(b), eps=1e-5)
    grouped = x.reshape(shape[0], groups, -1)
    want = ref_normalize(grouped, (2,), 1e-5).reshape(shape)
    view = (1, c) + (1,) * (rank - 2)
    np.testing.assert_allclose(y.numpy(), want * w.reshape(view) + b.reshape(view), rtol=1e-4,
                               atol=1e-4)


def test_layer_norm_is_one_eager_program_for_every_size():
    x = lamina.tensor(np.random.default_rng(2).standard_normal((4, 7, 5)).astype(np.float32))
    w, b = lamina.ones(7, 5), lamina.zeros(7, 5)
    F.layer_norm(x, (7, 5), w, b, eps=1e-3)
    before = dispatch.eager_signatures()
    for shape in ((3, 7, 5), (1, 7, 5), (9, 7, 5)):
        F.layer_norm(lamina.ones(*shape), (7, 5), w, b, eps=1e-3)
    F.layer_norm(x, (7, 5), w, b, eps=0.5)  # eps is a run-time number too
    assert dispatch.eager_signatures() == before


def test_half_precision_normalises_in_float32():
    rng = np.random.default_rng(3)
    x = (_rand(rng, (4, 64)) * 50 + 1000).astype(np.float16)
    y = F.layer_norm(lamina.tensor(x), (64,))
    assert y.dtype == lamina.float16
    want = ref_normalize(x.astype(np.float32), (1,), 1e-5)
    np.testing.assert_allclose(y.numpy().astype(np.float32), want, rtol=2e-2, atol=2e-2)
    z = F.batch_norm(lamina.tensor(x.reshape(4, 8, 8)), None, None, training=True)
    want = ref_normalize(x.reshape(4, 8, 8).astype(np.float32), (0, 2), 1e-5)
    np.testing.assert_allclose(z.numpy().astype(np.float32), want, rtol=2e-2, atol=2e-2)


@needs_torch
@pytest.mark.parametrize("fn", ["layer_norm", "group_norm"])
def test_layer_and_group_norm_gradients_match_torch(fn):
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, (3, 6, 4, 5)), _rand(rng, (6,)), _rand(rng, (6,))
    if fn == "layer_norm":
        w, b = _rand(rng, (4, 5)), _rand(rng, (4, 5))
    lin = [lamina.tensor(a, requires_grad=True) for a in (x, w, b)]
    tin = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    if fn == "layer_norm":
        ly = F.layer_norm(lin[0], (4, 5), lin[1], lin[2])
        ty = torch.nn.functional.layer_norm(tin[0], (4, 5), tin[1], tin[2])
    else:
        ly = F.group_norm(lin[0], 3, lin[1], lin[2])
        ty = torch.nn.functional.group_norm(tin[0], 3, tin[1], tin[2])
    np.testing.assert_allclose(ly.detach().numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = _rand(rng, x.shape)
    ly.backward(lamina.tensor(g))
    ty.backward(torch.tensor(g))
    for li, ti in zip(lin, tin):
        np.testing.assert_allclose(li.grad.numpy(), ti.grad.numpy(), rtol=1e-3, atol=1e-4)


# -- modules ----------------------------------------------------------------------------------
def test_batch_norm_buffers_state_dict_and_momentum():
    m = nn.BatchNorm2d(3)
    assert list(m.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked"]
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]
    np.testing.assert_array_equal(m.weight.detach().numpy(), np.ones(3))
    np.testing.assert_array_equal(m.running_var.numpy(), np.ones(3))
    assert m.num_batches_tracked.dtype == lamina.int64
    x = np.random.default_rng(5).standard_normal((4, 3, 2, 2)).astype(np.float32)
    m(lamina.tensor(x))
    m(lamina.tensor(x))
    assert int(m.num_batches_tracked) == 2
    mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(m.running_mean.numpy(), mean * (1 - 0.9 ** 2), rtol=1e-5)
    cumulative = nn.BatchNorm1d(3, momentum=None)
    for scale in (1.0, 3.0):
        cumulative(lamina.tensor(x[:, :, 0, 0] * scale))
    np.testing.assert_allclose(cumulative.running_mean.numpy(), mean_of(x) * 2, rtol=1e-5)
    m.eval()
    y = m(lamina.tensor(x))
    want = (x - m.running_mean.numpy()[:, None, None]) / np.sqrt(
        m.running_var.numpy()[:, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    assert int(m.num_batches_tracked) == 2  # eval does not count


def mean_of(x: np.ndarray) -> np.ndarray:
    return x[:, :, 0, 0].mean(axis=0)


def test_norm_modules_without_affine_or_running_stats():
    m = nn.BatchNorm1d(4, affine=False, track_running_stats=False)
    assert m.weight is None and m.running_mean is None and list(m.state_dict()) == []
    x = np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(m.eval()(lamina.tensor(x)).numpy(), ref_normalize(x, (0,), 1e-5),
                               rtol=1e-4, atol=1e-4)
    assert list(nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    assert list(nn.GroupNorm(2, 4, bias=False).state_dict()) == ["weight"]
    with pytest.raises(ValueError, match=r"num_channels \(5\) must be divisible"):
        nn.GroupNorm(2, 5)


@pytest.mark.parametrize("make, text", [
    (lambda m: m.BatchNorm2d(8), "BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, "
                                 "bias=True, track_running_stats=True)"),
    (lambda m: m.BatchNorm1d(3, momentum=None, affine=False),
     "BatchNorm1d(3, eps=1e-05, momentum=None, affine=False, bias=False, "
     "track_running_stats=True)"),
    (lambda m: m.LayerNorm((4, 5), eps=1e-3),
     "LayerNorm((4, 5), eps=0.001, elementwise_affine=True, bias=True)"),
    (lambda m: m.GroupNorm(2, 6), "GroupNorm(2, 6, eps=1e-05, affine=True, bias=True)"),
])
def test_norm_reprs(make, text):
    assert repr(make(nn)) == text
    if torch is not None:
        assert repr(make(torch.nn)) == text


@needs_torch
@pytest.mark.parametrize("make, shape", [
    (lambda m: m.BatchNorm2d(3), (4, 3, 3, 5)),
    (lambda m: m.BatchNorm1d(3, momentum=None), (6, 3, 2)),
    (lambda m: m.LayerNorm((3, 5)), (2, 4, 3, 5)),
    (lambda m: m.GroupNorm(3, 6, eps=1e-3), (2, 6, 3, 2)),
])
def test_norm_modules_match_torch(make, shape):
    lmod, tmod = make(nn), make(torch.nn)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 2 + 1
    compare_module(lmod, tmod, x, rtol=1e-4, atol=1e-4)
    for lb, tb in zip(lmod.buffers(), tmod.buffers()):
        np.testing.assert_allclose(lb.numpy(), tb.numpy(), rtol=1e-5, atol=1e-5)
    lmod.eval()
    tmod.eval()
    np.testing.assert_allclose(lmod(lamina.tensor(x)).numpy(),
                               tmod(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-4)


@needs_torch
def test_batch_norm_loads_a_torch_state_dict():
    t = torch.nn.BatchNorm2d(3)
    t(torch.randn(4, 3, 2, 2))
    m = nn.BatchNorm2d(3)
    m.load_state_dict({k: lamina.tensor(v.numpy()) for k, v in t.state_dict().items()})
    assert int(m.num_batches_tracked) == 1
    np.testing.assert_allclose(m.running_var.numpy(), t.running_var.numpy(), rtol=1e-6)
