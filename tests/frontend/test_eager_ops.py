"""Eager ops against numpy (always) and PyTorch (when installed), on random shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import assert_close, needs_torch, torch

DTYPES = [np.float32, np.float64, np.int32, np.int64]


def rand(shape, dtype, rng, low=-3, high=3):
    if np.dtype(dtype).kind == "f":
        return rng.uniform(low, high, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.integers(low, high + 1, size=shape).astype(dtype)


def noncontig(a: np.ndarray) -> np.ndarray:
    """The same values through a transposed, strided view (a non-contiguous input)."""
    if a.ndim < 2:
        big = np.zeros(a.shape[:-1] + (a.shape[-1] * 2,) if a.ndim else (), a.dtype)
        if a.ndim == 0:
            return a
        big[..., ::2] = a
        return big[..., ::2]
    t = np.ascontiguousarray(np.swapaxes(a, -1, -2))
    return np.swapaxes(t, -1, -2)


BINARY = {
    "add": (lamina.add, np.add),
    "sub": (lamina.sub, np.subtract),
    "mul": (lamina.mul, np.multiply),
    "maximum": (lamina.maximum, np.maximum),
    "minimum": (lamina.minimum, np.minimum),
}


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                 min_side=0, max_side=5),
       dtype=st.sampled_from(DTYPES), op=st.sampled_from(sorted(BINARY)),
       strided=st.booleans(), seed=st.integers(0, 2**16))
def test_binary_broadcasting(shapes, dtype, op, strided, seed):
    rng = np.random.default_rng(seed)
    a, b = (rand(s, dtype, rng) for s in shapes.input_shapes)
    if strided:
        a, b = noncontig(a), noncontig(b)
    fn, ref = BINARY[op]
    out = fn(lamina.from_numpy(a), lamina.from_numpy(b))
    assert_close(out.numpy(), ref(a, b), dtype=dtype)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 max_side=4),
       seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_division_and_comparisons(shapes, seed, dtype):
    rng = np.random.default_rng(seed)
    a, b = (rand(s, dtype, rng) for s in shapes.input_shapes)
    b[b == 0] = 1
    x, y = lamina.from_numpy(a), lamina.from_numpy(b)
    assert_close((x / y).numpy(), a / b, dtype=dtype)
    for f, ref in [(lamina.lt, np.less), (lamina.le, np.less_equal), (lamina.gt, np.greater),
                   (lamina.ge, np.greater_equal), (lamina.eq, np.equal),
                   (lamina.ne, np.not_equal)]:
        assert_close(f(x, y).numpy(), ref(a, b), dtype=bool)


UNARY = {
    "exp": (np.exp, -10, 10), "log": (np.log, 0.01, 100), "sqrt": (np.sqrt, 0, 100),
    "abs": (np.abs, -5, 5), "neg": (np.negative, -5, 5), "tanh": (np.tanh, -8, 8),
    "sin": (np.sin, -10, 10), "cos": (np.cos, -10, 10), "floor": (np.floor, -5, 5),
    "ceil": (np.ceil, -5, 5), "sigmoid": (lambda a: 1 / (1 + np.exp(-a)), -20, 20),
    "relu": (lambda a: np.maximum(a, 0), -3, 3),
}


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
       op=st.sampled_from(sorted(UNARY)), dtype=st.sampled_from([np.float32, np.float64]),
       strided=st.booleans(), seed=st.integers(0, 2**16))
def test_unary(shape, op, dtype, strided, seed):
    ref, lo, hi = UNARY[op]
    a = rand(shape, dtype, np.random.default_rng(seed), lo, hi)
    if strided:
        a = noncontig(a)
    out = getattr(lamina, op)(lamina.from_numpy(a))
    assert_close(out.numpy(), ref(a.astype(np.float64)).astype(dtype), dtype=dtype,
                 rtol=2e-6 if dtype == np.float32 else 1e-12)


def test_pow_where_and_scalars():
    a = np.array([[1.5, -2.0, 3.0]], np.float32)
    x = lamina.from_numpy(a)
    assert_close((x ** 2).numpy(), a ** 2, dtype=np.float32)
    assert_close((2.0 * x - 1).numpy(), 2 * a - 1, dtype=np.float32)
    assert_close((1 - x).numpy(), 1 - a, dtype=np.float32)
    assert_close(lamina.where(x > 0, x, 0.0).numpy(), np.where(a > 0, a, 0), dtype=np.float32)


def test_integer_true_division_gives_float():
    x = lamina.tensor([1, 2, 3])
    y = x / 2
    assert y.dtype == lamina.float32
    assert_close(y.numpy(), np.array([0.5, 1.0, 1.5], np.float32))


@needs_torch
@pytest.mark.parametrize("lhs", ["f32", "f64", "i32", "i64", "bool", "f32_0d", "i64_0d"])
@pytest.mark.parametrize("rhs", ["f32", "i64", "bool", "f64_0d", "int", "float", "bool_s"])
def test_type_promotion_matches_torch(lhs, rhs):
    def make(spec, lib):
        if spec == "int":
            return 3
        if spec == "float":
            return 2.5
        if spec == "bool_s":
            return True
        name, _, zero = spec.partition("_")
        dtype = {"f32": "float32", "f64": "float64", "i32": "int32", "i64": "int64",
                 "bool": "bool"}[name]
        shape = () if zero else (2,)
        return lib.ones(shape, dtype=getattr(lib, dtype))

    for op in ("add", "mul", "maximum", "div"):
        if op == "maximum" and not all(isinstance(v, lamina.Tensor)
                                       for v in (make(lhs, lamina), make(rhs, lamina))):
            continue
        t = getattr(torch, op)(make(lhs, torch), make(rhs, torch))
        lam = getattr(lamina, op)(make(lhs, lamina), make(rhs, lamina))
        assert str(lam.dtype).split(".")[1] == str(t.dtype).split(".")[1], (op, lhs, rhs)
        np.testing.assert_allclose(lam.numpy().astype(np.float64),
                                   t.numpy().astype(np.float64))


@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5),
       dtype=st.sampled_from(DTYPES), keepdim=st.booleans(), seed=st.integers(0, 2**16),
       data=st.data())
def test_reductions(shape, dtype, keepdim, seed, data):
    a = rand(shape, dtype, np.random.default_rng(seed))
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, min_size=1))
    x = lamina.from_numpy(a)
    ax = tuple(dims)
    expect_sum = a.sum(axis=ax, keepdims=keepdim)
    if np.dtype(dtype).kind != "f":
        expect_sum = expect_sum.astype(np.int64)
    assert_close(lamina.sum(x, dim=dims, keepdim=keepdim).numpy(), expect_sum)
    assert_close(x.amax(dim=dims, keepdim=keepdim).numpy(), a.max(axis=ax, keepdims=keepdim))
    assert_close(x.amin(dim=dims, keepdim=keepdim).numpy(), a.min(axis=ax, keepdims=keepdim))
    if np.dtype(dtype).kind == "f":
        assert_close(x.mean(dim=dims, keepdim=keepdim).numpy(),
                     a.mean(axis=ax, keepdims=keepdim).astype(dtype))
    d = dims[0]
    values, indices = x.max(dim=d, keepdim=keepdim)
    assert_close(values.numpy(), a.max(axis=d, keepdims=keepdim))
    assert_close(indices.numpy(), np.expand_dims(a.argmax(axis=d), d) if keepdim
                 else a.argmax(axis=d))
    assert_close(x.argmin(dim=d).numpy(), a.argmin(axis=d))


def test_full_reductions_and_item():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = lamina.from_numpy(a)
    assert x.sum().item() == 66.0
    assert x.max().item() == 11.0
    assert x.mean().item() == pytest.approx(5.5)
    assert x.sum().shape == ()


@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       dtype=st.sampled_from([np.float32, np.float64]), transpose_b=st.booleans(),
       seed=st.integers(0, 2**16))
def test_matmul_2d(m, k, n, dtype, transpose_b, seed):
    rng = np.random.default_rng(seed)
    a = rand((m, k), dtype, rng)
    b = rand((n, k), dtype, rng).T if transpose_b else rand((k, n), dtype, rng)
    out = lamina.from_numpy(a) @ lamina.from_numpy(b)
    assert_close(out.numpy(), a.astype(np.float64) @ b.astype(np.float64), dtype=dtype,
                 rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("sa,sb", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)),
                                   ((5, 2, 3), (3, 4)), ((2, 1, 2, 3), (4, 3, 2)),
                                   ((1, 3), (2, 3, 1))])
def test_matmul_batched_and_vectors(sa, sb):
    rng = np.random.default_rng(0)
    a, b = rand(sa, np.float32, rng), rand(sb, np.float32, rng)
    out = lamina.matmul(lamina.from_numpy(a), lamina.from_numpy(b))
    assert_close(out.numpy(), np.matmul(a, b), dtype=np.float32, rtol=1e-5)


def test_int_matmul():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = lamina.from_numpy(a) @ lamina.from_numpy(a.T.copy())
    assert_close(out.numpy(), a @ a.T, dtype=np.int64)


def test_creation():
    assert_close(lamina.zeros(2, 3).numpy(), np.zeros((2, 3), np.float32), dtype=np.float32)
    assert_close(lamina.ones((2,), dtype=lamina.int64).numpy(), np.ones(2, np.int64))
    assert_close(lamina.full((2, 2), 7.5).numpy(), np.full((2, 2), 7.5, np.float32))
    assert_close(lamina.arange(5).numpy(), np.arange(5))
    assert_close(lamina.arange(0, 1, 0.25).numpy(), np.arange(0, 1, 0.25, dtype=np.float32))
    assert lamina.empty(3, 4).shape == (3, 4)
    assert lamina.tensor([[1.0, 2.0]]).dtype == lamina.float32
    assert lamina.tensor([True]).dtype == lamina.bool
    assert lamina.zeros(0, 3).numel() == 0


def test_casts():
    x = lamina.tensor([1.7, -1.7, 0.0])
    assert_close(x.long().numpy(), np.array([1, -1, 0]), dtype=np.int64)
    assert_close(x.double().numpy(), np.array([1.7, -1.7, 0.0], np.float32).astype(np.float64))
    assert_close(x.bool().numpy(), np.array([True, True, False]))
    assert_close(x.to(lamina.int32).numpy(), np.array([1, -1, 0], np.int32))


@needs_torch
def test_repr_matches_torch():
    for data in ([1.0, 2.0, 3.0], [[1.5, -2.25], [3.0, 4.0]], [1, 2, 3], [True, False]):
        assert repr(lamina.tensor(data)) == repr(torch.tensor(data)).replace("torch", "lamina")
    assert repr(lamina.tensor([1.0], dtype=lamina.float64)) == \
        "tensor([1.], dtype=lamina.float64)"


@needs_torch
@pytest.mark.parametrize("mode", ["trunc", "floor"])
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_div_rounding_modes_match_torch(mode, dtype):
    a = np.array([7, -7, 7, -7, 0, 5], dtype=dtype)
    b = np.array([2, 2, -2, -2, 3, 5], dtype=dtype)
    got = lamina.div(lamina.from_numpy(a), lamina.from_numpy(b), rounding_mode=mode)
    want = torch.div(torch.from_numpy(a), torch.from_numpy(b), rounding_mode=mode)
    assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1]
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ValueError, match="rounding_mode"):
        lamina.div(lamina.from_numpy(a), 2, rounding_mode="up")


def test_broadcast_error_names_the_output_dimension():
    with pytest.raises(RuntimeError, match="non-singleton dimension 1"):
        lamina.ones(2, 3) + lamina.ones(4)
