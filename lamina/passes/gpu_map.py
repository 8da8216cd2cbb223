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

Unrolled elementwise trips (``{block = B, unroll = U}``, docs/gpu.md
"Elementwise kernels"): a one-thread trip that is a plain elementwise body (no
nested loops, only loads, pure scalar ops and stores) of a kernel that reads no
buffer it writes is rewritten, in loop IR, so trip ``j`` covers the ``U``
elements ``(j div B)*U*B + u*B + (j mod B)``: at every ``u`` a warp's threads
touch consecutive elements (coalesced). All ``U`` elements' loads come first
(indices clamped to the last element, so a tail trip reads in bounds and
discards), then each element's math and stores under a 0-or-1-trip
``loop.for`` guard: a thread keeps ``U`` loads per input in flight, which a
scalar grid-stride loop (one load in flight) cannot do, and loop order is
program order for LLVM (it may not move loads across possibly aliasing
stores). ``LAMINA_GPU_UNROLL=0`` keeps the one-element trip; ``=N`` sets U.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lamina.ir.core import Block, Graph, Module, Op, Value
from lamina.ir.dialects import gpu as G
from lamina.ir.dialects import loop as L
from lamina.ir.types import ScalarType, VectorType, index
from lamina.passes import lower_dot
from lamina.passes.manager import Pass, register_pass
from lamina.passes.rewrite import clone_op

ELEMENTWISE_BLOCK = 256
LOOPING_BLOCK = 128
WARP = 32
WARP_BLOCK = 256  # threads per block when each warp shares one trip
BLOCK_TRIPS = 256  # static trip counts up to this share a trip per block
BLOCK_LANES = 256  # threads per trip (and block) then; 1024 for a single trip
MIN_STRIDED_EXTENT = 64  # static extent that makes an elementwise row worth a warp
COMBINES = {"add", "mul", "max", "min", "and", "or"}
UNROLL = 4  # elements per unrolled elementwise trip
MAX_UNROLL = 16


def coop_enabled() -> bool:
    """False when ``LAMINA_GPU_COOP=0`` (the kill switch of cooperative trips)."""
    return os.environ.get("LAMINA_GPU_COOP", "1").strip().lower() not in ("0", "false", "off")


def unroll_factor() -> int:
    """Elements per elementwise trip from ``LAMINA_GPU_UNROLL`` (0 or 1: off; default 4)."""
    raw = os.environ.get("LAMINA_GPU_UNROLL", str(UNROLL)).strip().lower()
    if raw in ("", "on", "true"):
        return UNROLL
    if raw in ("off", "false"):
        return 1
    try:
        u = int(raw)
    except ValueError:
        raise ValueError(f"LAMINA_GPU_UNROLL must be an integer in [0, {MAX_UNROLL}], "
                         f"got {raw!r}") from None
    if not 0 <= u <= MAX_UNROLL:
        raise ValueError(f"LAMINA_GPU_UNROLL must be an integer in [0, {MAX_UNROLL}], got {u}")
    return max(u, 1)


@register_pass
@dataclass(frozen=True)
class GpuMap(Pass):
    """Relabel every kernel's top-level parallel loop as a thread-mapped ``loop.gpu_parallel``."""

    name = "gpu-map"
    block: int | None = None  # force one block size (tests, tuning)
    coop: bool | None = None  # cooperative trips; None: LAMINA_GPU_COOP (default on)
    unroll: int | None = None  # elements per elementwise trip; None: LAMINA_GPU_UNROLL (4)

    def run(self, module: Module) -> Module:
        if self.block is not None and (self.block < 32 or self.block > 1024 or self.block % 32):
            raise ValueError(f"gpu-map: block must be a multiple of 32 in [32, 1024], "
                             f"got {self.block}")
        if self.unroll is not None and not 0 <= self.unroll <= MAX_UNROLL:
            raise ValueError(f"gpu-map: unroll must be in [0, {MAX_UNROLL}], got {self.unroll}")
        coop = coop_enabled() if self.coop is None else self.coop
        unroll = unroll_factor() if self.unroll is None else max(self.unroll, 1)
        for g in module.graphs:
            if g.kind == "kernel":
                map_kernel(g, self.block, coop, unroll)
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


def map_kernel(g: Graph, block: int | None = None, coop: bool = False, unroll: int = 1) -> bool:
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
            if plan.lanes == 1 and unroll > 1 and unrollable(op, g):
                ops[i:i + 1] = unroll_trip(op, g.body, block, unroll)
                return True
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


# -- unrolled elementwise trips ---------------------------------------------------------------
def unrollable(par: Op, kernel: Graph) -> bool:
    """``par``'s trip is a plain elementwise body and no buffer is both read and written."""
    step = _const(par.operands[2])
    if not isinstance(step, int) or step <= 0 or par.operands[3:]:
        return False
    body = par.regions[0].ops
    if not any(type(op) is L.Store for op in body):
        return False
    for op in body:
        if op.regions or not (type(op) in (L.Load, L.Store) or op.has("pure")):
            return False
        if any(isinstance(t, VectorType) for t in [*(v.type for v in op.operands),
                                                   *(r.type for r in op.results)]):
            return False
    loaded, stored = set(), set()
    for op in kernel.walk():
        if isinstance(op, (L.Load, L.VLoad)):
            loaded.add(id(op.operands[0]))
        elif op.has("writes"):
            if not isinstance(op, (L.Store, L.VStore)):
                return False
            stored.add(id(op.operands[1]))
        elif isinstance(op, L.Parallel) and op is not par:
            return False
    return not loaded & stored


class _Index:
    """Appends index arithmetic to a block, folding constants (so static sizes stay static);
    constants go to ``consts`` (the kernel's top level), each value once."""

    def __init__(self, block: Block, loc, consts: _Index | None = None):
        self.block, self.loc = block, loc
        self.consts = consts or self
        self.memo: dict[int, Value] = {}

    def const(self, v: int) -> Value:
        if self.consts is not self:
            return self.consts.const(v)
        if v not in self.memo:
            op = L.SConst([], [index], {"value": v}, loc=self.loc)
            self.memo[v] = self.block.append(op).result
        return self.memo[v]

    def bin(self, fn: str, a: Value | int, b: Value | int) -> Value:
        ca = a if isinstance(a, int) else _const(a)
        cb = b if isinstance(b, int) else _const(b)
        if fn in ("add", "sub") and cb == 0 or fn in ("mul", "div") and cb == 1:
            return self.const(ca) if isinstance(a, int) else a
        if fn == "add" and ca == 0 or fn == "mul" and ca == 1:
            return self.const(cb) if isinstance(b, int) else b
        if ca is not None and cb is not None:
            return self.const(_fold(fn, ca, cb))
        a = self.const(a) if isinstance(a, int) else a
        b = self.const(b) if isinstance(b, int) else b
        return self.block.append(L.BINARY_OPS[fn].build(a, b, loc=self.loc)).result


def _fold(fn: str, a: int, b: int) -> int:
    if fn in ("div", "rem"):
        q = a // b  # operands here are never negative: floor and truncation agree
        return q if fn == "div" else a - q * b
    return {"add": a + b, "sub": a - b, "mul": a * b, "max": max(a, b), "min": min(a, b)}[fn]


def _load_phase(body: list[Op]) -> set[int]:
    """ids of the loads of a trip and of the ops their indices (or pointers) depend on."""
    owner = {id(r): op for op in body for r in op.results}
    need: set[int] = set()
    work = [op for op in body if type(op) is L.Load]
    while work:
        op = work.pop()
        if id(op) in need:
            continue
        need.add(id(op))
        work.extend(owner[id(v)] for v in op.operands if id(v) in owner)
    return need


def unroll_trip(par: Op, top: Block, block: int | None, unroll: int) -> list[Op]:
    """The ops replacing ``par``: its element count, then a ``loop.gpu_parallel {unroll}``
    whose trip ``j`` covers elements ``(j div B)*U*B + u*B + (j mod B)``, ``u < U``."""
    lb, ub = par.operands[:2]
    step = _const(par.operands[2])
    pre = _Index(Block(), par.loc)
    n = pre.bin("sub", ub, lb)
    if step != 1:
        n = pre.bin("div", pre.bin("add", n, step - 1), step)
    if _const(n) is None:
        n = pre.bin("max", n, 0)  # an empty range counted as 0 elements, never negative
    count = _const(n)
    if block is None:
        block = ELEMENTWISE_BLOCK
        if count is not None:  # small static sizes: a block no wider than the work
            block = min(block, max(WARP, (-(-count // unroll) + WARP - 1) // WARP * WARP))
    span = unroll * block  # elements covered by one block of trips
    trips = pre.bin("mul", pre.bin("div", pre.bin("add", n, span - 1), span), block)
    last = pre.bin("sub", n, 1)  # read only inside trips, where n >= 1
    zero, one = pre.const(0), pre.const(1)

    old = par.regions[0]
    body = Block([index], [old.args[0].hint])
    ix = _Index(body, par.loc, pre)
    j = body.args[0]
    base = ix.bin("add", ix.bin("mul", ix.bin("div", j, block), span), ix.bin("rem", j, block))
    loads = _load_phase(old.ops)
    elements, maps = [], []
    for u in range(unroll):
        e = ix.bin("add", base, u * block)
        at = ix.bin("add", lb, ix.bin("mul", ix.bin("min", e, last), step))
        vmap: dict[Value, Value] = {old.args[0]: at}
        for op in old.ops:
            if id(op) in loads:
                clone_op(op, vmap, body)
        elements.append(e)
        maps.append(vmap)
    for e, vmap in zip(elements, maps):
        guard = Block([index], ["g"])
        for op in old.ops:
            if id(op) not in loads:
                clone_op(op, vmap, guard)
        end = ix.bin("min", ix.bin("add", e, 1), n)
        body.append(L.For([e, end, one], [], {}, [guard], loc=par.loc))
    new = G.GpuParallel([zero, trips, one], [], {"block": block, "unroll": unroll}, [body],
                        par.loc)
    used = {id(v) for op in [*pre.block.ops, new] for inner in op.walk() for v in inner.operands}
    out = [op for op in pre.block.ops if id(op.result) in used] + [new]  # folded leftovers go
    for op in out:
        op.parent = top
    par.parent = None
    return out
