"""GPU checks and benchmarks for tests/gpu/run.sh (needs a CUDA GPU; prints a summary).

Runs loop programs through lamina.runtime.cuda and compares with numpy (results)
and with device-to-device copies / torch CUDA when torch is installed (speed).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import lamina
from lamina.runtime.cuda import driver as D
from lamina.runtime.cuda.program import CudaProgram, DeviceArray


def _time(fn, sync, reps=20, rounds=5) -> float:
    """Median over ``rounds`` of the mean time of ``reps`` calls, after a warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        times.append((time.perf_counter() - t) / reps)
    return float(np.median(times))


def _program(fn, *arrays):
    loop = lamina.compile(fn).lower(*[lamina.tensor(a) for a in arrays], target="cuda").stages.loop
    dev = D.driver().device(0)
    return CudaProgram(loop, dev), dev, [DeviceArray.from_numpy(dev, a) for a in arrays]


def main() -> int:
    if not D.available():
        print("no CUDA GPU: nothing to benchmark")
        return 1
    dev = D.driver().device(0)
    print(f"device: {dev.name()} ({dev.arch}, {dev.sm_count} SMs)")
    if "stand-in" in dev.name():
        print("the host stand-in device runs CPU kernels: nothing to benchmark")
        return 0
    rows = []
    rng = np.random.default_rng(0)
    # fused elementwise chain vs device-to-device copy
    n = 1 << 26
    x = rng.standard_normal(n).astype(np.float32)
    prog, dev, (dx,) = _program(lambda a: ((a * 2 + 1).relu() * a).tanh(), x)
    (out,) = prog(dx)
    np.testing.assert_allclose(out.numpy()[:1 << 16], np.tanh(np.maximum(x * 2 + 1, 0) * x)
                               [:1 << 16], rtol=1e-5, atol=1e-6)
    t = _time(lambda: prog(dx), dev.synchronize)
    copy = DeviceArray.empty(dev, (n,), np.float32)
    tc = _time(lambda: dev.dtod(copy.ptr, dx.ptr, 4 * n), dev.synchronize)
    rows.append(("elementwise chain 64M f32", f"{8 * n / t / 1e9:.0f} GB/s",
                 f"dtod copy {8 * n / tc / 1e9:.0f} GB/s = {tc / t:.0%}"))
    if "--elementwise" in sys.argv:  # only this row (compare LAMINA_GPU_UNROLL settings)
        print(f"  {rows[0][0]:<28} {rows[0][1]:>16}   {rows[0][2]}")
        return 0
    try:
        import torch
        has_torch = torch.cuda.is_available()
    except ImportError:
        has_torch = False
    for name, fn, shape in [("softmax 8192x1024", lambda a: lamina.softmax(a, 1), (8192, 1024)),
                            ("layer_norm 8192x1024", lambda a: lamina.layer_norm(a, (1024,)),
                             (8192, 1024))]:
        a = rng.standard_normal(shape).astype(np.float32)
        prog, dev, (da,) = _program(fn, a)
        (out,) = prog(da)
        ref = fn(lamina.tensor(a)).numpy()
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)
        t = _time(lambda p=prog, d=da: p(d), dev.synchronize)
        other = ""
        if has_torch:
            ta = torch.from_numpy(a).cuda()
            tf = (lambda t=ta: torch.softmax(t, 1)) if "softmax" in name else \
                (lambda t=ta: torch.nn.functional.layer_norm(t, (1024,)))
            tt = _time(tf, torch.cuda.synchronize)
            other = f"torch {tt * 1e3:.3f} ms  ratio {tt / t:.2f}x"
        rows.append((name, f"{t * 1e3:.3f} ms", other))
    m = 4096
    a = rng.standard_normal((m, m)).astype(np.float32)
    b = rng.standard_normal((m, m)).astype(np.float32)
    prog, dev, (da, db) = _program(lambda p, q: p @ q, a, b)
    (out,) = prog(da, db)
    np.testing.assert_allclose(out.numpy()[:64], (a[:64] @ b), rtol=1e-3, atol=1e-2)
    t = _time(lambda: prog(da, db), dev.synchronize, reps=3, rounds=3)
    other = ""
    if has_torch:
        torch.backends.cuda.matmul.allow_tf32 = False
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        tt = _time(lambda: ta @ tb, torch.cuda.synchronize, reps=10, rounds=3)
        other = f"torch {2 * m ** 3 / tt / 1e12:.1f} TFLOP/s  ratio {tt / t:.2f}x"
    rows.append(("matmul 4096 f32", f"{2 * m ** 3 / t / 1e12:.2f} TFLOP/s", other))
    rows.append(_training_step(rng, has_torch, compiled=False))
    rows.append(_training_step(rng, has_torch, compiled=True))
    print("\nsummary")
    for r in rows:
        print(f"  {r[0]:<28} {r[1]:>16}   {r[2]}")
    return 0


def _training_step(rng: np.random.Generator, has_torch: bool,
                   compiled: bool) -> tuple[str, str, str]:
    """Digits CNN (conv, BatchNorm, pool, linear) training step with AdamW, batch 64: eager
    or through ``lamina.compile`` (one program), vs PyTorch CUDA eager."""
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    from benchmarks.step import _copy_weights, _models, _optimizer, _step_fn

    xa = rng.random((64, 1, 8, 8)).astype(np.float32)
    ya = rng.integers(0, 10, 64)
    lamina.manual_seed(0)
    model = _models(lamina)["cnn"]().to("cuda")
    step = _step_fn(lamina, model, _optimizer(lamina, "AdamW", model))
    if compiled:
        step = lamina.compile(step)
    x, y = lamina.from_numpy(xa).cuda(), lamina.from_numpy(ya).cuda()
    t = _time(lambda: step(x, y), lamina.cuda.synchronize, reps=10)
    other = ""
    if has_torch:
        import torch

        tm = _models(torch)["cnn"]()
        _copy_weights(model.cpu(), tm)
        tm = tm.cuda()
        ts = _step_fn(torch, tm, _optimizer(torch, "AdamW", tm))
        tx, ty = torch.from_numpy(xa).cuda(), torch.from_numpy(ya).cuda()
        tt = _time(lambda: ts(tx, ty), torch.cuda.synchronize, reps=10)
        other = f"torch {tt * 1e3:.2f} ms  ratio {tt / t:.2f}x"
    what = "compiled" if compiled else "eager"
    return (f"digits CNN step (AdamW) {what}", f"{t * 1e3:.2f} ms", other)


if __name__ == "__main__":
    sys.exit(main())
