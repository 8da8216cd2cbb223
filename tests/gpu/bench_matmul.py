"""float32 matmul on the GPU: Lamina's tiled kernel vs torch.matmul (cuBLAS without TF32).

Prints TFLOP/s for N x N x N products, N = 1024, 2048, 4096, and the ratio to torch
when torch with CUDA is installed. Each result is checked against numpy first
(a float64 reference on sampled rows). Timing: median of 10 synchronised calls after a
warm-up. Needs a CUDA GPU; well under 60 s on an H100.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import lamina
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda.array import CudaArray
from lamina.runtime.cuda.program import CudaProgram

SIZES = (1024, 2048, 4096)
REPS = 10


def median_seconds(fn, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(REPS):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def torch_seconds(a: np.ndarray, b: np.ndarray) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    return median_seconds(lambda: torch.matmul(ta, tb), torch.cuda.synchronize)


def main() -> int:
    if not D.available():
        print("no CUDA GPU: nothing to benchmark")
        return 1
    dev = D.driver().device(0)
    print(f"device: {dev.name()} ({dev.arch}, {dev.sm_count} SMs)")
    if "stand-in" in dev.name():
        print("the host stand-in device runs CPU kernels: nothing to benchmark")
        return 0
    rng = np.random.default_rng(0)
    fn = lamina.compile(lambda x, w: x @ w)
    print(f"{'size':>6} {'lamina TFLOP/s':>15} {'torch TFLOP/s':>14} {'ratio':>6}")
    for n in SIZES:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        loop = fn.lower(lamina.tensor(a), lamina.tensor(b), target="cuda").stages.loop
        tiled = "gpu_matmul" in str(loop)
        prog = CudaProgram(loop, dev)
        da, db = CudaArray.from_numpy(dev, a), CudaArray.from_numpy(dev, b)
        (out,) = prog(da, db)
        dev.synchronize()
        got = out.numpy()
        rows = rng.choice(n, 64, replace=False)
        want = a[rows].astype(np.float64) @ b.astype(np.float64)
        err = np.abs(got[rows] - want).max() / np.abs(want).max()
        if not err < 1e-5:
            print(f"{n}: WRONG RESULT (max relative error {err:.3g})")
            return 1
        t = median_seconds(lambda p=prog, x=da, y=db: p(x, y), dev.synchronize)
        flops = 2.0 * n ** 3
        tt = torch_seconds(a, b)
        ratio = f"{tt / t:.2f}" if tt else "-"
        other = f"{flops / tt / 1e12:14.1f}" if tt else f"{'-':>14}"
        print(f"{n:>6} {flops / t / 1e12:15.1f} {other} {ratio:>6}"
              + ("" if tiled else "  (tiled kernel off: per-thread path)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
