"""A second process compiling the same training step invokes LLVM for nothing: the whole-step
program's kernels come from the disk cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, lamina
import lamina.nn as nn
from lamina.runtime import cache_stats
lamina.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.25), nn.Linear(8, 3))
opt = lamina.optim.AdamW(model.parameters(), lr=0.01)
def step(x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss
f = lamina.compile(step)
x = lamina.rand(4, 6)
y = lamina.tensor([0, 1, 2, 1])
before = cache_stats()["compiles"]
losses = [float(f(x, y)) for _ in range(3)]
print(json.dumps({"step_compiles": cache_stats()["compiles"] - before, "stats": cache_stats(),
                  "f": {k: f.stats()[k] for k in ("llvm_compiles", "kernel_cache_hits")},
                  "losses": losses, "weight": model[0].weight.tolist()}))
"""


def _run(cache: Path) -> dict:
    env = dict(os.environ, LAMINA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_no_kernel_of_the_step(tmp_path):
    cold = _run(tmp_path / "cache")
    assert cold["step_compiles"] > 0
    warm = _run(tmp_path / "cache")
    assert warm["stats"]["compiles"] == 0, warm["stats"]
    assert warm["stats"]["hits"] > 0
    assert cold["f"]["llvm_compiles"] > 0
    assert warm["f"] == {"llvm_compiles": 0, "kernel_cache_hits": 1}
    assert warm["losses"] == cold["losses"] and warm["weight"] == cold["weight"]
