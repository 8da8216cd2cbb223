"""Creation ops: linspace/logspace, eye, tril/triu, Tensor.new_*, *_like and type(), against
numpy (always) and PyTorch (when installed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from lamina.frontend import dispatch
from tests.frontend.oracle import needs_torch, torch

FLOATS = [lamina.float32, lamina.float64]
ALL = [lamina.float32, lamina.float64, lamina.float16, lamina.bfloat16, lamina.int64,
       lamina.int32, lamina.int8, lamina.bool]


def _bf16_round(x: np.ndarray) -> np.ndarray:
    """float64 -> bfloat16 (round to nearest even) -> float64, through the bits of float32."""
    f = np.asarray(x, np.float64)
    bits = f.astype(np.float32).view(np.uint32).astype(np.uint64)
    # a float64 rounds to bf16 exactly when it rounds through float32 with odd sticky bits;
    # the values here are exact in float32, so one rounding suffices
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


def _linspace_exact(start: float, end: float, steps: int) -> np.ndarray:
    i = np.arange(steps, dtype=np.float64)
    step = (end - start) / (steps - 1)
    return np.where(i < steps // 2, start + step * i, end - step * (steps - 1 - i))


@given(start=st.floats(-100, 100), end=st.floats(-100, 100), steps=st.integers(2, 300))
def test_linspace_float64_is_pytorchs_formula(start, end, steps):
    got = lamina.linspace(start, end, steps, dtype=lamina.float64).numpy()
    np.testing.assert_array_equal(got, _linspace_exact(start, end, steps))
    assert got[0] == start and got[-1] == end


@given(start=st.floats(-100, 100, width=32), end=st.floats(-100, 100, width=32),
       steps=st.integers(2, 300))
def test_linspace_float32(start, end, steps):
    got = lamina.linspace(start, end, steps).numpy()
    assert got.dtype == np.float32
    i = np.arange(steps, dtype=np.float32)
    s, e = np.float32(start), np.float32(end)
    step = (e - s) / np.float32(steps - 1)
    want = np.where(i < steps // 2, s + step * i, e - step * (np.float32(steps - 1) - i))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [lamina.float16, lamina.bfloat16])
def test_linspace_half_rounds_once(dtype):
    got = lamina.linspace(-3.3, 7.1, 37, dtype=dtype).float().numpy().astype(np.float64)
    s, e = float(np.float32(-3.3)), float(np.float32(7.1))
    i = np.arange(37, dtype=np.float32)
    step = (np.float32(e) - np.float32(s)) / np.float32(36)
    exact = np.where(i < 18, np.float32(s) + step * i, np.float32(e) - step * (36 - i))
    want = exact.astype(np.float16) if dtype is lamina.float16 else _bf16_round(exact)
    np.testing.assert_array_equal(got, np.asarray(want, np.float64))


def test_linspace_ints_and_edges():
    np.testing.assert_array_equal(lamina.linspace(-3.3, 7.1, 17, dtype=lamina.int64).numpy(),
                                  np.trunc(_linspace_exact(-3, 7, 17)).astype(np.int64))
    assert lamina.linspace(0, 1, 0).shape == (0,)
    assert lamina.linspace(2.5, 9, 1).tolist() == [2.5]
    assert lamina.linspace(lamina.tensor(1.0), lamina.tensor(3.0), 3).tolist() == [1, 2, 3]
    with pytest.raises(RuntimeError, match="non-negative"):
        lamina.linspace(0, 1, -1)
    with pytest.raises(TypeError, match="steps"):
        lamina.linspace(0, 1, 2.5)


def test_logspace():
    got = lamina.logspace(-2, 3, 11, dtype=lamina.float64).numpy()
    np.testing.assert_allclose(got, 10.0 ** _linspace_exact(-2, 3, 11), rtol=1e-15)
    got = lamina.logspace(0, 4, 5, base=2.0).numpy()
    np.testing.assert_array_equal(got, [1, 2, 4, 8, 16])
    np.testing.assert_array_equal(lamina.logspace(0.5, 2.5, 5, dtype=lamina.int64).numpy(),
                                  [1, 3, 10, 31, 100])
    assert lamina.logspace(2, 5, 1).tolist() == [100.0]


@needs_torch
@pytest.mark.parametrize("args", [(0, 1, 5), (-3.3, 7.1, 17), (5, -5, 8), (0, 10, 1000),
                                  (1, 1, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_linspace_logspace_vs_torch(args, dtype):
    ld, td = getattr(lamina, dtype), getattr(torch, dtype)
    a = lamina.linspace(*args, dtype=ld).numpy().astype(np.float64)
    b = torch.linspace(*args, dtype=td).numpy().astype(np.float64)
    # PyTorch's vector path computes start + step * i by lanes: 1 ulp (or 1 after truncation)
    np.testing.assert_allclose(a, b, rtol=2.5e-7, atol=1 if dtype.startswith("int") else 1e-6)
    s, e, n = args
    a = lamina.logspace(s / 10, e / 10, n, dtype=ld).numpy().astype(np.float64)
    b = torch.logspace(s / 10, e / 10, n, dtype=td).numpy().astype(np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1 if dtype.startswith("int") else 0)


@pytest.mark.parametrize("dtype", ALL)
def test_eye(dtype):
    for n, m in [(1, 1), (3, 3), (2, 5), (6, 1), (0, 3)]:
        got = lamina.eye(n, m, dtype=dtype)
        assert got.dtype is dtype and got.shape == (n, m)
        np.testing.assert_array_equal(got.float().numpy(), np.eye(n, m))
    assert lamina.eye(4).tolist() == np.eye(4).tolist()
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0"):
        lamina.eye(-1)


@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=0, max_side=6),
       diagonal=st.integers(-7, 7), dtype=st.sampled_from(ALL), transpose=st.booleans(),
       seed=st.integers(0, 2**16))
def test_tril_triu(shape, diagonal, dtype, transpose, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-5, 5, size=shape)
    x = lamina.tensor(a).to(dtype)
    if transpose:
        x = x.transpose(-1, -2)
    ref = x.float().numpy().astype(np.float64)
    for fn, npfn in ((lamina.tril, np.tril), (lamina.triu, np.triu)):
        got = fn(x, diagonal)
        assert got.dtype is dtype and got.shape == x.shape
        np.testing.assert_array_equal(got.float().numpy(), npfn(ref, diagonal))


def test_tril_triu_methods_inplace_and_errors():
    x = lamina.ones(3, 4)
    np.testing.assert_array_equal(x.tril(-1).numpy(), np.tril(np.ones((3, 4)), -1))
    y = lamina.ones(2, 3, 3)
    assert y.triu_(1) is y
    np.testing.assert_array_equal(y.numpy(), np.triu(np.ones((2, 3, 3)), 1))
    with pytest.raises(RuntimeError, match="at least 2 dimensions"):
        lamina.tril(lamina.ones(3))


def test_tril_compiles_once_for_every_diagonal():
    x = lamina.ones(5, 5)
    lamina.tril(x, 0)
    before = dispatch.eager_signatures()
    for d in range(-3, 4):
        lamina.tril(x, d)
        lamina.tril(lamina.ones(7, 2), d)
    assert dispatch.eager_signatures() == before


def test_tril_gradient_and_trace():
    x = lamina.ones(3, 3, requires_grad=True)
    lamina.tril(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.tril(np.ones((3, 3))))
    f = lamina.compile(lambda t: lamina.triu(t, 1) * 2)
    t = lamina.tensor(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(f(t).numpy(), np.triu(np.arange(12.0).reshape(3, 4), 1) * 2)


@needs_torch
def test_tril_vs_torch():
    a = np.random.default_rng(0).standard_normal((2, 5, 7)).astype(np.float32)
    for d in (-2, 0, 3):
        np.testing.assert_array_equal(lamina.tril(lamina.tensor(a), d).numpy(),
                                      torch.tril(torch.tensor(a), d).numpy())
        np.testing.assert_array_equal(lamina.triu(lamina.tensor(a), d).numpy(),
                                      torch.triu(torch.tensor(a), d).numpy())


@pytest.mark.parametrize("dtype", ALL)
def test_new_methods(dtype):
    x = lamina.zeros(2, dtype=dtype)
    for t, value in ((x.new_zeros(2, 3), 0), (x.new_ones((2, 3)), 1),
                     (x.new_full((2, 3), 1), 1)):
        assert t.dtype is dtype and t.shape == (2, 3)
        np.testing.assert_array_equal(t.float().numpy(), np.full((2, 3), value))
    assert x.new_empty(4, 1).shape == (4, 1) and x.new_empty(4, 1).dtype is dtype
    t = x.new_tensor([[1, 0], [0, 1]])
    assert t.dtype is dtype and t.float().tolist() == [[1, 0], [0, 1]]
    assert x.new_zeros(3, dtype=lamina.int64).dtype is lamina.int64
    src = lamina.tensor([1.5, 2.5])
    copy = lamina.zeros(1, dtype=lamina.float64).new_tensor(src)
    assert copy.dtype is lamina.float64 and copy.tolist() == [1.5, 2.5]
    src.add_(1)
    assert copy.tolist() == [1.5, 2.5]  # a copy, not a view
    if dtype.is_floating_point:
        assert x.new_ones(2, requires_grad=True).requires_grad
    else:
        with pytest.raises(RuntimeError, match="floating point"):
            x.new_ones(2, requires_grad=True)


def test_like_functions_keep_dtype():
    x = lamina.ones(2, 3, dtype=lamina.float16)
    for fn in (lamina.zeros_like, lamina.ones_like, lamina.empty_like, lamina.rand_like,
               lamina.randn_like):
        y = fn(x)
        assert y.dtype is lamina.float16 and y.shape == (2, 3)
    assert lamina.full_like(x, 7).float().tolist() == [[7.0] * 3] * 2


@pytest.mark.parametrize("dtype,name", [
    (lamina.float32, "FloatTensor"), (lamina.float64, "DoubleTensor"),
    (lamina.float16, "HalfTensor"), (lamina.bfloat16, "BFloat16Tensor"),
    (lamina.int64, "LongTensor"), (lamina.int32, "IntTensor"), (lamina.int8, "CharTensor"),
    (lamina.bool, "BoolTensor")])
def test_type_names(dtype, name):
    x = lamina.zeros(2, dtype=dtype)
    assert x.type() == f"lamina.{name}"
    y = lamina.ones(2).type(f"torch.{name}")
    assert y.dtype is dtype
    assert lamina.ones(2).type(dtype).dtype is dtype
    if torch is not None:
        assert torch.zeros(2, dtype=getattr(torch, dtype.name)).type() == f"torch.{name}"


def test_keyword_options():
    out = lamina.empty(3)
    assert lamina.rand(3, out=out) is out and out.numpy().max() < 1
    assert lamina.eye(2, out=lamina.zeros(2, 2)).tolist() == [[1, 0], [0, 1]]
    assert lamina.randn(2, layout=None, pin_memory=False).shape == (2,)
    assert lamina.rand_like(out, memory_format=None).shape == (3,)
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        lamina.rand(3, foo=1)
    assert lamina.rand(size=(2, 3)).shape == (2, 3) and lamina.randn(size=[4]).shape == (4,)
    with pytest.raises(RuntimeError, match="out= has shape"):
        lamina.linspace(0, 1, 3, out=lamina.empty(2))
