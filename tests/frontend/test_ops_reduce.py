"""Reductions, scans and order statistics against numpy (always) and PyTorch (when
installed): values, dtypes, NaN and ties, gradients (eager tape and traced), errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lamina
from tests.frontend.oracle import assert_close, needs_torch, torch

FLOATS = [np.float32, np.float64]
DTYPES = FLOATS + [np.int32, np.int64, np.bool_]
shapes = st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple)


def rand(shape, dtype, rng, nan=False):
    if np.dtype(dtype).kind == "f":
        a = rng.uniform(-3, 3, size=shape).astype(dtype)
        if nan and a.size:
            a.flat[rng.integers(0, a.size, 2)] = np.nan
        return a
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(-3, 4, size=shape).astype(dtype)


def strided(a: np.ndarray) -> np.ndarray:
    if a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def T(a) -> lamina.Tensor:
    return lamina.from_numpy(np.asarray(a))


def draw_dims(data, rank):
    return data.draw(st.none() | st.integers(-rank, rank - 1) | st.lists(
        st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True).map(tuple))


# -- var / std / logsumexp / all / any -----------------------------------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on empty or dof <= 0
@given(shape=shapes, dtype=st.sampled_from(FLOATS), keepdim=st.booleans(),
       correction=st.sampled_from([None, 0, 1, 2]), data=st.data())
def test_var_std(shape, dtype, keepdim, correction, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    dim = draw_dims(data, len(shape))
    axes = None if dim is None else dim
    ddof = 1 if correction is None else correction
    with np.errstate(all="ignore"):
        want = np.var(x.astype(np.float64), axis=axes, ddof=ddof, keepdims=keepdim)
        if isinstance(axes, (int, tuple)) or axes is None:
            n = x.size if axes is None else int(np.prod(np.array(shape)[list(np.atleast_1d(
                axes))]))
            if n - ddof <= 0:  # PyTorch divides by max(0, n - correction)
                ss = np.sum((x - x.mean(axis=axes, keepdims=True)) ** 2, axis=axes,
                            keepdims=keepdim)
                want = ss / 0.0
    got = lamina.var(T(strided(x)), dim, keepdim=keepdim, correction=correction)
    assert_close(got.numpy(), np.asarray(want).astype(dtype), dtype=dtype, rtol=1e-4, atol=1e-5)
    s, m = lamina.std_mean(T(x), dim, keepdim=keepdim, correction=correction)
    assert_close(s.numpy(), np.sqrt(np.asarray(want)).astype(dtype), rtol=1e-4, atol=1e-5)
    with np.errstate(all="ignore"):
        assert_close(m.numpy(), np.asarray(x.mean(axis=axes, keepdims=keepdim)).astype(dtype),
                     rtol=1e-4, atol=1e-5)


@needs_torch
def test_var_signatures_match_torch():
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    x, t = T(a), torch.tensor(a)
    for args, kwargs in [((), {}), ((False,), {}), ((1,), {}), ((1, False), {}),
                         ((1, True, True), {}), (((0, 1),), {"correction": 0}),
                         ((), {"dim": 0, "keepdim": True})]:
        assert_close(x.var(*args, **kwargs).numpy(), t.var(*args, **kwargs).numpy())
        assert_close(lamina.std(x, *args, **kwargs).numpy(),
                     torch.std(t, *args, **kwargs).numpy())
    v, m = lamina.var_mean(x, 1)
    tv, tm = torch.var_mean(t, 1)
    assert_close(v.numpy(), tv.numpy())
    assert_close(m.numpy(), tm.numpy())
    with pytest.raises(RuntimeError, match="only support floating point"):
        lamina.var(lamina.tensor([1, 2]))


@given(shape=shapes, dtype=st.sampled_from(FLOATS + [np.int64]), keepdim=st.booleans(),
       data=st.data())
def test_logsumexp(shape, dtype, keepdim, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng) * (30 if np.dtype(dtype).kind == "f" else 1)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    xf = x.astype(np.float64)
    with np.errstate(all="ignore"):
        m = np.max(xf, axis=dim, keepdims=True, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0)
        want = np.log(np.sum(np.exp(xf - m), axis=dim, keepdims=True)) + m
    if not keepdim:
        want = np.squeeze(want, axis=dim)
    out_dtype = dtype if np.dtype(dtype).kind == "f" else np.float32
    got = lamina.logsumexp(T(x), dim, keepdim)
    assert_close(got.numpy(), want.astype(out_dtype), dtype=out_dtype, rtol=1e-5, atol=1e-5)


def test_logsumexp_infinities():
    inf = float("inf")
    x = lamina.tensor([[-inf, -inf], [1.0, inf], [float("nan"), 1.0], [1e30, 1e30]])
    got = x.logsumexp(1).numpy()
    assert got[0] == -inf and got[1] == inf and np.isnan(got[2])
    np.testing.assert_allclose(got[3], 1e30 + np.log(2.0), rtol=1e-6)


@given(shape=shapes, dtype=st.sampled_from(DTYPES), keepdim=st.booleans(), data=st.data())
def test_all_any_count_nonzero(shape, dtype, keepdim, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    if data.draw(st.booleans()):
        x = np.ones(shape, dtype)
    dim = draw_dims(data, len(shape))
    got = lamina.all(T(strided(x)), dim, keepdim)
    assert_close(got.numpy(), np.all(x, axis=dim, keepdims=keepdim), dtype=np.bool_)
    assert_close(T(x).any(dim, keepdim).numpy(), np.any(x, axis=dim, keepdims=keepdim),
                 dtype=np.bool_)
    assert_close(lamina.count_nonzero(T(x), dim).numpy(), np.count_nonzero(x, axis=dim),
                 dtype=np.int64)


def test_prod():
    a = np.array([[1.5, -2.0, 3.0], [0.5, 4.0, 0.0]], np.float32)
    assert_close(lamina.prod(T(a)).numpy(), np.prod(a))
    assert_close(T(a).prod(1, keepdim=True).numpy(), np.prod(a, 1, keepdims=True))
    assert_close(lamina.prod(T(np.array([2, 3], np.int32))).numpy(), np.int64(6),
                 dtype=np.int64)


# -- scans -------------------------------------------------------------------------------------
@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_cumsum_cumprod(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    acc = np.int64 if np.dtype(dtype).kind in "bi" else dtype
    assert_close(lamina.cumsum(T(strided(x)), dim).numpy(),
                 np.cumsum(x, axis=dim, dtype=acc), dtype=acc)
    assert_close(T(x).cumprod(dim).numpy(), np.cumprod(x, axis=dim, dtype=acc), dtype=acc,
                 rtol=1e-4)
    assert_close(lamina.cumsum(T(x), dim, dtype=lamina.float64).numpy(),
                 np.cumsum(x.astype(np.float64), axis=dim), dtype=np.float64)


@needs_torch
@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_cummax_cummin_match_torch(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng, nan=True)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    for name in ("cummax", "cummin"):
        v, i = getattr(lamina, name)(T(strided(x)), dim)
        tv, ti = getattr(torch, name)(torch.from_numpy(x), dim)
        assert_close(v.numpy(), tv.numpy(), dtype=dtype)
        assert_close(i.numpy(), ti.numpy(), dtype=np.int64)


# -- sorting -----------------------------------------------------------------------------------
@given(shape=shapes, dtype=st.sampled_from(DTYPES), descending=st.booleans(), data=st.data())
def test_sort_is_stable_with_nan_largest(shape, dtype, descending, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng, nan=True)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    if descending:  # a stable descending order: the reversed stable order of the reversed x
        n = x.shape[dim]
        idx = n - 1 - np.flip(np.argsort(np.flip(x, dim), axis=dim, kind="stable"), dim)
    else:
        idx = np.argsort(x, axis=dim, kind="stable")
    values, indices = lamina.sort(T(strided(x)), dim, descending=descending, stable=True)
    assert_close(indices.numpy(), idx, dtype=np.int64)
    assert_close(values.numpy(), np.take_along_axis(x, idx, dim), dtype=dtype)
    assert_close(T(x).argsort(dim, descending).numpy(), idx)
    if dim in (0, -len(shape)) and not descending:
        assert_close(lamina.msort(T(x)).numpy(), np.sort(x, axis=0))


def test_sort_of_long_lines_runs_every_merge_pass():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 50, (3, 5000)).astype(np.float32)
    x[1, ::7] = np.nan
    values, indices = T(x).sort(1)
    assert_close(indices.numpy(), np.argsort(x, 1, kind="stable"))
    assert_close(values.numpy(), np.sort(x, 1))
    assert_close(T(x.T.copy()).sort(0, descending=True).values.numpy(),
                 np.flip(np.sort(x.T, 0), 0))


@needs_torch
@given(shape=shapes, dtype=st.sampled_from(DTYPES[:4]), largest=st.booleans(), data=st.data())
def test_topk_kthvalue_median_match_torch(shape, dtype, largest, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng, nan=data.draw(st.booleans()))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[dim]
    t = torch.from_numpy(x)
    k = data.draw(st.integers(0, n))
    v, i = lamina.topk(T(strided(x)), k, dim, largest=largest)
    tv, _ = torch.topk(t, k, dim, largest=largest)
    assert_close(v.numpy(), tv.numpy(), dtype=dtype)
    assert_close(np.take_along_axis(x, i.numpy(), dim), v.numpy())  # ties may pick others
    if n == 0:
        with pytest.raises(IndexError, match="non-zero size"):
            lamina.median(T(x), dim)
        return
    k = data.draw(st.integers(1, n))
    keepdim = data.draw(st.booleans())
    for got, want in [(lamina.kthvalue(T(x), k, dim, keepdim), torch.kthvalue(t, k, dim,
                                                                                 keepdim)),
                      (T(x).median(dim, keepdim), t.median(dim, keepdim))]:
        assert_close(got.values.numpy(), want.values.numpy(), dtype=dtype)
        if np.dtype(dtype).kind == "f" and np.isnan(x).any():
            continue  # which NaN PyTorch reports is not specified
        vals = np.take_along_axis(x, np.expand_dims(got.indices.numpy(), dim) if not keepdim
                                  else got.indices.numpy(), dim)
        assert_close(vals.squeeze(dim) if not keepdim else vals, got.values.numpy())
    assert_close(lamina.median(T(x)).numpy(), torch.median(t).numpy())


def test_median_of_everything_is_the_lower_median():
    assert lamina.median(lamina.tensor([4.0, 1.0, 3.0, 2.0])).item() == 2.0
    assert lamina.median(lamina.tensor([[5, 1], [3, 9]])).item() == 3
    assert np.isnan(lamina.median(lamina.tensor([1.0, float("nan"), 0.0])).item())
    r = lamina.median(lamina.tensor([[1.0, float("nan"), 2.0, float("nan")]]), 1)
    assert np.isnan(r.values.item()) and r.indices.item() == 1
    assert repr(r).startswith("median(values=")


@given(shape=shapes, dtype=st.sampled_from(DTYPES), flags=st.tuples(st.booleans(), st.booleans()),
       data=st.data())
def test_unique(shape, dtype, flags, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    if np.dtype(dtype).kind == "f":
        x = np.round(x)  # repeats
    inverse, counts = flags
    got = lamina.unique(T(strided(x)), return_inverse=inverse, return_counts=counts)
    want = np.unique(x, return_inverse=inverse, return_counts=counts)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert_close(got[0].numpy(), want[0], dtype=dtype)
    if inverse:
        assert_close(got[1].numpy(), want[1].reshape(x.shape), dtype=np.int64)
    if counts:
        assert_close(got[-1].numpy(), want[-1], dtype=np.int64)


@needs_torch
def test_unique_with_nans_matches_torch():
    a = torch.tensor([2.0, float("nan"), 1.0, float("nan"), 2.0])
    for got, want in zip(lamina.unique(T(a.numpy()), return_inverse=True, return_counts=True),
                         torch.unique(a, return_inverse=True, return_counts=True)):
        assert_close(got.numpy(), want.numpy())


def test_order_errors():
    x = lamina.zeros(3)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        x.topk(4)
    with pytest.raises(RuntimeError, match="selected number k out of range for dimension 0"):
        x.kthvalue(0)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sort(1)
    with pytest.raises(NotImplementedError, match="dim"):
        lamina.unique(x, dim=0)


# -- gradients -----------------------------------------------------------------------------------
GRAD_CASES = {
    "sort": lambda t, m: t.sort(1, descending=True).values,
    "topk": lambda t, m: t.topk(2, 0).values,
    "kthvalue": lambda t, m: t.kthvalue(2, 1).values,
    "median": lambda t, m: t.median(0).values,
    "cumsum": lambda t, m: t.cumsum(1),
    "cumprod": lambda t, m: (t * m.tensor(MASK)).cumprod(1),
    "cummax": lambda t, m: t.cummax(0).values,
    "cummin": lambda t, m: t.cummin(1).values,
    "logsumexp": lambda t, m: t.logsumexp(1),
    "var": lambda t, m: t.var(0),
    "std": lambda t, m: t.std(1, keepdim=True),
    "prod": lambda t, m: (t * m.tensor(MASK)).prod(1),
}
MASK = np.array([[1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 0, 1]], np.float32)  # zeros in products


@needs_torch
@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_match_torch(name):
    fn = GRAD_CASES[name]
    a = np.random.default_rng(7).standard_normal((3, 4)).astype(np.float32)
    x = lamina.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    out, tout = fn(x, lamina), fn(tx, torch)
    assert_close(out.detach().numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
    seed = np.random.default_rng(8).standard_normal(tuple(tout.shape)).astype(np.float32)
    (out * lamina.tensor(seed)).sum().backward()
    (tout * torch.tensor(seed)).sum().backward()
    assert_close(x.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    g = lamina.grad(lambda t: (fn(t, lamina) * lamina.tensor(seed)).sum())(lamina.tensor(a))
    assert_close(g.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_traced_scans_and_sorts_match_eager():
    a = np.random.default_rng(9).standard_normal((4, 6)).astype(np.float32)
    f = lamina.compile(lambda t: (t.sort(1).values, t.cumsum(0), t.cummin(1).indices,
                                  t.argsort(0, descending=True), t.logsumexp(0)))
    for got, want in zip(f(T(a)), (T(a).sort(1).values, T(a).cumsum(0), T(a).cummin(1).indices,
                                   T(a).argsort(0, descending=True), T(a).logsumexp(0))):
        assert_close(got.numpy(), want.numpy())
