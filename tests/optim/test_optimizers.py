"""Optimizer updates against torch.optim (20 steps on the same tensors and gradients) and
against numpy references of the algorithms; parameter groups, state dicts, zero_grad."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina import optim
from tests.optim import refs

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

SHAPES = [(5, 3), (7,), (), (2, 3, 4)]

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.5)),
    ("RMSprop", dict()),
    ("RMSprop", dict(momentum=0.9, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(alpha=0.3, centered=True, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.5)),
]

REFS = {
    "SGD": refs.sgd, "Adam": refs.adam, "AdamW": lambda p, g, **kw: refs.adam(
        p, g, **{"weight_decay": 1e-2, **kw}, decoupled=True),
    "RMSprop": refs.rmsprop, "Adagrad": refs.adagrad,
}


def _data(steps: int, shapes=SHAPES, dtype=np.float32, seed: int = 0):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return init, grads


def _run_lamina(name, kw, init, grads):
    params = [lamina.tensor(a).requires_grad_(True) for a in init]
    opt = getattr(optim, name)(params, **kw)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = lamina.tensor(g)
        opt.step()
    return params, opt


def _id(c):
    return c[0] + "-" + "-".join(f"{k}={v}" for k, v in c[1].items())


@needs_torch
@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_matches_torch_for_20_steps(config):
    name, kw = config
    init, grads = _data(20)
    tparams = [torch.tensor(a, requires_grad=True) for a in init]
    topt = getattr(torch.optim, name)(tparams, **kw)
    for step in grads:
        for p, g in zip(tparams, step):
            p.grad = torch.tensor(g)
        topt.step()
    params, opt = _run_lamina(name, kw, init, grads)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=2e-6, atol=2e-7)
    # the state follows PyTorch's names, shapes and step counts
    for p, t in zip(params, tparams):
        mine, theirs = opt.state[p], topt.state[t]
        assert sorted(mine) == sorted(theirs)
        for key, value in theirs.items():
            if value is None:
                continue
            np.testing.assert_allclose(mine[key].numpy(), value.numpy(), rtol=2e-6, atol=2e-7)
            assert mine[key].dtype.name == str(value.dtype).removeprefix("torch.")


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_matches_numpy_reference(config):
    name, kw = config
    init, grads = _data(20, seed=1)
    params, _ = _run_lamina(name, kw, init, grads)
    for i, p in enumerate(params):
        expected = REFS[name](init[i], [g[i] for g in grads], **kw)
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]),
       amsgrad=st.booleans(), decoupled=st.booleans())
def test_adam_shapes_and_dtypes(shape, dtype, amsgrad, decoupled):
    init, grads = _data(5, shapes=[shape], dtype=dtype, seed=len(shape))
    name = "AdamW" if decoupled else "Adam"
    kw = dict(lr=0.01, amsgrad=amsgrad, weight_decay=0.1)
    params, _ = _run_lamina(name, kw, init, grads)
    assert params[0].dtype.numpy == dtype
    expected = REFS[name](init[0], [g[0] for g in grads], **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(params[0].numpy(), expected, rtol=tol * 10, atol=tol)


def test_update_is_in_place_and_visible_through_views():
    w = lamina.tensor(np.ones((3, 4), np.float32)).requires_grad_(True)
    view = w.detach()[1]
    w.grad = lamina.ones(3, 4)
    version = w._version
    optim.SGD([w], lr=0.5).step()
    np.testing.assert_allclose(view.numpy(), np.full(4, 0.5))
    assert w._version > version
    assert w.grad is not None and w.requires_grad and w.is_leaf


def test_params_without_grad_are_skipped_and_closure_returns_loss():
    a = lamina.tensor([1.0, 2.0]).requires_grad_(True)
    b = lamina.tensor([3.0]).requires_grad_(True)
    a.grad = lamina.tensor([1.0, 1.0])
    opt = optim.Adam([a, b], lr=0.1)
    calls = []
    loss = opt.step(lambda: calls.append(lamina.is_grad_enabled()) or 7.0)
    assert loss == 7.0 and calls == [True]
    assert b.tolist() == [3.0] and b not in opt.state
    np.testing.assert_allclose(a.numpy(), [0.9, 1.9], rtol=1e-6)


def test_param_groups_take_their_own_options():
    a = lamina.tensor([1.0]).requires_grad_(True)
    b = lamina.tensor([1.0]).requires_grad_(True)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [b]
    a.grad = lamina.tensor([1.0])
    b.grad = lamina.tensor([1.0])
    opt.step()
    assert a.tolist() == pytest.approx([0.9]) and b.tolist() == pytest.approx([0.5])
    c = lamina.tensor([2.0]).requires_grad_(True)
    opt.add_param_group({"params": [c], "momentum": 0.0})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.0


def test_argument_errors():
    p = lamina.tensor([1.0]).requires_grad_(True)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        optim.SGD([p, 3.0], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid momentum value"):
        optim.RMSprop([p], momentum=-0.1)
    with pytest.raises(ValueError, match="Invalid lr_decay value"):
        optim.Adagrad([p], lr_decay=-1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2], lr=0.1)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [p]})
    q = lamina.tensor([1.0]).requires_grad_(True)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        optim.SGD([q, q], lr=0.1)
    assert any("duplicate parameters" in str(x.message) for x in w)


def test_zero_grad():
    p = lamina.tensor([1.0, 2.0]).requires_grad_(True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = lamina.tensor([3.0, 4.0])
    g = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is g and p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


def test_state_dict_round_trip_continues_identically():
    init, grads = _data(10, seed=3)
    kw = dict(lr=0.01, amsgrad=True)
    full, _ = _run_lamina("Adam", kw, init, grads)
    half, opt = _run_lamina("Adam", kw, init, grads[:5])
    sd = copy.deepcopy(opt.state_dict())
    params = [lamina.tensor(p.numpy().copy()).requires_grad_(True) for p in half]
    fresh = optim.Adam(params, **kw)
    fresh.load_state_dict(sd)
    assert fresh.state[params[0]]["step"].item() == 5.0
    for step in grads[5:]:
        for p, g in zip(params, step):
            p.grad = lamina.tensor(g)
        fresh.step()
    for a, b in zip(params, full):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_state_dict_errors_and_dtype_cast():
    p = lamina.tensor([1.0]).requires_grad_(True)
    q = lamina.tensor([1.0], dtype=lamina.float64).requires_grad_(True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = lamina.tensor([1.0])
    opt.step()
    two = optim.Adam([{"params": [p]}, {"params": [q]}])
    with pytest.raises(ValueError, match="different number of parameter groups"):
        two.load_state_dict(opt.state_dict())
    other = optim.Adam([q, lamina.tensor([2.0]).requires_grad_(True)])
    with pytest.raises(ValueError, match="doesn't match the size"):
        other.load_state_dict(opt.state_dict())
    dbl = optim.Adam([q])
    dbl.load_state_dict(opt.state_dict())
    assert dbl.state[q]["exp_avg"].dtype is lamina.float64
    assert dbl.state[q]["step"].dtype is lamina.float32
    assert dbl.param_groups[0]["lr"] == 0.1 and dbl.param_groups[0]["params"] == [q]


@needs_torch
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_state_dict_format_and_repr_match_torch(name):
    kw = {"lr": 0.1, "momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    tp = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    lp = [lamina.zeros(3).requires_grad_(True), lamina.zeros(2).requires_grad_(True)]
    topt = getattr(torch.optim, name)([{"params": tp[:1]}, {"params": tp[1:], "lr": 0.5}], **kw)
    lopt = getattr(optim, name)([{"params": lp[:1]}, {"params": lp[1:], "lr": 0.5}], **kw)
    for t, p in zip(tp, lp):
        t.grad = torch.ones_like(t)
        p.grad = lamina.ones_like(p)
    topt.step()
    lopt.step()
    tsd, lsd = topt.state_dict(), lopt.state_dict()
    assert lsd["param_groups"] == tsd["param_groups"]
    assert sorted(lsd["state"]) == sorted(tsd["state"])
    for k in tsd["state"]:
        assert sorted(lsd["state"][k]) == sorted(tsd["state"][k])
    assert repr(lopt) == repr(topt)
    # a state dict saved by PyTorch drives a Lamina optimizer
    converted = {"param_groups": tsd["param_groups"],
                 "state": {k: {n: lamina.tensor(v.numpy()) for n, v in s.items()}
                           for k, s in tsd["state"].items()}}
    fresh = [lamina.tensor(t.detach().numpy()).requires_grad_(True) for t in tp]
    lopt2 = getattr(optim, name)([{"params": fresh[:1]}, {"params": fresh[1:]}], lr=1.0)
    lopt2.load_state_dict(converted)
    for t, p in zip(tp, fresh):
        t.grad = torch.full_like(t, 0.5)
        p.grad = lamina.full_like(p, 0.5)
    topt.step()
    lopt2.step()
    for t, p in zip(tp, fresh):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_learning_rate_change_takes_effect_without_recompiling():
    p = lamina.tensor([1.0, 1.0]).requires_grad_(True)
    opt = optim.SGD([p], lr=0.1, momentum=0.0)
    p.grad = lamina.tensor([1.0, 1.0])
    opt.step()
    rule_compiles = optim.sgd._rule(False, False, False, True, False).compiled.compiles
    opt.param_groups[0]["lr"] = 0.5
    opt.step()
    assert p.tolist() == pytest.approx([0.4, 0.4])
    assert optim.sgd._rule(False, False, False, True, False).compiled.compiles == rule_compiles


def test_half_precision_params_are_updated_in_their_dtype():
    p = lamina.tensor([1.0, -2.0], dtype=lamina.bfloat16).requires_grad_(True)
    p.grad = lamina.tensor([0.5, 0.5], dtype=lamina.bfloat16)
    opt = optim.Adam([p], lr=0.25)
    opt.step()
    assert p.dtype is lamina.bfloat16 and opt.state[p]["exp_avg"].dtype is lamina.bfloat16
    np.testing.assert_allclose(p.float().numpy(), [0.75, -2.25], rtol=1e-2)


def test_integration_with_autograd_linear_regression():
    rng = np.random.default_rng(0)
    x = lamina.tensor(rng.standard_normal((64, 3)).astype(np.float32))
    true_w = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = lamina.tensor(x.numpy() @ true_w)
    w = lamina.zeros(3, 1).requires_grad_(True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    for _ in range(300):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(w.detach().numpy(), true_w, atol=1e-3)


def test_adagrad_group_added_later_and_integer_step_from_old_checkpoints():
    a = lamina.tensor([1.0]).requires_grad_(True)
    b = lamina.tensor([2.0]).requires_grad_(True)
    opt = optim.Adagrad([a], lr=0.5, initial_accumulator_value=1.0)
    opt.add_param_group({"params": [b]})
    b.grad = lamina.tensor([1.0])
    opt.step()
    np.testing.assert_allclose(b.numpy(), refs.adagrad(np.array([2.0]), [np.array([1.0])],
                                                         lr=0.5, initial_accumulator_value=1.0),
                               rtol=1e-6)
    opt.state[b]["step"] = 4  # PyTorch < 1.12 stored a Python number
    opt.step()
    assert opt.state[b]["step"].item() == 5.0


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", {}),
                                     ("RMSprop", dict(centered=True, momentum=0.5))])
def test_empty_parameters(name, kw):
    e = lamina.zeros(0, 3).requires_grad_(True)
    w = lamina.ones(2).requires_grad_(True)
    opt = getattr(optim, name)([e, w], **kw)
    for _ in range(2):
        e.grad = lamina.zeros(0, 3)
        w.grad = lamina.ones(2)
        opt.step()
    assert e.shape == (0, 3) and all(t.shape == (0, 3) for t in opt.state[e].values()
                                     if t.ndim)
    assert w.tolist()[0] < 1.0
