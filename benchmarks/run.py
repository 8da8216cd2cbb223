"""Lamina's benchmarks, side by side with numpy and PyTorch (when installed) in one run.

Run: make bench   (or: python benchmarks/run.py [--quick] [--only NAME ...])
Prints a markdown table of medians and ratios; docs/benchmarks.md records runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lamina  # noqa: E402
from benchmarks.step import BENCHES as STEP_BENCHES  # noqa: E402

try:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:
    torch = None

ROWS: list[tuple[str, str, str, str, str]] = []


def timeit(fn: Callable[[], object], repeat: int = 7, number: int = 1) -> float:
    """Median seconds per call over ``repeat`` batches of ``number`` calls (after warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def row(what: str, lamina_v: str, numpy_v: str, torch_v: str, note: str) -> None:
    ROWS.append((what, lamina_v, numpy_v, torch_v, note))
    print(f"{what:44s} lamina {lamina_v:>14s} | numpy {numpy_v:>14s} | torch {torch_v:>14s}"
          f" | {note}", flush=True)


def bench_tiny_add(quick: bool) -> None:
    a, b = lamina.ones(4), lamina.ones(4)
    na, nb = np.ones(4, np.float32), np.ones(4, np.float32)
    n = 2000 if quick else 20000
    t_l = timeit(lambda: a + b, number=n)
    t_n = timeit(lambda: na + nb, number=n)
    t_t = "-"
    ratio = f"{t_l / t_n:.1f}x numpy"
    if torch is not None:
        ta, tb = torch.ones(4), torch.ones(4)
        tt = timeit(lambda: ta + tb, number=n)
        t_t = f"{tt * 1e6:.2f} us"
        ratio += f", {t_l / tt:.1f}x torch"
    row("eager a + b, 4 floats (time per op)", f"{t_l * 1e6:.2f} us", f"{t_n * 1e6:.2f} us",
        t_t, ratio)


def bench_chain(quick: bool) -> None:
    n = (4 if quick else 16) * 1024 * 1024
    rng = np.random.default_rng(0)
    xa = rng.standard_normal(n).astype(np.float32)
    ya = rng.standard_normal(n).astype(np.float32)
    x, y = lamina.from_numpy(xa), lamina.from_numpy(ya)
    f = lamina.compile(lambda x, y: lamina.relu(x * 1.5 - 0.25) * y)
    f(x, y)
    moved = 3 * n * 4  # two inputs read, one output written
    t_l = timeit(lambda: f(x, y))
    t_n = timeit(lambda: np.maximum(xa * 1.5 - 0.25, 0) * ya)
    dst = np.empty_like(xa)
    t_copy = timeit(lambda: np.copyto(dst, xa))
    copy_bw = 2 * n * 4 / t_copy
    t_t = "-"
    if torch is not None:
        tx, ty = torch.from_numpy(xa), torch.from_numpy(ya)
        t_t = f"{moved / timeit(lambda: torch.relu(tx * 1.5 - 0.25) * ty) / 1e9:.1f} GB/s"
    row(f"compiled relu(x*1.5-0.25)*y, {n >> 20}M f32", f"{moved / t_l / 1e9:.1f} GB/s",
        f"{moved / t_n / 1e9:.1f} GB/s", t_t,
        f"{moved / t_l / copy_bw:.0%} of copy bandwidth ({copy_bw / 1e9:.1f} GB/s)")


def bench_matmul(quick: bool) -> None:
    rng = np.random.default_rng(0)
    for n in (256, 512) if quick else (256, 512, 1024):
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        la, lb = lamina.from_numpy(a), lamina.from_numpy(b)
        flops = 2 * n ** 3
        t_l = timeit(lambda la=la, lb=lb: la @ lb, repeat=5)
        t_n = timeit(lambda a=a, b=b: a @ b, repeat=5)
        t_t = "-"
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            t_t = f"{flops / timeit(lambda ta=ta, tb=tb: ta @ tb, repeat=5) / 1e9:.0f} GFLOP/s"
        row(f"matmul {n}x{n}x{n} f32", f"{flops / t_l / 1e9:.0f} GFLOP/s",
            f"{flops / t_n / 1e9:.0f} GFLOP/s", t_t, f"{t_n / t_l:.0%} of numpy")


_COMPILE_SCRIPT = """
import time, json
t0 = time.perf_counter()
import lamina
from lamina.runtime import cache_stats
t1 = time.perf_counter()
x = lamina.ones(64, 64)
f = lamina.compile(lambda x: (lamina.exp(x * 2.0 + 1.0) / 3.0).sum(dim=1))
f(x)
t2 = time.perf_counter()
(x + x) * x
t3 = time.perf_counter()
s = cache_stats()
print(json.dumps({"import": t1 - t0, "compile_fn": t2 - t1, "eager": t3 - t2,
                  "compiles": s["compiles"], "compile_seconds": s["compile_seconds"]}))
"""


def bench_compile_times(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, LAMINA_CACHE_DIR=d)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    cold, warm = runs
    row("cold process: compile fn + 2 eager ops", f"{cold['compile_fn'] + cold['eager']:.3f} s",
        "-", "-", f"{cold['compiles']} LLVM compiles, {cold['compile_seconds']:.3f} s in LLVM")
    row("warm process (disk cache): same", f"{warm['compile_fn'] + warm['eager']:.3f} s", "-",
        "-", f"{warm['compiles']} LLVM compiles (import {warm['import']:.2f} s)")


def _mlp_step(lib, model, x, y, opt=None):
    """One eager training step (forward, cross-entropy, backward, optional update)."""
    if opt is not None:
        opt.zero_grad()
    else:
        for p in model.parameters():
            p.grad = None
    loss = lib.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    if opt is not None:
        opt.step()
    return loss


def _mlp(lib, sizes=(64, 128, 128, 10)):
    nn = lib.nn
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def bench_mlp_fwd_bwd(quick: bool) -> None:
    """Eager forward+backward of a 3-layer MLP, batch 64, 64->128->128->10."""
    rng = np.random.default_rng(0)
    xa = rng.standard_normal((64, 64)).astype(np.float32)
    ya = rng.integers(0, 10, 64)
    model = _mlp(lamina)
    x, y = lamina.from_numpy(xa), lamina.from_numpy(ya)
    n = 20 if quick else 100
    t_l = timeit(lambda: _mlp_step(lamina, model, x, y), number=n)
    t_t, note = "-", ""
    if torch is not None:
        tm = _mlp(torch)
        tx, ty = torch.from_numpy(xa), torch.from_numpy(ya)
        tt = timeit(lambda: _mlp_step(torch, tm, tx, ty), number=n)
        t_t, note = f"{tt * 1e6:.0f} us", f"{tt / t_l:.2f}x torch's speed"
    row("eager MLP forward+backward, batch 64", f"{t_l * 1e6:.0f} us", "-", t_t, note)


def _digits_models(lib):
    nn = lib.nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            x = self.pool(lib.relu(self.conv1(x)))
            x = self.pool(lib.relu(self.conv2(x)))
            return self.fc(lib.flatten(x, 1))

    return {"cnn": CNN, "mlp": lambda: nn.Sequential(nn.Flatten(), _mlp(lib))}


def bench_training_steps(quick: bool) -> None:
    """Training steps/s (forward, backward, Adam) of the digits CNN and MLP, batch 64."""
    rng = np.random.default_rng(0)
    xa = rng.random((64, 1, 8, 8)).astype(np.float32)
    ya = rng.integers(0, 10, 64)
    n = 10 if quick else 50
    for name in ("mlp", "cnn"):
        model = _digits_models(lamina)[name]()
        opt = lamina.optim.Adam(model.parameters(), lr=1e-3)
        x, y = lamina.from_numpy(xa), lamina.from_numpy(ya)
        t_l = timeit(lambda m=model, o=opt, x=x, y=y: _mlp_step(lamina, m, x, y, o), number=n)
        t_t, note = "-", ""
        if torch is not None:
            tm = _digits_models(torch)[name]()
            to = torch.optim.Adam(tm.parameters(), lr=1e-3)
            tx, ty = torch.from_numpy(xa), torch.from_numpy(ya)
            tt = timeit(lambda m=tm, o=to, tx=tx, ty=ty: _mlp_step(torch, m, tx, ty, o), number=n)
            t_t, note = f"{1 / tt:.0f} steps/s", f"{tt / t_l:.2f}x torch's speed"
        row(f"eager digits {name.upper()} training step (Adam)", f"{1 / t_l:.0f} steps/s", "-",
            t_t, note)


BENCHES = {"tiny_add": bench_tiny_add, "chain": bench_chain, "matmul": bench_matmul,
           "compile": bench_compile_times, "mlp": bench_mlp_fwd_bwd,
           "training": bench_training_steps}
BENCHES.update({name: (lambda quick, f=f: f(quick, timeit, row, torch))
                for name, f in STEP_BENCHES.items()})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    args = p.parse_args()
    print(f"# {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}, torch "
          f"{torch.__version__ if torch else 'not installed'}, lamina {lamina.__version__}")
    for name in args.only or BENCHES:
        BENCHES[name](args.quick)
    print("\n| benchmark | lamina | numpy | torch | ratio / note |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
