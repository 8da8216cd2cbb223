"""``lamina.compile(fn, dynamic=True)`` with tensors created at the batch size: dropout
masks, ``zeros/ones/full/rand/randn/*_like`` of ``x.shape``. One compile serves every
batch; values, random draws and the generator's state match the eager function."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F

BATCHES = (16, 16, 7)
OPTIMIZERS = {
    "sgd": lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adamw": lambda ps: lamina.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


class Recurrent(nn.Module):
    """An LSTM over (batch, 5, 4) sequences (its initial state is zeros of the batch size)
    and a linear head on the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        o, _ = self.lstm(x)
        return self.fc(o[:, -1])


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


MODELS = {"mlp_dropout": (_mlp, (8,)), "lstm": (Recurrent, (5, 4))}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3), initial=0.0))


def _setup(model_name: str, opt_name: str):
    make, item = MODELS[model_name]
    lamina.manual_seed(0)
    model = make()
    opt = OPTIMIZERS[opt_name](model.parameters())

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return model, step, item


def _data(item: tuple[int, ...]) -> list[tuple[lamina.Tensor, lamina.Tensor]]:
    rng = np.random.default_rng(1)
    return [(lamina.from_numpy(rng.standard_normal((n, *item)).astype(np.float32)),
             lamina.from_numpy(rng.integers(0, 3, n))) for n in BATCHES]


def _run(model_name: str, opt_name: str, compiled: bool | tuple[bool, ...]):
    """Losses, generator states after each call and final parameters; ``compiled`` per call
    (a tuple interleaves compiled and eager calls of the same step)."""
    model, step, item = _setup(model_name, opt_name)
    fast = lamina.compile(step, dynamic=True)
    modes = compiled if isinstance(compiled, tuple) else (compiled,) * len(BATCHES)
    lamina.manual_seed(123)
    losses, states = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cannot be traced", no recompile
        for (x, y), c in zip(_data(item), modes):
            losses.append(float((fast if c else step)(x, y)))
            states.append(lamina.get_rng_state().tolist())
    params = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return losses, states, params, fast


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_dynamic_step_with_batch_sized_tensors_matches_eager(model_name, opt_name):
    want_losses, want_states, want_params, _ = _run(model_name, opt_name, False)
    losses, states, params, fast = _run(model_name, opt_name, True)
    assert fast.stats()["compiles"] == 1 and fast.stats()["recompiles"] == 0
    assert states == want_states
    for got, want in zip(losses, want_losses):
        assert _rel(got, want) < 1e-5
    for k in want_params:
        assert _rel(params[k], want_params[k]) < 1e-5, k


def test_dropout_step_interleaved_with_eager_calls():
    """Compiled and eager calls of one step share the generator: the masks follow on."""
    want_losses, want_states, want_params, _ = _run("mlp_dropout", "sgd", False)
    losses, states, params, fast = _run("mlp_dropout", "sgd", (True, False, True))
    assert fast.stats()["compiles"] == 1
    assert states == want_states
    assert all(_rel(a, b) < 1e-5 for a, b in zip(losses, want_losses))
    assert all(_rel(params[k], want_params[k]) < 1e-5 for k in want_params)


def test_dropout_mask_equals_eager_mask():
    """The compiled mask is the eager one drawn from the same generator state."""

    def f(x):
        return F.dropout(x, 0.5, True)

    fast = lamina.compile(f, dynamic=True)
    rng = np.random.default_rng(2)
    for n in BATCHES:
        x = lamina.from_numpy(rng.standard_normal((n, 10)).astype(np.float32) + 5)
        lamina.manual_seed(n)
        want = f(x).numpy()
        lamina.manual_seed(n)
        got = fast(x).numpy()
        np.testing.assert_array_equal(got, want)
        assert 0 < np.count_nonzero(got) < got.size
    assert fast.stats()["compiles"] == 1


def _creations(x):
    n = x.size(0)
    return (
        lamina.zeros((n, 6)) + x,
        lamina.ones(2, n, 3),
        lamina.full((n, 4), 2.5),
        lamina.zeros_like(x),
        lamina.ones_like(x, dtype=lamina.float64),
        lamina.full_like(x, -1.0),
        lamina.empty(n, 2).shape[1] * lamina.ones(n),
        lamina.rand(n, 5),
        lamina.randn((3, n)),
        lamina.rand_like(x),
        lamina.randn_like(x),
        lamina.randint(0, 7, (n, 2)),
        lamina.rand(n, n, dtype=lamina.float64),
        x.new_zeros((n, 2)),
    )


def test_creation_ops_with_the_batch_size_match_eager():
    fast = lamina.compile(_creations, dynamic=True)
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (*BATCHES, 1):
            x = lamina.from_numpy(rng.standard_normal((n, 6)).astype(np.float32))
            lamina.manual_seed(7 + n)
            want = [t.numpy() for t in _creations(x)]
            want_state = lamina.get_rng_state().tolist()
            lamina.manual_seed(7 + n)
            got = [t.numpy() for t in fast(x)]
            assert lamina.get_rng_state().tolist() == want_state
            for g, w in zip(got, want):
                assert g.shape == w.shape and g.dtype == w.dtype
                np.testing.assert_array_equal(g, w)
    assert fast.stats()["compiles"] == 1 and fast.stats()["recompiles"] == 0


def test_lstm_initial_state_zeros_of_the_batch():
    lstm = nn.LSTM(4, 8)  # (steps, batch, features): the batch is axis 1 of the state

    def f(x):
        h = lamina.zeros((1, x.size(0), 8))
        return lstm(x.transpose(0, 1), (h, h + 1))[0]

    fast = lamina.compile(f, dynamic=True)
    rng = np.random.default_rng(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in BATCHES:
            x = lamina.from_numpy(rng.standard_normal((n, 3, 4)).astype(np.float32))
            assert _rel(fast(x).detach().numpy(), f(x).detach().numpy()) < 1e-5
    assert fast.stats()["compiles"] == 1


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**40))
def test_draws_at_any_batch_size_follow_the_eager_stream(n, seed):
    x = lamina.from_numpy(np.zeros((n, 3), np.float32))
    lamina.manual_seed(seed)
    want = (_draws(x)[0].numpy(), _draws(x)[1].numpy(), lamina.get_rng_state().tolist())
    lamina.manual_seed(seed)
    got = (_FAST_DRAWS(x)[0].numpy(), _FAST_DRAWS(x)[1].numpy(), lamina.get_rng_state().tolist())
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


def _draws(x):
    # an odd count per batch row: the counters of a draw round up per draw, not per row
    return lamina.rand(x.size(0), 3) + x, lamina.randn(x.size(0))


_FAST_DRAWS = lamina.compile(_draws, dynamic=True)


@pytest.mark.parametrize("make", [
    pytest.param(lambda x: lamina.eye(x.size(0)), id="eye"),
    pytest.param(lambda x: lamina.arange(x.size(0)).float(), id="arange"),
    pytest.param(lambda x: lamina.randperm(x.size(0)).float(), id="randperm"),
])
def test_batch_size_outside_a_shape_still_specialises(make):
    """``None`` is the batch size only in creation shapes; elsewhere the step is traced
    with static shapes, with the warning, and still computes the eager result."""

    def f(x):
        return make(x).sum() + x.sum()

    fast = lamina.compile(f, dynamic=True)
    x = lamina.from_numpy(np.ones((5, 2), np.float32))
    with pytest.warns(RuntimeWarning, match="cannot be traced with a symbolic batch size"):
        got = fast(x)
    lamina.manual_seed(0)
    want = f(x)
    assert _rel(got.numpy(), want.numpy()) < 1e-5


def test_none_size_outside_a_dynamic_trace_raises():
    with pytest.raises(TypeError, match="size must be a sequence of ints"):
        lamina.zeros((None, 3))
    with pytest.raises(TypeError, match="size must be a sequence of ints"):
        lamina.rand(None, 3)
    with pytest.raises(TypeError, match="size must be a sequence of ints"):
        lamina.compile(lambda x: x + lamina.ones((None, 2)))(lamina.ones(3, 2))


def _slices(x):
    return (x[:, 1:4] * 2, x[:, -1], x[:, None, ::2], x.chunk(2, 1)[1], x[..., 0:1],
            lamina.stack([x[:, 0], x[:, 5]], 1))


def test_indexing_keeps_the_batch_axis_whole():
    fast = lamina.compile(_slices, dynamic=True)
    rng = np.random.default_rng(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (*BATCHES, 1):
            x = lamina.from_numpy(rng.standard_normal((n, 6)).astype(np.float32))
            for g, w in zip(fast(x), _slices(x)):
                assert g.shape == w.shape
                np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert fast.stats()["compiles"] == 1


def test_gradient_through_indexing_over_the_batch():
    w = lamina.from_numpy(np.array([0.5, -1.0, 2.0], np.float32)).requires_grad_()
    opt = lamina.optim.SGD([w], lr=0.1)

    def step(x):
        z = x[:, 1:4] * w + x[:, 0, None] * w[0] + lamina.stack([x[:, 4], x[:, 5]], 1).sum(1, True)
        loss = (z * z).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    rng = np.random.default_rng(6)
    data = [lamina.from_numpy(rng.standard_normal((n, 6)).astype(np.float32)) for n in BATCHES]
    with lamina.no_grad():
        w0 = w.detach().numpy().copy()
    want = [float(step(x)) for x in data]
    want_w = w.detach().numpy().copy()
    with lamina.no_grad():
        w.copy_(lamina.from_numpy(w0))
    fast = lamina.compile(step, dynamic=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [float(fast(x)) for x in data]
    assert fast.stats()["compiles"] == 1
    assert all(_rel(a, b) < 1e-5 for a, b in zip(got, want))
    assert _rel(w.detach().numpy(), want_w) < 1e-5


def test_reference_interpreter_rules_of_the_batch_prims():
    from lamina.backends.interp import prim_interp
    from lamina.ir import parse

    m = parse("\n".join([
        "func @f(%v: tensor<f32>, %y: tensor<?x3xi64>, %x: tensor<4x?x6xf32>)"
        " -> (tensor<2x?xf32>, tensor<?x2xf32>) {",
        "  %0 = prim.fill_batch %v, %y {shape = [2, ?]} : tensor<2x?xf32>",
        "  %1 = prim.slice_keep %x {drop = [0], start = [3, 0, 1], step = [1, 1, 3],"
        " stop = [4, ?, 6]} : tensor<?x2xf32>",
        "  return %0, %1", "}"]))
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    y = np.zeros((7, 3), np.int64)
    filled, sliced = prim_interp.run(m.graphs[0], np.array(2.5, np.float32), y, x)
    np.testing.assert_array_equal(filled, np.full((2, 7), 2.5, np.float32))
    np.testing.assert_array_equal(sliced, x[3, :, 1:6:3])
