"""The tiled matmul kernel on a real GPU through CudaProgram vs a float64 numpy reference:
odd sizes, K = 0, transposed/strided operands, batches, a bias + relu epilogue. Output
buffers are poisoned with NaN first, so an element the kernel forgets shows. Skipped
without a GPU; with LAMINA_GPU_TILED_MATMUL=0 the same checks run the per-thread path."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.backends import nvptx
from lamina.passes.lower_dot import gpu_tiled_enabled
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda.array import CudaArray
from lamina.runtime.cuda.program import CudaProgram
from tests.passes.lower_util import layout_of
from tests.passes.test_lower_dot_cuda import (
    STATIC_CASES,
    lower_cuda,
    mm_group,
    operand,
    static_case,
)

pytestmark = pytest.mark.skipif(not D.available(), reason="no CUDA GPU (libcuda) available")


@pytest.fixture(scope="module")
def dev():
    return D.driver().device(0)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Fresh device buffers start as NaN (float) / 0xFF bytes."""
    plain = CudaArray.empty.__func__

    def empty(cls, device, shape, dtype):
        out = plain(cls, device, shape, dtype)
        dt = np.dtype(dtype)
        fill = np.full(out.shape, np.nan if dt.kind == "f" else -1, dtype=dt)
        if fill.nbytes:
            device.htod(out.ptr, fill.ctypes.data, fill.nbytes)
        return out

    monkeypatch.setattr(CudaArray, "empty", classmethod(empty))


def run_case(dev, m, n, k, batch=(), lhs="mk", rhs="kn", strided=False, epilogue=False,
             seed=0):
    rng = np.random.default_rng(seed)
    x = operand(rng, (*batch, k, m) if lhs == "km" else (*batch, m, k), False, strided)
    w = operand(rng, (*batch, n, k) if rhs == "nk" else (*batch, k, n), rhs == "nk", False)
    args = [x, w] + ([rng.standard_normal(n).astype(np.float32)] if epilogue else [])
    loop = lower_cuda(mm_group(len(batch), lhs, rhs, epilogue),
                      tuple(layout_of(a) for a in args))
    xm = np.swapaxes(x, -1, -2) if lhs == "km" else x
    wm = np.swapaxes(w, -1, -2) if rhs == "nk" else w
    want = xm.astype(np.float64) @ wm.astype(np.float64)
    if epilogue:
        want = np.maximum(want + args[2], 0)
    run_loop(dev, loop, args, want, f"{m}x{n}x{k} {batch} {lhs}/{rhs}")


def run_loop(dev, loop, args, want, what: str) -> None:
    """Run ``loop`` on the GPU on copies of ``args`` (same strides); compare with ``want``."""
    if gpu_tiled_enabled():
        assert "gpu_matmul" in str(nvptx.gpu_module(loop))
    prog = CudaProgram(loop, dev)
    dargs = []
    for a in args:
        base = a if a.base is None else a.base  # views: the same strides over a device copy
        assert base.flags.c_contiguous and base.ctypes.data == a.ctypes.data
        dargs.append(CudaArray.from_numpy(dev, base).as_strided(a.shape, a.strides))
    (out,) = prog(*dargs)
    dev.synchronize()
    got = out.numpy()
    assert got.shape == want.shape and not np.isnan(got).any()
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    err = float(np.abs(got - want).max(initial=0)) / scale
    assert err < 1e-5, f"max relative error {err:.3g} for {what}"


@pytest.mark.parametrize("m,n,k", [
    (1, 1, 1), (17, 129, 5), (128, 128, 8), (129, 130, 131), (512, 512, 512), (257, 100, 0),
    (300, 7, 513), (64, 1000, 33), (1000, 3, 64),
])
def test_sizes(dev, m, n, k):
    run_case(dev, m, n, k)


@pytest.mark.parametrize("lhs,rhs", [("mk", "nk"), ("km", "kn"), ("km", "nk")])
@pytest.mark.parametrize("m,n,k", [(200, 136, 72), (33, 257, 130)])
def test_transposed_operands(dev, lhs, rhs, m, n, k):
    run_case(dev, m, n, k, lhs=lhs, rhs=rhs)


@pytest.mark.parametrize("m,n,k", [(130, 66, 40), (128, 256, 128)])
def test_strided_lhs(dev, m, n, k):
    run_case(dev, m, n, k, strided=True)


@pytest.mark.parametrize("batch,lhs,rhs", [((3,), "mk", "kn"), ((2, 2), "km", "nk")])
def test_batched(dev, batch, lhs, rhs):
    run_case(dev, 150, 70, 90, batch=batch, lhs=lhs, rhs=rhs)


@pytest.mark.parametrize("m,n,k", [(129, 257, 64), (512, 384, 300)])
def test_bias_relu_epilogue(dev, m, n, k):
    run_case(dev, m, n, k, epilogue=True)
    run_case(dev, m, n, k, rhs="nk", epilogue=True, seed=1)


@pytest.mark.parametrize("case", STATIC_CASES)
def test_static_products_with_small_and_big_tiles(dev, case):
    loop, args, want = static_case(*case)
    run_loop(dev, loop, args, want, str(case))
