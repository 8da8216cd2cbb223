"""Losses (functional and modules): values and input gradients against PyTorch, and
numpy references for the common ones (run without PyTorch too)."""

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

REDUCTIONS = ("mean", "sum", "none")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pair(a: np.ndarray, requires_grad: bool = True):
    """The same array as a lamina tensor and a torch tensor (both leaves)."""
    la = lamina.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f")
    ta = torch.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f")
    return la, ta


def _check(lam_out, torch_out, lam_leaves=(), torch_leaves=(), rtol=1e-5, atol=1e-6):
    """Values equal, then gradients of sum(out * fixed weights) equal for every leaf."""
    np.testing.assert_allclose(lam_out.numpy(), torch_out.detach().numpy(), rtol=rtol,
                               atol=atol)
    if not lam_leaves:
        return
    w = _rng(99).standard_normal(tuple(lam_out.shape)).astype(np.float32)
    (lam_out * lamina.tensor(w).to(lam_out.dtype)).sum().backward()
    (torch_out * torch.tensor(w).to(torch_out.dtype)).sum().backward()
    for lleaf, tleaf in zip(lam_leaves, torch_leaves):
        np.testing.assert_allclose(lleaf.grad.numpy(), tleaf.grad.numpy(), rtol=rtol * 10,
                                   atol=atol * 10)


# -- numpy references (always run) -------------------------------------------------------


def _np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


@given(n=st.integers(1, 6), c=st.integers(1, 7), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_cross_entropy_matches_numpy(n, c, seed):
    rng = _rng(seed)
    x = rng.standard_normal((n, c)).astype(np.float32) * 3
    t = rng.integers(0, c, n)
    got = F.cross_entropy(lamina.tensor(x), lamina.tensor(t)).item()
    want = -_np_log_softmax(x.astype(np.float64), 1)[np.arange(n), t].mean()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_nll_loss_weight_and_ignore_index_numpy():
    rng = _rng(1)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 3, -100, 2, 1, 3])
    w = np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float32)
    got = F.nll_loss(lamina.tensor(x), lamina.tensor(t), weight=lamina.tensor(w)).item()
    keep = t != -100
    wt = w[t[keep]]
    want = -(x[keep][np.arange(keep.sum()), t[keep]] * wt).sum() / wt.sum()
    assert got == pytest.approx(want, rel=1e-5)
    none = F.nll_loss(lamina.tensor(x), lamina.tensor(t), reduction="none").numpy()
    assert none[2] == 0.0
    assert none[0] == pytest.approx(-x[0, 0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_l1_match_numpy(reduction):
    rng = _rng(2)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((3, 5)).astype(np.float32)
    red = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    np.testing.assert_allclose(
        F.mse_loss(lamina.tensor(a), lamina.tensor(b), reduction=reduction).numpy(),
        red((a - b) ** 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        nn.L1Loss(reduction=reduction)(lamina.tensor(a), lamina.tensor(b)).numpy(),
        red(np.abs(a - b)), rtol=1e-5, atol=1e-6)


def test_bce_clamps_log_at_minus_100():
    x = lamina.tensor([0.0, 1.0, 0.5])
    t = lamina.tensor([1.0, 0.0, 1.0])
    got = F.binary_cross_entropy(x, t, reduction="none").numpy()
    np.testing.assert_allclose(got, [100.0, 100.0, math.log(2)], rtol=1e-6)


def test_bce_with_logits_is_stable_for_large_logits():
    x = lamina.tensor([1000.0, -1000.0, 0.0])
    t = lamina.tensor([0.0, 1.0, 1.0])
    got = F.binary_cross_entropy_with_logits(x, t, reduction="none").numpy()
    np.testing.assert_allclose(got, [1000.0, 1000.0, math.log(2)], rtol=1e-6)


def test_reduction_and_shape_errors():
    x = lamina.zeros(2, 3)
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        F.cross_entropy(x, lamina.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(2\) to match target "
                                         r"batch_size \(3\)"):
        F.nll_loss(x, lamina.tensor([0, 1, 1]))
    with pytest.raises(RuntimeError, match="expected target dtype to be Long or Byte"):
        F.nll_loss(x, lamina.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="different to the input size"):
        F.binary_cross_entropy(lamina.full((2, 3), 0.5), lamina.zeros(3))
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(lamina.full((2,), 2.0), lamina.zeros(2))
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(lamina.zeros(2, 3), lamina.zeros(3))


# -- against PyTorch -----------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kwargs", [
    ("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1_loss", {"beta": 0.0}), ("huber_loss", {"delta": 0.7}),
    ("soft_margin_loss", {}),
])
def test_regression_losses_vs_torch(name, kwargs, reduction):
    rng = _rng(3)
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    if name == "soft_margin_loss":
        b = np.sign(b)
    la, ta = _pair(a)
    lb, tb = _pair(b, requires_grad=name != "soft_margin_loss")
    lo = getattr(F, name)(la, lb, reduction=reduction, **kwargs)
    to = getattr(torch.nn.functional, name)(ta, tb, reduction=reduction, **kwargs)
    leaves = 1 if name == "soft_margin_loss" else 2
    _check(lo, to, [la, lb][:leaves], [ta, tb][:leaves])


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 3), (4,)])
def test_cross_entropy_indices_vs_torch(reduction, weighted, ignore, smoothing, shape):
    rng = _rng(4)
    x = rng.standard_normal(shape).astype(np.float32) * 2
    cdim = 0 if len(shape) == 1 else 1
    c = shape[cdim]
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, c, tshape)
    if ignore and t.ndim:
        t.reshape(-1)[::3] = 1
        kw = {"ignore_index": 1}
    else:
        kw = {}
    w = rng.uniform(0.5, 2.0, c).astype(np.float32)
    la, ta = _pair(x)
    lw = lamina.tensor(w) if weighted else None
    tw = torch.tensor(w) if weighted else None
    lo = F.cross_entropy(la, lamina.tensor(t), weight=lw, reduction=reduction,
                         label_smoothing=smoothing, **kw)
    to = torch.nn.functional.cross_entropy(ta, torch.tensor(t), weight=tw, reduction=reduction,
                                           label_smoothing=smoothing, **kw)
    _check(lo, to, [la], [ta])


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probabilities_vs_torch(reduction, weighted, smoothing):
    rng = _rng(5)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    p = rng.uniform(size=(3, 4, 2)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    w = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    la, ta = _pair(x)
    lo = F.cross_entropy(la, lamina.tensor(p), weight=lamina.tensor(w) if weighted else None,
                         reduction=reduction, label_smoothing=smoothing)
    to = torch.nn.functional.cross_entropy(ta, torch.tensor(p),
                                           weight=torch.tensor(w) if weighted else None,
                                           reduction=reduction, label_smoothing=smoothing)
    _check(lo, to, [la], [ta])


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_module_vs_torch(reduction):
    rng = _rng(6)
    x = rng.standard_normal((6, 5, 3)).astype(np.float32)
    t = rng.integers(0, 5, (6, 3))
    t[0, 0] = -100
    w = rng.uniform(0.1, 1.0, 5).astype(np.float32)
    la, ta = _pair(x)
    lo = nn.NLLLoss(weight=lamina.tensor(w), reduction=reduction)(la, lamina.tensor(t))
    to = torch.nn.NLLLoss(weight=torch.tensor(w), reduction=reduction)(ta, torch.tensor(t))
    _check(lo, to, [la], [ta])


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_vs_torch(reduction, weighted):
    rng = _rng(7)
    x = rng.uniform(0.02, 0.98, (4, 3)).astype(np.float32)
    t = rng.uniform(size=(4, 3)).astype(np.float32)
    w = rng.uniform(0.5, 2, (4, 3)).astype(np.float32)
    la, ta = _pair(x)
    lo = nn.BCELoss(weight=lamina.tensor(w) if weighted else None, reduction=reduction)(
        la, lamina.tensor(t))
    to = torch.nn.BCELoss(weight=torch.tensor(w) if weighted else None, reduction=reduction)(
        ta, torch.tensor(t))
    _check(lo, to, [la], [ta])


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_with_logits_vs_torch(reduction, pos_weight):
    rng = _rng(8)
    x = rng.standard_normal((5, 3)).astype(np.float32) * 10
    t = rng.uniform(size=(5, 3)).astype(np.float32)
    pw = rng.uniform(0.5, 3, 3).astype(np.float32)
    w = rng.uniform(0.5, 2, 3).astype(np.float32)
    la, ta = _pair(x)
    lo = nn.BCEWithLogitsLoss(weight=lamina.tensor(w), reduction=reduction,
                              pos_weight=lamina.tensor(pw) if pos_weight else None)(
        la, lamina.tensor(t))
    to = torch.nn.BCEWithLogitsLoss(weight=torch.tensor(w), reduction=reduction,
                                    pos_weight=torch.tensor(pw) if pos_weight else None)(
        ta, torch.tensor(t))
    _check(lo, to, [la], [ta])


@needs_torch
@pytest.mark.parametrize("reduction", ("mean", "sum", "none", "batchmean"))
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_vs_torch(reduction, log_target):
    rng = _rng(9)
    x = np.log(rng.dirichlet(np.ones(4), 3)).astype(np.float32)
    t = rng.dirichlet(np.ones(4), 3).astype(np.float32)
    t[0, 1] = 0.0  # xlogy(0, 0) = 0
    if log_target:
        t = np.log(t + 0.1).astype(np.float32)
    la, ta = _pair(x)
    with pytest.warns(UserWarning) if reduction == "mean" else _nothing():
        lo = F.kl_div(la, lamina.tensor(t), reduction=reduction, log_target=log_target)
    with pytest.warns(UserWarning) if reduction == "mean" else _nothing():
        to = torch.nn.functional.kl_div(ta, torch.tensor(t), reduction=reduction,
                                        log_target=log_target)
    _check(lo, to, [la], [ta])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_cosine_embedding_loss_vs_torch(reduction, margin):
    rng = _rng(10)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.array([1, -1, 1, -1, -1])
    la, ta = _pair(a)
    lb, tb = _pair(b)
    lo = nn.CosineEmbeddingLoss(margin=margin, reduction=reduction)(la, lb, lamina.tensor(y))
    to = torch.nn.CosineEmbeddingLoss(margin=margin, reduction=reduction)(ta, tb,
                                                                           torch.tensor(y))
    _check(lo, to, [la, lb], [ta, tb])


@needs_torch
def test_other_losses_vs_torch():
    rng = _rng(11)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)
    c = rng.standard_normal((5, 4)).astype(np.float32)
    y = np.sign(rng.standard_normal(5)).astype(np.float32)
    tf = torch.nn.functional
    la, ta = _pair(a)
    lb, tb = _pair(b)
    lc, tc = _pair(c)
    _check(F.margin_ranking_loss(la[:, 0], lb[:, 0], lamina.tensor(y), margin=0.1),
           tf.margin_ranking_loss(ta[:, 0], tb[:, 0], torch.tensor(y), margin=0.1))
    _check(F.hinge_embedding_loss(la, lamina.tensor(np.sign(b))),
           tf.hinge_embedding_loss(ta, torch.tensor(np.sign(b))))
    _check(F.triplet_margin_loss(la, lb, lc), tf.triplet_margin_loss(ta, tb, tc))
    _check(F.multilabel_soft_margin_loss(la, lamina.tensor((b > 0).astype(np.float32))),
           tf.multilabel_soft_margin_loss(ta, torch.tensor((b > 0).astype(np.float32))))
    _check(F.poisson_nll_loss(la, lamina.tensor(np.abs(b) * 3), full=True),
           tf.poisson_nll_loss(ta, torch.tensor(np.abs(b) * 3), full=True))
    var = np.abs(c) + 0.1
    _check(F.gaussian_nll_loss(la, lb, lamina.tensor(var), full=True),
           tf.gaussian_nll_loss(ta, tb, torch.tensor(var), full=True))
    _check(F.gaussian_nll_loss(la, lb, lamina.tensor(var[:, 0])),
           tf.gaussian_nll_loss(ta, tb, torch.tensor(var[:, 0])))


@needs_torch
def test_loss_module_reprs_and_state_dicts_match_torch():
    w = np.ones(3, dtype=np.float32)
    pairs = [
        (nn.CrossEntropyLoss(weight=lamina.tensor(w), label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.1)),
        (nn.BCEWithLogitsLoss(pos_weight=lamina.tensor(w)),
         torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(w))),
        (nn.MSELoss(reduction="sum"), torch.nn.MSELoss(reduction="sum")),
        (nn.KLDivLoss(log_target=True), torch.nn.KLDivLoss(log_target=True)),
    ]
    for lm, tm in pairs:
        assert repr(lm) == repr(tm)
        assert list(lm.state_dict()) == list(tm.state_dict())
        assert lm.reduction == tm.reduction


def test_legacy_size_average_reduce():
    a = lamina.tensor([1.0, 2.0])
    b = lamina.tensor([0.0, 0.0])
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        loss = nn.MSELoss(size_average=False)
    assert loss.reduction == "sum"
    assert loss(a, b).item() == 5.0
    with pytest.warns(UserWarning):
        assert F.l1_loss(a, b, reduce=False).shape == (2,)


@needs_torch
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_masked_logits_vs_torch(smoothing, reduction):
    # -inf logits of other classes (masked vocabularies) and ignored samples stay finite
    x = np.array([[1.0, -np.inf, 0.5], [-np.inf, 2.0, -np.inf], [0.3, 0.2, -np.inf]],
                 dtype=np.float32)
    t = np.array([0, 1, -100])
    la, ta = _pair(x)
    lo = F.cross_entropy(la, lamina.tensor(t), reduction=reduction, label_smoothing=smoothing)
    to = torch.nn.functional.cross_entropy(ta, torch.tensor(t), reduction=reduction,
                                           label_smoothing=smoothing)
    np.testing.assert_allclose(lo.detach().numpy(), to.detach().numpy(), rtol=1e-5)
    if smoothing == 0.0:
        lo.sum().backward()
        to.sum().backward()
        np.testing.assert_allclose(la.grad.numpy(), ta.grad.numpy(), rtol=1e-5, atol=1e-7)


@needs_torch
def test_cross_entropy_ignore_index_inside_class_range_with_zero_weight_class():
    rng = _rng(12)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    t = np.array([0, 1, 2, 3, 1, 2])
    w = np.array([1.0, 2.0, 0.0, 1.5], dtype=np.float32)
    for smoothing in (0.0, 0.2):
        la, ta = _pair(x)
        lo = F.cross_entropy(la, lamina.tensor(t), weight=lamina.tensor(w), ignore_index=1,
                             label_smoothing=smoothing)
        to = torch.nn.functional.cross_entropy(ta, torch.tensor(t), weight=torch.tensor(w),
                                               ignore_index=1, label_smoothing=smoothing)
        _check(lo, to, [la], [ta])
