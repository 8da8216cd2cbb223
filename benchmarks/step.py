"""Whole-step compilation benchmarks (issue #5): compiled Lamina vs PyTorch eager/compiled.

Imported by benchmarks/run.py (``--only step blocks step_compile``); every row is
measured in the same process, on the same inputs, after warm-up.

* ``step``: one digits training step (forward, cross-entropy, backward, optimizer
  update, zero_grad) of the MLP and the CNN, batch 64: ``lamina.compile(step)`` vs
  the same step in PyTorch eager (and ``torch.compile(model)`` with the eager
  optimizer, when it works on the machine).
* ``blocks``: fused forward blocks (LayerNorm, softmax, GELU-MLP) compiled by
  ``lamina.compile`` vs PyTorch eager.
* ``step_compile``: compile time of the MLP step in a fresh process, cold (empty
  kernel cache) and warm (disk cache filled by the cold run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable

import numpy as np

import lamina

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _models(lib: Any) -> dict[str, Callable[[], Any]]:
    """The digits MLP and CNN of examples/train_digits.py, written once for both libraries."""
    nn = lib.nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            x = self.pool(lib.relu(self.bn1(self.conv1(x))))
            x = self.pool(lib.relu(self.conv2(x)))
            return self.fc(lib.flatten(x, 1))

    def mlp():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128),
                             nn.ReLU(), nn.Linear(128, 10))

    return {"mlp": mlp, "cnn": CNN}


def _step_fn(lib: Any, model: Any, opt: Any) -> Callable[[Any, Any], Any]:
    def step(x, y):
        loss = lib.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    return step


def _copy_weights(src: Any, dst: Any) -> None:
    """Start PyTorch's model from Lamina's weights, so both do the same arithmetic."""
    import torch

    with torch.no_grad():
        for (_, p), (_, q) in zip(src.state_dict().items(), dst.state_dict().items()):
            q.copy_(torch.from_numpy(np.array(p.numpy())))


def bench_step(quick: bool, timeit: Callable[..., float], row: Callable[..., None],
               torch: Any) -> None:
    """Compiled digits training steps (SGD momentum and AdamW) vs PyTorch eager."""
    rng = np.random.default_rng(0)
    xa = rng.random((64, 1, 8, 8)).astype(np.float32)
    ya = rng.integers(0, 10, 64)
    n = 20 if quick else 200
    for name in ("mlp", "cnn"):
        for opt_name in ("SGD", "AdamW"):
            lamina.manual_seed(0)
            model = _models(lamina)[name]()
            opt = _optimizer(lamina, opt_name, model)
            step = lamina.compile(_step_fn(lamina, model, opt))
            x, y = lamina.from_numpy(xa), lamina.from_numpy(ya)
            step(x, y)
            t_l = timeit(lambda s=step, x=x, y=y: s(x, y), number=n)
            t_t, note = "-", ""
            if torch is not None:
                tm = _models(torch)[name]()
                _copy_weights(model, tm)
                to = _optimizer(torch, opt_name, tm)
                tx, ty = torch.from_numpy(xa), torch.from_numpy(ya)
                ts = _step_fn(torch, tm, to)
                tt = timeit(lambda s=ts, x=tx, y=ty: s(x, y), number=n)
                t_t, note = f"{tt * 1e6:.0f} us", f"{tt / t_l:.2f}x torch eager's speed"
                if not quick:
                    note += _torch_compiled(torch, name, opt_name, xa, ya, t_l, timeit, n)
            row(f"compiled digits {name.upper()} step ({opt_name}), batch 64",
                f"{t_l * 1e6:.0f} us", "-", t_t, note)


def _optimizer(lib: Any, name: str, model: Any) -> Any:
    if name == "SGD":
        return lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return lib.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)


def _torch_compiled(torch: Any, name: str, opt_name: str, xa: np.ndarray, ya: np.ndarray,
                    t_l: float, timeit: Callable[..., float], n: int) -> str:
    """``torch.compile(model)`` with the eager optimizer; '' when it fails on this machine."""
    try:
        tm = _models(torch)[name]()
        to = _optimizer(torch, opt_name, tm)
        ts = _step_fn(torch, torch.compile(tm), to)
        tx, ty = torch.from_numpy(xa), torch.from_numpy(ya)
        tt = timeit(lambda: ts(tx, ty), number=n)
    except Exception as e:  # noqa: BLE001 - any failure just leaves the column out
        return f"; torch.compile failed: {type(e).__name__}"
    return f"; torch.compile {tt * 1e6:.0f} us ({tt / t_l:.2f}x)"


def bench_blocks(quick: bool, timeit: Callable[..., float], row: Callable[..., None],
                 torch: Any) -> None:
    """Fused LayerNorm, softmax and GELU-MLP forward blocks vs PyTorch eager."""
    rng = np.random.default_rng(1)
    rows, d = (256, 512) if quick else (1024, 1024)
    xa = rng.standard_normal((rows, d)).astype(np.float32)
    w1 = (rng.standard_normal((d, 4 * d)) / np.sqrt(d)).astype(np.float32)
    w2 = (rng.standard_normal((4 * d, d)) / np.sqrt(4 * d)).astype(np.float32)
    g = rng.standard_normal(d).astype(np.float32)
    blocks = {
        "LayerNorm": (lambda lib, x, g: lib.nn.functional.layer_norm(x, (d,), g, g), (xa, g)),
        "softmax": (lambda lib, x: lib.softmax(x * 0.5, -1), (xa,)),
        "GELU-MLP": (lambda lib, x, a, b: lib.nn.functional.gelu(x @ a) @ b, (xa, w1, w2)),
    }
    n = 5 if quick else 20
    for name, (fn, arrays) in blocks.items():
        f = lamina.compile(lambda *a, fn=fn: fn(lamina, *a))
        args = [lamina.from_numpy(a) for a in arrays]
        out = f(*args).numpy()
        t_l = timeit(lambda f=f, a=args: f(*a), number=n)
        t_t, note = "-", ""
        if torch is not None:
            targs = [torch.from_numpy(a) for a in arrays]
            ref = fn(torch, *targs).numpy()
            err = float(np.abs(out - ref).max() / (np.abs(ref).max() + 1e-30))
            tt = timeit(lambda a=targs, fn=fn: fn(torch, *a), number=n)
            t_t, note = f"{tt * 1e6:.0f} us", f"{tt / t_l:.2f}x torch eager (max rel err {err:.1e})"
        row(f"compiled {name} {rows}x{d}", f"{t_l * 1e6:.0f} us", "-", t_t, note)


_COMPILE_CHILD = """
import json, time
t0 = time.perf_counter()
import lamina
from lamina.runtime import cache_stats
import numpy as np
from benchmarks.step import _models, _step_fn, _optimizer
lamina.manual_seed(0)
m = _models(lamina)["mlp"]()
opt = _optimizer(lamina, "SGD", m)
step = lamina.compile(_step_fn(lamina, m, opt))
rng = np.random.default_rng(0)
x = lamina.from_numpy(rng.random((64, 1, 8, 8)).astype(np.float32))
y = lamina.from_numpy(rng.integers(0, 10, 64))
t1 = time.perf_counter()
step(x, y)
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "compile": t2 - t1,
                  "llvm": cache_stats()["compiles"]}))
"""


def bench_step_compile(quick: bool, timeit: Callable[..., float], row: Callable[..., None],
                       torch: Any) -> None:
    """Compile time of the MLP SGD step in a fresh process: cold and warm disk cache."""
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, LAMINA_CACHE_DIR=d, PYTHONPATH=ROOT)
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _COMPILE_CHILD], env=env, cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
    for what, r in zip(("cold (empty cache)", "warm (disk cache)"), runs):
        row(f"compile MLP training step, {what}", f"{r['compile']:.3f} s", "-", "-",
            f"first call incl. trace+lower; {r['llvm']} LLVM compiles; import "
            f"{r['import']:.2f} s")


BENCHES = {"step": bench_step, "blocks": bench_blocks, "step_compile": bench_step_compile}
