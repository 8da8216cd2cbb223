"""Aligned allocation, zero-copy views and the (pointer, sizes, strides) of numpy views."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.runtime import buffers
from lamina.runtime.buffers import ALIGNMENT, data_pointer, describe, empty

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int32, np.int64, np.bool_, np.uint16]
shapes = st.lists(st.integers(0, 7), min_size=0, max_size=4).map(tuple)


@settings(max_examples=50, deadline=None)
@given(shape=shapes, dtype=st.sampled_from(DTYPES))
def test_empty_is_aligned_contiguous_and_owned_by_numpy(shape, dtype):
    a = empty(shape, dtype)
    assert a.shape == shape and a.dtype == np.dtype(dtype)
    assert a.ctypes.data % ALIGNMENT == 0
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    # Filling the whole array stays inside the allocation and reads back exactly.
    ref = np.arange(a.size).reshape(shape).astype(dtype)
    a[...] = ref
    np.testing.assert_array_equal(a, ref)


def test_empty_accepts_int_shape_and_rejects_negative():
    assert empty(5, "f4").shape == (5,)
    with pytest.raises(ValueError, match="non-negative"):
        empty((2, -1), np.float32)


def test_many_allocations_are_all_aligned():
    # Every offset the allocator can hand out must be corrected, not just the first.
    arrs = [empty((n,), np.float32) for n in range(1, 200)]
    assert all(data_pointer(a) % ALIGNMENT == 0 for a in arrs)
    assert len({data_pointer(a) for a in arrs}) == len(arrs)


def test_views_share_memory_without_copy():
    a = empty((4, 6), np.float32)
    a[...] = 0
    v = a[1:3, ::2]
    v[...] = 7
    assert np.shares_memory(a, v)
    assert (a[1:3, ::2] == 7).all() and a.sum() == 7 * v.size
    # The frontend's .numpy()/from_numpy rely on np.asarray not copying.
    assert np.asarray(a) is a


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
       data=st.data())
def test_describe_matches_numpy_on_strided_views(shape, data):
    base = np.arange(np.prod(shape) * 2, dtype=np.float64).reshape((shape[0] * 2,) + shape[1:])
    slices = tuple(
        slice(data.draw(st.integers(0, n - 1)), None, data.draw(st.integers(1, 3)))
        for n in base.shape
    )
    v = base[slices]
    if data.draw(st.booleans()):
        v = v.T
    ptr, sizes, strides = describe(v)
    assert ptr == v.__array_interface__["data"][0]
    assert sizes == v.shape
    # Element (i, j, ...) lives at ptr + sum(i_k * stride_k) elements: check every one.
    flat = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_double * base.size).from_address(
        base.ctypes.data))
    offset0 = (ptr - base.ctypes.data) // 8
    for idx in np.ndindex(*v.shape):
        assert flat[offset0 + sum(i * s for i, s in zip(idx, strides))] == v[idx]


def test_describe_zero_d_and_size_zero():
    z = np.array(3.5, np.float32)
    assert describe(z) == (z.ctypes.data, (), ())
    e = np.empty((0, 4), np.int32)
    ptr, sizes, strides = describe(e)
    # Nothing of a size-0 array is ever read, so its strides may be anything non-negative.
    assert sizes == (0, 4) and len(strides) == 2 and min(strides) >= 0
    assert ptr == e.ctypes.data


def test_describe_broadcast_view_has_zero_strides():
    b = np.broadcast_to(np.arange(3, dtype=np.float32), (5, 3))
    assert describe(b)[2] == (0, 1)


def test_negative_strides_are_rejected_with_clear_error():
    a = np.arange(10, dtype=np.float32)
    with pytest.raises(ValueError, match=r"negative stride -4 bytes on axis 0.*shape \(10,\)"):
        describe(a[::-1])
    # On a size-1 axis the stride is never used, so it is not an error.
    assert describe(a[::-1][:1])[2] == (0,)


def test_unaligned_views_are_rejected():
    raw = np.zeros(64, np.uint8)
    v = raw[1:33].view(np.float32)
    assert not v.flags.aligned
    with pytest.raises(ValueError, match="not aligned"):
        describe(v)
    rec = np.zeros(4, dtype=[("a", np.int8), ("b", np.float32)])
    with pytest.raises(ValueError):
        describe(rec["b"])


def test_describe_rejects_non_arrays():
    with pytest.raises(TypeError, match="numpy array"):
        describe([1, 2, 3])


def test_data_pointer_offset_was_verified():
    # The fast field read must agree with numpy's own answer on fresh arrays and views.
    a = np.ones((7, 5), np.float32)
    for v in (a, a[2:, 1:], a.T, a[3, 2:3], np.ones(()), np.zeros((0, 3))):
        assert data_pointer(v) == v.ctypes.data
    assert buffers._DATA_OFFSET is not None


@pytest.mark.parametrize("bad", [(2.0, 3), (-1,), "abc", None, (2, None)])
def test_empty_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match="non-negative integers"):
        empty(bad, np.float32)


def test_empty_accepts_numpy_integers_and_dtype_names():
    a = empty((np.int64(2), np.int32(3)), "float64")
    assert a.shape == (2, 3) and a.dtype == np.float64 and type(a.shape[0]) is int
    assert empty((), np.int8).shape == ()
