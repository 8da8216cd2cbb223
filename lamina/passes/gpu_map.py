"""``gpu-map``: map each kernel's top-level ``loop.parallel`` onto CUDA threads.

The loop becomes ``loop.gpu_parallel {block = B}`` (``lamina/ir/dialects/gpu.py``):
one trip per thread, ``B`` threads per block, grid-stride so any grid size is
correct. The block size is chosen from what the trip does:

- a trip that is a plain elementwise body: 256 threads;
- a trip that holds a sequential loop (a reduction row, a matmul output, a
  convolution window): 128 threads, so more blocks are resident per SM while
  each thread runs longer;
- a static trip count smaller than the block: rounded up to a multiple of 32.

Everything inside a trip stays sequential in its thread; reductions and
contractions are therefore correct but not yet cooperative (warp shuffles and
shared-memory tiles are a later step, see docs/gpu.md). Kernels without a
top-level parallel loop are left alone; the backend runs them on one thread.
The pass only relabels the loop, so the CPU backend's ABI checks still hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from lamina.ir.core import Graph, Module, Op
from lamina.ir.dialects import gpu as G
from lamina.ir.dialects import loop as L
from lamina.passes.manager import Pass, register_pass

ELEMENTWISE_BLOCK = 256
LOOPING_BLOCK = 128


@register_pass
@dataclass(frozen=True)
class GpuMap(Pass):
    """Relabel every kernel's top-level parallel loop as a thread-mapped ``loop.gpu_parallel``."""

    name = "gpu-map"
    block: int | None = None  # force one block size (tests, tuning)

    def run(self, module: Module) -> Module:
        if self.block is not None and (self.block < 32 or self.block > 1024 or self.block % 32):
            raise ValueError(f"gpu-map: block must be a multiple of 32 in [32, 1024], "
                             f"got {self.block}")
        for g in module.graphs:
            if g.kind == "kernel":
                map_kernel(g, self.block)
        return module


def _static_trips(op: Op) -> int | None:
    vals = []
    for v in op.operands[:3]:
        owner = v.owner
        if not isinstance(owner, L.SConst):
            return None
        vals.append(owner.attrs["value"])
    lb, ub, step = vals
    if step <= 0:
        return None
    return max(0, (ub - lb + step - 1) // step)


def choose_block(op: Op) -> int:
    """Threads per block for the parallel loop ``op`` (see the module docstring)."""
    looping = any(isinstance(inner, L.For) for inner in op.regions[0].walk())
    block = LOOPING_BLOCK if looping else ELEMENTWISE_BLOCK
    trips = _static_trips(op)
    if trips is not None and trips < block:
        block = max(32, (trips + 31) // 32 * 32)
    return block


def map_kernel(g: Graph, block: int | None = None) -> bool:
    """Map ``g``'s top-level parallel loop in place; False when it has none."""
    ops = g.body.ops
    for i, op in enumerate(ops):
        if type(op) is L.Parallel:
            new = G.GpuParallel(op.operands, [], {"block": block or choose_block(op)},
                                op.regions, op.loc)
            new.parent = g.body
            op.parent = None
            ops[i] = new
            return True
        if isinstance(op, G.GpuParallel):
            return True
    return False
