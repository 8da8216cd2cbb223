"""Shape functions (cat, stack, split, roll, repeat, ...) against numpy and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lamina
from tests.frontend.oracle import assert_close, needs_torch, torch

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.bool_]


def rand(shape, dtype, rng):
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-3, 3, size=shape).astype(dtype)
    return rng.integers(-5, 6, size=shape).astype(dtype)


def strided(a: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a larger buffer)."""
    if a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def lam(a: np.ndarray) -> lamina.Tensor:
    return lamina.from_numpy(a)


def promoted(*dtypes) -> np.dtype:
    d = lamina.from_numpy(np.zeros(0, dtypes[0])).dtype
    for x in dtypes[1:]:
        d = lamina.promote_types(d, lamina.from_numpy(np.zeros(0, x)).dtype)
    return np.dtype(d.numpy)


# -- cat / stack --------------------------------------------------------------------------------
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4),
       sizes=st.lists(st.integers(0, 3), min_size=1, max_size=4),
       dtypes=st.lists(st.sampled_from(DTYPES), min_size=4, max_size=4),
       dim=st.integers(-4, 3), layout=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=40)
def test_cat_matches_numpy(shape, sizes, dtypes, dim, layout, seed):
    rng = np.random.default_rng(seed)
    dim = dim % len(shape)
    arrays = []
    for i, s in enumerate(sizes):
        piece = list(shape)
        piece[dim] = s
        a = rand(tuple(piece), dtypes[i], rng)
        arrays.append(strided(a) if layout and i % 2 else a)
    out = lamina.cat([lam(a) for a in arrays], dim)
    want = promoted(*(a.dtype for a in arrays))
    ref = np.concatenate([a.astype(want) for a in arrays], axis=dim)
    assert_close(out.numpy(), ref, dtype=want)
    assert out.is_contiguous()


def test_cat_many_pieces_and_aliases():
    pieces = [np.full((2, i % 3 + 1), i, np.float32) for i in range(21)]
    ref = np.concatenate(pieces, axis=1)
    for fn in (lamina.cat, lamina.concat, lamina.concatenate):
        assert_close(fn([lam(p) for p in pieces], dim=1).numpy(), ref)
    assert_close(lamina.cat(tuple(lam(p) for p in pieces[:1]), -1).numpy(), pieces[0])


def test_cat_skips_legacy_empty_vectors_and_copies():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = lamina.cat([lam(a), lamina.zeros(0, dtype=lamina.float64)])
    assert out.dtype == lamina.float64
    assert_close(out.numpy(), a.astype(np.float64))
    single = lamina.cat([lam(a)])
    assert not np.shares_memory(single.numpy(), a)


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
       n=st.integers(1, 4), dim=st.integers(-4, 3), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16))
def test_stack_matches_numpy(shape, n, dim, dtype, seed):
    rng = np.random.default_rng(seed)
    dim = dim % (len(shape) + 1)
    arrays = [rand(shape, dtype, rng) for _ in range(n)]
    out = lamina.stack([lam(strided(a)) for a in arrays], dim)
    assert_close(out.numpy(), np.stack(arrays, axis=dim), dtype=dtype)


def test_hstack_vstack_dstack_column_stack_atleast():
    a, b = np.arange(3.0, dtype=np.float32), np.arange(3.0, 6.0, dtype=np.float32)
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_close(lamina.hstack([lam(a), lam(b)]).numpy(), np.hstack([a, b]))
    assert_close(lamina.hstack([lam(m), lam(m)]).numpy(), np.hstack([m, m]))
    assert_close(lamina.vstack([lam(a), lam(b)]).numpy(), np.vstack([a, b]))
    assert_close(lamina.dstack([lam(m), lam(m)]).numpy(), np.dstack([m, m]))
    assert_close(lamina.column_stack([lam(a), lam(b)]).numpy(), np.column_stack([a, b]))
    for fn, ref in ((lamina.atleast_1d, np.atleast_1d), (lamina.atleast_2d, np.atleast_2d),
                    (lamina.atleast_3d, np.atleast_3d)):
        for x in (np.float32(2.0) * np.ones(()), a, m):
            assert fn(lam(np.asarray(x, np.float32))).shape == ref(x).shape
        assert [t.shape for t in fn(lam(a), lam(m))] == [r.shape for r in ref(a, m)]


# -- splitting: views ---------------------------------------------------------------------------
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=7),
       dim=st.integers(-3, 2), size=st.integers(1, 4), chunks=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_split_chunk_unbind_are_views(shape, dim, size, chunks, seed):
    dim = dim % len(shape)
    a = rand(shape, np.float32, np.random.default_rng(seed))
    x = lam(a)
    n = shape[dim]
    parts = lamina.split(x, size, dim)
    bounds = list(range(size, n, size))
    refs = np.split(a, bounds, axis=dim)
    assert len(parts) == len(refs)
    for p, r in zip(parts, refs):
        assert_close(p.numpy(), r)
        assert p.numel() == 0 or np.shares_memory(p.numpy(), a)
    for p, r in zip(x.chunk(chunks, dim), torch.chunk(torch.from_numpy(a), chunks, dim)
                    if torch is not None else []):
        assert_close(p.numpy(), r.numpy())
    if n:
        per = -(-n // chunks)
        assert [p.shape[dim] for p in lamina.chunk(x, chunks, dim)] == \
            [min(per, n - s) for s in range(0, n, per)]
    for i, p in enumerate(x.unbind(dim)):
        assert_close(p.numpy(), np.take(a, i, axis=dim))
        assert p.numel() == 0 or np.shares_memory(p.numpy(), a)


def test_split_sizes_narrow_and_views():
    a = np.arange(20, dtype=np.int64).reshape(4, 5)
    x = lam(a)
    p, q = x.split([2, 3], dim=1)
    assert_close(p.numpy(), a[:, :2])
    assert_close(q.numpy(), a[:, 2:])
    assert np.shares_memory(q.numpy(), a)
    for start, length in ((0, 5), (-2, 2), (3, 0), (5, 0), (lamina.tensor(1), 3)):
        s = int(start)
        s = s + 5 if s < 0 else s
        v = lamina.narrow(x, 1, start, length)
        assert_close(v.numpy(), a[:, s:s + length])
    assert np.shares_memory(x.narrow(0, 1, 2).numpy(), a)


def test_movedim_swapaxes_unflatten_view_as():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x = lam(a)
    for src, dst in ((0, 2), (-1, 0), ((0, 1), (2, 0)), ([2], [1])):
        out = lamina.movedim(x, src, dst)
        assert_close(out.numpy(), np.moveaxis(a, src, dst))
        assert np.shares_memory(out.numpy(), a)
    assert_close(lamina.moveaxis(x, 0, -1).numpy(), np.moveaxis(a, 0, -1))
    assert_close(lamina.swapaxes(x, 0, 2).numpy(), np.swapaxes(a, 0, 2))
    assert_close(x.swapdims(1, -1).numpy(), np.swapaxes(a, 1, -1))
    u = x.unflatten(2, (2, -1))
    assert u.shape == (2, 3, 2, 2) and np.shares_memory(u.numpy(), a)
    assert_close(u.numpy(), a.reshape(2, 3, 2, 2))
    assert lamina.unflatten(x, -3, (1, 2)).shape == (1, 2, 3, 4)
    assert x.view_as(lamina.zeros(6, 4)).shape == (6, 4)
    assert_close(x.permute(2, 1, 0).reshape_as(lamina.zeros(24)).numpy(),
                 a.transpose(2, 1, 0).reshape(24))


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                 max_side=4))
def test_broadcast_tensors_and_shapes(shapes):
    arrays = [np.arange(int(np.prod(s)), dtype=np.float32).reshape(s)
              for s in shapes.input_shapes]
    outs = lamina.broadcast_tensors(*(lam(a) for a in arrays))
    for o, r in zip(outs, np.broadcast_arrays(*arrays)):
        assert_close(o.numpy(), r)
    assert lamina.broadcast_shapes(*shapes.input_shapes) == shapes.result_shape


# -- copies -------------------------------------------------------------------------------------
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
       shifts=st.lists(st.integers(-7, 7), min_size=1, max_size=3), flat=st.booleans(),
       dtype=st.sampled_from(DTYPES), layout=st.booleans(), seed=st.integers(0, 2**16))
def test_roll_matches_numpy(shape, shifts, flat, dtype, layout, seed):
    a = rand(shape, dtype, np.random.default_rng(seed))
    x = lam(strided(a) if layout else a)
    if flat or not shape:
        out, ref = lamina.roll(x, shifts[0]), np.roll(a, shifts[0])
    else:
        dims = [i % len(shape) for i in range(len(shifts))]
        out, ref = x.roll(tuple(shifts), tuple(dims)), np.roll(a, shifts, dims)
    assert_close(out.numpy(), ref, dtype=dtype)
    assert a.size == 0 or not np.shares_memory(out.numpy(), a)


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
       extra=st.integers(0, 2), reps=st.lists(st.integers(0, 3), min_size=5, max_size=5),
       dtype=st.sampled_from(DTYPES), layout=st.booleans(), seed=st.integers(0, 2**16))
def test_repeat_and_tile_match_numpy(shape, extra, reps, dtype, layout, seed):
    a = rand(shape, dtype, np.random.default_rng(seed))
    x = lam(strided(a) if layout else a)
    r = tuple(reps[:len(shape) + extra])
    if r:
        assert_close(x.repeat(*r).numpy(), np.tile(a, r), dtype=dtype)
        assert_close(x.repeat(r).numpy(), np.tile(a, r), dtype=dtype)
    t = tuple(reps[:max(len(shape) - 1, 1)])
    assert_close(lamina.tile(x, t).numpy(), np.tile(a, t), dtype=dtype)


@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
       r=st.integers(0, 3), dim=st.one_of(st.none(), st.integers(-3, 2)),
       seed=st.integers(0, 2**16))
def test_repeat_interleave_matches_numpy(shape, r, dim, seed):
    a = rand(shape, np.float32, np.random.default_rng(seed))
    if dim is not None:
        dim = dim % max(len(shape), 1)
    out = lamina.repeat_interleave(lam(a), r, dim)
    ref = np.repeat(a if dim is not None or a.ndim else a.reshape(1), r, axis=dim)
    assert_close(out.numpy(), ref)
    assert_close(lam(a).repeat_interleave(lamina.tensor([r]), dim).numpy(), ref)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
       dim=st.integers(-3, 2), data=st.data())
def test_repeat_interleave_per_entry_matches_numpy(shape, dim, data):
    dim = dim % len(shape)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    a = rand(shape, np.float32, rng)
    reps = rng.integers(0, 4, size=shape[dim])
    dtype = data.draw(st.sampled_from([np.int64, np.int32]))
    out = lamina.repeat_interleave(lam(strided(a)), lam(reps.astype(dtype)), dim)
    assert_close(out.numpy(), np.repeat(a, reps, axis=dim))
    flat = lam(a).repeat_interleave(lam(np.ones(a.size, np.int64) * 2))
    assert_close(flat.numpy(), np.repeat(a.reshape(-1), 2))
    assert_close(lamina.repeat_interleave(lam(reps)).numpy(),
                 np.repeat(np.arange(reps.size), reps))


def test_copies_compile_to_one_kernel_each():
    x = lamina.from_numpy(np.arange(12, dtype=np.float32).reshape(3, 4))
    fns = {
        "cat": lambda t: lamina.cat([t, t * 2, t.int()], 1),
        "stack": lambda t: lamina.stack([t, t + 1], 2),
        "roll": lambda t: lamina.roll(t, (1, -3), (0, 1)),
        "repeat": lambda t: t.repeat(2, 1, 3),
        "repeat_interleave": lambda t: t.repeat_interleave(2, 1),
        "split": lambda t: t.split([1, 3], 1)[1] * 2,
    }
    for name, fn in fns.items():
        f = lamina.compile(fn)
        loop = f.lower(x).as_text("loop")
        assert loop.count("kernel @") == 1, (name, loop)
        assert_close(f(x).numpy(), fn(x).numpy())


# -- errors -------------------------------------------------------------------------------------
ERRORS = [
    ("cat_empty", lambda m: m.cat([]), ValueError, "expected a non-empty list of Tensors"),
    ("cat_rank", lambda m: m.cat([m.ones(2, 3), m.ones(3)]), RuntimeError,
     "Tensors must have same number of dimensions: got 2 and 1"),
    ("cat_size", lambda m: m.cat([m.ones(2, 3), m.ones(3, 2)]), RuntimeError,
     r"Sizes of tensors must match except in dimension 0. Expected size 3 but got size 2 for "
     r"tensor number 1 in the list."),
    ("cat_dim", lambda m: m.cat([m.ones(2, 3)], 2), IndexError, "Dimension out of range"),
    ("cat_0d", lambda m: m.cat([m.ones(()), m.ones(())]), RuntimeError,
     r"zero-dimensional tensor \(at position 0\) cannot be concatenated"),
    ("stack_size", lambda m: m.stack([m.ones(2, 3), m.ones(3, 2)]), RuntimeError,
     r"stack expects each tensor to be equal size, but got \[2, 3\] at entry 0 and \[3, 2\] at "
     r"entry 1"),
    ("stack_empty", lambda m: m.stack([]), RuntimeError, "stack expects a non-empty TensorList"),
    ("split_sum", lambda m: m.split(m.ones(2, 5), [2, 2], 1), RuntimeError,
     r"split_with_sizes expects split_sizes to sum exactly to 5 \(input tensor's size at "
     r"dimension 1\), but got split_sizes=\[2, 2\]"),
    ("split_neg", lambda m: m.split(m.ones(5), -1), RuntimeError,
     "split expects split_size be non-negative, but got split_size=-1"),
    ("split_zero", lambda m: m.split(m.ones(5), 0), RuntimeError,
     "split_size can only be 0 if dimension size is 0, but got dimension size of 5"),
    ("chunk_zero", lambda m: m.chunk(m.ones(5), 0), RuntimeError,
     "chunk expects `chunks` to be greater than 0, got: 0"),
    ("narrow_start", lambda m: m.narrow(m.ones(2, 5), 1, 6, 1), IndexError,
     r"start out of range \(expected to be in range of \[-5, 5\], but got 6\)"),
    ("narrow_len", lambda m: m.narrow(m.ones(2, 5), 1, 2, 4), RuntimeError,
     r"start \(2\) \+ length \(4\) exceeds dimension size \(5\)."),
    ("narrow_neg", lambda m: m.narrow(m.ones(2, 5), 1, 2, -1), RuntimeError,
     "narrow\\(\\): length must be non-negative."),
    ("roll_align", lambda m: m.roll(m.ones(2, 5), (1, 2), (0,)), RuntimeError,
     "shifts and dimensions must align. shifts: 2, dims:1"),
    ("repeat_rank", lambda m: m.ones(2, 5).repeat(2), RuntimeError,
     "Number of dimensions of repeat dims can not be smaller than number of dimensions of "
     "tensor"),
    ("repeat_neg", lambda m: m.ones(2, 5).repeat(2, -1), RuntimeError,
     r"Trying to create tensor with negative dimension -5: \[4, -5\]"),
    ("ri_neg", lambda m: m.repeat_interleave(m.ones(3), -1), RuntimeError,
     "Repeats must be non-negative"),
    ("ri_neg_tensor", lambda m: m.repeat_interleave(m.ones(2), m.tensor([1, -2])), RuntimeError,
     "repeats can not be negative"),
    ("ri_len", lambda m: m.repeat_interleave(m.ones(2, 3), m.tensor([1, 2]), 1), RuntimeError,
     r"repeats must have the same size as input along dim, but got repeats.size\(0\) = 2 and "
     r"input.size\(1\) = 3"),
    ("ri_2d", lambda m: m.repeat_interleave(m.ones(2), m.tensor([[1, 2]]), 0), RuntimeError,
     "repeats must be 0-dim or 1-dim tensor"),
    ("ri_float", lambda m: m.repeat_interleave(m.ones(2), m.tensor([1.0, 2.0]), 0),
     NotImplementedError, "\"repeat_interleave_cpu\" not implemented for 'Float'"),
    ("ri_size", lambda m: m.repeat_interleave(m.ones(2), m.tensor([1, 2]), 0, output_size=4),
     RuntimeError, "allocated size does not match required size"),
    ("movedim_len", lambda m: m.movedim(m.ones(2, 5), (0, 1), (1,)), RuntimeError,
     r"movedim: Invalid source or destination dims: source \(\[0, 1\] dims\) should contain the "
     r"same number of dims as destination \(\[1\] dims\)"),
    ("movedim_rep", lambda m: m.movedim(m.ones(2, 5), (0, 0), (1, 0)), RuntimeError,
     r"movedim: repeated dim in `source` \(\[0, 0\]\)"),
    ("unflatten", lambda m: m.unflatten(m.ones(2, 5), 1, (5, 2)), RuntimeError,
     r"unflatten: Provided sizes \[5, 2\] don't multiply up to the size of dim 1 \(5\) in the "
     r"input tensor"),
    ("unflatten_empty", lambda m: m.unflatten(m.ones(2, 5), 1, ()), RuntimeError,
     "unflatten: sizes must be non-empty"),
    ("broadcast", lambda m: m.broadcast_tensors(m.ones(2, 5), m.ones(3)), RuntimeError,
     r"The size of tensor a \(5\) must match the size of tensor b \(3\) at non-singleton "
     r"dimension"),
    ("unbind_0d", lambda m: m.unbind(m.ones(())), IndexError,
     "Dimension specified as 0 but tensor has no dimensions"),
    ("view_as", lambda m: m.ones(2, 5).view_as(m.ones(3)), RuntimeError,
     r"shape '\[3\]' is invalid for input of size 10"),
]


@pytest.mark.parametrize("name,call,exc,match", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_match_pytorch(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call(lamina)
    if torch is not None:
        with pytest.raises(exc, match=match):
            call(torch)


@needs_torch
def test_against_torch_on_mixed_inputs():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.integers(-3, 3, (3, 2)).astype(np.int64)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    cases = [
        (lambda m, x, y: m.cat([x, y], 1)), (lambda m, x, y: m.hstack([x, y])),
        (lambda m, x, y: m.stack([x[:, :2], y], -1)), (lambda m, x, y: x.roll(-5)),
        (lambda m, x, y: y.repeat(1, 2, 2)), (lambda m, x, y: m.tile(y, (2,))),
        (lambda m, x, y: m.repeat_interleave(y, 3, 0)),
        (lambda m, x, y: m.movedim(x.reshape(3, 2, 2), (2, 0), (0, 1))),
    ]
    for fn in cases:
        got, want = fn(lamina, lam(a), lam(b)), fn(torch, ta, tb)
        assert str(got.dtype).split(".")[1] == str(want.dtype).split(".")[1]
        assert_close(got.numpy(), want.numpy())


# -- gradients: the builds are what autograd differentiates -------------------------------------
GRADS = {
    "cat": (lambda m, x, y: m.cat([x, y * 2, x], 1), [(2, 3), (2, 2)]),
    "stack": (lambda m, x, y: m.stack([x, y], -1), [(2, 3), (2, 3)]),
    "hstack": (lambda m, x, y: m.hstack([x, y]), [(2, 3), (2, 2)]),
    "split": (lambda m, x: m.split(x, [1, 3], 1)[1] * m.split(x, 2, 1)[0].sum(), [(2, 4)]),
    "chunk": (lambda m, x: m.chunk(x, 3, 0)[1] * 3, [(5, 2)]),
    "unbind": (lambda m, x: m.unbind(x, 1)[2] * m.unbind(x)[0].sum(), [(2, 3)]),
    "narrow": (lambda m, x: x.narrow(0, 1, 2) ** 2, [(4, 2)]),
    "roll": (lambda m, x: m.roll(x, (1, -2), (0, 1)) * m.arange(6.0).reshape(2, 3), [(2, 3)]),
    "roll_flat": (lambda m, x: m.roll(x, 4) * m.arange(6.0).reshape(2, 3), [(2, 3)]),
    "repeat": (lambda m, x: x.repeat(2, 1, 3) * m.arange(36.0).reshape(2, 2, 9), [(2, 3)]),
    "tile": (lambda m, x: m.tile(x, (2,)) * m.arange(12.0).reshape(2, 6), [(2, 3)]),
    "repeat_interleave": (lambda m, x: x.repeat_interleave(2, 0) * m.arange(12.0).reshape(4, 3),
                          [(2, 3)]),
    "repeat_interleave_tensor": (lambda m, x: x.repeat_interleave(m.tensor([2, 0, 3]), 1)
                                 * m.arange(10.0).reshape(2, 5), [(2, 3)]),
    "movedim": (lambda m, x: m.movedim(x, 0, 2) * m.arange(24.0).reshape(3, 4, 2),
                [(2, 3, 4)]),
    "unflatten": (lambda m, x: x.unflatten(1, (2, 2)) * m.arange(8.0).reshape(2, 2, 2),
                  [(2, 4)]),
    "broadcast_tensors": (lambda m, x, y: m.broadcast_tensors(x, y)[0] * 2
                          + m.broadcast_tensors(x, y)[1], [(2, 1), (3,)]),
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
