"""Per-call overhead of the runtime on tiny tensors (not a test; run it to measure):

    python3 -m tests.runtime.bench_overhead

Uses the hand-written kernels, a private temporary cache directory, best of 7 runs.
"""

from __future__ import annotations

import os
import tempfile
import timeit

import numpy as np


def main() -> None:
    os.environ["LAMINA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lamina-bench-")
    from lamina.runtime import cache, compile_program
    from lamina.runtime.buffers import alloc

    from .llvm_kernels import HandEmitter, binary_ir, module

    cache._emit_module = HandEmitter()
    m = module(binary_ir("add1", "add", "f32", 1), binary_ir("add2", "add", "f32", 2),
               binary_ir("sadd2", "add", "f32", 2, strided=True),
               "func @f(%x: memref<?xf32>, %y: memref<?xf32>) -> (memref<?xf32>) {\n"
               "  %n = loop.dim %x {axis = 0} : index\n  %o = loop.alloc %n : memref<?xf32>\n"
               "  loop.call %x, %y, %o {kernel = @add1}\n  return %o\n}")
    ks = cache.compile_module(m).kernels
    program = compile_program(m)
    a, o = np.ones(4, np.float32), np.empty(4, np.float32)
    a2, o2 = np.ones((2, 3), np.float32), np.empty((2, 3), np.float32)
    args = ks["add1"].pack(a, a, o)
    f32 = np.dtype(np.float32)
    cases = [
        ("kernel call, 1-d contiguous (3 buffers)", lambda: ks["add1"](a, a, o)),
        ("kernel call, 2-d contiguous", lambda: ks["add2"](a2, a2, o2)),
        ("kernel call, 2-d strided", lambda: ks["sadd2"](a2, a2, o2)),
        ("  of which: check + pack", lambda: ks["add1"].pack(a, a, o)),
        ("  of which: ctypes call of k__trips", lambda: ks["add1"]._trips(args)),
        ("  of which: ctypes call of k", lambda: ks["add1"]._fn(args, 0, 4)),
        ("program: check, alloc, kernel", lambda: program(a, a)),
        ("aligned alloc of 4 floats", lambda: alloc((4,), f32)),
        ("numpy a + a (reference)", lambda: a + a),
    ]
    n = 100_000
    for label, fn in cases:
        best = min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e6
        print(f"{best:7.2f} us  {label}")


if __name__ == "__main__":
    main()
