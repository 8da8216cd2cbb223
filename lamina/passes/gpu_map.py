"""``gpu-map``: map each kernel's top-level ``loop.parallel`` onto CUDA threads.

The loop becomes ``loop.gpu_parallel {block = B, lanes = L}``
(``lamina/ir/dialects/gpu.py``): ``L`` threads cooperate on one trip, ``B``
threads per block, grid-stride over trips so any grid size is correct.

One trip per thread (``lanes`` absent, i.e. 1) is the plain mapping:

- a trip that is a plain elementwise body: 256 threads per block;
- a trip that holds a sequential loop it cannot share: 128 threads, so more
  blocks are resident per SM while each thread runs longer;
- a static trip count smaller than the block: rounded up to a multiple of 32.

Cooperative trips (``lanes`` 32, a warp; or ``lanes == block``, a block) are
chosen when a trip holds a *lane reduction*: a top-level ``loop.for`` of the
trip whose carried values are all updated by an associative combine (add,
mul, max, min, and, or of the carried value and something that does not
depend on any carried value, possibly through nested loops that pass the
accumulator along), whose writes (if any) go to distinct elements per
iteration, and that reads along a contiguous axis (a load's last index
depends on the loop's induction variables). Floats are reassociated, as
PyTorch's CUDA reductions do. Such loops become ``loop.lane_for`` (iterations
strided over the lanes, the partial values combined across lanes after the
loop); other top-level loops of the trip are strided too when they carry
nothing and write distinct elements per iteration; the rest run redundantly
in every lane, and every store outside a ``loop.lane_for`` becomes a
``loop.lane0_store``. A trip also cooperates without a reduction when a
strideable loop runs a static extent of at least 64 along a contiguous axis
(the normalising pass of softmax or layer_norm on known shapes).

A whole block shares a trip when the static trip count is at most
``BLOCK_TRIPS`` and the rows are not statically short (few long rows, a full
reduction); otherwise a warp does.
Kernels that read a buffer they also write, that store vectors, or whose
loops carry vectors are not shared. ``LAMINA_GPU_COOP=0`` turns the
cooperative mapping off (one trip per thread everywhere).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lamina.ir.core import Block, Graph, Module, Op, Value
from lamina.ir.dialects import gpu as G
from lamina.ir.dialects import loop as L
from lamina.ir.types import ScalarType, VectorType
from lamina.passes import lower_dot
from lamina.passes.manager import Pass, register_pass

ELEMENTWISE_BLOCK = 256
LOOPING_BLOCK = 128
WARP = 32
WARP_BLOCK = 256  # threads per block when each warp shares one trip
BLOCK_TRIPS = 256  # static trip counts up to this share a trip per block
BLOCK_LANES = 256  # threads per trip (and block) then; 1024 for a single trip
MIN_STRIDED_EXTENT = 64  # static extent that makes an elementwise row worth a warp
COMBINES = {"add", "mul", "max", "min", "and", "or"}


def coop_enabled() -> bool:
    """False when ``LAMINA_GPU_COOP=0`` (the kill switch of cooperative trips)."""
    return os.environ.get("LAMINA_GPU_COOP", "1").strip().lower() not in ("0", "false", "off")


@register_pass
@dataclass(frozen=True)
class GpuMap(Pass):
    """Relabel every kernel's top-level parallel loop as a thread-mapped ``loop.gpu_parallel``."""

    name = "gpu-map"
    block: int | None = None  # force one block size (tests, tuning)
    coop: bool | None = None  # cooperative trips; None: LAMINA_GPU_COOP (default on)

    def run(self, module: Module) -> Module:
        if self.block is not None and (self.block < 32 or self.block > 1024 or self.block % 32):
            raise ValueError(f"gpu-map: block must be a multiple of 32 in [32, 1024], "
                             f"got {self.block}")
        coop = coop_enabled() if self.coop is None else self.coop
        for g in module.graphs:
            if g.kind == "kernel":
                map_kernel(g, self.block, coop)
        return module


def _const(v: Value):
    owner = v.owner
    return owner.attrs["value"] if isinstance(owner, L.SConst) else None


def _static_trips(op: Op) -> int | None:
    lb, ub, step = (_const(v) for v in op.operands[:3])
    if lb is None or ub is None or step is None or step <= 0:
        return None
    return max(0, (ub - lb + step - 1) // step)


def choose_block(op: Op) -> int:
    """Threads per block for a one-trip-per-thread parallel loop ``op``."""
    looping = any(isinstance(inner, L.For) for inner in op.regions[0].walk())
    block = LOOPING_BLOCK if looping else ELEMENTWISE_BLOCK
    trips = _static_trips(op)
    if trips is not None and trips < block:
        block = max(32, (trips + 31) // 32 * 32)
    return block


# -- which loops of a trip the lanes can share ----------------------------------------------
def _tainted(loop: Op) -> set[int]:
    """ids of values inside ``loop`` that depend on a carried value (of it or a nested loop)."""
    bad: set[int] = set()
    for op in loop.regions[0].walk():
        if isinstance(op, (L.For, L.Parallel)):
            bad.update(id(a) for a in op.regions[0].args[1:])
    changed = True
    while changed:
        changed = False
        for op in loop.regions[0].walk():
            if not op.results or all(id(r) in bad for r in op.results):
                continue
            if any(id(v) in bad for inner in op.walk() for v in inner.operands):
                bad.update(id(r) for r in op.results)
                changed = True
    return bad


def _uses(block: Block, v: Value) -> list[Op]:
    return [op for op in block.walk() if any(u is v for u in op.operands)]


def _chain_fn(loop: Op, k: int, bad: set[int]) -> str | None:
    """The combine of carried value ``k`` of ``loop`` when it is a pure lane reduction."""
    region = loop.regions[0]
    arg = region.args[k + 1]
    if not isinstance(arg.type, ScalarType) or not region.ops \
            or not isinstance(region.ops[-1], L.Yield):
        return None
    uses = _uses(region, arg)
    if len(uses) != 1:
        return None
    new = region.ops[-1].operands[k]
    op = new.owner
    if not isinstance(op, Op) or op.parent is not region or uses[0] is not op:
        return None
    if isinstance(op, L.SBinary) and not op.predicate and op.fn in COMBINES:
        other = [v for v in op.operands if v is not arg]
        if len(other) != 1 or id(other[0]) in bad:
            return None
        if op.fn in ("max", "min") and arg.type.is_bool:
            return None  # i1 max/min are signed in LLVM; the lowering uses and/or instead
        return op.fn
    if type(op) is L.For:
        inits = list(op.operands[3:])
        if sum(v is arg for v in inits) != 1:
            return None
        j = next(i for i, v in enumerate(inits) if v is arg)
        if op.results[j] is not new:
            return None
        return _chain_fn(op, j, bad)
    return None


def _carried_vectors(op: Op) -> bool:
    return any(isinstance(v.type, VectorType) for v in op.operands[3:])


def _depends_on(v: Value, ivs: set[int], seen: set[int] | None = None) -> bool:
    if id(v) in ivs:
        return True
    owner = v.owner
    if not isinstance(owner, Op) or owner.regions:
        return False
    seen = set() if seen is None else seen
    if id(owner) in seen:
        return False
    seen.add(id(owner))
    return any(_depends_on(u, ivs, seen) for u in owner.operands)


def _contiguous_access(loop: Op) -> bool:
    """Some load or store inside ``loop`` has a last index that moves with its loops."""
    ivs = {id(loop.regions[0].args[0])}
    for op in loop.regions[0].walk():
        if isinstance(op, (L.For, L.Parallel)):
            ivs.add(id(op.regions[0].args[0]))
    for op in loop.regions[0].walk():
        idx = op.operands[1:] if isinstance(op, L.Load) else \
            op.operands[2:] if isinstance(op, L.Store) else []
        if idx and _depends_on(idx[-1], ivs):
            return True
    return False


def _distinct_writes(loop: Op) -> bool:
    """Every store in ``loop`` writes a buffer along an axis indexed by its own iv."""
    iv = loop.regions[0].args[0]
    for op in loop.regions[0].walk():
        if isinstance(op, L.VStore):
            return False
        if isinstance(op, L.Store):
            m = op.operands[1].type
            ok = any(v is iv and (m.strides is None or m.strides[a] not in (None, 0))
                     for a, v in enumerate(op.operands[2:]))
            if not ok:
                return False
    return True


@dataclass
class _Plan:
    lanes: int
    strided: dict[int, list[str]]  # id(top-level loop.for) -> combine per carried value


def plan_trip(par: Op, kernel: Graph) -> _Plan:
    """How many lanes share a trip of ``par`` and which of its loops they stride."""
    none = _Plan(1, {})
    body = par.regions[0]
    loaded, stored = set(), set()
    for op in kernel.walk():
        if isinstance(op, (L.Load, L.VLoad)):
            loaded.add(id(op.operands[0]))
        elif isinstance(op, (L.Store, L.VStore)):
            stored.add(id(op.operands[1]))
        elif isinstance(op, (L.Parallel, L.Call)) and op is not par:
            return none
    if loaded & stored:
        return none
    strided: dict[int, list[str]] = {}
    reduction = wide_row = False
    extents: list[int | None] = []
    for op in body.ops:
        if isinstance(op, L.For) and _carried_vectors(op):
            return none
        if type(op) is not L.For:
            if isinstance(op, L.VStore):
                return none
            continue
        step = _const(op.operands[2])
        if not isinstance(step, int) or step <= 0 or not _distinct_writes(op):
            continue
        bad = _tainted(op)
        fns = [_chain_fn(op, k, bad) for k in range(len(op.results))]
        if None in fns or not _identity_inits(op, fns):
            continue
        strided[id(op)] = fns
        if _contiguous_access(op):
            if fns:
                reduction = True
            extent = _static_trips(op)
            extents.append(extent)
            wide_row |= extent is not None and extent >= MIN_STRIDED_EXTENT
    if not (reduction or wide_row):
        return none
    for op in body.walk():
        if isinstance(op, L.VStore):
            return none
    trips = _static_trips(par)
    short = all(e is not None and e < 4 * BLOCK_LANES for e in extents)
    if trips is not None and trips <= BLOCK_TRIPS and not short:
        return _Plan(1024 if trips == 1 else BLOCK_LANES, strided)
    return _Plan(WARP, strided)


def _identity_inits(op: Op, fns: list) -> bool:
    """Sums and products start from 0 and 1: every lane then starts from the init value
    (max, min, and, or are idempotent, so their lanes may all start from any init)."""
    for v, fn in zip(op.operands[3:], fns):
        if fn in ("add", "mul") and _const(v) != (0 if fn == "add" else 1):
            return False
    return True


def _relabel(op: Op, cls: type, attrs: dict, block: Block) -> Op:
    new = cls(op.operands, [r.type for r in op.results], attrs, op.regions, op.loc)
    # keep the result values (their uses point at them)
    new.results = op.results
    for r in new.results:
        r.owner = new
    new.parent = block
    op.parent = None
    return new


def _apply(plan: _Plan, par: Op) -> None:
    body = par.regions[0]

    def lane0(block: Block) -> None:
        for i, op in enumerate(block.ops):
            if type(op) is L.Store:
                block.ops[i] = _relabel(op, G.Lane0Store, {}, block)
            for r in op.regions:
                lane0(r)

    for i, op in enumerate(body.ops):
        fns = plan.strided.get(id(op))
        if fns is not None:
            body.ops[i] = _relabel(op, G.LaneFor, {"combine": fns}, body)
        elif type(op) is L.Store:
            body.ops[i] = _relabel(op, G.Lane0Store, {}, body)
        else:
            for r in op.regions:
                lane0(r)


def map_kernel(g: Graph, block: int | None = None, coop: bool = False) -> bool:
    """Map ``g``'s top-level parallel loop in place; False when it has none."""
    ops = g.body.ops
    for i, op in enumerate(ops):
        if type(op) is L.Parallel:
            # tiled matmul hook (passes/lower_dot.py, backends/nvptx/matmul.py): a block per tile
            tiled = lower_dot.gpu_launch(op)
            if tiled is not None:
                ops[i] = G.GpuParallel(op.operands, [], tiled, op.regions, op.loc)
                ops[i].parent, op.parent = g.body, None
                return True
            plan = plan_trip(op, g) if coop else _Plan(1, {})
            if plan.lanes == 1:
                attrs = {"block": block or choose_block(op)}
            elif plan.lanes == WARP:
                trips = _static_trips(op)
                b = block or WARP_BLOCK
                if trips is not None and block is None:
                    b = max(WARP, min(b, trips * WARP))
                attrs = {"block": b, "lanes": WARP}
            else:
                attrs = {"block": block or plan.lanes, "lanes": block or plan.lanes}
            new = G.GpuParallel(op.operands, [], attrs, op.regions, op.loc)
            new.parent = g.body
            op.parent = None
            ops[i] = new
            if plan.lanes > 1:
                _apply(plan, new)
            return True
        if isinstance(op, G.GpuParallel):
            return True
    return False
