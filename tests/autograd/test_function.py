"""Custom autograd Functions, gradcheck and gradgradcheck."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.autograd import Function, GradcheckError, gradcheck, gradgradcheck


def leaf(values) -> lamina.Tensor:
    return lamina.tensor(values, dtype=lamina.float64).requires_grad_()


class Exp(Function):
    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class ScaledMul(Function):
    """x * y * k with a non-tensor argument."""

    @staticmethod
    def forward(ctx, x, y, k):
        ctx.save_for_backward(x, y)
        ctx.k = k
        ctx.seen_needs = ctx.needs_input_grad
        return x * y * k

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        gx = g * y * ctx.k if ctx.needs_input_grad[0] else None
        gy = g * x * ctx.k if ctx.needs_input_grad[1] else None
        return gx, gy, None


class WrongSin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos() * 1.01  # 1 % off


def test_function_with_saved_output() -> None:
    x = leaf([0.0, 1.0, -2.0])
    y = Exp.apply(x)
    assert y.grad_fn.name() == "ExpBackward" and y.requires_grad
    (y * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([0.0, 1.0, -2.0]), rtol=1e-12)


def test_function_needs_input_grad_and_non_tensor_args() -> None:
    x = leaf([1.0, 2.0])
    y = lamina.tensor([3.0, 4.0], dtype=lamina.float64)
    out = ScaledMul.apply(x, y, 0.5)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.5, 2.0])
    assert y.grad is None
    assert out.grad_fn.ctx.seen_needs == (True, False, False)


def test_function_without_grad_records_nothing() -> None:
    x = lamina.ones(2)
    assert Exp.apply(x).grad_fn is None
    with lamina.no_grad():
        assert Exp.apply(leaf([1.0])).grad_fn is None


def test_function_saved_tensors_freed_and_version_checked() -> None:
    x = leaf([1.0])
    y = Exp.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    a = x * 1
    b = ScaledMul.apply(a, a, 1.0)
    a.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()


def test_function_wrong_number_of_gradients() -> None:
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(leaf([1.0]), leaf([2.0])).sum().backward()


def test_function_mark_non_differentiable_and_setup_context() -> None:
    class SortLike(Function):
        @staticmethod
        def forward(x):
            return x * 2, (x > 0).float()

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.mark_non_differentiable(output[1])

        @staticmethod
        def backward(ctx, g, g_mask):
            return g * 2

    x = leaf([1.0, -1.0])
    y, mask = SortLike.apply(x)
    assert y.requires_grad and not mask.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_function_in_higher_order_graph() -> None:
    x = leaf([0.5])
    y = Exp.apply(x * x)
    (g,) = lamina.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = lamina.autograd.grad(g.sum(), x)
    v = 0.5
    np.testing.assert_allclose(h.numpy(), [(2 + 4 * v * v) * np.exp(v * v)], rtol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda x, y: (x * y).sum(1),
    lambda x, y: (x @ y.t()).tanh(),
    lambda x, y: x.exp() / (y * y + 1),
    lambda x, y: (x - x.mean(1, keepdim=True)).amax(1) + y.sum(),
    lambda x, y: ScaledMul.apply(x, y, 2.0),
])
def test_gradcheck_passes(fn) -> None:
    rng = np.random.default_rng(3)
    x = leaf(rng.uniform(-1, 1, (2, 3)))
    y = leaf(rng.uniform(-1, 1, (2, 3)))
    assert gradcheck(fn, (x, y))


def test_gradcheck_fails_on_a_wrong_function() -> None:
    x = leaf([0.3, -0.7])
    with pytest.raises(GradcheckError, match="Jacobian mismatch for output 0 with respect to "
                                             "input 0"):
        gradcheck(WrongSin.apply, (x,))
    assert gradcheck(WrongSin.apply, (x,), raise_exception=False) is False
    assert isinstance(GradcheckError("x"), RuntimeError)


def test_gradgradcheck() -> None:
    x = leaf([0.3, -0.7, 1.1])
    assert gradgradcheck(lambda t: (t * t).tanh(), (x,))
    assert gradgradcheck(lambda t: Exp.apply(t) * t, (x,))
