"""GPU mapping ops of the loop stage, made by the ``gpu-map`` pass.

``loop.gpu_parallel`` is a ``loop.parallel`` whose trips are mapped onto CUDA
threads: ``block`` threads per block, ``lanes`` threads cooperating on one trip
(1 by default: one trip per thread; 32: one warp per trip; ``lanes == block``:
one block per trip), each group of lanes running trips ``g, g + groups, ...``
(a grid-stride loop, so any grid size is correct). Being a subclass of
``loop.parallel``, passes that look for the parallel loop (and the CPU
backend's ABI checks) still see it as one.

Inside a cooperative trip (``lanes > 1``):

- ``loop.lane_for`` is a top-level ``loop.for`` of the trip whose iterations are
  strided across the lanes (lane ``l`` runs ``lb + l*step, lb + (l+lanes)*step,
  ...``); its ``combine`` attribute names, per carried value, the associative
  function (add, mul, max, min, and, or) that merges the lanes' partial values
  after the loop, so every lane holds the whole result;
- ``loop.lane0_store`` is a store that only lane 0 performs (the trip's scalar
  epilogue, stores of loops every lane runs redundantly);
- every other op runs redundantly in every lane.

Without the GPU mapping these ops mean what ``loop.for`` and ``loop.store`` mean.

``unroll = U`` (only with one lane per trip) records that ``gpu-map`` rewrote an
elementwise trip to cover ``U`` elements, ``block`` apart so each access stays
coalesced across a warp (docs/gpu.md, "Elementwise kernels"). The rewrite is
plain loop IR; the attribute only says it happened (and which ``block`` the
element mapping assumed).
"""

from __future__ import annotations

from lamina.ir.core import register
from lamina.ir.dialects.loop import For, Parallel, Store

COMBINES = ("add", "mul", "max", "min", "and", "or")


@register
class GpuParallel(Parallel):
    """A top-level parallel loop mapped to a 1-D grid of ``block``-thread blocks."""

    name = "loop.gpu_parallel"
    attributes = ("block",)
    # gpu_matmul: see passes/lower_dot.py; unroll: elements per trip (passes/gpu_map.py)
    optional_attributes = ("lanes", "gpu_matmul", "unroll")

    @property
    def lanes(self) -> int:
        return self.attrs.get("lanes", 1)

    def verify_extra(self) -> None:
        super().verify_extra()
        block = self.attrs["block"]
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 1024 \
                or block % 32:
            raise self.error(f"block must be a multiple of 32 in [32, 1024], got {block!r}")
        lanes = self.lanes
        if lanes not in (1, 32, block) or isinstance(lanes, bool):
            raise self.error(f"lanes must be 1, 32 or the block size {block}, got {lanes!r}")
        if "unroll" in self.attrs:
            u = self.attrs["unroll"]
            if not isinstance(u, int) or isinstance(u, bool) or not 2 <= u <= 16:
                raise self.error(f"unroll must be an integer in [2, 16], got {u!r}")
            if lanes != 1:
                raise self.error(f"unroll needs one lane per trip, got lanes = {lanes}")


@register
class LaneFor(For):
    """A trip's top-level loop whose iterations are strided across the trip's lanes."""

    name = "loop.lane_for"
    attributes = ("combine",)

    def verify_extra(self) -> None:
        super().verify_extra()
        combine = self.attrs["combine"]
        if not isinstance(combine, (list, tuple)) or len(combine) != len(self.results) \
                or any(c not in COMBINES for c in combine):
            raise self.error(f"combine must list one of {', '.join(COMBINES)} per carried "
                             f"value ({len(self.results)}), got {combine!r}")
        parent = self.parent.parent if self.parent is not None else None
        if parent is not None and not isinstance(parent, GpuParallel):
            raise self.error("must be a top-level loop of a loop.gpu_parallel trip")


@register
class Lane0Store(Store):
    """A store done by lane 0 of a cooperative trip only."""

    name = "loop.lane0_store"
