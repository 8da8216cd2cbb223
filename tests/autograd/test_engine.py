"""The backward engine: accumulation, retain_graph, version checks, hooks, grad(), higher order."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.autograd import derivative
from lamina.frontend import dispatch
from tests.frontend.oracle import needs_torch, torch


def leaf(values, dtype=lamina.float64) -> lamina.Tensor:
    return lamina.tensor(values, dtype=dtype).requires_grad_()


def np_(t) -> np.ndarray:
    return t.detach().numpy()


# -- accumulation and graph lifetime ------------------------------------------------------
def test_gradients_accumulate_over_two_backward_calls_in_the_same_grad_object() -> None:
    x = leaf([1.0, 2.0, 3.0])
    (x * 2).sum().backward()
    g = x.grad
    (x * x).sum().backward()
    assert x.grad is g  # accumulated in place, like PyTorch
    np.testing.assert_allclose(np_(x.grad), [4.0, 6.0, 8.0])
    assert x.grad.grad_fn is None and not x.grad.requires_grad


def test_first_gradient_is_a_private_copy() -> None:
    # d(x + y)/dx and d(x + y)/dy are the same incoming tensor; .grad must not alias
    x, y = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (x + y).sum().backward()
    with lamina.no_grad():
        x.grad.mul_(10)
    np.testing.assert_allclose(np_(y.grad), [1.0, 1.0])


def test_a_gradient_a_hook_kept_is_not_reused_as_grad() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    kept = []
    x.register_hook(kept.append)
    (x * w).sum().backward()
    (x * w).sum().backward()  # accumulates into x.grad in place
    np.testing.assert_allclose(np_(kept[0]), [3.0, 4.0])
    np.testing.assert_allclose(np_(x.grad), [6.0, 8.0])
    np.testing.assert_allclose(np_(w.grad), [2.0, 4.0])


def test_second_backward_needs_retain_graph() -> None:
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(np_(x.grad), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_saved_tensors_are_freed_after_backward() -> None:
    x = leaf([1.0, 2.0])
    y = x * x
    node = y.grad_fn
    y.sum().backward()
    assert node.released and node.args is None and node.outs is None


def test_non_scalar_backward_needs_a_gradient() -> None:
    x = leaf([1.0, 2.0])
    y = x * 3
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        y.backward()
    y.backward(lamina.tensor([1.0, 10.0], dtype=lamina.float64))
    np.testing.assert_allclose(np_(x.grad), [3.0, 30.0])
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 3).backward(lamina.ones(3, dtype=lamina.float64))


def test_backward_of_a_tensor_without_graph_fails() -> None:
    with pytest.raises(RuntimeError, match="element 0 of tensors does not require grad"):
        lamina.ones(2).sum().backward()


def test_several_roots_with_their_gradients() -> None:
    x = leaf([1.0, 2.0])
    a, b = x * 2, x * x
    lamina.autograd.backward([a, b], [lamina.ones(2, dtype=lamina.float64),
                                      lamina.full((2,), 0.5, dtype=lamina.float64)])
    np.testing.assert_allclose(np_(x.grad), [2.0 + 1.0, 2.0 + 2.0])


def test_diamond_and_reuse() -> None:
    x = leaf([0.5, -1.0])
    a = x.exp()
    b = a * x
    c = (a + b) * a
    c.sum().backward()
    xv = np.array([0.5, -1.0])
    e = np.exp(xv)
    # c = e^2 (1 + x): dc/dx = 2 e^2 (1 + x) + e^2
    np.testing.assert_allclose(np_(x.grad), 2 * e * e * (1 + xv) + e * e, rtol=1e-12)


def test_long_chain_has_no_recursion_limit() -> None:
    x = leaf([1.0])
    y = x
    for _ in range(1500):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_allclose(np_(x.grad), [1.0])


# -- version counters ------------------------------------------------------------------------
def test_modifying_a_saved_tensor_is_detected() -> None:
    x = leaf([1.0, 2.0])
    a = x * 1
    b = a * a
    a.add_(1)
    assert a._version == 1
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation: "
                       r"\[lamina.DoubleTensor \[2\]\].* is at version 1; expected version 0"):
        b.sum().backward()


def test_modifying_a_tensor_the_backward_does_not_read_is_fine() -> None:
    x = leaf([1.0, 2.0])
    a = x * 1
    b = a + 1  # add's backward needs no values
    a.mul_(5)
    b.sum().backward()
    np.testing.assert_allclose(np_(x.grad), [1.0, 1.0])


def test_a_modified_output_is_recomputed_from_the_inputs() -> None:
    # exp's backward reads its output; PyTorch refuses here, the tape recomputes exp(x)
    x = leaf([0.0, 1.0])
    y = x.exp()
    y.add_(1)
    y.sum().backward()
    np.testing.assert_allclose(np_(x.grad), np.exp([0.0, 1.0]), rtol=1e-12)


def test_a_view_whose_base_history_was_rewritten_is_refused() -> None:
    x = leaf([1.0, 2.0, 3.0])
    y = x * 1
    v = y[1:]
    w = v * 3  # made before the in-place op: still right
    y.mul_(2)  # v now shows 2 * y, which its recorded history does not say
    with pytest.raises(RuntimeError, match="used after an in-place operation recorded by"):
        v.sum()
    with pytest.raises(RuntimeError, match="used after an in-place operation recorded by"):
        v.backward(lamina.ones(2, dtype=lamina.float64))
    with lamina.no_grad():
        np.testing.assert_allclose(np_(v.sum()), 10.0)  # values are fine without recording
    w.sum().backward(retain_graph=True)
    np.testing.assert_allclose(np_(x.grad), [0.0, 3.0, 3.0])
    x.grad = None
    with lamina.no_grad():
        y.add_(1)  # not recorded: histories stay valid
    (y[:2] * 5).sum().backward()
    np.testing.assert_allclose(np_(x.grad), [10.0, 10.0, 0.0])  # y = 2 * x (+ 1)


def test_a_base_written_through_its_view_is_refused() -> None:
    h = leaf([1.0, 2.0])
    out = lamina.zeros(2, 2, dtype=lamina.float64)
    d = out.detach()
    out[0].copy_(h * 3)  # recorded on the view; out itself does not know
    with pytest.raises(RuntimeError, match="used after an in-place operation recorded by"):
        (out * 2).sum()
    assert (d * h).requires_grad  # a detached alias is a constant: never stale
    np.testing.assert_allclose(np_(d), [[3.0, 6.0], [0.0, 0.0]])


def test_inplace_reading_its_own_view() -> None:
    # PyTorch refuses y.add_(y.t()) (input and output overlap); computed out of place first,
    # it is well defined here
    def f(x):
        y = x * 1
        return y.add_(y.t()).mul_(y.t())

    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([[1.0, 2.0], [3.0, 4.0]])
    s = v + v.T
    np.testing.assert_allclose(np_(f(x)), s * s.T)
    assert lamina.autograd.gradcheck(f, (x,))


def test_detach_shares_storage_and_version() -> None:
    x = leaf([1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    d.add_(1)
    np.testing.assert_allclose(np_(x), [2.0, 3.0])
    assert x._version == d._version == 1


# -- leaves and requires_grad ----------------------------------------------------------------
def test_leaf_in_place_is_refused_unless_no_grad() -> None:
    x = leaf([1.0])
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in "
                                           "an in-place operation."):
        x.add_(1)
    with lamina.no_grad():
        x.add_(1)
    assert x.is_leaf and x.requires_grad
    np.testing.assert_allclose(np_(x), [2.0])


def test_requires_grad_flags() -> None:
    x = lamina.ones(2)
    assert not x.requires_grad and x.is_leaf
    x.requires_grad = True
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad_fn.name() == "MulBackward0"
    assert y.grad_fn.next_functions[0][0].name() == "AccumulateGrad"
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf"):
        y.requires_grad = False
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        lamina.tensor([1, 2]).requires_grad_()
    assert lamina.zeros(3, requires_grad=True).requires_grad
    assert lamina.tensor([1.0], requires_grad=True).is_leaf
    z = x.detach().requires_grad_()
    z.detach_()
    assert not z.requires_grad


def test_grad_setter_checks_shape_and_dtype() -> None:
    x = leaf([1.0, 2.0])
    x.grad = lamina.ones(2, dtype=lamina.float64)
    with pytest.raises(RuntimeError, match="different size"):
        x.grad = lamina.ones(3, dtype=lamina.float64)
    with pytest.raises(RuntimeError, match="different type"):
        x.grad = lamina.ones(2)
    x.grad = None
    assert x.grad is None


# -- hooks and retain_grad --------------------------------------------------------------------
def test_hooks_see_and_replace_gradients() -> None:
    x = leaf([1.0, 2.0])
    seen = []
    x.register_hook(lambda g: seen.append(np_(g).copy()))
    y = x * 3
    h = y.register_hook(lambda g: g * 10)
    y.retain_grad()
    assert y.retains_grad and not x.retains_grad
    (y * y).sum().backward()
    np.testing.assert_allclose(np_(y.grad), [60.0, 120.0])  # retain_grad runs after hooks
    np.testing.assert_allclose(seen[0], [180.0, 360.0])
    np.testing.assert_allclose(np_(x.grad), [180.0, 360.0])
    h.remove()
    x.grad = None
    y = x * 3
    (y * y).sum().backward()
    np.testing.assert_allclose(np_(x.grad), [18.0, 36.0])


def test_non_leaf_grad_is_none_with_a_warning() -> None:
    x = leaf([1.0])
    y = x * 2
    y.sum().backward()
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None


def test_retained_grads_accumulate() -> None:
    x = leaf([1.0, 2.0])
    y = x * 2
    y.retain_grad()
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    np.testing.assert_allclose(np_(y.grad), [2.0, 2.0])


# -- autograd.grad --------------------------------------------------------------------------------
def test_grad_returns_without_accumulating() -> None:
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    gx, gw = lamina.autograd.grad((x * w).sum(), [x, w])
    np.testing.assert_allclose(np_(gx), [3.0, 4.0])
    np.testing.assert_allclose(np_(gw), [1.0, 2.0])
    assert x.grad is None and w.grad is None


def test_grad_allow_unused() -> None:
    x, unused = leaf([1.0]), leaf([2.0])
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        lamina.autograd.grad(y, [x, unused], retain_graph=True)
    gx, gu = lamina.autograd.grad(y, [x, unused], allow_unused=True, retain_graph=True)
    assert gu is None
    np.testing.assert_allclose(np_(gx), [2.0])
    _, gz = lamina.autograd.grad(y, [x, unused], materialize_grads=True)
    np.testing.assert_allclose(np_(gz), [0.0])
    with pytest.raises(RuntimeError, match="does not require grad"):
        lamina.autograd.grad((x * 2).sum(), lamina.ones(1))


def test_grad_with_respect_to_a_non_leaf_stops_there() -> None:
    x = leaf([1.0, 2.0])
    h = x * x
    y = (h * 3).sum()
    (gh,) = lamina.autograd.grad(y, h)
    np.testing.assert_allclose(np_(gh), [3.0, 3.0])
    assert x.grad is None


def test_backward_inputs_limits_accumulation() -> None:
    x, w = leaf([1.0]), leaf([2.0])
    h = x * w
    (h * h).sum().backward(inputs=[w, h])
    assert x.grad is None
    np.testing.assert_allclose(np_(w.grad), [2 * 2.0 * 1.0])
    np.testing.assert_allclose(np_(h.grad), [4.0])


@pytest.mark.parametrize("fn, d1, d2", [
    (lambda x: x ** 3, lambda v: 3 * v ** 2, lambda v: 6 * v),
    (lambda x: x.tanh(), lambda v: 1 - np.tanh(v) ** 2,
     lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2)),
    (lambda x: (x * x).exp(), lambda v: 2 * v * np.exp(v * v),
     lambda v: (2 + 4 * v * v) * np.exp(v * v)),
    (lambda x: x.sigmoid() * x, None, None),
])
def test_second_derivatives(fn, d1, d2) -> None:
    v = np.array([0.3, -1.2, 2.0])
    x = leaf(v)
    (g,) = lamina.autograd.grad(fn(x).sum(), x, create_graph=True)
    assert g.requires_grad
    (h,) = lamina.autograd.grad(g.sum(), x)
    if d1 is None:  # against finite differences of the first derivative
        def first(u):
            xx = leaf(u)
            return np_(lamina.autograd.grad(fn(xx).sum(), xx)[0])
        eps = 1e-6
        d2v = np.array([(first(v + eps * e) - first(v - eps * e))[i] / (2 * eps)
                        for i, e in enumerate(np.eye(3))])
        np.testing.assert_allclose(np_(h), d2v, rtol=1e-6, atol=1e-8)
        return
    np.testing.assert_allclose(np_(g), d1(v), rtol=1e-12)
    np.testing.assert_allclose(np_(h), d2(v), rtol=1e-10)


def test_third_derivative_and_backward_with_create_graph() -> None:
    x = leaf([2.0])
    y = (x ** 4).sum()
    (g,) = lamina.autograd.grad(y, x, create_graph=True)
    (h,) = lamina.autograd.grad(g.sum(), x, create_graph=True)
    h.sum().backward()
    np.testing.assert_allclose(np_(x.grad), [24.0 * 2.0])
    x.grad = None
    y = (x ** 3).sum()
    y.backward(create_graph=True)
    assert x.grad.requires_grad
    g = x.grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(np_(x.grad), [12.0])


@needs_torch
def test_hessian_vector_product_against_torch() -> None:
    v = np.array([[0.5, -0.3], [1.2, 0.1]])
    w0 = np.array([[0.2, 0.4], [-0.6, 0.3]])
    x, w = leaf(v), leaf(w0)
    loss = (x @ w).tanh().pow(2).sum()
    (gx,) = lamina.autograd.grad(loss, x, create_graph=True)
    (gw,) = lamina.autograd.grad((gx * gx).sum(), w)
    xt = torch.tensor(v, requires_grad=True)
    wt = torch.tensor(w0, requires_grad=True)
    lt = (xt @ wt).tanh().pow(2).sum()
    (gxt,) = torch.autograd.grad(lt, xt, create_graph=True)
    (gwt,) = torch.autograd.grad((gxt * gxt).sum(), wt)
    np.testing.assert_allclose(np_(gx), gxt.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(np_(gw), gwt.numpy(), rtol=1e-9)


# -- caching --------------------------------------------------------------------------------------
def test_backward_kernels_do_not_depend_on_sizes() -> None:
    def step(n: int) -> None:
        x = lamina.tensor(np.linspace(-1, 1, 3 * n).reshape(3, n)).requires_grad_()
        w = lamina.tensor(np.linspace(0, 1, n * 2).reshape(n, 2)).requires_grad_()
        ((x @ w).tanh() * 2 + x.sum(1, keepdim=True)).mean().backward()

    step(4)
    before = dispatch.eager_signatures()
    programs = len(derivative._programs)
    step(7)
    step(9)
    assert dispatch.eager_signatures() == before
    assert len(derivative._programs) > programs  # shapes are part of the (Python) program key


def test_weight_only_gradient_skips_the_input_gradient() -> None:
    x = lamina.ones(3, 4, dtype=lamina.float64)
    w = leaf(np.ones((4, 2)))
    y = x @ w
    prog = derivative.program_for(y.grad_fn, [False, True], True)
    assert prog.text.count("prim.dot_general") == 1
    assert prog.results[0] is None and prog.results[1] is not None
    assert 0 in prog.reads_args and 1 not in prog.reads_args
