"""lamina.cuda and the frontend's GPU entry points on any machine (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.backends import nvptx


def test_lamina_cuda_without_a_gpu_is_quietly_unavailable():
    if lamina.cuda.is_available():
        pytest.skip("a GPU is present")
    assert lamina.cuda.device_count() == 0
    assert lamina.cuda.current_device() == 0
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        lamina.cuda.get_device_name()
    with pytest.raises(RuntimeError, match="not available"):
        lamina.ones(3).to("cuda")
    with pytest.raises(RuntimeError, match="not available"):
        lamina.zeros(2, device="cuda:0")
    assert float(lamina.ones(3).to("cpu").sum()) == 3.0  # nothing else breaks


def test_compile_lower_for_cuda_gives_ptx_that_ptxas_accepts():
    x = lamina.tensor(np.ones((8, 16), np.float32))
    low = lamina.compile(lambda a: (a.exp() + a).sum(1)).lower(x, target="cuda")
    ptx = low.as_text("ptx")
    assert ".target sm_90" in ptx and ".visible .entry" in ptx
    assert "define ptx_kernel" in low.as_text("llvm")
    assert "loop.parallel" in low.as_text("loop")  # the loop stage is the CPU one
    ptx80 = lamina.compile(lambda a: a * 2).lower(x, target="cuda", arch="sm_80").as_text("ptx")
    assert ".target sm_80" in ptx80
    if nvptx.ptxas_path() is not None:
        nvptx.assemble_cubin(ptx)
        nvptx.assemble_cubin(ptx80, "sm_80")
    with pytest.raises(ValueError, match="target"):
        lamina.compile(lambda a: a).lower(x, target="tpu")
