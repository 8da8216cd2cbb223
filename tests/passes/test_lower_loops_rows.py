"""Row reductions computed inside the kernels that read them (lower-loops, target="cpu").

Softmax and LayerNorm compile to one kernel that computes each row's
reductions at the top of its row loop; anything that reads such a reduction
elsewhere falls back to materializing it. Every case runs the generated code
(LLVM) against numpy in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.passes import lower_loops

LAST = (1, 15, 16, 17, 33)
TOL = {"float32": 2e-6, "float64": 1e-13, "float16": 2e-3, "bfloat16": 1.6e-2}


def _kernels(f, *args) -> int:
    return sum(1 for g in f.lower(*args).stages.loop.graphs if g.kind == "kernel")


def _tensor(a: np.ndarray, dtype: str):
    t = lamina.from_numpy(a.astype(np.float64 if dtype == "float64" else np.float32))
    return t.to(getattr(lamina, dtype)) if dtype in ("float16", "bfloat16") else t


def _values(t) -> np.ndarray:
    return t.float().numpy().astype(np.float64) if t.dtype in (lamina.float16,
                                                                lamina.bfloat16) \
        else t.numpy().astype(np.float64)


def _rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the kernel sees it after the conversion to ``dtype``."""
    return _values(_tensor(a, dtype))


def np_softmax(x: np.ndarray, scale: float) -> np.ndarray:
    z = x * scale
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _check(got, want: np.ndarray, dtype: str) -> None:
    err = np.abs(_values(got) - want).max() / max(np.abs(want).max(), 1e-30)
    assert err < TOL[dtype], f"max rel err {err:.2e} for {dtype}"


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.integers(1, 5), min_size=1, max_size=2),
       n=st.sampled_from(LAST + (64, 100)),
       dtype=st.sampled_from(("float32", "float64", "float16", "bfloat16")),
       seed=st.integers(0, 2**16))
def test_softmax_is_one_kernel_and_matches_numpy(rows, n, dtype, seed):
    a = np.random.default_rng(seed).standard_normal((*rows, n)) * 3
    x = _tensor(a, dtype)
    f = lamina.compile(lambda t: lamina.softmax(t * 0.5, -1))
    _check(f(x), np_softmax(_rounded(a, dtype), 0.5), dtype)
    assert _kernels(f, x) == 1


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.integers(1, 5), min_size=1, max_size=2),
       n=st.sampled_from(LAST + (64, 100)),
       dtype=st.sampled_from(("float32", "float64")),
       seed=st.integers(0, 2**16))
def test_layer_norm_is_one_kernel_and_matches_float64(rows, n, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*rows, n)) * 4 + 10  # an offset mean: cancellation would show
    w, b = rng.standard_normal(n), rng.standard_normal(n)
    x, tw, tb = _tensor(a, dtype), _tensor(w, dtype), _tensor(b, dtype)
    f = lamina.compile(lambda t, g, h: lamina.nn.functional.layer_norm(t, (n,), g, h))
    want = np_layer_norm(_rounded(a, dtype), _rounded(w, dtype), _rounded(b, dtype), 1e-5)
    got = _values(f(x, tw, tb))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < (1e-5 if dtype == "float32" else 1e-12)
    assert _kernels(f, x, tw, tb) == 1


@pytest.mark.parametrize("n", [1, 17, 33])
def test_non_contiguous_input(n):
    a = np.random.default_rng(n).standard_normal((n, 6)).astype(np.float32)
    x = lamina.from_numpy(a).t()  # a (6, n) view with strides (1, 6)
    f = lamina.compile(lambda t: lamina.softmax(t, -1))
    _check(f(x), np_softmax(a.T.astype(np.float64), 1.0), "float32")


def test_reduction_read_elsewhere_falls_back_to_its_own_kernel():
    # s[j] is read along the row (index j), not once per row: it must be materialized
    a = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: t - t.sum(-1)[None, :])
    got = f(x).numpy()
    np.testing.assert_allclose(got, a - a.sum(-1)[None, :], rtol=1e-5, atol=1e-5)
    assert _kernels(f, x) == 2


def test_reduction_read_per_row_and_along_rows():
    a = np.random.default_rng(1).standard_normal((8, 8)).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: t * t.amax(-1, keepdim=True) + t.amax(-1)[None, :])
    m = a.max(-1)
    np.testing.assert_allclose(f(x).numpy(), a * m[:, None] + m[None, :], rtol=1e-5,
                               atol=1e-5)


def test_returned_reduction_keeps_its_kernel():
    a = np.random.default_rng(2).standard_normal((5, 7)).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: (t.sum(-1, keepdim=True), t / t.sum(-1, keepdim=True)))
    s, q = f(x)
    np.testing.assert_allclose(s.numpy(), a.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(q.numpy(), a / a.sum(-1, keepdims=True), rtol=1e-5)
    assert _kernels(f, x) == 2


def test_column_reduction_is_not_inlined():
    a = np.random.default_rng(3).standard_normal((9, 33)).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: lamina.softmax(t, 0))
    _check(f(x), np_softmax(a.T.astype(np.float64), 1.0).T, "float32")
    assert _kernels(f, x) == 3


def test_reduction_of_a_reduction_and_two_readers():
    # a row sum read by two groups (a second row reduction and the output), 3-d rows
    a = np.random.default_rng(4).standard_normal((2, 3, 17)).astype(np.float32)
    x = lamina.from_numpy(a)

    def fn(t):
        c = t - t.mean(-1, keepdim=True)
        return c / (c * c).sum(-1, keepdim=True).sqrt()

    f = lamina.compile(fn)
    c = a.astype(np.float64) - a.mean(-1, keepdims=True)
    _check(f(x), c / np.sqrt((c * c).sum(-1, keepdims=True)), "float32")
    assert _kernels(f, x) == 1


def test_kill_switch_gives_separate_kernels(monkeypatch):
    monkeypatch.setattr(lower_loops, "ROW_INLINE", False)
    a = np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: lamina.softmax(t, -1))
    _check(f(x), np_softmax(a.astype(np.float64), 1.0), "float32")
    assert _kernels(f, x) == 3


def test_cuda_target_keeps_separate_kernels():
    x = lamina.from_numpy(np.ones((4, 16), np.float32))
    f = lamina.compile(lambda t: lamina.softmax(t, -1))
    loop = f.lower(x, target="cuda").stages.loop
    assert sum(1 for g in loop.graphs if g.kind == "kernel") == 3


def test_softmax_exps_are_computed_once():
    # the row sum stores its exps into the output; the last pass only rescales them
    x = lamina.from_numpy(np.ones((4, 48), np.float32))
    f = lamina.compile(lambda t: lamina.softmax(t, -1))
    text = f.lower(x).as_text("loop")
    last = text[text.rindex("loop.vreduce"):text.index("func @")]
    assert "loop.load %out" in last and "loop.exp" not in last and "loop.div" in last
    assert "loop.mul" in last  # times the reciprocal of the row sum


@pytest.mark.parametrize("n", [1, 16, 17])
def test_kept_elements_read_at_another_index_are_recomputed(n):
    # exp(x) is needed at (i, j) and at (i, n-1-j): only the first is the stored one
    a = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    x = lamina.from_numpy(a)

    def fn(t):
        e = lamina.exp(t)
        return e / e.sum(-1, keepdim=True) + lamina.flip(e, [-1])

    f = lamina.compile(fn)
    e = np.exp(a.astype(np.float64))
    _check(f(x), e / e.sum(-1, keepdims=True) + e[:, ::-1], "float32")


@pytest.mark.parametrize("n", [1, 15, 33])
def test_variance_reads_its_mean_once_per_row(n):
    a = (np.random.default_rng(n).standard_normal((6, n)) * 3 + 100).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: lamina.var(t, -1))
    want = a.astype(np.float64).var(-1, ddof=1) if n > 1 else np.full(6, np.nan)
    got = f(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
    assert _kernels(f, x) == 1


@pytest.mark.parametrize("shape", [(2, 5, 5), (3, 4, 7)])
def test_row_value_read_inside_a_kept_axis_reduction_falls_back(shape):
    # the row max m[i, k] is read inside the consumer's loop over k: materialized
    a = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    x = lamina.from_numpy(a)
    f = lamina.compile(lambda t: (t - t.amax(-1, keepdim=True)).sum(1))
    want = (a.astype(np.float64) - a.max(-1, keepdims=True)).sum(1)
    np.testing.assert_allclose(f(x).numpy(), want, rtol=1e-5, atol=1e-5)
    assert _kernels(f, x) == 2
