"""The generated fast check/pack must agree with the full check on every buffer: same
words when it accepts, the same refusal (raised by the full check) when it does not."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.ir.types import SCALARS, MemRefType
from lamina.runtime.argcheck import ArgSpec, fast_path, row_major, slow_path, word_count
from lamina.runtime.errors import ArgumentMismatch

DTYPES = ["f32", "f64", "i64", "i8", "i1", "f16"]


@st.composite
def spec_and_array(draw):
    rank = draw(st.integers(0, 3))
    dtype = SCALARS[draw(st.sampled_from(DTYPES))]
    sizes = tuple(draw(st.sampled_from([None, None, 1, 2, 3])) for _ in range(rank))
    strides = None
    if draw(st.booleans()):
        strides = tuple(draw(st.sampled_from([None, None, 0, 1])) for _ in range(rank))
    spec = ArgSpec(MemRefType(sizes, dtype, strides), "arg", draw(st.booleans()))
    # An array that mostly fits, sometimes not: dtype, rank, sizes, layout, flags.
    np_dtype = dtype.numpy if draw(st.integers(0, 5)) else np.dtype(draw(
        st.sampled_from(["float32", "int32", "float64"])))
    arr_rank = rank if draw(st.integers(0, 7)) else draw(st.integers(0, 3))
    shape = tuple(
        (sizes[ax] if ax < rank and sizes[ax] is not None and draw(st.integers(0, 5))
         else draw(st.integers(0, 4)))
        for ax in range(arr_rank)
    )
    kind = draw(st.sampled_from(["contiguous", "sliced", "transposed", "broadcast", "reversed"]))
    if kind == "sliced":
        steps = tuple(draw(st.integers(1, 3)) for _ in shape)
        base = np.zeros(tuple(n * s + 1 for n, s in zip(shape, steps)), np_dtype)
        a = base[tuple(slice(1, 1 + n * s, s) for n, s in zip(shape, steps))]
    elif kind == "transposed":
        a = np.zeros(shape[::-1], np_dtype).T
    elif kind == "broadcast" and arr_rank:
        src = np.zeros(tuple(1 if draw(st.booleans()) else n for n in shape), np_dtype)
        a = np.broadcast_to(src, shape)
    elif kind == "reversed" and arr_rank:
        a = np.zeros(shape, np_dtype)[::-1]
    else:
        a = np.zeros(shape, np_dtype)
    if a.flags.writeable and not draw(st.integers(0, 4)):
        a.flags.writeable = False
    assert a.shape == shape
    return spec, a


def _outcome(fn, *arrays):
    try:
        return fn(*arrays)
    except ArgumentMismatch as e:
        return ("refused", str(e))


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(spec_and_array(), min_size=1, max_size=3))
def test_fast_path_agrees_with_full_check(pairs):
    specs = [s for s, _ in pairs]
    arrays = [a for _, a in pairs]
    fast = fast_path(specs, "k")
    slow = slow_path(specs, "k", None, struct.Struct(f"={word_count(specs)}q"))
    got = _outcome(fast, *arrays)
    assert got == _outcome(slow, *arrays)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(spec_and_array(), min_size=1, max_size=3))
def test_accepted_words_describe_the_buffers(pairs):
    specs = [s for s, _ in pairs]
    arrays = [a for _, a in pairs]
    got = _outcome(fast_path(specs, "k"), *arrays)
    if isinstance(got, tuple):
        return
    words = np.frombuffer(got, np.int64).tolist()
    for spec, a in zip(specs, arrays):
        r = a.ndim
        ptr, sizes, strides = words[0], words[1:1 + r], words[1 + r:1 + 2 * r]
        words = words[1 + 2 * r:]
        assert ptr == a.ctypes.data and tuple(sizes) == a.shape
        assert min(strides, default=0) >= 0
        if spec.type.strides is None:
            assert tuple(strides) == row_major(a.shape)
        for ax, (n, s) in enumerate(zip(a.shape, strides)):
            if n > 1 and a.size:  # the only strides a kernel ever multiplies by index > 0
                assert s * a.itemsize == a.strides[ax]
    assert words == []


def test_wrong_count_and_check_only_mode():
    spec = ArgSpec(MemRefType((None,), SCALARS["f32"]), "func @f: argument 0")
    check = fast_path([spec], "func @f", pack=False)
    assert check(np.zeros(3, np.float32)) is None
    with pytest.raises(ArgumentMismatch, match=r"func @f: expected 1 buffers \(memref<\?xf32>\), "
                                                "got 2"):
        check(np.zeros(3, np.float32), np.zeros(3, np.float32))
    with pytest.raises(ArgumentMismatch, match="dtype int64 is not float32"):
        check(np.zeros(3, np.int64))
    assert "def fast(*xs)" in check.source


def test_equal_but_not_identical_dtype_is_accepted():
    spec = ArgSpec(MemRefType((None,), SCALARS["f32"]), "arg")
    a = np.zeros(3, np.float32)
    b = a.view(np.dtype(np.float32, metadata={"x": 1}))  # equal dtype, different object
    assert b.dtype == np.float32 and b.dtype is not np.dtype(np.float32)
    fast = fast_path([spec], "k")
    assert fast(b) == fast(a)
