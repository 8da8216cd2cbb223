"""Calling kernels: results against numpy, argument checks, bounds checks, threaded split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.runtime import Kernel, compile_module, kernel, native_pool, threads
from lamina.runtime import cache as cache_mod
from lamina.runtime.errors import ArgumentMismatch

from .llvm_kernels import HandEmitter, binary_ir, iota_ir, module, total_ir


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """Compiled once for the whole file (in its own cache directory)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMINA_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(cache_mod, "_emit_module", HandEmitter())
        return _compile()


def _compile():
    m = module(binary_ir("add1", "add", "f32", 1), binary_ir("mul2", "mul", "f32", 2),
               binary_ir("sadd2", "add", "f32", 2, strided=True),
               binary_ir("iadd2", "add", "i64", 2), iota_ir("iota"), total_ir("total"))
    return compile_module(m).kernels


def _strided_view(rng, shape, dtype):
    """A non-contiguous view with the given shape (every other element of a bigger array)."""
    big = rng.standard_normal(tuple(2 * n + 1 for n in shape)).astype(dtype)
    return big[tuple(slice(1, None, 2) for _ in shape)][tuple(slice(0, n) for n in shape)]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**31))
def test_add1_matches_numpy(kernels, n, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, n)).astype(np.float32)
    out = np.full(n, np.nan, np.float32)
    kernels["add1"](a, b, out)
    np.testing.assert_array_equal(out, a + b)


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(st.integers(0, 17), st.integers(0, 17)), seed=st.integers(0, 2**31),
       strided=st.booleans())
def test_strided_kernel_on_views_matches_numpy(kernels, shape, seed, strided):
    rng = np.random.default_rng(seed)
    make = (lambda: _strided_view(rng, shape, np.float32)) if strided else (
        lambda: rng.standard_normal(shape).astype(np.float32))
    a, b = make(), make()
    if strided and shape[0] > 0:
        assert not a.flags.c_contiguous or a.size <= 1
    out_base = np.zeros((shape[1], shape[0]), np.float32)
    out = out_base.T  # a transposed output: strides (1, n0)
    kernels["sadd2"](a, b, out)
    np.testing.assert_array_equal(out, a + b)


def test_broadcast_input_with_zero_strides(kernels):
    a = np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4))
    b = np.broadcast_to(np.float32(10), (3, 4))
    out = np.empty((3, 4), np.float32)
    kernels["sadd2"](a, b, out)
    np.testing.assert_array_equal(out, a + 10)


def test_int64_and_zero_d_kernels(kernels):
    a = np.arange(12, dtype=np.int64).reshape(3, 4)
    out = np.zeros_like(a)
    kernels["iadd2"](a, a, out)
    np.testing.assert_array_equal(out, 2 * a)
    x = np.arange(100, dtype=np.float32)
    s = np.zeros((), np.float32)
    kernels["total"](x, s)
    assert s == np.float32(x.sum())
    assert not kernels["total"].parallel and kernels["iota"].parallel


def test_argument_count_dtype_rank_errors(kernels):
    k = kernels["add1"]
    a = np.zeros(4, np.float32)
    with pytest.raises(ArgumentMismatch, match=r"kernel @add1: expected 3 buffers .*, got 2"):
        k(a, a)
    with pytest.raises(TypeError, match=r"argument 1 \(%b\): expects memref<\?xf32>.*dtype "
                                        r"float64 is not float32"):
        k(a, a.astype(np.float64), a)
    with pytest.raises(ValueError, match=r"argument 2 \(%out\).*rank 2 is not 1"):
        k(a, a, a.reshape(2, 2))
    with pytest.raises(ArgumentMismatch, match="expected a numpy array"):
        k(a, [0.0] * 4, a)


def test_contiguity_and_writability_errors(kernels):
    k = kernels["add1"]
    a = np.zeros(8, np.float32)
    with pytest.raises(ArgumentMismatch, match="contiguous row-major"):
        k(a[::2], a[::2], np.zeros(4, np.float32))
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ArgumentMismatch, match=r"argument 2 \(%out\).*read-only"):
        k(a, a, ro)
    k(ro, ro, a)  # read-only inputs are fine
    with pytest.raises(ArgumentMismatch, match="negative stride"):
        kernels["sadd2"](a.reshape(2, 4)[::-1], a.reshape(2, 4), np.zeros((2, 4), np.float32))


def test_shorter_input_is_refused_before_any_access(kernels):
    k = kernels["add1"]
    out = np.zeros(10, np.float32)
    with pytest.raises(ArgumentMismatch, match=r"argument 1 .* size 3 on axis 0 but the kernel "
                                                r"indexes it from 0 to 9"):
        k(np.zeros(10, np.float32), np.zeros(3, np.float32), out)
    # Longer inputs are fine: the kernel loops over the output.
    k(np.ones(12, np.float32), np.ones(11, np.float32), out)
    assert (out == 2).all()
    with pytest.raises(ArgumentMismatch, match="axis 1"):
        kernels["mul2"](np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32),
                        np.zeros((3, 4), np.float32))
    # A zero-size output means no loop runs, so mismatched inputs are harmless.
    kernels["mul2"](np.zeros((0, 4), np.float32), np.zeros((0, 2), np.float32),
                    np.zeros((0, 4), np.float32))


def test_static_sizes_and_strides_in_the_type_are_checked(cache_dir, hand_emit):
    text = binary_ir("add2", "add", "f32", 2).replace(
        "memref<?x?xf32>", "memref<3x?xf32, strided<[?, 1]>>")
    k = compile_module(module(text)).kernels["add2"]
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.zeros((3, 4), np.float32)
    k(x, x, out)
    np.testing.assert_array_equal(out, 2 * x)
    with pytest.raises(ArgumentMismatch, match="size 2 on axis 0, expected 3"):
        k(x[:2], x[:2], out[:2])
    with pytest.raises(ArgumentMismatch, match=r"stride 2 \(elements\) on axis 1, expected 1"):
        k(x[:, ::2], x[:, ::2], out[:, :2])
    # A static stride on a size-1 axis is never used: any stride is accepted there.
    col = np.zeros((3, 8), np.float32)[:, ::8]
    k(col, col, col)


@pytest.mark.parametrize("chunks", [1, 2, 3, 5, 64])
def test_threaded_split_equals_single_call(kernels, chunks):
    rng = np.random.default_rng(chunks)
    a, b = rng.standard_normal((2, 37, 29)).astype(np.float32)
    single = np.zeros((37, 29), np.float32)
    split = np.zeros((37, 29), np.float32)
    kernels["mul2"].run(a, b, single)
    kernels["mul2"].run(a, b, split, chunks=chunks)
    np.testing.assert_array_equal(single, split)
    np.testing.assert_array_equal(split, a * b)


def test_large_calls_are_split_automatically(kernels, monkeypatch):
    threads.set_num_threads(3)
    try:
        calls = []
        orig, orig_native = Kernel._split, native_pool.NativePool.run

        def spy(self, args, trips, n, pool):
            calls.append((trips, n))
            return orig(self, args, trips, n, pool)

        def spy_native(self, fn, args, trips, n):
            calls.append((trips, n))
            return orig_native(self, fn, args, trips, n)

        monkeypatch.setattr(Kernel, "_split", spy)
        monkeypatch.setattr(native_pool.NativePool, "run", spy_native)
        # the native pool cuts a job into a few chunks per thread; Python threads one each
        per = native_pool.CHUNKS_PER_THREAD if native_pool.pool(3) is not None else 1
        out = np.zeros(1 << 17, np.float32)
        kernels["iota"](out)
        np.testing.assert_array_equal(out, np.arange(1 << 17, dtype=np.float32))
        assert calls == [(1 << 17, 3 * per)]
        small = np.zeros(100, np.float32)
        kernels["iota"](small)  # below the threshold: one call, no split
        assert len(calls) == 1
        monkeypatch.setattr(kernel, "PARALLEL_MIN_ELEMENTS", 10)
        kernels["iota"](small)
        assert calls[-1] == (100, 3 * per)
        np.testing.assert_array_equal(small, np.arange(100, dtype=np.float32))
    finally:
        threads.set_num_threads(threads._default_size())


def test_kernel_repr_and_pack_words(kernels):
    k = kernels["add1"]
    assert "memref<?xf32>" in repr(k)
    a = np.zeros(5, np.float32)
    words = np.frombuffer(k.pack(a, a, a), np.int64)
    assert words.tolist() == [a.ctypes.data, 5, 1] * 3
