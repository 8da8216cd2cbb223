"""Indexing ops against numpy (always) and PyTorch (when installed): gather/scatter,
index_select, take, masks, nonzero, flip, advanced ``__getitem__``/``__setitem__``,
their gradients, and errors raised before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lamina
from lamina.frontend.ops_index import IndexOutOfRange
from tests.frontend.oracle import assert_close, needs_torch, torch

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_]


def rand(shape, dtype, rng):
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-3, 3, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(-5, 6, size=shape).astype(dtype)


def strided(a: np.ndarray) -> np.ndarray:
    """The same values through a non-contiguous view."""
    if a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def T(a) -> lamina.Tensor:
    return lamina.from_numpy(np.asarray(a))


shapes = st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple)


# -- gather / scatter ----------------------------------------------------------------------
def np_scatter(base, dim, index, src, add):
    out = base.copy()
    grid = list(np.indices(index.shape, sparse=True))
    grid[dim] = index
    src = src[tuple(slice(0, n) for n in index.shape)]
    if add:
        np.add.at(out, tuple(grid), src)
    else:
        out[tuple(grid)] = src
    return out


@given(shape=shapes, dtype=st.sampled_from(DTYPES), view=st.booleans(), data=st.data())
def test_gather_and_scatter(shape, dtype, view, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    dim = data.draw(st.integers(0, len(shape) - 1))
    ishape = [data.draw(st.integers(0, d)) for d in shape]
    ishape[dim] = data.draw(st.integers(0, 5)) if shape[dim] else 0
    x = rand(shape, dtype, rng)
    xs = strided(x) if view else x
    index = rng.integers(0, max(shape[dim], 1), ishape)
    part = x[tuple(slice(None) if a == dim else slice(0, n) for a, n in enumerate(ishape))]
    out = lamina.gather(T(xs), dim, T(index))
    assert_close(out.numpy(), np.take_along_axis(part, index, dim), dtype=dtype)
    # unique positions along dim, so scatter (overwrite) has one answer
    perm = np.argsort(rng.random((shape[dim],) + tuple(ishape[:dim] + ishape[dim + 1:])), 0)
    uniq = np.moveaxis(perm[:min(ishape[dim], shape[dim])], 0, dim)
    src = rand(tuple(ishape), dtype, rng)
    got = lamina.scatter(T(xs), dim, T(uniq), T(src))
    assert_close(got.numpy(), np_scatter(x, dim, uniq, src, False), dtype=dtype)
    if dtype is not np.bool_:
        got = T(xs).scatter_add(dim, T(index), T(src))
        assert_close(got.numpy(), np_scatter(x, dim, index, src, True), dtype=dtype)


def test_scatter_value_bools_and_last_write_wins():
    x = lamina.zeros(2, 4)
    out = x.scatter(1, lamina.tensor([[0, 3], [1, 1]]), 7.5)
    assert out.numpy().tolist() == [[7.5, 0, 0, 7.5], [0, 7.5, 0, 0]]
    src = lamina.tensor([[1.0, 2.0, 3.0]])
    out = lamina.scatter(lamina.zeros(1, 2), 1, lamina.tensor([[1, 1, 1]]), src)
    assert out.numpy().tolist() == [[0.0, 3.0]]
    b = lamina.zeros(3, dtype=lamina.bool).scatter_add(0, lamina.tensor([0, 0]),
                                                       lamina.ones(2, dtype=lamina.bool))
    assert b.tolist() == [True, False, False]
    y = lamina.zeros(3)
    assert y.scatter_(0, lamina.tensor([2]), lamina.tensor([4.0])) is y
    assert y.tolist() == [0, 0, 4.0]
    y.scatter_add_(0, lamina.tensor([2, 0]), lamina.tensor([1.0, 1.0]))
    assert y.tolist() == [1.0, 0, 5.0]


@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_index_select_and_take(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    dim = data.draw(st.integers(0, len(shape) - 1))
    x = rand(shape, dtype, rng)
    n = shape[dim]
    idx = rng.integers(0, max(n, 1), data.draw(st.integers(0, 6)) if n else 0)
    out = T(strided(x)).index_select(dim, T(idx.astype(data.draw(st.sampled_from(
        [np.int64, np.int32])))))
    assert_close(out.numpy(), np.take(x, idx, axis=dim), dtype=dtype)
    if x.size:
        flat_idx = rng.integers(-x.size, x.size, data.draw(shapes))
        assert_close(lamina.take(T(strided(x)), T(flat_idx)).numpy(),
                     np.take(x.reshape(-1), flat_idx), dtype=dtype)


# -- masks, nonzero, flip ----------------------------------------------------------------------
@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_masks_and_nonzero(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    mshape = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    mask = rng.random(mshape) < 0.5
    got = lamina.masked_select(T(x), T(mask))
    assert_close(got.numpy(), np.broadcast_to(x, np.broadcast_shapes(x.shape, mask.shape))[
        np.broadcast_to(mask, np.broadcast_shapes(x.shape, mask.shape))], dtype=dtype)
    value = {np.bool_: True}.get(dtype, 2)
    assert_close(T(x).masked_fill(T(mask), value).numpy(),
                 np.where(mask, np.asarray(value).astype(dtype), x), dtype=dtype)
    assert_close(lamina.nonzero(T(strided(x))).numpy(), np.argwhere(x), dtype=np.int64)
    parts = lamina.nonzero(T(x), as_tuple=True)
    for p, w in zip(parts, np.nonzero(x)):
        assert_close(p.numpy(), w, dtype=np.int64)
    for p, w in zip(lamina.where(T(x != 0)), np.nonzero(x)):
        assert_close(p.numpy(), w)


def test_nonzero_of_0d_and_where_forms():
    assert lamina.nonzero(lamina.tensor(5)).shape == (1, 0)
    assert [t.tolist() for t in lamina.nonzero(lamina.tensor(5), as_tuple=True)] == [[0]]
    assert [t.tolist() for t in lamina.nonzero(lamina.tensor(0.0), as_tuple=True)] == [[]]
    c = lamina.tensor([True, False])
    assert lamina.where(c, 1.0, lamina.tensor([5.0, 6.0])).tolist() == [1.0, 6.0]
    assert lamina.argwhere(c).tolist() == [[0]]
    with pytest.raises(TypeError, match="1 or 3 arguments"):
        lamina.where(c, 1.0)


@given(shape=shapes, dtype=st.sampled_from(DTYPES), data=st.data())
def test_flip(shape, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rand(shape, dtype, rng)
    dims = data.draw(st.lists(st.integers(-len(shape), len(shape) - 1), max_size=len(shape),
                              unique_by=lambda d: d % len(shape)))
    assert_close(lamina.flip(T(strided(x)), dims).numpy(), np.flip(x, tuple(dims)), dtype=dtype)
    if x.ndim >= 2:
        assert_close(T(x).fliplr().numpy(), np.fliplr(x))
    assert_close(T(x).flipud().numpy(), np.flipud(x))


# -- advanced indexing --------------------------------------------------------------------------
@st.composite
def keys(draw, shape):
    """A key of ints, slices, None, one Ellipsis, int lists/arrays (broadcastable, negative
    too) and boolean masks for an array of ``shape``."""
    items, dim = [], 0
    bshape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    ellipsis = False
    while dim < len(shape):
        kind = draw(st.sampled_from(["int", "slice", "none", "tensor", "tensor", "tensor",
                                     "mask", "mask", "ellipsis"]))
        n = shape[dim]
        if kind == "int" and n:
            items.append(draw(st.integers(-n, n - 1)))
            dim += 1
        elif kind == "slice":
            items.append(slice(draw(st.none() | st.integers(-5, 5)),
                               draw(st.none() | st.integers(-5, 5)),
                               draw(st.none() | st.integers(1, 3))))
            dim += 1
        elif kind == "none":
            items.append(None)
        elif kind == "tensor" and n:
            sub = bshape[len(bshape) - draw(st.integers(0, len(bshape))):]
            sub = tuple(1 if draw(st.booleans()) else d for d in sub)
            seed = draw(st.integers(0, 2**16))
            items.append(np.random.default_rng(seed).integers(-n, n, sub))
            dim += 1
        elif kind == "mask" and not any(isinstance(k, np.ndarray) for k in items):
            k = draw(st.integers(1, len(shape) - dim))
            seed = draw(st.integers(0, 2**16))
            items.append(np.random.default_rng(seed).random(shape[dim:dim + k]) < 0.5)
            dim += k
        elif kind == "ellipsis" and not ellipsis:
            ellipsis = True
            items.append(...)
            dim = len(shape)
        elif kind == "int":
            items.append(slice(None))
            dim += 1
    if not any(isinstance(k, np.ndarray) for k in items):
        items.append(np.array([0]) if shape and shape[-1] and ... not in items
                     and len([k for k in items if k is not None]) < len(shape) else None)
    return tuple(items)


def lamina_key(key):
    return tuple(T(k) if isinstance(k, np.ndarray) else k for k in key)


def torch_key(key):
    return tuple(torch.from_numpy(k) if isinstance(k, np.ndarray) else k for k in key)


@needs_torch
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_getitem_matches_torch(shape, data):
    key = data.draw(keys(shape))
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    try:
        want = torch.from_numpy(x)[torch_key(key)].numpy()
    except IndexError:
        with pytest.raises(IndexError):
            T(x)[lamina_key(key)]
        return
    got = T(strided(x))[lamina_key(key)]
    assert_close(got.numpy(), want, dtype=np.float32)


def test_getitem_with_numpy_as_oracle():
    x = np.arange(60).reshape(3, 4, 5)
    for key in [([2, 0],), (slice(None), [1, 3]), ([0, 2], slice(1, 3), [4, 0]),
                (x[:, :, 0] % 2 == 0,), (Ellipsis, [[0, 1], [2, 3]]), ([[-1]], [[0], [3]]),
                (slice(None), np.array([True, False, True, True]))]:
        assert_close(T(x)[lamina_key(key)].numpy(), x[key])
    assert T(x)[True].shape == (1, 3, 4, 5) and T(x)[False].shape == (0, 3, 4, 5)
    assert T(x)[lamina.tensor(1)].tolist() == x[1].tolist()
    assert T(x)[[1, 2]].tolist() == x[[1, 2]].tolist()


@needs_torch
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple), data=st.data())
def test_setitem_matches_torch(shape, data):
    key = data.draw(keys(shape))
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    want = torch.from_numpy(x.copy())
    value = data.draw(st.sampled_from([-1.0, 2]))
    try:
        want[torch_key(key)] = value
    except IndexError:
        return
    base = np.zeros(shape[:-1] + (2 * shape[-1],), np.float32)
    view = base[..., ::2]  # writes must reach the storage of a non-contiguous view
    view[...] = x
    t = lamina.from_numpy(view)
    t[lamina_key(key)] = value
    assert_close(view, want.numpy())
    assert_close(base[..., 1::2], np.zeros_like(x))


@needs_torch
def test_setitem_with_tensor_values_and_index_put():
    x = torch.arange(24.0).reshape(2, 3, 4)
    y = lamina.tensor(x.numpy())
    i, j = [1, 0, 2], [3, 3, 0]
    v = torch.tensor([10.0, 20.0, 30.0])
    x[:, i, j] = v
    y[:, i, j] = lamina.tensor(v.numpy())
    assert_close(y.numpy(), x.numpy())
    x[0, 1:] = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y[0, 1:] = lamina.tensor([[1.0, 2.0, 3.0, 4.0]])
    x[x > 20] = 0
    y[y > 20] = 0
    assert_close(y.numpy(), x.numpy())
    ti, li = torch.tensor([0, 0, 1]), lamina.tensor([0, 0, 1])
    want = x.index_put((ti,), torch.tensor(5.0), accumulate=True)
    got = y.index_put((li,), lamina.tensor(5.0), accumulate=True)
    assert_close(got.numpy(), want.numpy())
    x.index_put_((ti, torch.tensor([2, 1, 0])), torch.tensor(-1.0))
    assert y.index_put_((li, lamina.tensor([2, 1, 0])), lamina.tensor(-1.0)) is y
    assert_close(y.numpy(), x.numpy())
    z = lamina.zeros(3, dtype=lamina.int64)
    z[lamina.tensor([0, 2])] = 2.9  # converted like a copy
    assert z.tolist() == [2, 0, 2]


# -- errors: raised before any kernel writes ------------------------------------------------------
def test_out_of_range_indices_raise_and_write_nothing():
    x = lamina.tensor([[1.0, 2.0], [3.0, 4.0]])
    cases = [
        (lambda: x[lamina.tensor([2])], "index 2 is out of bounds for dimension 0 with size 2"),
        (lambda: x[:, [-3]], "index -3 is out of bounds for dimension 1 with size 2"),
        (lambda: x.gather(1, lamina.tensor([[0, 2]])), "index 2 is out of bounds"),
        (lambda: x.index_select(0, lamina.tensor([5])), "index out of range in self"),
        (lambda: lamina.take(x, lamina.tensor([4])), "tried to access index 4 on a tensor of "
                                                     "4 elements"),
        (lambda: x.scatter_(0, lamina.tensor([[0, -1]]), 9.0), "index -1 is out of bounds"),
        (lambda: x.scatter_add_(1, lamina.tensor([[7]]), x), "index 7 is out of bounds"),
        (lambda: x.__setitem__((lamina.tensor([0, 9]),), 9.0), "index 9 is out of bounds"),
        (lambda: x.index_put_((lamina.tensor([3]),), lamina.tensor(9.0)), "index 3"),
    ]
    for fn, message in cases:
        with pytest.raises(IndexError, match=message):
            fn()
        assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(RuntimeError):  # PyTorch raises RuntimeError from gather
        x.gather(0, lamina.tensor([[2, 0]]))
    assert issubclass(IndexOutOfRange, IndexError) and issubclass(IndexOutOfRange, RuntimeError)


def test_argument_errors_name_the_op():
    x = lamina.zeros(2, 3)
    with pytest.raises(RuntimeError, match="gather\\(\\): Expected dtype int64 or int32"):
        x.gather(0, lamina.zeros(2, 3))
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        x.gather(0, lamina.tensor([0]))
    with pytest.raises(RuntimeError, match="no larger than self"):
        x.gather(0, lamina.zeros(2, 4, dtype=lamina.int64))
    with pytest.raises(RuntimeError, match="Expected self.dtype to be equal to src.dtype"):
        x.scatter(0, lamina.zeros(1, 1, dtype=lamina.int64), lamina.zeros(1, 1, dtype=lamina.int64))
    with pytest.raises(IndexError, match="Index is supposed to be a vector"):
        x.index_select(0, lamina.zeros(1, 1, dtype=lamina.int64))
    with pytest.raises(IndexError, match="tensors used as indices must be long, int"):
        x[lamina.tensor([0.5])]
    with pytest.raises(IndexError, match="too many indices"):
        x[[0], [0], [0]]
    with pytest.raises(IndexError, match="shape of the mask \\[3\\] at index 0 does not match"):
        x[lamina.tensor([True, False, True])]
    with pytest.raises(IndexError, match="could not be broadcast together"):
        x[[0, 1], [0, 1, 2]]
    with pytest.raises(RuntimeError, match="only supports boolean masks"):
        x.masked_fill(lamina.zeros(2, 3), 1.0)
    with pytest.raises(RuntimeError, match="dims has duplicates"):
        x.flip((0, -2))
    with pytest.raises(NotImplementedError, match="reduce"):
        x.scatter(0, lamina.zeros(1, 1, dtype=lamina.int64), 1.0, reduce="add")


def test_compile_refuses_data_dependent_sizes():
    f = lamina.compile(lambda t: t[t > 0])
    with pytest.raises(RuntimeError, match="cannot trace"):
        f(lamina.ones(3))


# -- gradients ------------------------------------------------------------------------------------
GRAD_CASES = {
    "gather": lambda t, m: t.gather(1, m.tensor([[0, 2, 2], [1, 1, 0], [4, 4, 4]])).pow(2),
    "index": lambda t, m: t[m.tensor([2, 0, 2]), 1:] * 3,
    "two_index": lambda t, m: t[[0, 2, 2], [1, 1, 4]].exp(),
    "mask": lambda t, m: t[t > 0.2] * t[t > 0.2],
    "take": lambda t, m: m.take(t, m.tensor([[-1, 3], [3, 0]])),
    "index_select": lambda t, m: t.index_select(1, m.tensor([4, 4, 0])),
    "masked_select": lambda t, m: m.masked_select(t, t < 0),
    "masked_fill": lambda t, m: t.masked_fill(t > 0.5, 1.0) * t,
    "scatter_add": lambda t, m: m.scatter_add(t, 0, m.tensor([[2, 0, 0, 1, 1]]), t[:1] * 2),
    "scatter": lambda t, m: m.scatter(t, 1, m.tensor([[3, 0], [1, 2], [0, 4]]), t[:, :2] * 3),
    "flip": lambda t, m: m.flip(t, (0, 1))[:2] * t[1:],
}


@needs_torch
@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradients_match_torch(name):
    fn = GRAD_CASES[name]
    a = np.random.default_rng(5).standard_normal((3, 5)).astype(np.float32)
    x = lamina.tensor(a, requires_grad=True)
    tx = torch.tensor(a, requires_grad=True)
    out, tout = fn(x, lamina), fn(tx, torch)
    assert_close(out.detach().numpy(), tout.detach().numpy())
    seed = np.random.default_rng(6).standard_normal(tuple(tout.shape)).astype(np.float32)
    (out * lamina.tensor(seed)).sum().backward()
    (tout * torch.tensor(seed)).sum().backward()
    assert_close(x.grad.numpy(), tx.grad.numpy())
    if name not in ("mask", "masked_select"):  # data-dependent sizes cannot be traced
        g = lamina.grad(lambda t: (fn(t, lamina) * lamina.tensor(seed)).sum())(lamina.tensor(a))
        assert_close(g.numpy(), tx.grad.numpy())
