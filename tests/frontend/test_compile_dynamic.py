"""``lamina.compile(step, dynamic=True)``: real training steps traced once with a symbolic
batch size, so a smaller last batch reuses the program, against the eager step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F

BATCHES = (64, 64, 23)


class CNN(nn.Module):
    """The digits CNN: conv, BatchNorm (running stats), ReLU, max pool, flatten, linear."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)
        self.drop = nn.Dropout(dropout) if dropout else None

    def forward(self, x):
        h = self.pool(F.relu(self.bn(self.conv(x))))
        h = h.view(h.size(0), -1)
        return self.fc(self.drop(h) if self.drop is not None else h)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


MODELS = {"mlp": (_mlp, (8, 8)), "cnn": (CNN, (1, 8, 8))}
OPTIMIZERS = {
    "sgd": lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adamw": lambda ps: lamina.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, eps=1e-3),
}


def _data(item: tuple[int, ...], batches=BATCHES) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((n, *item)).astype(np.float32), rng.integers(0, 10, n))
            for n in batches]


def _train(model_name: str, opt_name: str, compiled: bool):
    make, item = MODELS[model_name]
    lamina.manual_seed(0)
    model = make()
    opt = OPTIMIZERS[opt_name](model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    run = lamina.compile(step, dynamic=True) if compiled else step
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no recompile, no "cannot be traced" warning
        for x, y in _data(item):
            losses.append(float(run(lamina.from_numpy(x), lamina.from_numpy(y))))
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return losses, state, run


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_dynamic_step_matches_eager_without_recompiling(model_name, opt_name):
    want_losses, want_state, _ = _train(model_name, opt_name, compiled=False)
    losses, state, step = _train(model_name, opt_name, compiled=True)
    assert step.compiles == 1 and step.recompiles == 0
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    assert state.keys() == want_state.keys()
    for k in state:  # parameters and BatchNorm running stats
        np.testing.assert_allclose(state[k], want_state[k], rtol=1e-5, atol=1e-6, err_msg=k)
    x, y = _data(MODELS[model_name][1], (5,))[0]
    text = step.lower(lamina.from_numpy(x), lamina.from_numpy(y)).as_text("tensor")
    assert f"tensor<?x{'x'.join(map(str, MODELS[model_name][1]))}xf32>" in text


def test_step_that_cannot_be_traced_dynamically_specialises_with_a_warning():
    # the batch size as a number outside a creation shape (arange's end) cannot be
    # symbolic: the step is specialised on shapes, with the warning, and still trains
    lamina.manual_seed(0)
    model = CNN(dropout=0.5)
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.0 * lamina.arange(x.size(0)).sum()
        loss.backward()
        opt.step()
        return loss

    f = lamina.compile(step, dynamic=True)
    (x, y), = _data((1, 8, 8), (6,))
    with pytest.warns(RuntimeWarning, match="symbolic batch size"):
        loss = f(lamina.from_numpy(x), lamina.from_numpy(y))
    assert f.compiles == 1 and np.isfinite(float(loss))


@pytest.mark.parametrize("dim", [0, None, (0, 1)])
def test_mean_over_a_symbolic_dim_equals_numpy(dim):
    f = lamina.compile(lambda x: x.mean(dim) * 2.0, dynamic=True)
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (7, 3, 1):
            x = rng.standard_normal((n, 5)).astype(np.float32)
            got = f(lamina.from_numpy(x)).numpy()
            np.testing.assert_allclose(got, x.mean(axis=dim) * 2.0, rtol=1e-5, atol=1e-6)
    assert f.compiles == 1


def test_view_batch_minus_one_and_flatten_with_their_gradients():
    w = lamina.from_numpy(np.linspace(-1, 1, 12).astype(np.float32)).requires_grad_()

    def step(x):
        a = x.view(x.size(0), -1) * w
        b = x.flatten(1).reshape(-1, 12) + a.view(x.shape[0], 3, 4).flatten(1)
        loss = (a.sum(1) + b.mean(1)).sum()
        loss.backward()
        return loss

    f = lamina.compile(step, dynamic=True)
    rng = np.random.default_rng(2)
    wn = w.detach().numpy().copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (4, 9):
            w.grad = None
            x = rng.standard_normal((n, 3, 4)).astype(np.float32)
            got = float(f(lamina.from_numpy(x)))
            flat = x.reshape(n, 12)
            a = flat * wn
            want = (a.sum(1) + (flat + a).mean(1)).sum()
            np.testing.assert_allclose(got, want, rtol=1e-5)
            np.testing.assert_allclose(w.grad.numpy(), flat.sum(0) * (1 + 1 / 12), rtol=1e-5)
    assert f.compiles == 1


def test_reshape_that_merges_the_batch_axis_says_how_to_keep_it():
    f = lamina.compile(lambda x: x.view(-1) * 2.0, dynamic=True)
    with pytest.warns(RuntimeWarning, match=r"keep the batch dimension first"):
        got = f(lamina.ones(3, 2))
    np.testing.assert_allclose(got.numpy(), np.full(6, 2.0))


_HYP_MODEL = _mlp()
_HYP_EAGER = _mlp()
_HYP_INIT = {k: v.numpy().copy() for k, v in _HYP_MODEL.state_dict().items()}
_HYP_OPT = lamina.optim.SGD(_HYP_MODEL.parameters(), lr=0.1)
_HYP_EAGER_OPT = lamina.optim.SGD(_HYP_EAGER.parameters(), lr=0.1)


def _hyp_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


_HYP_COMPILED = lamina.compile(_hyp_step(_HYP_MODEL, _HYP_OPT), dynamic=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_mlp_step_any_batch_size_matches_eager(n, seed):
    for model in (_HYP_MODEL, _HYP_EAGER):
        for k, v in model.state_dict().items():
            v.copy_(lamina.from_numpy(_HYP_INIT[k]))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = float(_HYP_COMPILED(lamina.from_numpy(x), lamina.from_numpy(y)))
    want = float(_hyp_step(_HYP_EAGER, _HYP_EAGER_OPT)(lamina.from_numpy(x),
                                                        lamina.from_numpy(y)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for (k, a), b in zip(_HYP_MODEL.state_dict().items(), _HYP_EAGER.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert _HYP_COMPILED.compiles == 1


def test_arguments_with_different_batch_sizes_are_specialised():
    # the ``?`` sizes of one program must agree at run time (its kernels take a size from
    # whichever operand holds it): other calls get a program specialised on their shapes
    f = lamina.compile(lambda x, z: x + z, dynamic=True)
    a = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_allclose(f(lamina.from_numpy(a), lamina.from_numpy(a)).numpy(), a + a)
    b = np.ones((1, 2), np.float32)
    with pytest.warns(RuntimeWarning, match="recompiling"):
        got = f(lamina.from_numpy(a[:3]), lamina.from_numpy(b))
    np.testing.assert_allclose(got.numpy(), a[:3] + b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(f(lamina.from_numpy(a[:2]), lamina.from_numpy(a[:2])).numpy(),
                                   a[:2] * 2)
    assert f.compiles == 2
