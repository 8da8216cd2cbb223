"""How much work a kernel does per call, estimated from its loop IR (static trip counts).

The runtime splits a kernel over threads when it is big enough to repay the
split. Buffer size alone misjudges products: a 64x128 @ 128x128 matmul
touches 16 Ki elements per buffer but does 1 Mi multiply-adds (~10-20 us on
one core), so it ran on one thread. ``static_work`` counts the ops a call
executes: each op weighs the product of the static trip counts of the loops
around it (a vector op counts once). A loop whose bounds are not constants
(a remainder loop) counts as one trip; a top-level ``loop.parallel`` with an
unknown trip count makes the whole estimate unknown (``None``).
"""

from __future__ import annotations

from lamina.ir.core import Block, Graph, Op

_LOOPS = ("loop.for", "loop.parallel")


def _trips(op: Op, consts: dict[int, int]) -> int | None:
    lb, ub, step = (consts.get(id(v)) for v in op.operands[:3])
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return max(0, -(-(ub - lb) // step))


def _block(block: Block, mult: int, consts: dict[int, int]) -> int:
    total = 0
    for op in block.ops:
        if op.name == "loop.const":
            v = op.attrs.get("value")
            if isinstance(v, int) and not isinstance(v, bool):
                consts[id(op.results[0])] = v
            continue
        if op.regions:
            trips = _trips(op, consts) if op.name in _LOOPS else 1
            inner = mult * (1 if trips is None else trips)
            total += sum(_block(r, inner, consts) for r in op.regions)
        else:
            total += mult
    return total


def static_work(graph: Graph) -> int | None:
    """Ops one call of the kernel executes (an estimate; see the module docstring)."""
    consts: dict[int, int] = {}
    for op in graph.ops:
        if op.name == "loop.const":
            v = op.attrs.get("value")
            if isinstance(v, int) and not isinstance(v, bool):
                consts[id(op.results[0])] = v
        elif op.name == "loop.parallel" and _trips(op, consts) is None:
            return None
    return _block(graph.body, 1, {})
