"""GPU mapping ops of the loop stage, made by the ``gpu-map`` pass.

``loop.gpu_parallel`` is a ``loop.parallel`` whose trips are mapped onto CUDA
threads: ``block`` threads per block, as many blocks as the runtime launches,
each thread running trips ``gid, gid + grid_threads, ...`` (a grid-stride loop,
so any grid size is correct). Everything else in its body runs sequentially in
its thread. Being a subclass of ``loop.parallel``, passes that look for the
parallel loop (and the CPU backend's ABI checks) still see it as one.
"""

from __future__ import annotations

from lamina.ir.core import register
from lamina.ir.dialects.loop import Parallel


@register
class GpuParallel(Parallel):
    """A top-level parallel loop mapped to a 1-D grid of ``block``-thread blocks."""

    name = "loop.gpu_parallel"
    attributes = ("block",)

    def verify_extra(self) -> None:
        super().verify_extra()
        block = self.attrs["block"]
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 1024 \
                or block % 32:
            raise self.error(f"block must be a multiple of 32 in [32, 1024], got {block!r}")
