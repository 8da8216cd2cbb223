"""Reductions and row ops on a real GPU through ``CudaProgram`` vs numpy.

Covers the cooperative mapping of ``gpu-map`` (warp- and block-shared trips,
shuffles, shared memory) over rows of 1..5000 elements, many rows and few, for
f32/f64/f16/i32/i64. Output buffers are poisoned (0xFF bytes: NaN for floats,
-1 for integers) before each run, so an element the kernels never write fails.
Skipped without a GPU; with ``LAMINA_CUDA_FAKE=1`` it runs on the host stand-in
(the CPU build of every kernel), which checks the harness but not the PTX.
"""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda import program as cuda_program
from lamina.runtime.cuda.program import CudaProgram, DeviceArray

pytestmark = pytest.mark.skipif(not D.available(),
                                reason="no CUDA driver (libcuda.so.1) or no GPU")


@pytest.fixture(scope="module")
def dev():
    return D.driver().device(0)


class _Poisoned(CudaProgram):
    """A program whose fresh buffers start as 0xFF bytes."""

    def _alloc(self, op, dyn):
        a = super()._alloc(op, dyn)
        n = a.size * a.dtype.itemsize
        if n:
            junk = np.full(n, 0xFF, np.uint8)
            self.device.htod(a.ptr, junk.ctypes.data, n)
        return a


def _run(dev, fn, *arrays):
    ts = [lamina.tensor(a) for a in arrays]
    loop = lamina.compile(fn).lower(*ts, target="cuda").stages.loop
    prog = _Poisoned(loop, dev)
    outs = prog(*[DeviceArray.from_numpy(dev, a) for a in arrays])
    return [o.numpy() for o in outs]


def _data(shape, dtype, seed=0, lo=-3.0, hi=3.0):
    rng = np.random.default_rng(seed)
    a = rng.uniform(lo, hi, shape)
    if np.dtype(dtype).kind in "iu":
        a = np.round(a * 30)
    return a.astype(dtype)


# (rows, cols): a row of one, around a warp, long rows, many rows and few rows
SHAPES = [(1, 1), (5, 31), (3, 32), (9, 33), (300, 1000), (2, 5000), (4100, 7), (1, 4097)]
DTYPES = ["float32", "float64", "float16", "int32", "int64"]
CASES = [(d, s) for i, d in enumerate(DTYPES) for j, s in enumerate(SHAPES) if (i + j) % 2 == 0
         or s in ((9, 33), (2, 5000))]


def _tol(dtype):
    return {"float16": 2e-2, "float32": 1e-4, "float64": 1e-10}.get(dtype, 0)


@pytest.mark.parametrize("dtype,shape", CASES, ids=[f"{d}-{r}x{c}" for d, (r, c) in CASES])
def test_row_reductions(dev, dtype, shape):
    x = _data(shape, dtype)
    outs = _run(dev, lambda a: (a.sum(1), a.amax(1), a.amin(1), a.argmax(1), a.sum()), x)
    s, mx, mn, am, total = outs
    wide = x.astype(np.float64)
    tol = _tol(dtype)
    scale = np.abs(wide).sum(1) + 1
    if tol:
        assert np.all(np.abs(s.astype(np.float64) - wide.sum(1)) <= tol * scale)
        assert abs(float(total) - wide.sum()) <= tol * (np.abs(wide).sum() + 1)
    else:
        np.testing.assert_array_equal(s, wide.sum(1).astype(s.dtype))
        assert int(total) == int(wide.sum())
    np.testing.assert_array_equal(mx, x.max(1))
    np.testing.assert_array_equal(mn, x.min(1))
    np.testing.assert_array_equal(am, x.argmax(1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 31), (64, 1000), (2, 5000)], ids=str)
def test_mean_prod(dev, dtype, shape):
    x = _data(shape, dtype, seed=1, lo=0.999, hi=1.001)
    mean, prod = _run(dev, lambda a: (a.mean(1), a.prod(1)), x)
    np.testing.assert_allclose(mean, x.mean(1), rtol=1e-5)
    np.testing.assert_allclose(prod, x.astype(np.float64).prod(1), rtol=1e-4)


def _softmax(x, axis=1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


ROW_OPS = {
    "softmax": (lambda a: a.softmax(1), _softmax),
    "log_softmax": (lambda a: a.log_softmax(1), lambda x: np.log(_softmax(x))),
    "layer_norm": (lambda a: lamina.layer_norm(a, (a.shape[1],)),
                   lambda x: (x - x.mean(1, keepdims=True))
                   / np.sqrt(x.var(1, keepdims=True) + 1e-5)),
    "var": (lambda a: a.var(1), lambda x: x.var(1, ddof=1) if x.shape[1] > 1 else
            np.full(x.shape[0], np.nan)),
}
ROW_CASES = [(op, d, s) for op in ROW_OPS for d in ("float32", "float64")
             for s in ((1, 1), (7, 33), (3, 5000), (1000, 128))]


@pytest.mark.parametrize("op,dtype,shape", ROW_CASES,
                         ids=[f"{o}-{d}-{r}x{c}" for o, d, (r, c) in ROW_CASES])
def test_row_ops(dev, op, dtype, shape):
    fn, ref = ROW_OPS[op]
    x = _data(shape, dtype, seed=2)
    (out,) = _run(dev, fn, x)
    rtol = 2e-4 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(out, ref(x.astype(np.float64)), rtol=rtol, atol=rtol)


def test_cooperative_mapping_is_used(dev):
    x = _data((4, 3000), "float32")
    ts = [lamina.tensor(x)]
    loop = lamina.compile(lambda a: a.sum(1)).lower(*ts, target="cuda").stages.loop
    prog = CudaProgram(loop, dev)
    assert any(lanes > 1 for _, lanes, _ in prog.blocks.values())


def test_kill_switch_runs_one_trip_per_thread(dev, monkeypatch):
    monkeypatch.setenv("LAMINA_GPU_COOP", "0")
    monkeypatch.setattr(cuda_program, "_CACHE", {})
    x = _data((37, 500), "float32", seed=3)
    ts = [lamina.tensor(x)]
    loop = lamina.compile(lambda a: a.softmax(1)).lower(*ts, target="cuda").stages.loop
    prog = _Poisoned(loop, dev)
    assert all(lanes == 1 for _, lanes, _ in prog.blocks.values())
    (out,) = prog(DeviceArray.from_numpy(dev, x))
    np.testing.assert_allclose(out.numpy(), _softmax(x.astype(np.float64)), rtol=2e-4,
                               atol=1e-6)


# -- unrolled elementwise kernels (gpu-map {unroll = 4}) ------------------------------------------
EW_SIZES = [1, 255, 256, 1023, 1024, 1025, 4097, 100003]
EW_OPS = {
    "float32": (lambda a, b: ((a * 2 + 1).relu() * b).tanh() + a.exp(),
                lambda a, b: np.tanh(np.maximum(a * 2 + 1, 0) * b) + np.exp(a)),
    "float16": (lambda a, b: a * b - a, lambda a, b: a * b - a),
    "int32": (lambda a, b: a * b - a // (b.abs() + 1),
              lambda a, b: a * b - a // (np.abs(b) + 1)),
}
EW_CASES = [(d, n) for d in EW_OPS for n in EW_SIZES]


@pytest.mark.parametrize("dtype,n", EW_CASES, ids=[f"{d}-{n}" for d, n in EW_CASES])
def test_elementwise(dev, dtype, n):
    fn, ref = EW_OPS[dtype]
    a, b = _data((n,), dtype, seed=4), _data((n,), dtype, seed=5)
    (out,) = _run(dev, fn, a, b)
    want = ref(a, b)
    assert out.dtype == want.dtype
    if dtype == "int32":
        np.testing.assert_array_equal(out, want)
    else:
        tol = _tol(dtype)
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1, 1025, 100003])
def test_elementwise_broadcast_strided_casts(dev, n):
    x, big, s = _data((n,), "float32", 6), _data((3 * n,), "float32", 7), _data((), "float32", 8)
    k = _data((n,), "int32", 9)
    outs = _run(dev, lambda a, b, c, i: (b[::3] * a.flip(0) + c, (i.float() + a).half(),
                                         (a > 0).int() + i), x, big, s, k)
    np.testing.assert_allclose(outs[0], big[::3] * x[::-1] + s, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outs[1], (k.astype(np.float32) + x).astype(np.float16),
                               rtol=1e-3)
    np.testing.assert_array_equal(outs[2], (x > 0).astype(np.int32) + k)


def test_elementwise_kernels_are_unrolled(monkeypatch):
    from lamina.backends import nvptx

    x = _data((5000,), "float32")
    loop = lamina.compile(lambda a: a * 2).lower(lamina.tensor(x), target="cuda").stages.loop
    assert "unroll = 4" in str(nvptx.gpu_module(loop))
    monkeypatch.setenv("LAMINA_GPU_UNROLL", "0")
    assert "unroll" not in str(nvptx.gpu_module(loop))
