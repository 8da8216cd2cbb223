"""Per-call overhead of a 20-kernel program of tiny kernels: unplanned, planned from
Python, and the native replay driver (not a test; run it to measure)::

    python3 -m tests.runtime.bench_replay

A private temporary cache directory; best of 7 runs of 2000 calls each.
"""

from __future__ import annotations

import os
import tempfile
import timeit

import numpy as np

N_KERNELS = 20

KERNEL = """
kernel @axpy(%a: memref<8xf32>, %b: memref<8xf32>, %o: memref<8xf32>) {
  %0 = loop.const {value = 0} : index
  %1 = loop.const {value = 8} : index
  %2 = loop.const {value = 1} : index
  %c = loop.const {value = 0.5} : f32
  loop.parallel %0, %1, %2 (%i: index) {
    %3 = loop.load %a, %i : f32
    %4 = loop.load %b, %i : f32
    %5 = loop.mul %3, %c : f32
    %6 = loop.add %5, %4 : f32
    loop.store %6, %o, %i
  }
}
"""


def program_text(n: int = N_KERNELS) -> str:
    """A chain ``t_{i+1} = axpy(t_i, x)`` of ``n`` calls, returning the last buffer."""
    lines = ["func @chain(%x: memref<8xf32>, %y: memref<8xf32>) -> (memref<8xf32>) {"]
    prev = "%y"
    for i in range(n):
        lines += [f"  %t{i} = loop.alloc : memref<8xf32>",
                  f"  loop.call {prev}, %x, %t{i} {{kernel = @axpy}}"]
        prev = f"%t{i}"
    lines += [f"  return {prev}", "}"]
    return KERNEL + "\n" + "\n".join(lines) + "\n"


def main() -> None:
    os.environ["LAMINA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lamina-bench-")
    from lamina.ir import parse
    from lamina.runtime import compile_program

    m = parse(program_text())
    x, y = np.ones(8, np.float32), np.arange(8, dtype=np.float32)
    progs = {"unplanned (Python)": compile_program(m, plan=False),
             "planned (Python)": compile_program(m, native=False),
             "native replay": compile_program(m)}
    want = progs["unplanned (Python)"](x, y)[0]
    for p in progs.values():
        for _ in range(3):
            np.testing.assert_array_equal(p(x, y)[0], want)
    out = [np.empty(8, np.float32)]
    for name, p in progs.items():
        best = min(timeit.repeat(lambda p=p: p(x, y), number=2000, repeat=7)) / 2000
        best_out = min(timeit.repeat(lambda p=p: p(x, y, out=out), number=2000,
                                     repeat=7)) / 2000
        print(f"{name:<20} {best * 1e6:7.2f} us/call   with out=: {best_out * 1e6:7.2f} us/call"
              f"   stats {p.stats()}")


if __name__ == "__main__":
    main()
