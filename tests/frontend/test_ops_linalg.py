"""Products, einsum and norms against numpy (always) and PyTorch (when installed)."""

from __future__ import annotations

import math
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.linalg
from tests.frontend.oracle import assert_close, needs_torch, torch


def rand(shape, dtype, rng):
    if np.dtype(dtype).kind == "f":
        return np.asarray(rng.standard_normal(shape)).astype(dtype)
    return np.asarray(rng.integers(-4, 5, size=shape)).astype(dtype)


def transposed(a: np.ndarray) -> np.ndarray:
    """The same values through a non-contiguous (transposed storage) view."""
    if a.ndim < 2:
        big = np.zeros((2 * a.size,) if a.ndim else (), a.dtype)
        if a.ndim == 0:
            return a
        big[::2] = a
        return big[::2]
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)


def lam(a: np.ndarray) -> lamina.Tensor:
    return lamina.from_numpy(a)


def f64(a):
    return np.asarray(a, np.float64)


def close(out, ref, dtype, k=1):
    """A product over ``k`` terms: float32 within ~k eps of the magnitudes involved."""
    got = out.numpy()
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    ref = np.asarray(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, ref)
        return
    tol = (1e-6 if dtype == np.float32 else 1e-14) * max(k, 1)
    np.testing.assert_allclose(got, ref, rtol=tol * 4, atol=tol * 4)


# -- vector products ----------------------------------------------------------------------------
@given(n=st.integers(0, 9), m=st.integers(0, 6), dtype=st.sampled_from(
    [np.float32, np.float64, np.int32, np.int64]), layout=st.booleans(),
       seed=st.integers(0, 2**16))
def test_dot_mv_outer_inner(n, m, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    v, w = rand((n,), dtype, rng), rand((n,), dtype, rng)
    a = rand((m, n), dtype, rng)
    u = rand((m,), dtype, rng)
    pick = transposed if layout else (lambda x: x)
    close(lamina.dot(lam(pick(v)), lam(w)), f64(v) @ f64(w), dtype, n)
    close(lam(v).vdot(lam(pick(w))), f64(v) @ f64(w), dtype, n)
    close(lamina.mv(lam(pick(a)), lam(v)), f64(a) @ f64(v), dtype, n)
    close(lamina.outer(lam(pick(u)), lam(v)), np.outer(f64(u), f64(v)), dtype)
    close(lam(u).ger(lam(v)), np.outer(f64(u), f64(v)), dtype)
    close(lamina.inner(lam(pick(a)), lam(a)), f64(a) @ f64(a).T, dtype, n)


def test_inner_and_tensordot_shapes():
    rng = np.random.default_rng(0)
    a, b = rand((2, 3, 4), np.float32, rng), rand((5, 4), np.float32, rng)
    close(lamina.inner(lam(a), lam(b)), np.inner(f64(a), f64(b)), np.float32, 4)
    close(lamina.inner(lamina.tensor(2.0), lam(b)), 2 * f64(b), np.float32)
    c = rand((4, 3, 2), np.float32, rng)
    for dims in (0, 1, ([1, 2], [1, 0]), [[0], [2]], ([2, 1, 0], [0, 1, 2])):
        want = np.tensordot(f64(a), f64(c), dims)
        close(lamina.tensordot(lam(a), lam(c), dims), want, np.float32, 24)
    assert_close(lamina.tensordot(lam(a), lam(c), lamina.tensor(1)).numpy(),
                 np.tensordot(a, c, 1), rtol=1e-5)
    assert lamina.outer(lamina.ones(3), lamina.ones(2, dtype=lamina.int64)).dtype \
        == lamina.float32


# -- beta * input + alpha * (a @ b) -------------------------------------------------------------
@given(m=st.integers(0, 7), k=st.integers(0, 7), n=st.integers(0, 7),
       dtype=st.sampled_from([np.float32, np.float64, np.int64]),
       bias=st.sampled_from(["full", "row", "col", "scalar", "0d"]),
       layout=st.sampled_from(["contig", "mat1_t", "mat2_t", "bias_t"]),
       beta=st.sampled_from([1, 0, 2, -0.5]), alpha=st.sampled_from([1, 3, 0.25]),
       seed=st.integers(0, 2**16))
@settings(max_examples=50)
def test_addmm(m, k, n, dtype, bias, layout, beta, alpha, seed):
    rng = np.random.default_rng(seed)
    a, b = rand((m, k), dtype, rng), rand((k, n), dtype, rng)
    shape = {"full": (m, n), "row": (n,), "col": (m, 1), "scalar": (1,), "0d": ()}[bias]
    c = rand(shape, dtype, rng)
    if np.dtype(dtype).kind == "i":
        beta, alpha = int(beta), int(alpha)
    ta, tb, tc = (transposed(x) if layout == f"{name}_t" else x
                  for x, name in ((a, "mat1"), (b, "mat2"), (c, "bias")))
    out = lamina.addmm(lam(tc), lam(ta), lam(tb), beta=beta, alpha=alpha)
    want = alpha * (f64(a) @ f64(b)) + (beta * f64(c) if beta else 0)
    want = np.broadcast_to(want, (m, n))
    close(out, want.astype(dtype) if np.dtype(dtype).kind == "i" else want, dtype, k + 2)


def test_addmm_beta_zero_ignores_nan_and_method():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((3, 2), np.float32)
    nan = lamina.full((2, 2), math.nan)
    out = lamina.addmm(nan, lam(a), lam(b), beta=0)
    close(out, a @ b, np.float32)
    close(lamina.full((2,), 1.0).addmm(lam(a), lam(b), alpha=2), 2 * (a @ b) + 1, np.float32)


@given(b=st.integers(1, 3), m=st.integers(0, 5), k=st.integers(0, 5), n=st.integers(0, 5),
       beta=st.sampled_from([1, 0, 0.5]), alpha=st.sampled_from([1, -2.0]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_batched_and_vector_add_products(b, m, k, n, beta, alpha, dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = rand((b, m, k), dtype, rng), rand((b, k, n), dtype, rng)
    c = rand((m, n), dtype, rng)
    bmm = np.einsum("bmk,bkn->bmn", f64(x), f64(y))
    close(lamina.baddbmm(lam(c), lam(transposed(x)), lam(y), beta=beta, alpha=alpha),
          alpha * bmm + beta * f64(c), dtype, k + 2)
    close(lam(c).addbmm(lam(x), lam(transposed(y)), beta=beta, alpha=alpha),
          alpha * bmm.sum(0) + beta * f64(c), dtype, b * k + 2)
    v, u = rand((k,), dtype, rng), rand((m,), dtype, rng)
    close(lamina.addmv(lam(u), lam(x[0]), lam(v), beta=beta, alpha=alpha),
          alpha * f64(x[0]) @ f64(v) + beta * f64(u), dtype, k + 2)
    w = rand((n,), dtype, rng)
    close(lamina.addr(lam(c), lam(u), lam(w), beta=beta, alpha=alpha),
          alpha * np.outer(f64(u), f64(w)) + beta * f64(c), dtype, 3)


def test_addmm_is_one_kernel():
    rng = np.random.default_rng(3)
    c, a, b = (lam(rand(s, np.float32, rng)) for s in ((5,), (4, 3), (3, 5)))
    f = lamina.compile(lambda c, a, b: lamina.addmm(c, a, b, beta=0.5, alpha=2.0))
    loop = f.lower(c, a, b).as_text("loop")
    assert loop.count("kernel @") == 1, loop
    close(f(c, a, b), 2 * (f64(a.numpy()) @ f64(b.numpy())) + 0.5 * f64(c.numpy()),
          np.float32, 5)


# -- einsum -------------------------------------------------------------------------------------
EQUATIONS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("ii->i", [(3, 3)]),
    ("ii", [(4, 4)]), ("iij->j", [(3, 3, 2)]), ("iii->i", [(3, 3, 3)]), ("ij->", [(3, 4)]),
    ("ij->ji", [(3, 4)]), ("ij", [(3, 4)]), ("ba", [(3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("bij,bkj->bik", [(2, 3, 4), (2, 5, 4)]),
    ("i,j->ij", [(3,), (4,)]), ("i,i", [(5,), (5,)]), ("i,i->i", [(5,), (5,)]),
    ("ij,j->i", [(3, 4), (4,)]), ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]),
    ("ab,cd->", [(2, 3), (4, 5)]), ("...j,...j->...", [(3, 1, 4), (5, 4)]),
    ("ij,ij->ij", [(3, 1), (3, 4)]), ("ij,ij->i", [(3, 1), (3, 4)]), ("bij,bjk->ik",
                                                                      [(2, 3, 4), (2, 4, 5)]),
    ("ba,bc", [(2, 3), (2, 4)]), ("aB", [(2, 3)]), ("...", [(2, 3)]), ("", [()]),
    (",i->i", [(), (3,)]), ("i,i,i->", [(4,), (4,), (4,)]), ("bn,anm,bm->ba",
                                                             [(2, 3), (4, 3, 5), (2, 5)]),
    ("ii,ij->j", [(3, 3), (3, 2)]), ("i...->...", [(2, 3, 4)]), ("...ii->...i", [(2, 3, 3)]),
    ("i,j,k->ijk", [(2,), (3,), (1,)]), ("ij,kj->ikj", [(0, 3), (2, 3)]),
    ("ij,jk->ik", [(2, 0), (0, 3)]), ("ik,k", [(3, 1), (4,)]),
]


def _einsum_ref(eq, ops):
    """numpy's einsum, with size-1 axes of a subscript first broadcast to the size other
    operands give it (numpy broadcasts only under an ellipsis; PyTorch broadcasts all)."""
    lhs = eq.split("->")[0].split(",")
    sizes: dict = {}
    for term, o in zip(lhs, ops):
        if "." not in term:
            for c, s in zip(term, o.shape):
                sizes[c] = max(sizes.get(c, 1), s) if s else 0
    fixed = []
    for term, o in zip(lhs, ops):
        if "." not in term and o.ndim:
            o = np.broadcast_to(o, tuple(sizes[c] if s == 1 else s
                                         for c, s in zip(term, o.shape)))
        fixed.append(o)
    return np.asarray(np.einsum(eq, *fixed))


@pytest.mark.parametrize("eq,shapes", EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_einsum_matches_numpy(eq, shapes):
    rng = np.random.default_rng(len(eq))
    ops = [rand(s, np.float64, rng) for s in shapes]
    out = lamina.einsum(eq, *(lam(transposed(o)) for o in ops))
    want = _einsum_ref(eq, ops)
    close(out, want, np.float64, 64)
    assert_close(lamina.einsum(eq, [lam(o) for o in ops]).numpy(), want)


@st.composite
def einsum_cases(draw):
    """Random equations: 1-3 operands over up to 5 letters, repeated letters, size-1 axes."""
    letters = string.ascii_letters[:5]
    sizes = {c: draw(st.integers(1, 4)) for c in letters}
    n_ops = draw(st.integers(1, 3))
    terms, shapes = [], []
    for _ in range(n_ops):
        term = draw(st.lists(st.sampled_from(letters), min_size=0, max_size=4))
        ones = draw(st.lists(st.booleans(), min_size=len(term), max_size=len(term)))
        shape = []
        for c, one in zip(term, ones):
            first = term.index(c)
            shape.append(shape[first] if first < len(shape) else (1 if one else sizes[c]))
        terms.append("".join(term))
        shapes.append(tuple(shape))
    used = sorted(set("".join(terms)))
    explicit = draw(st.booleans())
    eq = ",".join(terms)
    if explicit:
        out = draw(st.permutations(used))
        eq += "->" + "".join(out[:draw(st.integers(0, len(out)))])
    return eq, shapes


@given(case=einsum_cases(), seed=st.integers(0, 2**16))
@settings(max_examples=40)
def test_einsum_random_equations(case, seed):
    eq, shapes = case
    rng = np.random.default_rng(seed)
    ops = [rand(s, np.float64, rng) for s in shapes]
    out = lamina.einsum(eq, *(lam(o) for o in ops))
    close(out, _einsum_ref(eq, ops), np.float64, 256)


@needs_torch
def test_einsum_integers_and_dtypes_match_torch():
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    for eq in ("ij->i", "ij,kj->ik", "ii->"):
        x = a[:, :3] if eq == "ii->" else a
        args = [x] * (2 if "," in eq else 1)
        got = lamina.einsum(eq, *(lam(np.ascontiguousarray(t)) for t in args))
        want = torch.einsum(eq, *(torch.from_numpy(np.ascontiguousarray(t)) for t in args))
        assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1], eq
        assert_close(got.numpy(), want.numpy())


def test_einsum_contractions_reach_matmul():
    f = lamina.compile(lambda a, b: lamina.einsum("bij,bjk->bik", a, b))
    rng = np.random.default_rng(1)
    a, b = lam(rand((2, 3, 4), np.float32, rng)), lam(rand((2, 4, 5), np.float32, rng))
    low = f.lower(a, b)
    assert "tensor.matmul" in low.as_text("tensor")
    assert "prim.dot_general" in low.as_text("prim")
    close(f(a, b), np.einsum("bij,bjk->bik", f64(a.numpy()), f64(b.numpy())), np.float32, 4)


# -- norms --------------------------------------------------------------------------------------
def _vnorm(a, ord, axis, keepdims):
    x = np.abs(f64(a))
    if ord == math.inf:
        return x.max(axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return x.min(axis=axis, keepdims=keepdims)
    if ord == 0:
        return (x != 0).sum(axis=axis, keepdims=keepdims).astype(np.float64)
    with np.errstate(divide="ignore"):
        return (x ** ord).sum(axis=axis, keepdims=keepdims) ** (1.0 / ord)


@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=3),
       ord=st.sampled_from([2, 1, 0, math.inf, -math.inf, 3, 0.5, -1, 2.5]),
       dtype=st.sampled_from([np.float32, np.float64]), keepdim=st.booleans(),
       layout=st.booleans(), data=st.data())
def test_vector_norm(shape, ord, dtype, keepdim, layout, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = rand(tuple(shape), dtype, rng)
    dims = data.draw(st.one_of(st.none(), st.lists(st.integers(0, len(shape) - 1), unique=True,
                                                    min_size=1))) if shape else None
    axis = None if dims is None else tuple(dims)
    x = lam(transposed(a) if layout else a)
    out = lamina.linalg.vector_norm(x, ord, dims, keepdim)
    want = _vnorm(a, ord, axis, keepdim)
    if keepdim and axis is None:
        want = np.reshape(want, (1,) * a.ndim)
    close(out, want, dtype, 8)
    if ord in (2, 1, 3) and not keepdim:
        close(x.norm(ord, dims), want, dtype, 8)
        close(lamina.norm(x, p=ord, dim=dims), want, dtype, 8)


def test_matrix_and_linalg_norms():
    rng = np.random.default_rng(5)
    a = rand((2, 3, 4), np.float32, rng)
    x = lam(a)
    for ord in ("fro", 1, -1, math.inf, -math.inf):
        want = np.stack([np.linalg.norm(f64(m), ord) for m in a])
        close(lamina.linalg.matrix_norm(x, ord), want, np.float32, 8)
        close(lamina.linalg.norm(x, ord, dim=(1, 2)), want, np.float32, 8)
    close(lamina.linalg.matrix_norm(x, "fro", dim=(0, 2), keepdim=True),
          np.sqrt((f64(a) ** 2).sum(axis=(0, 2), keepdims=True)), np.float32, 8)
    m = a[0]
    close(lamina.linalg.norm(lam(m)), np.linalg.norm(f64(m)), np.float32, 8)
    close(lamina.linalg.norm(lam(m), 1), np.linalg.norm(f64(m), 1), np.float32, 8)
    close(lamina.linalg.norm(lam(m[0]), 3), np.linalg.norm(f64(m[0]), 3), np.float32, 8)
    close(lamina.linalg.norm(x, dim=2), np.linalg.norm(f64(a), axis=2), np.float32, 8)
    close(x.norm(), np.sqrt((f64(a) ** 2).sum()), np.float32, 8)
    close(x.norm(dim=(0, 1), keepdim=True),
          np.sqrt((f64(a) ** 2).sum(axis=(0, 1), keepdims=True)), np.float32, 8)
    close(lamina.linalg.vecdot(x, lam(a[0, 0])), f64(a) @ f64(a[0, 0]), np.float32, 4)


def test_norm_dtypes_and_empty_inputs():
    h = lamina.tensor([3.0, 4.0], dtype=lamina.float16)
    assert lamina.linalg.vector_norm(h).dtype is lamina.float16
    assert lamina.linalg.vector_norm(h).item() == 5.0
    d = lamina.linalg.vector_norm(lamina.tensor([3.0, 4.0]), dtype=lamina.float64)
    assert d.dtype is lamina.float64 and d.item() == 5.0
    assert lamina.linalg.vector_norm(lamina.zeros(0)).item() == 0.0
    assert lamina.linalg.vector_norm(lamina.zeros(2, 0), dim=1).tolist() == [0.0, 0.0]
    assert lamina.linalg.vector_norm(lamina.tensor(-3.0)).item() == 3.0


def test_norm_kernels():
    x = lam(np.arange(12, dtype=np.float32).reshape(3, 4))
    for ord in (1, math.inf, 0):  # prologue, reduction and epilogue in one kernel
        f = lamina.compile(lambda x, ord=ord: lamina.linalg.vector_norm(x, ord, dim=1))
        loop = f.lower(x).as_text("loop")
        assert loop.count("kernel @") == 1, loop
        close(f(x), _vnorm(x.numpy(), ord, 1, False), np.float32, 8)
    # roots: traced with the selects that keep the gradient at 0 finite (an epilogue kernel
    # of its own); eagerly one kernel with the same values
    f = lamina.compile(lambda x: lamina.linalg.vector_norm(x, 3, dim=1))
    assert f.lower(x).as_text("loop").count("kernel @") <= 2
    close(f(x), _vnorm(x.numpy(), 3, 1, False), np.float32, 8)


# -- errors -------------------------------------------------------------------------------------
def _m(lib, *shape, dtype="float32"):
    return lib.ones(*shape, dtype=getattr(lib, dtype))


ERRORS = [
    ("dot_2d", lambda m: m.dot(_m(m, 2, 2), _m(m, 2, 2)), RuntimeError,
     "1D tensors expected, but got 2D and 2D tensors"),
    ("dot_size", lambda m: m.dot(_m(m, 5), _m(m, 3)), RuntimeError,
     r"inconsistent tensor size, expected tensor \[5\] and src \[3\] to have the same number "
     r"of elements, but got 5 and 3 elements respectively"),
    ("dot_dtype", lambda m: m.dot(_m(m, 5), _m(m, 5, dtype="float64")), RuntimeError,
     "dot : expected both vectors to have same dtype, but found Float and Double"),
    ("dot_bool", lambda m: m.dot(_m(m, 2, dtype="bool"), _m(m, 2, dtype="bool")),
     NotImplementedError, "\"dot\" not implemented for 'Bool'"),
    ("mv_rank", lambda m: m.mv(_m(m, 2, 5), _m(m, 2, 5)), RuntimeError,
     "vector \\+ matrix @ vector expected, got 1, 2, 2"),
    ("mv_size", lambda m: m.mv(_m(m, 2, 5), _m(m, 3)), RuntimeError,
     r"size mismatch, got input \(2\), mat \(2x5\), vec \(3\)"),
    ("outer_2d", lambda m: m.outer(_m(m, 2, 5), _m(m, 3)), RuntimeError,
     "outer: Expected 1-D argument self, but got 2-D"),
    ("inner", lambda m: m.inner(_m(m, 2, 5), _m(m, 3)), RuntimeError,
     r"inner\(\) the last dimension must match on both input tensors but got shapes \[2, 5\] "
     r"and \[3\]"),
    ("addmm_shapes", lambda m: m.addmm(_m(m, 5), _m(m, 2, 5), _m(m, 2, 5)), RuntimeError,
     r"mat1 and mat2 shapes cannot be multiplied \(2x5 and 2x5\)"),
    ("addmm_1d", lambda m: m.addmm(_m(m, 5), _m(m, 5), _m(m, 5, 5)), RuntimeError,
     "mat1 must be a matrix, got 1-D tensor"),
    ("addmm_3d", lambda m: m.addmm(_m(m, 5), _m(m, 5, 2), _m(m, 2, 5, 1)), RuntimeError,
     "mat2 must be a matrix, got 3-D tensor"),
    ("addmm_bias", lambda m: m.addmm(_m(m, 3), _m(m, 5, 2), _m(m, 2, 5)), RuntimeError,
     r"The expanded size of the tensor \(5\) must match the existing size \(3\) at "
     r"non-singleton dimension 1.  Target sizes: \[5, 5\].  Tensor sizes: \[3\]"),
    ("addmm_dtype", lambda m: m.addmm(_m(m, 5, dtype="float64"), _m(m, 5, 2), _m(m, 2, 5)),
     RuntimeError, "self and mat2 must have the same dtype, but got Double and Float"),
    ("baddbmm_k", lambda m: m.baddbmm(_m(m, 3, 2, 2), _m(m, 3, 2, 5), _m(m, 3, 4, 2)),
     RuntimeError, r"Expected size for first two dimensions of batch2 tensor to be: \[3, 5\] "
                   r"but got: \[3, 4\]."),
    ("addmv_size", lambda m: m.addmv(_m(m, 3), _m(m, 2, 5), _m(m, 5)), RuntimeError,
     r"size mismatch, got input \(3\), mat \(2x5\), vec \(5\)"),
    ("tensordot_neg", lambda m: m.tensordot(_m(m, 2, 5), _m(m, 2, 5), -1), RuntimeError,
     "tensordot expects dims >= 0, but got dims=-1"),
    ("tensordot_len", lambda m: m.tensordot(_m(m, 2, 5), _m(m, 2, 5), ([0, 1], [0])),
     RuntimeError, "both dimension lists should have same length"),
    ("tensordot_size", lambda m: m.tensordot(_m(m, 2, 5), _m(m, 2, 5), 1), RuntimeError,
     "contracted dimensions need to match, but first has size 5 in dim -1 and second has "
     "size 2 in dim 0"),
    ("einsum_size", lambda m: m.einsum("ij,jk->ik", _m(m, 2, 5), _m(m, 2, 5)), RuntimeError,
     "einsum\\(\\): subscript j has size 2 for operand 1 which does not broadcast with "
     "previously seen size 5"),
    ("einsum_fewer", lambda m: m.einsum("ij,jk->ik", _m(m, 2, 5)), RuntimeError,
     r"einsum\(\): fewer operands were provided than specified in the equation"),
    ("einsum_more", lambda m: m.einsum("i->", _m(m, 2), _m(m, 2)), RuntimeError,
     r"einsum\(\): more operands were provided than specified in the equation"),
    ("einsum_diag", lambda m: m.einsum("ii->i", _m(m, 2, 5)), RuntimeError,
     r"einsum\(\): subscript i is repeated for operand 0 but the sizes don't match, 5 != 2"),
    ("einsum_out", lambda m: m.einsum("ij->ijk", _m(m, 2, 5)), RuntimeError,
     r"einsum\(\): output subscript k does not appear in the equation for any input operand"),
    ("einsum_out2", lambda m: m.einsum("ij->ii", _m(m, 2, 5)), RuntimeError,
     r"einsum\(\): output subscript i appears more than once in the output"),
    ("einsum_char", lambda m: m.einsum("i1,i->", _m(m, 2), _m(m, 2)), RuntimeError,
     r"einsum\(\): invalid subscript given at index 1 in the equation string, subscripts "
     r"must be in \[a-zA-Z\]"),
    ("einsum_ell", lambda m: m.einsum("...i...,i->", _m(m, 2), _m(m, 2)), RuntimeError,
     r"einsum\(\): found '.' for operand 0 for which an ellipsis was already found"),
    ("einsum_dims", lambda m: m.einsum("ijk->", _m(m, 2, 5)), RuntimeError,
     r"einsum\(\): the number of subscripts in the equation \(3\) does not match the number "
     r"of dimensions \(2\) for operand 0 and no ellipsis was given"),
    ("einsum_dtype", lambda m: m.einsum("ij,jk->ik", _m(m, 2, 5), _m(m, 5, 2, dtype="float64")),
     RuntimeError, "expected scalar type Float but found Double"),
    ("vnorm_int", lambda m: m.linalg.vector_norm(_m(m, 3, dtype="int64")), RuntimeError,
     "linalg.vector_norm: Expected a floating point or complex tensor as input. Got Long"),
    ("vnorm_dtype", lambda m: m.linalg.vector_norm(_m(m, 3), dtype=m.int64), RuntimeError,
     "linalg.vector_norm: dtype should be floating point or complex, but got Long"),
    ("vnorm_inf_empty", lambda m: m.linalg.vector_norm(m.zeros(0), math.inf), RuntimeError,
     "linalg.vector_norm cannot compute the inf norm on an empty tensor because the operation "
     "does not have an identity"),
    ("vnorm_neg_empty", lambda m: m.linalg.vector_norm(m.zeros(0), -1), RuntimeError,
     "linalg.vector_norm cannot compute the -1 norm on an empty tensor"),
    ("vnorm_str", lambda m: m.linalg.vector_norm(_m(m, 3), "fro"), TypeError,
     r"linalg_vector_norm\(\): argument 'ord' \(position 2\) must be Number, not str"),
    ("mnorm_1d", lambda m: m.linalg.matrix_norm(_m(m, 3)), RuntimeError,
     "linalg.matrix_norm: The input tensor A must have at least 2 dimensions."),
    ("mnorm_ord", lambda m: m.linalg.matrix_norm(_m(m, 2, 3), "foo"), RuntimeError,
     "linalg.matrix_norm: Order foo not supported."),
    ("norm_3d_ord", lambda m: m.linalg.norm(_m(m, 2, 2, 2), 2), RuntimeError,
     "linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. Got 3D."),
    ("norm_dim3", lambda m: m.linalg.norm(_m(m, 2, 5), dim=(0, 1, 1)), RuntimeError,
     r"linalg.norm: If dim is specified, it must be of length 1 or 2. Got \[0, 1, 1\]"),
    ("norm_fro_3", lambda m: m.norm(_m(m, 2, 2, 2), "fro", dim=(0, 1, 2)), RuntimeError,
     "linalg.matrix_norm: dim must be a 2-tuple. Got 0 1 2"),
    ("norm_int", lambda m: m.norm(_m(m, 3, dtype="int64")), RuntimeError,
     "Expected a floating point or complex tensor as input. Got Long"),
]


@pytest.mark.parametrize("name,call,exc,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_match_pytorch(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call(lamina)
    if torch is not None:
        with pytest.raises(exc, match=match):
            call(torch)


def test_svd_norms_are_not_silently_wrong():
    with pytest.raises(NotImplementedError, match="SVD"):
        lamina.linalg.matrix_norm(lamina.ones(2, 2), "nuc")
    with pytest.raises(NotImplementedError, match="SVD"):
        lamina.ones(2, 2).norm(p="nuc")


# -- gradients: the builds are what autograd differentiates -------------------------------------
GRADS = {
    "dot": (lambda m, x, y: m.dot(x, y), [(4,), (4,)]),
    "mv": (lambda m, a, v: m.mv(a, v), [(3, 4), (4,)]),
    "outer": (lambda m, x, y: m.outer(x, y), [(3,), (4,)]),
    "inner": (lambda m, x, y: m.inner(x, y), [(2, 4), (3, 4)]),
    "tensordot": (lambda m, x, y: m.tensordot(x, y, ([0, 2], [1, 0])), [(2, 3, 4), (4, 2)]),
    "addmm": (lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=2), [(4,), (3, 2), (2, 4)]),
    "addmm_beta0": (lambda m, c, a, b: m.addmm(c, a, b, beta=0), [(3, 4), (3, 2), (2, 4)]),
    "addmv": (lambda m, c, a, v: m.addmv(c, a, v, alpha=3), [(3,), (3, 2), (2,)]),
    "baddbmm": (lambda m, c, a, b: m.baddbmm(c, a, b, beta=2), [(1, 4), (2, 3, 2), (2, 2, 4)]),
    "addbmm": (lambda m, c, a, b: m.addbmm(c, a, b), [(3, 4), (2, 3, 2), (2, 2, 4)]),
    "addr": (lambda m, c, u, v: m.addr(c, u, v, beta=-1), [(3, 4), (3,), (4,)]),
    "einsum_matmul": (lambda m, a, b: m.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 2)]),
    "einsum_trace": (lambda m, a, b: m.einsum("ii,ij->j", a, b), [(3, 3), (3, 2)]),
    "einsum_three": (lambda m, a, b, c: m.einsum("ab,bc,cd->ad", a, b, c),
                     [(2, 3), (3, 4), (4, 2)]),
    "einsum_bcast": (lambda m, a, b: m.einsum("...j,...j->...", a, b), [(3, 1, 4), (5, 4)]),
    "vector_norm_2": (lambda m, x: m.linalg.vector_norm(x, 2, 1), [(3, 4)]),
    "vector_norm_3": (lambda m, x: m.linalg.vector_norm(x, 3, (0, 1), True), [(3, 4)]),
    "vector_norm_1": (lambda m, x: m.linalg.vector_norm(x, 1), [(3, 4)]),
    "vector_norm_inf": (lambda m, x: m.linalg.vector_norm(x, math.inf, 0), [(3, 4)]),
    "matrix_norm": (lambda m, x: m.linalg.matrix_norm(x), [(2, 3, 4)]),
    "norm_method": (lambda m, x: x.norm(dim=0), [(3, 4)]),
    "vecdot": (lambda m, x, y: m.linalg.vecdot(x, y), [(3, 4), (4,)]),
}


@pytest.mark.parametrize("name", sorted(GRADS))
def test_gradients(name):
    fn, shapes = GRADS[name]
    rng = np.random.default_rng(len(name))
    arrays = [rng.standard_normal(s) for s in shapes]
    xs = [lamina.tensor(a, requires_grad=True) for a in arrays]
    assert lamina.autograd.gradcheck(lambda *t: fn(lamina, *t), xs)
    if torch is None:
        return
    out = fn(lamina, *xs)
    g = rng.standard_normal(tuple(out.shape))
    out.backward(lamina.tensor(g))
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(torch, *ts).backward(torch.tensor(g))
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("ord", [2, 3, 1.5, 1])
def test_norm_gradient_at_zero_is_zero(ord):
    x = lamina.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    lamina.linalg.vector_norm(x, ord, dim=1).sum().backward()
    assert x.grad[0].tolist() == [0.0, 0.0]  # PyTorch's subgradient, not NaN
    row = np.array([3.0, 4.0])
    want = np.sign(row) * np.abs(row) ** (ord - 1) / np.sum(np.abs(row) ** ord) ** (1 - 1 / ord)
    np.testing.assert_allclose(x.grad[1].numpy(), want, rtol=1e-6)
