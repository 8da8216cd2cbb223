"""In-place ops: values against numpy, visibility through views, dtype rules, versions,
and their autograd (against PyTorch when installed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.frontend import inplace
from tests.frontend.oracle import needs_torch, torch

RNG = np.random.default_rng(11)


def arr(*shape: int, dtype=np.float32, low=-3.0, high=3.0) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.uniform(low, high, size=shape).astype(dtype)
    return RNG.integers(int(low), int(high) + 1, size=shape).astype(dtype)


BINARY = {
    "add_": np.add, "sub_": np.subtract, "mul_": np.multiply, "div_": np.divide,
    "pow_": np.power,
}
UNARY = {
    "neg_": np.negative, "abs_": np.abs, "exp_": np.exp, "tanh_": np.tanh, "sqrt_": np.sqrt,
    "sin_": np.sin, "floor_": np.floor, "relu_": lambda a: np.maximum(a, 0),
    "sigmoid_": lambda a: 1 / (1 + np.exp(-a)),
}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_binary_values_and_broadcasting(data: st.DataObject) -> None:
    rank = data.draw(st.integers(0, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    other_shape = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    other_shape = other_shape[data.draw(st.integers(0, len(shape))):]
    name = data.draw(st.sampled_from(sorted(BINARY)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    use_number = data.draw(st.booleans())
    a = arr(*shape, dtype=dtype, low=0.5, high=2.0)
    b = 1.5 if use_number else arr(*other_shape, dtype=dtype, low=0.5, high=2.0)
    x = lamina.tensor(a)
    ref = x
    out = getattr(x, name)(b if use_number else lamina.tensor(b))
    assert out is ref and x.dtype is lamina.float32 if dtype == np.float32 else True
    want = BINARY[name](a, b).astype(dtype)
    np.testing.assert_allclose(x.numpy(), want, rtol=2e-6 if dtype == np.float32 else 1e-14)
    assert x._version == 1


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_values_on_a_transposed_view(name: str) -> None:
    a = arr(3, 4, low=0.1) if name == "sqrt_" else arr(3, 4)
    base = lamina.tensor(a.copy())
    getattr(base.t(), name)()
    np.testing.assert_allclose(base.numpy(), UNARY[name](a).astype(np.float32), rtol=1e-6,
                               atol=1e-6)


def test_writes_are_visible_through_every_view() -> None:
    x = lamina.zeros(2, 3)
    t = x.t()
    t.add_(1)
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))
    x[0].mul_(3)
    np.testing.assert_array_equal(x.numpy(), [[3, 3, 3], [1, 1, 1]])
    x[:, ::2].sub_(lamina.tensor([10.0, 20.0]))
    np.testing.assert_array_equal(x.numpy(), [[-7, 3, -17], [-9, 1, -19]])
    np.testing.assert_array_equal(t.numpy(), x.numpy().T)
    x.view(6)[4:].fill_(5)
    np.testing.assert_array_equal(x.numpy(), [[-7, 3, -17], [-9, 5, 5]])
    assert x._version == t._version == 4
    x[1, 2].zero_()  # a 0-d view
    assert x.numpy()[1, 2] == 0 and x._version == 5


def test_python_inplace_operators_keep_identity() -> None:
    x = lamina.tensor([1.0, 2.0])
    y = x
    x += 1
    x *= lamina.tensor([2.0, 3.0])
    x -= 1
    x /= 2
    assert x is y
    np.testing.assert_allclose(y.numpy(), [1.5, 4.0])


def test_dtype_rules() -> None:
    i = lamina.tensor([1, 2, 3])
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired "
                                           "output type Long"):
        i.add_(1.5)
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired "
                                           "output type Long"):
        i.div_(2)
    with pytest.raises(RuntimeError, match="result type Float can't be cast"):
        i.exp_()
    with pytest.raises(RuntimeError, match="result type Long can't be cast to the desired "
                                           "output type Bool"):
        lamina.tensor([True]).add_(1)
    np.testing.assert_array_equal(i.mul_(2).numpy(), [2, 4, 6])
    f = lamina.tensor([1.0, 2.0])
    f.add_(lamina.tensor([0.5, 0.25], dtype=lamina.float64))  # float64 result into float32
    assert f.dtype is lamina.float32
    np.testing.assert_array_equal(f.numpy(), [1.5, 2.25])
    f.add_(lamina.tensor([1, 1]))
    np.testing.assert_array_equal(f.numpy(), [2.5, 3.25])


def test_shape_may_not_grow() -> None:
    x = lamina.zeros(3)
    with pytest.raises(RuntimeError, match=r"output with shape \[3\] doesn't match the "
                                           r"broadcast shape \[2, 3\]"):
        x.add_(lamina.ones(2, 3))


def test_overlapping_and_read_only_targets_are_refused() -> None:
    x = lamina.ones(3).expand(2, 3)
    with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
        x.add_(1)


def test_copy_broadcasts_and_converts() -> None:
    dst = lamina.zeros(3, 4, dtype=lamina.int32)
    src = lamina.tensor([1.7, -2.7, 3.2, 0.0], dtype=lamina.float64)
    dst.copy_(src)
    np.testing.assert_array_equal(dst.numpy(), np.tile([1, -2, 3, 0], (3, 1)))
    b = lamina.zeros(4, dtype=lamina.bool)
    b.copy_(lamina.tensor([0.0, 0.5, -1.0, 0.0]))
    np.testing.assert_array_equal(b.numpy(), [False, True, True, False])
    # strided source into a strided destination
    big = lamina.zeros(4, 6)
    s = lamina.tensor(np.arange(12.0).reshape(3, 4)).t()
    big[:, ::2].copy_(s)
    want = np.zeros((4, 6), np.float32)
    want[:, ::2] = np.arange(12.0).reshape(3, 4).T
    np.testing.assert_array_equal(big.numpy(), want)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        lamina.zeros(3).copy_(lamina.zeros(2, 3))


def test_copy_from_an_overlapping_view() -> None:
    a = np.arange(9.0).reshape(3, 3)
    x = lamina.tensor(a)
    x.copy_(x.t())
    np.testing.assert_array_equal(x.numpy(), a.T)
    y = lamina.tensor(np.arange(6.0))
    y[1:].copy_(y[:-1])  # a shifted overlap: every element must read the old value
    np.testing.assert_array_equal(y.numpy(), [0, 0, 1, 2, 3, 4])
    y.copy_(y)
    np.testing.assert_array_equal(y.numpy(), [0, 0, 1, 2, 3, 4])


def test_fill_zero_masked_fill_clamp() -> None:
    x = lamina.tensor(np.arange(6.0).reshape(2, 3))
    x.masked_fill_(lamina.tensor([True, False, True]), -1.0)
    np.testing.assert_array_equal(x.numpy(), [[-1, 1, -1], [-1, 4, -1]])
    x.clamp_(min=0.5, max=3)
    np.testing.assert_array_equal(x.numpy(), [[0.5, 1, 0.5], [0.5, 3, 0.5]])
    x.clamp_min_(1).clamp_max_(2)
    np.testing.assert_array_equal(x.numpy(), [[1, 1, 1], [1, 2, 1]])
    x.fill_(lamina.tensor(7.0))
    np.testing.assert_array_equal(x.numpy(), np.full((2, 3), 7.0))
    x.zero_()
    np.testing.assert_array_equal(x.numpy(), np.zeros((2, 3)))
    i = lamina.tensor([1, 2, 3])
    i.masked_fill_(lamina.tensor([False, True, False]), 2.9)  # the value is cast: 2
    np.testing.assert_array_equal(i.numpy(), [1, 2, 3])
    with pytest.raises(RuntimeError, match="boolean masks"):
        x.masked_fill_(lamina.tensor([1, 0, 1]), 1.0)
    with pytest.raises(RuntimeError, match="result type Float can't be cast"):
        i.clamp_(0.5)
    h = lamina.tensor([1.0, 2.0], dtype=lamina.bfloat16)
    h.fill_(3.0)
    np.testing.assert_array_equal(h.float().numpy(), [3.0, 3.0])


def test_empty_tensors_and_scalars() -> None:
    e = lamina.zeros(0, 3)
    e.add_(1)
    assert e._version == 1 and e.shape == (0, 3)
    s = lamina.tensor(2.0)
    s.mul_(4)
    assert s.item() == 8.0


def test_writes_go_through_the_generated_copy_kernel() -> None:
    inplace._programs.clear()
    x = lamina.ones(2, 3, dtype=lamina.float64)
    x.t().add_(1)
    assert len(inplace._programs) == 1
    ((rank, src, dst, *_),) = inplace._programs
    assert (src.name, dst.name) == ("f64", "f64")
    text = str(inplace.copy_module("c", 2, src, dst, (None, None), (None, 1)))
    assert "loop.store" in text and "loop.parallel" in text


# -- autograd through in-place ops ------------------------------------------------------------
def _grads(fn, *arrays, module=lamina):
    xs = [module.tensor(a, requires_grad=True) for a in arrays]
    fn(module, *xs).sum().backward()
    return [x.grad.numpy() for x in xs]


CASES = {
    "mul_scalar": lambda M, x: (x * 1).mul_(2),
    "add_tensor": lambda M, x, w: (x * 1).add_(w * w),
    "mul_self": lambda M, x: (x + 0).mul_(x + 0),
    "sin_then_more": lambda M, x: (x * 1).sin_().mul_(3).sub_(x),
    "clamp_non_leaf": lambda M, x: (x * 2).clamp_(-1.0, 1.0) * x,
    "masked_fill": lambda M, x: (x * 3).masked_fill_(x > 0, 0.5) * x,
    "copy_into_non_leaf": lambda M, x, w: (x * 2).copy_(w * 5) + x,
    "zero_then_add": lambda M, x, w: (x * 2).zero_().add_(w),
    "pow_then_div": lambda M, x, w: (x + 1).pow_(2).div_(w),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_autograd_through_inplace(name: str) -> None:
    fn = CASES[name]
    n = fn.__code__.co_argcount - 1
    arrays = [RNG.uniform(-1.5, 1.5, size=(2, 3)) for _ in range(n)]
    if name == "pow_then_div":
        arrays[1] = np.abs(arrays[1]) + 0.5
    got = _grads(fn, *arrays)
    if torch is None:
        pytest.skip("PyTorch is not installed")
    want = _grads(fn, *arrays, module=torch)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_inplace_rebases_history() -> None:
    x = lamina.tensor([1.0, 2.0], dtype=lamina.float64, requires_grad=True)
    y = x * 1
    before = y.grad_fn
    y.mul_(3)
    assert y.grad_fn is not before and y.grad_fn.name() == "MulBackward0"
    assert y._version == 1 and not y.is_leaf
    buf = lamina.zeros(2, dtype=lamina.float64)
    buf.add_(x)  # a plain tensor becomes part of the graph
    assert buf.requires_grad and not buf.is_leaf
    (y + buf).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 4.0])


def test_inplace_on_a_view_of_a_graph_tensor_is_refused() -> None:
    x = lamina.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(NotImplementedError, match="view of a tensor that requires grad"):
        y[0].add_(1)


def test_optimizer_style_update_under_no_grad() -> None:
    p = lamina.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    with lamina.no_grad():
        p.sub_(p.grad, alpha=0.5)
        p.grad.zero_()
    assert p.is_leaf and p.requires_grad and p._version == 1
    np.testing.assert_allclose(p.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.0])


@needs_torch
def test_add_alpha_and_addcmul_like_torch() -> None:
    a, b, c = (RNG.uniform(-1, 1, size=(3,)) for _ in range(3))
    x = lamina.tensor(a)
    x.add_(lamina.tensor(b), alpha=-2.0).addcmul_(lamina.tensor(b), lamina.tensor(c), value=0.5)
    x.addcdiv_(lamina.tensor(b), lamina.tensor(c * c + 1), value=2).lerp_(lamina.tensor(c), 0.3)
    t = torch.tensor(a)
    t.add_(torch.tensor(b), alpha=-2.0).addcmul_(torch.tensor(b), torch.tensor(c), value=0.5)
    t.addcdiv_(torch.tensor(b), torch.tensor(c * c + 1), value=2).lerp_(torch.tensor(c), 0.3)
    np.testing.assert_allclose(x.numpy(), t.numpy(), rtol=1e-12)


def test_inplace_inside_compile_rebinds_the_traced_value() -> None:
    f = lamina.compile(lambda x: (x * 2).add_(1).mul_(x))
    np.testing.assert_allclose(f(lamina.tensor([1.0, 2.0, 3.0])).numpy(), [3.0, 10.0, 21.0])
    captured = lamina.tensor([1.0, 2.0])  # written back after each call (whole-step compile)
    g = lamina.compile(lambda y: captured.add_(y))
    g(lamina.tensor([1.0, 1.0]))
    g(lamina.tensor([1.0, 1.0]))
    np.testing.assert_allclose(captured.numpy(), [3.0, 4.0])
