"""The main job until the training example lands: eager ops and a compiled function,
with the IR of every stage printed.

Run: make demo
"""

from __future__ import annotations

import time

import numpy as np

import lamina
from lamina.runtime import cache_stats


def main() -> None:
    rng = np.random.default_rng(0)
    x = lamina.from_numpy(rng.standard_normal((64, 784)).astype(np.float32))
    w = lamina.from_numpy((rng.standard_normal((784, 128)) * 0.05).astype(np.float32))
    b = lamina.zeros(128)

    print("== eager ==")
    h = lamina.relu(x @ w + b)
    print("relu(x @ w + b):", h.shape, "mean", round(h.mean().item(), 4))
    ref = np.maximum(x.numpy() @ w.numpy() + b.numpy(), 0)
    print("max |lamina - numpy|:", float(np.abs(h.numpy() - ref).max()))

    print("\n== compiled ==")

    def layer(x, w, b):
        return lamina.relu(x @ w + b).sum(dim=1)

    f = lamina.compile(layer)
    low = f.lower(x, w, b)
    for stage in ("tensor", "prim", "loop"):
        print(f"\n--- stage: {stage} ---")
        print(low.as_text(stage))
    start = time.perf_counter()
    out = f(x, w, b)
    print(f"\ncompiled result {out.shape}, first call {time.perf_counter() - start:.3f} s")
    print("max |compiled - eager|:", float(np.abs(out.numpy() - h.sum(dim=1).numpy()).max()))
    print("\nkernel cache:", cache_stats())


if __name__ == "__main__":
    main()
