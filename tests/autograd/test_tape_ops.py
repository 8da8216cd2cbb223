"""Gradients of frontend ops through the eager tape, against finite differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from tests.autograd.helpers import check, tape_grads, torch_grads
from tests.frontend.oracle import needs_torch, torch

RNG = np.random.default_rng(1234)


def r(*shape: int, low: float = -2.0, high: float = 2.0) -> np.ndarray:
    return RNG.uniform(low, high, size=shape)


def pos(*shape: int) -> np.ndarray:
    return RNG.uniform(0.5, 2.0, size=shape)


# name -> (fn(module, *tensors), input arrays); the same fn runs on lamina and on torch
CASES = {
    "add_broadcast": (lambda M, x, y: x + y, [r(3, 4), r(4)]),
    "sub_scalar_left": (lambda M, x: 2.5 - x, [r(2, 3)]),
    "mul_broadcast_both": (lambda M, x, y: x * y, [r(3, 1), r(1, 4)]),
    "div": (lambda M, x, y: x / y, [r(2, 3), pos(2, 3)]),
    "rdiv_scalar": (lambda M, x: 3.0 / x, [pos(4)]),
    "pow_int": (lambda M, x: x ** 3, [r(5)]),
    "pow_tensor": (lambda M, x, y: M.pow(x, y), [pos(3), r(3)]),
    "rpow": (lambda M, x: 2.0 ** x, [r(4)]),
    "neg_abs": (lambda M, x: -M.abs(x) * 2, [r(6, low=0.1) * np.array([1, -1] * 3)]),
    "exp_log": (lambda M, x: M.exp(x) + M.log(x), [pos(2, 3)]),
    "exp2_log2_log1p": (lambda M, x: M.exp2(x) + M.log2(x) + M.log1p(x), [pos(4)]),
    "expm1_sqrt_rsqrt": (lambda M, x: M.expm1(x) * M.sqrt(x) + M.rsqrt(x), [pos(4)]),
    "trig": (lambda M, x: M.sin(x) * M.cos(x) + M.tan(x / 4), [r(5)]),
    "tanh_sigmoid": (lambda M, x: M.tanh(x) + M.sigmoid(x), [r(2, 3)]),
    "relu": (lambda M, x: M.relu(x), [r(7, low=0.1) * np.array([1, -1, 1, -1, 1, -1, 1])]),
    "erf": (lambda M, x: M.erf(x), [r(4)]),
    "maximum_minimum": (lambda M, x, y: M.maximum(x, y) - M.minimum(x, y) * 2,
                        [r(3, 4), r(4)]),
    "where": (lambda M, x, y: M.where(x > 0, x * 2, y), [r(3, 4), r(4)]),
    "sum_all": (lambda M, x: x.sum(), [r(3, 4)]),
    "sum_dim_keepdim": (lambda M, x: x.sum(1, keepdim=True) * x, [r(3, 4)]),
    "sum_dims": (lambda M, x: x.sum((0, 2)), [r(2, 3, 2)]),
    "mean": (lambda M, x: x.mean(0) + x.mean(), [r(3, 4)]),
    "mean_keepdim": (lambda M, x: x - x.mean(-1, keepdim=True), [r(2, 5)]),
    "prod": (lambda M, x: x.prod(1), [r(2, 4)]),
    "amax_amin": (lambda M, x: x.amax(1) + x.amin(0).sum(), [r(3, 4)]),
    "max_dim": (lambda M, x: x.max(1).values * 2 + x.min(0, keepdim=True).values.sum(),
                [r(3, 4)]),
    "max_all": (lambda M, x: x.max() * x, [r(2, 3)]),
    "matmul_2d": (lambda M, x, y: x @ y, [r(3, 4), r(4, 2)]),
    "matmul_vec_mat": (lambda M, x, y: x @ y, [r(4), r(4, 3)]),
    "matmul_mat_vec": (lambda M, x, y: M.matmul(x, y), [r(3, 4), r(4)]),
    "matmul_dot": (lambda M, x, y: (x @ y).reshape(1), [r(4), r(4)]),
    "matmul_batched": (lambda M, x, y: M.matmul(x, y), [r(2, 3, 4), r(2, 4, 2)]),
    "matmul_broadcast_batch": (lambda M, x, y: M.matmul(x, y), [r(2, 1, 3, 4), r(3, 4, 2)]),
    "matmul_batch_with_2d": (lambda M, x, y: M.matmul(x, y), [r(2, 3, 4), r(4, 2)]),
    "bmm": (lambda M, x, y: M.bmm(x, y), [r(2, 2, 3), r(2, 3, 2)]),
    "transpose": (lambda M, x: x.transpose(0, 1) * M.arange(3.0), [r(3, 2)]),
    "t_then_matmul": (lambda M, x, y: x.t() @ y, [r(4, 3), r(4, 2)]),
    "permute": (lambda M, x: x.permute(2, 0, 1).exp(), [r(2, 3, 2)]),
    "slice_step": (lambda M, x: x[1:, ::2] * 3, [r(3, 5)]),
    "getitem_int": (lambda M, x: x[1] + x[:, 0].sum(), [r(3, 4)]),
    "getitem_none_ellipsis": (lambda M, x: x[None, ..., 1:2] * x[0, 0], [r(2, 3)]),
    "expand": (lambda M, x: x.expand(3, 4) * M.arange(4.0), [r(3, 1)]),
    "expand_new_axes": (lambda M, x: x.expand(2, 3, 4), [r(4)]),
    "reshape_view": (lambda M, x: x.reshape(2, 6).view(3, 4).exp(), [r(3, 4)]),
    "reshape_noncontig": (lambda M, x: x.t().reshape(-1) * M.arange(6.0), [r(2, 3)]),
    "squeeze_unsqueeze_flatten": (lambda M, x: x.unsqueeze(0).squeeze(0).flatten() ** 2,
                                  [r(2, 3)]),
    "cast_round_trip": (lambda M, x: x.float().double() * 2, [r(3)]),
    "clone_contiguous": (lambda M, x: x.t().contiguous().clone() * 3, [r(2, 3)]),
    "floor_zero_grad": (lambda M, x: M.floor(x) + x, [r(4) + 0.3]),
    "chain": (lambda M, x, w, b: M.tanh(x @ w + b).sum(1), [r(4, 3), r(3, 5), r(5)]),
    "reuse": (lambda M, x: x * x * x + x, [r(3)]),
}


# finite differences of a function that rounds to float32 on the way mean nothing
NO_FD = {"cast_round_trip"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient(name: str) -> None:
    fn, arrays = CASES[name]
    check(fn, *arrays, fd=name not in NO_FD)


def test_noncontiguous_inputs_give_gradients_of_the_leaf_shape() -> None:
    base = r(4, 3)

    def fn(M, x):
        return (x.t()[:, 1:] * x.t()[:, :-1]).sum(0)

    check(fn, base)


@needs_torch
def test_matmul_float32_against_torch() -> None:
    a = r(5, 7).astype(np.float32)
    b = r(7, 3).astype(np.float32)
    xs = [lamina.tensor(a).requires_grad_(), lamina.tensor(b).requires_grad_()]
    ts = [torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)]
    (xs[0] @ xs[1]).tanh().sum().backward()
    (ts[0] @ ts[1]).tanh().sum().backward()
    for x, t in zip(xs, ts):
        assert x.grad.dtype is lamina.float32
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)


@needs_torch
@settings(max_examples=30, deadline=None)
@given(st.data())
def test_broadcast_binary_ops(data: st.DataObject) -> None:
    """Random broadcast shapes, dtypes, number operands and op choice vs torch."""
    rank = data.draw(st.integers(0, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    other = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    other = other[data.draw(st.integers(0, len(other))):]
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    op = data.draw(st.sampled_from(["add", "sub", "mul", "div", "maximum", "pow"]))
    scalar = data.draw(st.sampled_from([None, 0.5, 2, -1.5]))
    a = RNG.uniform(0.5, 2.0, size=shape).astype(dtype)
    b = RNG.uniform(0.5, 2.0, size=other).astype(dtype)
    arrays = [a] if scalar is not None and op != "maximum" else [a, b]

    def fn(M, x, y=None):
        rhs = y if y is not None else scalar
        return getattr(M, op)(x, rhs)

    out, got = tape_grads(fn, arrays)
    tout, want = torch_grads(fn, arrays)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, tout, rtol=tol, atol=tol)
    for g, e, x in zip(got, want, arrays):
        assert g.shape == x.shape and g.dtype == x.dtype
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


def test_int_inputs_mixed_with_float_get_no_grad_path() -> None:
    x = lamina.tensor([1.0, 2.0, 3.0]).requires_grad_()
    i = lamina.tensor([1, 2, 3])
    y = (x * i + i).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])
    assert not (x > 1).requires_grad
    assert x.argmax().grad_fn is None


def test_float16_gradients_keep_the_dtype() -> None:
    x = lamina.tensor([0.5, 1.0, 2.0], dtype=lamina.float16).requires_grad_()
    (x * x).sum().backward()
    assert x.grad.dtype is lamina.float16
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), [1.0, 2.0, 4.0])
