"""``lamina.grad`` / ``lamina.value_and_grad`` end to end (traced, differentiated, fused,
compiled to native code): against finite differences always and PyTorch's autograd when
installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import assert_close, needs_torch, torch

H = 1e-6


def _t(a: np.ndarray) -> lamina.Tensor:
    return lamina.from_numpy(np.array(a, order="C"))


def fd_check(fn, arrays: list[np.ndarray], grads, rng, rtol=1e-6, atol=1e-8) -> None:
    """``grads`` (one per array) against directional central differences of the eager ``fn``
    in float64."""
    for i, g in enumerate(grads):
        g = np.asarray(g)
        assert g.shape == arrays[i].shape
        v = rng.standard_normal(arrays[i].shape)

        def f(x, i=i):
            args = [_t(a) for a in arrays]
            args[i] = _t(x)
            return fn(*args).item()

        fd = (f(arrays[i] + H * v) - f(arrays[i] - H * v)) / (2 * H)
        an = float(np.sum(g * v))
        assert abs(fd - an) <= atol + rtol * max(abs(fd), abs(an), 1.0), (i, fd, an)


def torch_grads(fn_torch, arrays: list[np.ndarray]) -> list[np.ndarray]:
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn_torch(*ts).backward()
    return [t.grad.numpy() for t in ts]


# -- functions, written once for lamina and once for torch ---------------------------------
def mlp(lib):
    def f(x, w, b):
        return (lib.relu(x @ w + b) ** 2).sum()

    return f


def log_softmax(lib, z, dim):
    z = z - z.amax(dim=dim, keepdim=True)
    return z - lib.log(lib.exp(z).sum(dim=dim, keepdim=True))


def cross_entropy(lib):
    def f(x, w, onehot):
        return -(log_softmax(lib, x @ w, 1) * onehot).sum(dim=1).mean()

    return f


def chains(lib):
    def f(x, y):
        s = lib.sigmoid(lib.tanh(x) * 2.0 - y)
        return (lib.log(s + 0.5) * lib.exp(-y * y) + lib.sqrt(x * x + 1.0)).mean()

    return f


def broadcasting(lib):
    def f(x, y, z):
        # (3, 1, 4) * (5, 1) + (4,), a scalar tensor too
        return ((x * y + z) * z.sum()).sum() / 7.0

    return f


def views(lib):
    def f(x, w):
        t = x.transpose(0, 1)  # (6, 4)
        part = t[1:5, ::2]  # (4, 2)
        flat = part.reshape(8) * w.reshape(-1)[:8]
        return (flat * flat).sum() + (x[:, 2:3] * t[0]).sum()

    return f


CASES = {
    "mlp": (mlp, [(5, 4), (4, 3), (3,)]),
    "cross_entropy": (cross_entropy, [(6, 4), (4, 5), None]),
    "chains": (chains, [(3, 4), (3, 4)]),
    "broadcasting": (broadcasting, [(3, 1, 4), (5, 1), (4,)]),
    "views": (views, [(4, 6), (3, 4)]),
}


def _arrays(name: str, rng) -> list[np.ndarray]:
    out = []
    for shape in CASES[name][1]:
        if shape is None:  # one-hot targets of the cross-entropy case
            out.append(np.eye(5)[rng.integers(0, 5, 6)])
        else:
            out.append(rng.standard_normal(shape))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_against_finite_differences(name):
    make, _ = CASES[name]
    rng = np.random.default_rng(len(name))
    arrays = _arrays(name, rng)
    fn = make(lamina)
    nums = tuple(range(len(arrays)))
    grads = lamina.grad(fn, argnums=nums)(*(_t(a) for a in arrays))
    assert isinstance(grads, tuple) and len(grads) == len(arrays)
    for g in grads:
        assert g.dtype == lamina.float64
    fd_check(fn, arrays, [g.numpy() for g in grads], rng)


@needs_torch
@pytest.mark.parametrize("name", sorted(CASES))
def test_against_torch_float32(name):
    make, _ = CASES[name]
    arrays = [a.astype(np.float32) for a in _arrays(name, np.random.default_rng(7))]
    grads = lamina.grad(make(lamina), argnums=tuple(range(len(arrays))))(
        *(_t(a) for a in arrays))
    for got, want in zip(grads, torch_grads(make(torch), arrays)):
        assert_close(got.numpy(), want, dtype=np.float32, rtol=1e-4, atol=1e-5)


@needs_torch
def test_log_softmax_matches_torch_cross_entropy():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((8, 4)), rng.standard_normal((4, 5))
    target = rng.integers(0, 5, 8)
    onehot = np.eye(5)[target]
    val, (gx, gw) = lamina.value_and_grad(cross_entropy(lamina), argnums=(0, 1))(
        _t(x), _t(w), _t(onehot))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(tx @ tw, torch.tensor(target))
    loss.backward()
    assert_close(val.numpy(), loss.detach().numpy())
    assert_close(gx.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert_close(gw.numpy(), tw.grad.numpy(), rtol=1e-10, atol=1e-12)


@needs_torch
def test_ties_follow_torch():
    # maximum with ties (half each), amax with ties (split evenly): PyTorch's conventions
    x = np.array([[0.0, 1.0, 1.0], [2.0, -1.0, 2.0]])
    y = np.array([[0.0, 3.0, 1.0], [2.0, -2.0, 0.0]])

    def f(lib):
        return lambda a, b: (lib.maximum(a, b) * a).sum() + a.amax(dim=1).sum()

    gx, gy = lamina.grad(f(lamina), argnums=(0, 1))(_t(x), _t(y))
    tx, ty = torch_grads(f(torch), [x, y])
    assert_close(gx.numpy(), tx)
    assert_close(gy.numpy(), ty)


@needs_torch
def test_relu_at_zero_like_torch():
    x = np.array([-1.0, 0.0, 2.0])
    g = lamina.grad(lambda a: lamina.relu(a).sum())(_t(x))
    assert_close(g.numpy(), torch_grads(lambda a: torch.relu(a).sum(), [x])[0])


@settings(max_examples=8)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=1, max_side=3),
       seed=st.integers(0, 2**16))
def test_broadcasting_shapes(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes.input_shapes)

    def fn(x, y):
        return (lamina.tanh(x) * y - x / (y * y + 1.0)).sum()

    ga, gb = lamina.grad(fn, argnums=(0, 1))(_t(a), _t(b))
    fd_check(fn, [a, b], [ga.numpy(), gb.numpy()], rng)


# -- the API -------------------------------------------------------------------------------
def test_argnums_value_and_aux():
    rng = np.random.default_rng(0)
    x, w = _t(rng.standard_normal((3, 2))), _t(rng.standard_normal((2,)))

    def loss(x, w):
        return ((x * w).sum(dim=1) ** 2).mean()

    gw = lamina.grad(loss, argnums=1)(x, w)
    assert isinstance(gw, lamina.Tensor) and tuple(gw.shape) == (2,)
    (gw2,) = lamina.grad(loss, argnums=(1,))(x, w)
    assert_close(gw2.numpy(), gw.numpy())
    value, gx = lamina.value_and_grad(loss)(x, w)
    assert_close(value.numpy(), loss(x, w).numpy())
    assert tuple(gx.shape) == (3, 2)

    def with_aux(x, w):
        h = x * w
        return (h * h).sum(), (h, h.sum(dim=0))

    (gx2, aux) = lamina.grad(with_aux, has_aux=True)(x, w)
    assert isinstance(aux, tuple) and len(aux) == 2
    assert_close(aux[0].numpy(), x.numpy() * w.numpy())
    assert_close(gx2.numpy(), 2 * x.numpy() * w.numpy() ** 2)
    (val, aux2), gw3 = lamina.value_and_grad(lambda x, w: (loss(x, w), x.sum()), argnums=1,
                                             has_aux=True)(x, w)
    assert_close(val.numpy(), loss(x, w).numpy())
    assert_close(aux2.numpy(), x.numpy().sum())
    assert_close(gw3.numpy(), gw.numpy())


def test_cached_per_signature_and_captured_tensors_read_afresh():
    rng = np.random.default_rng(1)
    w = _t(rng.standard_normal((4,)).astype(np.float32))

    def fn(x):
        return (x * w).sum()

    g = lamina.grad(fn)
    x = _t(rng.standard_normal((2, 4)).astype(np.float32))
    assert_close(g(x).numpy(), np.broadcast_to(w.numpy(), (2, 4)))
    w.numpy()[...] = 2.0
    assert_close(g(x).numpy(), np.full((2, 4), 2.0, np.float32))
    assert g.compiles == 1
    g(_t(rng.standard_normal((3, 4)).astype(np.float32)))
    assert g.compiles == 2


def test_unused_argument_gets_zeros_and_grads_are_fresh():
    x, y = _t(np.ones((2, 2))), _t(np.arange(4.0).reshape(2, 2))
    gx, gy = lamina.grad(lambda a, b: (a * 3.0).sum(), argnums=(0, 1))(x, y)
    assert_close(gx.numpy(), np.full((2, 2), 3.0))
    assert_close(gy.numpy(), np.zeros((2, 2)))
    # d/dx sum(x * y) is y itself: returned in a fresh buffer
    gx = lamina.grad(lambda a, b: (a * b).sum())(x, y)
    assert_close(gx.numpy(), y.numpy())
    assert not np.shares_memory(gx.numpy(), y.numpy())


def test_lower_shows_every_stage():
    x, w = _t(np.ones((4, 3))), _t(np.ones((3, 2)))
    low = lamina.grad(lambda a, b: lamina.tanh(a @ b).sum(), argnums=(0, 1)).lower(x, w)
    assert "tensor.matmul" in low.as_text("tensor")
    prim = low.as_text("prim")
    assert prim.count("prim.dot_general") == 3, prim  # forward, and one per gradient
    assert "-> (tensor<4x3xf64>, tensor<3x2xf64>)" in prim
    assert "kernel @" in low.as_text("loop")
    assert "define" in low.as_text("llvm")


def test_errors():
    x = _t(np.ones((2, 3)))
    with pytest.raises(TypeError, match="scalar floating-point tensor, got shape \\[2, 3\\]"):
        lamina.grad(lambda a: a * 2.0)(x)
    with pytest.raises(TypeError, match="argument 0 has dtype lamina.int64"):
        lamina.grad(lambda a: a.sum())(_t(np.arange(3)))
    with pytest.raises(ValueError, match="argnums \\(1,\\) out of range"):
        lamina.grad(lambda a: a.sum(), argnums=1)(x)
    with pytest.raises(TypeError, match="argnums must be"):
        lamina.grad(lambda a: a.sum(), argnums=[0])
    with pytest.raises(TypeError, match="pair \\(loss, aux\\)"):
        lamina.grad(lambda a: a.sum(), has_aux=True)(x)
    with pytest.raises(TypeError, match="must return a scalar tensor"):
        lamina.grad(lambda a: (a.sum(), a.sum()))(x)
