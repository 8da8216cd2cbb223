"""CUDA runtime: the driver binding on a real GPU (skipped without libcuda), and the
program runner's logic on a host-memory stand-in device that runs the CPU kernels
(argument words, trip counts, grid sizes, allocation, copies) - checked vs numpy."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda import fake
from lamina.runtime.cuda.program import CudaProgram, DeviceArray
from lamina.runtime.program import ProgramError

has_gpu = D.available() and not fake.requested()  # the stand-in is no GPU for these
needs_gpu = pytest.mark.skipif(not has_gpu, reason="no CUDA driver (libcuda.so.1) or no GPU")


def _fake_device():
    """The stand-in driver's device (installed for the call; the real driver state restored)."""
    drv = fake.install()
    try:
        return drv, drv.device(0)
    finally:
        fake.uninstall()


def _run(fn, *arrays):
    ts = [lamina.tensor(a) for a in arrays]
    loop = lamina.compile(fn).lower(*ts).stages.loop
    drv, dev = _fake_device()
    prog = CudaProgram(loop, dev)
    outs = prog(*[DeviceArray.from_numpy(dev, a) for a in arrays])
    return [o.numpy() for o in outs], drv


def test_elementwise_and_reduction_on_the_stand_in():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 50)).astype(np.float32)
    y = rng.standard_normal((37, 50)).astype(np.float32)
    (out,), dev = _run(lambda a, b: (a * b + 1).exp().sum(1), x, y)
    np.testing.assert_allclose(out, np.exp(x * y + 1).sum(1), rtol=1e-5)
    assert dev.launches


def test_matmul_and_softmax_on_the_stand_in():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((33, 65)).astype(np.float32)
    w = rng.standard_normal((65, 17)).astype(np.float32)
    (out,), _ = _run(lambda a, b: lamina.softmax(a @ b, 1), x, w)
    z = x @ w
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)


def test_large_launch_is_grid_stride_capped():
    x = np.arange(200_000, dtype=np.float64)
    (out,), dev = _run(lambda a: a * 2, x)
    np.testing.assert_array_equal(out, x * 2)
    assert dev.launches
    assert all(g <= fake.SM_COUNT * 32 for _, g, _ in dev.launches)
    assert max(g for _, g, _ in dev.launches) == fake.SM_COUNT * 32


def test_program_checks_arguments():
    x = np.ones((4, 5), np.float32)
    loop = lamina.compile(lambda a: a + 1).lower(lamina.tensor(x)).stages.loop
    _, dev = _fake_device()
    prog = CudaProgram(loop, dev)
    with pytest.raises(ProgramError, match="argument 0"):
        prog(DeviceArray.from_numpy(dev, np.ones((4, 5), np.float64)))
    with pytest.raises(ProgramError, match="takes 1"):
        prog()
    with pytest.raises(TypeError, match="DeviceArray"):
        prog(x)


def test_pool_bins():
    assert D._round(1) == 512 and D._round(513) == 1024
    big = D._round((1 << 22) + 1)
    assert big >= (1 << 22) + 1 and big <= (1 << 22) * 1.25


def test_unavailable_is_a_clear_error():
    if D.available():
        pytest.skip("a GPU (or the stand-in) is present")
    with pytest.raises(D.CudaUnavailable, match="CUDA is not available"):
        D.driver()


# -- a real GPU --------------------------------------------------------------------------------
@needs_gpu
def test_device_properties_and_copies():
    drv = D.driver()
    assert drv.device_count() >= 1
    dev = drv.device(0)
    assert dev.name() and dev.capability[0] >= 5 and dev.sm_count > 0
    a = np.arange(1000, dtype=np.float32)
    d = DeviceArray.from_numpy(dev, a)
    e = DeviceArray.empty(dev, a.shape, a.dtype)
    dev.dtod(e.ptr, d.ptr, a.nbytes)
    np.testing.assert_array_equal(e.numpy(), a)
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        drv.device(drv.device_count())


@needs_gpu
def test_bad_image_names_the_driver_error():
    dev = D.driver().device(0)
    with pytest.raises(D.CudaError, match="cuModuleLoadDataEx"):
        dev.load_module("this is not ptx")


@needs_gpu
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32"])
def test_programs_on_the_gpu_match_numpy(dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((129, 77)) * 3).astype(dtype)
    y = (rng.standard_normal((129, 77)) * 3).astype(dtype)
    loop = lamina.compile(lambda a, b: (a * b + a).abs().sum(1)).lower(
        lamina.tensor(x), lamina.tensor(y)).stages.loop
    dev = D.driver().device(0)
    prog = CudaProgram(loop, dev)
    (out,) = prog(DeviceArray.from_numpy(dev, x), DeviceArray.from_numpy(dev, y))
    dev.synchronize()
    ref = np.abs(x.astype(np.float64) * y + x).sum(1)
    tol = 1e-2 if dtype == "float16" else 1e-5
    np.testing.assert_allclose(out.numpy().astype(np.float64), ref, rtol=tol)
