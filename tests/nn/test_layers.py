"""Layers and activations: outputs and gradients against PyTorch with the same weights
(copied through state_dict), numpy references where PyTorch is absent, default inits,
dropout statistics, in-place forms and error messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from tests.frontend.oracle import needs_torch, torch


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def copy_weights(lmod: nn.Module, tmod) -> None:
    """Load a torch module's state into the lamina module (strict: same keys and shapes)."""
    lmod.load_state_dict({k: lamina.tensor(v.detach().numpy())
                          for k, v in tmod.state_dict().items()})


def _grad_weights(shape) -> np.ndarray:
    return _rng(99).standard_normal(tuple(shape)).astype(np.float32)


def compare_module(lmod, tmod, *inputs: np.ndarray, rtol=1e-5, atol=1e-5):
    """Same weights, same inputs: equal outputs, input gradients and parameter gradients."""
    copy_weights(lmod, tmod)
    lin = [lamina.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    lo, to = lmod(*lin), tmod(*tin)
    np.testing.assert_allclose(lo.numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    w = _grad_weights(lo.shape)
    (lo * lamina.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    for li, ti in zip(lin, tin):
        if ti.requires_grad:
            np.testing.assert_allclose(li.grad.numpy(), ti.grad.numpy(), rtol=rtol * 10,
                                       atol=atol * 10)
    tparams = dict(tmod.named_parameters())
    for name, p in lmod.named_parameters():
        tg = tparams[name].grad
        if tg is None:
            assert p.grad is None or not np.any(p.grad.numpy()), name
        else:
            np.testing.assert_allclose(p.grad.numpy(), tg.numpy(), rtol=rtol * 10,
                                       atol=atol * 10, err_msg=name)


# -- Linear, Bilinear, Identity, Flatten ------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
def test_linear_vs_torch(bias, shape):
    compare_module(nn.Linear(4, 3, bias=bias), torch.nn.Linear(4, 3, bias=bias),
                   _rng(1).standard_normal(shape).astype(np.float32))


@given(n=st.integers(1, 5), fin=st.integers(1, 6), fout=st.integers(1, 6),
       seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_linear_matches_numpy(n, fin, fout, seed):
    m = nn.Linear(fin, fout)
    x = _rng(seed).standard_normal((n, fin)).astype(np.float32)
    want = x @ m.weight.numpy().T + m.bias.numpy()
    np.testing.assert_allclose(m(lamina.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)


def test_linear_default_init_bounds_and_errors():
    m = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    w, b = m.weight.numpy(), m.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-b, b) has standard deviation b / sqrt(3)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound
    assert w.std() > 0 and len(np.unique(w)) > 4000
    assert m.weight.shape == (50, 100) and m.bias.shape == (50,)
    assert nn.Linear(3, 2, dtype=lamina.float64).weight.dtype == lamina.float64
    with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied "
                                           r"\(2x5 and 100x50\)"):
        m(lamina.zeros(2, 5))


@needs_torch
def test_bilinear_vs_torch():
    rng = _rng(2)
    compare_module(nn.Bilinear(3, 4, 5), torch.nn.Bilinear(3, 4, 5),
                   rng.standard_normal((6, 3)).astype(np.float32),
                   rng.standard_normal((6, 4)).astype(np.float32))
    compare_module(nn.Bilinear(3, 4, 2, bias=False), torch.nn.Bilinear(3, 4, 2, bias=False),
                   rng.standard_normal((2, 5, 3)).astype(np.float32),
                   rng.standard_normal((2, 5, 4)).astype(np.float32))


def test_identity_flatten_unflatten():
    x = lamina.arange(24.0).reshape(2, 3, 4)
    assert nn.Identity(3, foo=1)(x) is x
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    y = nn.Unflatten(1, (3, 1))(nn.Flatten()(x).reshape(2, 3, 4))
    assert y.shape == (2, 3, 1, 4)
    np.testing.assert_array_equal(y.numpy().reshape(-1), np.arange(24.0))
    with pytest.raises(TypeError):
        nn.Unflatten(1, 3)


# -- Embedding -------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_vs_torch(padding_idx):
    idx = np.array([[0, 2, 4], [4, 3, 0]])
    compare_module(nn.Embedding(5, 3, padding_idx=padding_idx),
                   torch.nn.Embedding(5, 3, padding_idx=padding_idx), idx)


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    m = nn.Embedding(6, 4, padding_idx=2)
    assert not np.any(m.weight.numpy()[2])
    with lamina.no_grad():
        m.weight[2].fill_(1.5)
    idx = lamina.tensor([2, 1, 2, 5])
    out = m(idx)
    np.testing.assert_array_equal(out.numpy()[0], [1.5] * 4)  # forward reads the row as is
    out.sum().backward()
    g = m.weight.grad.numpy()
    assert not np.any(g[2]) and np.all(g[1] == 1) and np.all(g[5] == 1) and not np.any(g[0])


def test_embedding_errors_and_from_pretrained():
    w = lamina.tensor([[1.0, 2.0], [3.0, 4.0]])
    m = nn.Embedding.from_pretrained(w)
    assert not m.weight.requires_grad
    assert m(lamina.tensor([1])).tolist() == [[3.0, 4.0]]
    with pytest.raises(RuntimeError, match="Expected tensor for argument #1 'indices'"):
        m(lamina.tensor([1.0]))
    with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 2, padding_idx=3)


@needs_torch
def test_embedding_max_norm_renormalises_rows_in_place():
    tm = torch.nn.Embedding(6, 3, max_norm=1.0)
    lm = nn.Embedding(6, 3, max_norm=1.0)
    copy_weights(lm, tm)
    idx = np.array([1, 3, 3])
    lo = lm(lamina.tensor(idx))
    to = tm(torch.tensor(idx))
    np.testing.assert_allclose(lo.numpy(), to.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lm.weight.numpy(), tm.weight.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


# -- Dropout -------------------------------------------------------------------------------


def test_dropout_statistics_and_modes():
    lamina.manual_seed(0)
    x = lamina.ones(200, 100)
    m = nn.Dropout(0.3)
    y = m(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    m.eval()
    assert m(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert not np.any(F.dropout(x, 1.0).numpy())
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="between 0 and 1, but got -0.1"):
        F.dropout(x, -0.1)


def test_dropout_is_deterministic_per_seed_and_backprops_through_mask():
    lamina.manual_seed(3)
    a = F.dropout(lamina.ones(50), 0.5).numpy()
    lamina.manual_seed(3)
    b = F.dropout(lamina.ones(50), 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    x = lamina.ones(1000, requires_grad=True)
    y = F.dropout(x, 0.25)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())


def test_channel_dropout_drops_whole_channels():
    lamina.manual_seed(1)
    x = lamina.ones(8, 16, 5, 5)
    y = nn.Dropout2d(0.5)(x).numpy()
    per_channel = y.reshape(8, 16, 25)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1))
    assert 0.3 < (per_channel[..., 0] == 0).mean() < 0.7
    y1 = nn.Dropout1d(0.5)(lamina.ones(4, 6, 7)).numpy()
    assert np.all((y1 == 0).all(-1) | (y1 == 2.0).all(-1))
    with pytest.raises(RuntimeError, match="dropout2d: Expected 3D or 4D input"):
        F.dropout2d(lamina.ones(2, 3), 0.5)
    inplace = lamina.ones(4, 4)
    assert F.dropout(inplace, 0.5, inplace=True) is inplace


# -- activations -----------------------------------------------------------------------------

ACTIVATIONS = [
    ("ReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("ELU", {"alpha": 0.7}),
    ("CELU", {"alpha": 1.3}), ("SELU", {}), ("GELU", {}), ("GELU", {"approximate": "tanh"}),
    ("SiLU", {}), ("Mish", {}), ("Sigmoid", {}), ("Tanh", {}), ("Softplus", {}),
    ("Softplus", {"beta": 2.0, "threshold": 3.0}), ("Hardtanh", {"min_val": -0.5,
                                                                 "max_val": 2.0}),
    ("ReLU6", {}), ("LogSigmoid", {}), ("Hardsigmoid", {}), ("Hardswish", {}),
    ("Softsign", {}), ("Tanhshrink", {}), ("Threshold", {"threshold": 0.1, "value": -2.0}),
    ("Hardshrink", {"lambd": 0.4}), ("Softshrink", {"lambd": 0.4}), ("GLU", {}),
    ("Softmax", {"dim": 1}), ("Softmax", {"dim": 0}), ("LogSoftmax", {"dim": -1}),
    ("Softmin", {"dim": 1}), ("PReLU", {}), ("PReLU", {"num_parameters": 6}),
]


@needs_torch
@pytest.mark.parametrize("name,kwargs", ACTIVATIONS)
def test_activation_modules_vs_torch(name, kwargs):
    x = (_rng(3).standard_normal((4, 6, 2)) * 4).astype(np.float32)
    x[0, 0, 0] = 0.0
    compare_module(getattr(nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs), x,
                   rtol=2e-5, atol=2e-5)
    assert repr(getattr(nn, name)(**kwargs)) == repr(getattr(torch.nn, name)(**kwargs))


@needs_torch
@pytest.mark.parametrize("name,kwargs", [
    ("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("elu", {}), ("hardtanh", {}),
    ("relu6", {}), ("silu", {}), ("mish", {}), ("selu", {}), ("celu", {}),
    ("hardsigmoid", {}), ("hardswish", {}), ("threshold", {"threshold": 0.5, "value": 0.0}),
])
def test_inplace_activations_write_their_input(name, kwargs):
    x = (_rng(4).standard_normal((3, 5)) * 3).astype(np.float32)
    lx = lamina.tensor(x)
    out = getattr(F, name)(lx, inplace=True, **kwargs)
    assert out is lx
    want = getattr(torch.nn.functional, name)(torch.tensor(x), **kwargs).numpy()
    np.testing.assert_allclose(lx.numpy(), want, rtol=1e-5, atol=1e-6)


def test_inplace_relu_on_non_leaf_keeps_gradients():
    x = lamina.tensor([-1.0, 2.0, -3.0, 4.0], requires_grad=True)
    y = x * 2
    nn.ReLU(inplace=True)(y)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 0.0, 2.0]


@needs_torch
@pytest.mark.parametrize("name", ["relu", "elu", "leaky_relu", "hardtanh", "silu", "selu",
                                  "hardswish"])
def test_inplace_on_non_leaf_gradients_vs_torch(name):
    x = (_rng(12).standard_normal((3, 4)) * 2).astype(np.float32)
    lx, tx = lamina.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ly, ty = lx * 1.5, tx * 1.5
    assert getattr(F, name)(ly, inplace=True) is ly
    getattr(torch.nn.functional, name)(ty, inplace=True)
    w = _grad_weights(x.shape)
    (ly * lamina.tensor(w)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(ly.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_inplace_on_leaf_requiring_grad_is_refused():
    x = lamina.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        F.elu(x, inplace=True)


def test_extreme_inputs_give_finite_values_and_gradients():
    x = lamina.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], requires_grad=True)
    for fn in (F.softplus, F.elu, F.selu, F.celu, F.mish, F.logsigmoid, F.silu, F.gelu):
        x.grad = None
        y = fn(x)
        y.sum().backward()
        assert np.all(np.isfinite(y.detach().numpy())), fn.__name__
        assert np.all(np.isfinite(x.grad.numpy())), fn.__name__


@given(rows=st.integers(1, 5), cols=st.integers(1, 9), seed=st.integers(0, 1000),
       scale=st.sampled_from([1.0, 30.0, 1000.0]))
@settings(max_examples=30, deadline=None)
def test_softmax_family_matches_numpy(rows, cols, seed, scale):
    x = (_rng(seed).standard_normal((rows, cols)) * scale).astype(np.float32)
    xd = x.astype(np.float64)
    e = np.exp(xd - xd.max(1, keepdims=True))
    sm = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(F.softmax(lamina.tensor(x), 1).numpy(), sm, rtol=1e-5,
                               atol=1e-6)
    lsm = xd - xd.max(1, keepdims=True) - np.log(e.sum(1, keepdims=True))
    np.testing.assert_allclose(F.log_softmax(lamina.tensor(x), dim=1).numpy(), lsm,
                               rtol=1e-5, atol=1e-4)


def test_softmax_implicit_dim_and_dtype():
    x = lamina.tensor([[1.0, 2.0], [3.0, 5.0]])
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = F.softmax(x)
    np.testing.assert_allclose(y.numpy().sum(1), [1.0, 1.0], rtol=1e-6)
    assert F.log_softmax(x, 1, dtype=lamina.float64).dtype == lamina.float64
    with pytest.raises(RuntimeError, match="approximate argument must be either none or tanh"):
        F.gelu(x, approximate="fast")


@needs_torch
def test_functional_helpers_vs_torch():
    rng = _rng(5)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    tf = torch.nn.functional
    la, lb, ta, tb = lamina.tensor(a), lamina.tensor(b), torch.tensor(a), torch.tensor(b)
    for p in (1.0, 2.0, 3.0, math.inf):
        np.testing.assert_allclose(F.normalize(la, p=p).numpy(), tf.normalize(ta, p=p).numpy(),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.normalize(la, dim=0).numpy(), tf.normalize(ta, dim=0).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.cosine_similarity(la, lb).numpy(),
                               tf.cosine_similarity(ta, tb).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.pairwise_distance(la, lb).numpy(),
                               tf.pairwise_distance(ta, tb).numpy(), rtol=1e-5, atol=1e-6)
    idx = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(lamina.tensor(idx)).numpy(),
                                  tf.one_hot(torch.tensor(idx)).numpy())
    np.testing.assert_array_equal(F.one_hot(lamina.tensor(idx), 6).numpy(),
                                  tf.one_hot(torch.tensor(idx), 6).numpy())
    np.testing.assert_allclose(F.glu(la[:, :4], 1).numpy(), tf.glu(ta[:, :4], 1).numpy(),
                               rtol=1e-6)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(F.linear(la, lamina.tensor(w)).numpy(),
                               tf.linear(ta, torch.tensor(w)).numpy(), rtol=1e-5, atol=1e-5)


def test_one_hot_errors():
    with pytest.raises(RuntimeError, match="Class values must be smaller than num_classes"):
        F.one_hot(lamina.tensor([0, 3]), 3)
    with pytest.raises(RuntimeError, match="only applicable to index tensor"):
        F.one_hot(lamina.tensor([0.0]))


# -- pad ---------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("mode,shape,pads", [
    ("constant", (2, 3, 4, 5), (1, 2)), ("constant", (2, 3, 4, 5), (2, 1, 1, 3, 0, 1)),
    ("constant", (2, 3, 4, 5), (-1, 2, 1, -2)), ("constant", (3,), (2, 0)),
    ("reflect", (2, 3, 5), (2, 4)), ("reflect", (2, 3, 4, 5), (1, 3, 2, 3)),
    ("replicate", (3, 5), (3, 1)), ("replicate", (1, 2, 3, 4, 5), (1, 2, 3, 4, 2, 1)),
    ("circular", (2, 3, 4, 5), (2, 5, 1, 4)), ("circular", (2, 6), (6, 0)),
])
def test_pad_vs_torch(mode, shape, pads):
    x = _rng(7).standard_normal(shape).astype(np.float32)
    lx, tx = lamina.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    kw = {"value": 1.5} if mode == "constant" else {}
    lo = F.pad(lx, pads, mode, **kw)
    to = torch.nn.functional.pad(tx, pads, mode, **kw)
    np.testing.assert_array_equal(lo.detach().numpy(), to.detach().numpy())
    w = _grad_weights(lo.shape)
    (lo * lamina.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_pad_errors():
    x = lamina.zeros(1, 2, 3)
    with pytest.raises(ValueError, match="Padding length must be divisible by 2"):
        F.pad(x, (1,))
    with pytest.raises(RuntimeError, match="Padding size should be less than"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(NotImplementedError, match="Padding size 2 is not supported for 4D"):
        F.pad(lamina.zeros(1, 1, 2, 3), (1, 1), mode="replicate")
    with pytest.raises(RuntimeError, match="negative output size"):
        F.pad(x, (-2, -2))
