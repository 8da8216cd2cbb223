"""float16 and bfloat16 in the eager API: arithmetic computes in float32 and rounds once
(checked against float32 numpy results rounded once, bf16 by bit manipulation), reductions
and matmul accumulate in float32, casts and creation, promotion, repr, item/tolist; and the
same numbers as PyTorch where it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import needs_torch, torch

HALF = [lamina.float16, lamina.bfloat16]


# -- the oracle: float32 numpy, rounded once -----------------------------------------------------
def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (nearest even, NaN kept) -> float32, by bit manipulation."""
    f = np.array(x, dtype=np.float32)  # a contiguous copy that keeps 0-d arrays 0-d
    bits = f.view(np.uint32).astype(np.uint64)
    r = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(f), np.float32(np.nan), r)


def round_to(x: np.ndarray, dtype: lamina.dtype) -> np.ndarray:
    """A float32 result rounded once to ``dtype``, back as float32."""
    x = np.asarray(x, np.float32)
    if dtype is lamina.float16:
        return x.astype(np.float16).astype(np.float32)
    return bf16_round(x)


def values(dtype: lamina.dtype, shape: tuple, seed: int, low: float = -4, high: float = 4
           ) -> np.ndarray:
    """float32 values exactly representable in ``dtype``."""
    rng = np.random.default_rng(seed)
    return round_to(rng.uniform(low, high, size=shape).astype(np.float32), dtype)


def as_f32(t: lamina.Tensor) -> np.ndarray:
    return t.float().numpy()


def same(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(actual, np.float32),
                                  np.asarray(expected, np.float32))


# -- arithmetic ------------------------------------------------------------------------------
BINARY = {
    "add": (lamina.add, np.add), "sub": (lamina.sub, np.subtract),
    "mul": (lamina.mul, np.multiply), "div": (lamina.div, np.divide),
    "maximum": (lamina.maximum, np.maximum), "minimum": (lamina.minimum, np.minimum),
}


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 min_side=1, max_side=6),
       dtype=st.sampled_from(HALF), op=st.sampled_from(sorted(BINARY)),
       seed=st.integers(0, 2**16))
def test_binary_rounds_once(shapes, dtype, op, seed):
    a = values(dtype, shapes.input_shapes[0], seed)
    b = values(dtype, shapes.input_shapes[1], seed + 1, 0.25, 4)
    fn, ref = BINARY[op]
    out = fn(lamina.tensor(a).to(dtype), lamina.tensor(b).to(dtype))
    assert out.dtype is dtype
    with np.errstate(all="ignore"):
        same(as_f32(out), round_to(ref(a, b), dtype))


UNARY = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "tanh": np.tanh, "neg": np.negative,
         "abs": np.abs, "floor": np.floor, "sin": np.sin,
         "sigmoid": lambda x: 1 / (1 + np.exp(-x))}


@given(dtype=st.sampled_from(HALF), op=st.sampled_from(sorted(UNARY)),
       n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_unary_rounds_once(dtype, op, n, seed):
    a = values(dtype, (n,), seed, 0.01, 5)
    out = as_f32(getattr(lamina, op)(lamina.tensor(a).to(dtype)))
    exact = UNARY[op](a.astype(np.float64)).astype(np.float32)
    # float32 libm may differ from numpy's float64 in the last float32 bits; after one
    # rounding to the half type, a result may land on either neighbour of a tie
    ulp = 2.0**-10 if dtype is lamina.float16 else 2.0**-7
    np.testing.assert_allclose(out, round_to(exact, dtype), rtol=ulp, atol=1e-6)
    assert np.mean(out == round_to(exact, dtype)) > 0.95


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("scalar", [0.1, 1 / 3, 3, 1e-3, 2.5])
def test_python_scalars(dtype, scalar):
    a = values(dtype, (257,), 3, 0.5, 4)
    x = lamina.tensor(a).to(dtype)
    s32 = np.float32(scalar)
    s_half = round_to(np.float32(scalar), dtype)
    # + and - round the number to the half type; * and / use it in float32 (PyTorch's rules)
    same(as_f32(x + scalar), round_to(a + s_half, dtype))
    same(as_f32(x - scalar), round_to(a - s_half, dtype))
    same(as_f32(x * scalar), round_to(a * s32, dtype))
    same(as_f32(scalar * x), round_to(a * s32, dtype))
    same(as_f32(x / scalar), round_to(a / s32, dtype))
    # number / tensor is reciprocal(tensor) * number
    same(as_f32(scalar / x), round_to(round_to(1 / a, dtype) * s32, dtype))
    for r in (x + scalar, x * scalar, scalar / x, x * lamina.tensor(scalar)):
        assert r.dtype is dtype


def test_promotion():
    h = lamina.ones(2, dtype=lamina.float16)
    b = lamina.ones(2, dtype=lamina.bfloat16)
    assert (h + b).dtype is lamina.float32
    assert lamina.promote_types(lamina.float16, lamina.bfloat16) is lamina.float32
    assert (h + lamina.ones(2, dtype=lamina.int64)).dtype is lamina.float16
    assert (b + lamina.ones(2, dtype=lamina.bool)).dtype is lamina.bfloat16
    assert (h + 1.5).dtype is lamina.float16 and (b * 2).dtype is lamina.bfloat16
    assert (h + lamina.tensor(1.5, dtype=lamina.float64)).dtype is lamina.float16
    assert (h + lamina.ones(2)).dtype is lamina.float32
    assert (lamina.ones(2, dtype=lamina.int32) + lamina.tensor(1.0, dtype=lamina.bfloat16)
            ).dtype is lamina.bfloat16
    assert (h < 0.5).dtype is lamina.bool
    assert lamina.where(h > 0, h, 0.0).dtype is lamina.float16


# -- reductions and matmul accumulate in float32 -------------------------------------------------
@given(dtype=st.sampled_from(HALF), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1,
                                                            max_side=40),
       seed=st.integers(0, 2**16))
def test_sum_mean_accumulate_in_float32(dtype, shape, seed):
    a = values(dtype, shape, seed)
    x = lamina.tensor(a).to(dtype)
    total = a.astype(np.float64).sum(axis=-1)
    got = as_f32(x.sum(-1))
    # one rounding of a float32 accumulation: within a half-type ulp of the exact sum
    ulp = 2.0**-10 if dtype is lamina.float16 else 2.0**-7
    tol = ulp * np.abs(total) + shape[-1] * 2.0**-23 * np.abs(a).sum(axis=-1) + 1e-7
    assert np.all(np.abs(got - total) <= tol)
    mean = as_f32(x.mean(-1))
    assert x.mean(-1).dtype is dtype
    assert np.all(np.abs(mean - total / shape[-1]) <= tol / shape[-1] + 1e-7)
    # a long run of one value would stall a half-precision accumulator
    big = lamina.full((5000,), 1.0, dtype=dtype).sum()
    assert big.dtype is dtype and big.item() == round_to(np.float32(5000), dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_other_reductions(dtype):
    a = values(dtype, (7, 33), 5)
    x = lamina.tensor(a).to(dtype)
    same(as_f32(x.amax(1)), a.max(1))
    same(as_f32(x.amin(0)), a.min(0))
    assert x.argmax(1).tolist() == a.argmax(1).tolist()
    p = values(dtype, (7, 6), 6, 0.5, 1.5)
    prod = as_f32(lamina.tensor(p).to(dtype).prod(1))
    same(prod, round_to(p.astype(np.float64).prod(1).astype(np.float32), dtype))


@given(dtype=st.sampled_from(HALF), m=st.integers(1, 9), k=st.integers(1, 70),
       n=st.integers(1, 9), transpose=st.booleans(), seed=st.integers(0, 2**16))
def test_matmul_accumulates_in_float32(dtype, m, k, n, transpose, seed):
    a, b = values(dtype, (m, k), seed), values(dtype, (k, n), seed + 1)
    x, y = lamina.tensor(a).to(dtype), lamina.tensor(b).to(dtype)
    if transpose:
        y = lamina.tensor(np.ascontiguousarray(b.T)).to(dtype).T
    out = x @ y
    assert out.dtype is dtype and out.shape == (m, n)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    ulp = 2.0**-10 if dtype is lamina.float16 else 2.0**-7
    tol = ulp * np.abs(exact) + k * 2.0**-23 * (np.abs(a) @ np.abs(b)) + 1e-6
    assert np.all(np.abs(as_f32(out) - exact) <= tol)


# -- casts and creation -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", HALF)
def test_casts(dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000).astype(np.float32) * 100
    x = lamina.tensor(a)
    h = x.to(dtype)
    same(as_f32(h), round_to(a, dtype))
    same(as_f32(x.half() if dtype is lamina.float16 else x.bfloat16()), round_to(a, dtype))
    assert h.to(lamina.float64).dtype is lamina.float64
    np.testing.assert_array_equal(h.long().numpy(), np.trunc(round_to(a, dtype)).astype(np.int64))
    special = lamina.tensor([np.inf, -np.inf, np.nan, -0.0, 1e6, 1e-9]).to(dtype)
    got = as_f32(special)
    assert np.isposinf(got[0]) and np.isneginf(got[1]) and np.isnan(got[2])
    assert got[3] == 0 and np.signbit(got[3])
    if dtype is lamina.float16:
        assert np.isposinf(got[4]) and got[5] == 0  # beyond the range / under the subnormals
    else:
        assert got[4] == round_to(np.float32(1e6), dtype)[()] and got[5] > 0
    assert lamina.ones(3, dtype=dtype).to(lamina.bool).tolist() == [True] * 3


def test_conversions_go_through_float32_like_pytorch():
    # a float64 just above a float16 tie rounds to the tie in float32, then to even
    v = 1 + 2.0**-11 + 2.0**-40
    assert lamina.tensor(np.array([v])).half().item() == 1.0
    assert lamina.tensor([v], dtype=lamina.float16).item() == 1.0
    w = 1 + 2.0**-8 + 2.0**-40
    assert lamina.tensor(np.array([w])).bfloat16().item() == 1.0
    assert lamina.tensor([2**24 + 2**16 + 1]).to(lamina.bfloat16).item() == 2.0**24
    nan = lamina.tensor([np.nan, -np.nan], dtype=lamina.bfloat16).float().numpy()
    assert np.all(np.isnan(nan))


@pytest.mark.parametrize("dtype", HALF)
def test_creation(dtype):
    for t in (lamina.zeros(2, 3, dtype=dtype), lamina.ones(4, dtype=dtype),
              lamina.full((2,), 0.1, dtype=dtype), lamina.empty(3, dtype=dtype),
              lamina.arange(5, dtype=dtype), lamina.tensor([1.5, 2.5], dtype=dtype),
              lamina.rand(3, dtype=dtype), lamina.randn(3, dtype=dtype),
              lamina.linspace(0, 1, 5, dtype=dtype), lamina.eye(2, dtype=dtype)):
        assert t.dtype is dtype
    assert lamina.full((2,), 0.1, dtype=dtype).float().tolist() == \
        [float(round_to(np.float32(0.1), dtype))] * 2
    assert lamina.arange(5, dtype=dtype).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("dtype", HALF)
def test_item_tolist_repr(dtype):
    x = lamina.tensor([0.1, -2.5, 1024.0], dtype=dtype)
    vals = [float(round_to(np.float32(v), dtype)) for v in (0.1, -2.5, 1024.0)]
    assert x.tolist() == vals and isinstance(x.tolist()[0], float)
    assert x[1].item() == -2.5 and isinstance(x[1].item(), float)
    assert float(x[0]) == vals[0]
    assert repr(lamina.tensor([1.0, 2.0], dtype=dtype)) == \
        f"tensor([1., 2.], dtype=lamina.{dtype.name})"
    assert repr(lamina.tensor(3.5, dtype=dtype)) == f"tensor(3.5000, dtype=lamina.{dtype.name})"
    assert x.element_size() == 2


def test_numpy_interop():
    h = lamina.ones(3, dtype=lamina.float16)
    assert h.numpy().dtype == np.float16
    assert np.asarray(h).dtype == np.float16
    assert np.asarray(h, dtype=np.float32).dtype == np.float32
    b = lamina.ones(3, dtype=lamina.bfloat16)
    with pytest.raises(TypeError, match="BFloat16"):
        b.numpy()
    assert lamina.from_numpy(np.ones(2, np.float16)).dtype is lamina.float16


# -- the same numbers as PyTorch ---------------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_against_torch(name):
    ld, td = getattr(lamina, name), getattr(torch, name)
    rng = np.random.default_rng(1)
    a = rng.uniform(-3, 3, (5, 41)).astype(np.float32)
    b = rng.uniform(0.5, 3, (5, 41)).astype(np.float32)
    x, y = lamina.tensor(a).to(ld), lamina.tensor(b).to(ld)
    tx, ty = torch.tensor(a).to(td), torch.tensor(b).to(td)

    def check(got, want):
        np.testing.assert_array_equal(got.float().numpy(), want.float().numpy())

    for op in ("add", "sub", "mul", "div", "maximum", "pow"):
        check(getattr(lamina, op)(x, y), getattr(torch, op)(tx, ty))
    for s in (0.1, 3, 1 / 3):
        check(x + s, tx + s)
        check(x - s, tx - s)
        check(x * s, tx * s)
        check(s * x, s * tx)
        check(x / s, tx / s)
        check(s / y, s / ty)
    for op in ("exp", "log", "sqrt", "sigmoid", "tanh", "neg", "abs", "floor"):
        check(getattr(lamina, op)(y), getattr(torch, op)(ty))
    check(x.sum(1), tx.sum(1))
    check(x.sum(0), tx.sum(0))
    check(x.mean(1), tx.mean(1))
    check(x.amax(1), tx.amax(1))
    check(x @ y.T, tx @ ty.T)
    check(lamina.tensor(a.astype(np.float64)).to(ld), torch.tensor(a.astype(np.float64)).to(td))
    check(lamina.tensor([1, 7, 300001, -70001]).to(ld), torch.tensor([1, 7, 300001, -70001]).to(td))
    assert repr(x[0, :3]).replace("lamina", "torch") == repr(tx[0, :3])
    assert x[0, :4].tolist() == tx[0, :4].tolist()
