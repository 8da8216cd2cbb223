"""Values of a fusion region at an index, by recursive index remapping.

``Evaluator.at(v, idx)`` emits the loop-dialect code that computes element
``idx`` of region value ``v``: elementwise prims apply their scalar function to
their operands at the same index; movement prims map the index to their
operand's index (broadcast, permute, slice, pad, concat, reshape); group inputs
become loads. Values already computed at the same index in a visible scope are
reused (the builder's memo), so a DAG costs each node once per index.

Vector mode: one index entry may be a ``Lane(base)``, meaning the ``width``
consecutive indices ``base .. base+width-1``. Values then come back either as
scalars (the same for every lane) or as ``vector<width x T>``; a load whose
last index is a lane and whose buffer has unit inner stride becomes a
``loop.vload``. Anything with no vector form (a lane through div/rem, a
clamp, an iota along the lane axis) raises ``NotVectorizable`` and the caller
emits scalar code instead.

Loads are never issued out of bounds: padding and concatenation clamp the
index when every piece is statically non-empty (and select the result), and
otherwise guard the load with a loop of 0 or 1 trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from lamina.ir.core import IRError, Op, Value
from lamina.ir.dialects import prim as P
from lamina.ir.types import ScalarType, VectorType, i1, index
from lamina.passes.loop_builder import KernelBuilder, NotVectorizable
from lamina.passes.lower_shapes import ShapeSolver


@dataclass(frozen=True)
class Lane:
    """``width`` consecutive indices starting at ``base`` (vector mode)."""

    base: Value


Ix = Any  # Value | Lane


def _inside(op: Op, region: Any) -> bool:
    return op.parent is region


def _key(i: Ix) -> Any:
    return ("lane", id(i.base)) if isinstance(i, Lane) else id(i)


def index_key(idx: tuple) -> tuple:
    """A hashable identity of an index (values and lanes)."""
    return tuple(_key(i) for i in idx)


def _ix_values(idx: tuple) -> tuple[Value, ...]:
    return tuple(i.base if isinstance(i, Lane) else i for i in idx)


class Evaluator:
    """Emits the code for region values at indices into one kernel."""

    def __init__(self, kb: KernelBuilder, shapes: ShapeSolver, inputs: dict[int, Value],
                 width: int, what: str = "group", target: str = "cpu"):
        self.kb, self.shapes, self.inputs, self.width, self.what = (
            kb, shapes, inputs, width, what)
        self.target = target  # "cpu" or "cuda": which loop shapes the rules pick
        self.region = shapes.region
        # value id -> function(idx) giving its element: lets a kernel inject accumulators
        self.overrides: dict[int, Callable[[tuple], Value]] = {}
        # reduce operand id -> function(idx, element) called with every element the
        # reduction reads: lets a kernel keep them (softmax's exps, in its output)
        self.spills: dict[int, Callable[[tuple, Value], None]] = {}
        # ids of per-row scalars (row-inlined reductions) that f32/f64 division may
        # turn into a multiplication by their reciprocal, computed once per row
        # (what PyTorch's softmax does: within one rounding of the quotient)
        self.row_divisors: set[int] = set()

    # -- entry point ---------------------------------------------------------------------
    def at(self, v: Value, idx: tuple) -> Value:
        """Element ``idx`` of region value ``v`` (a scalar, or a vector in vector mode)."""
        idx = tuple(idx)
        key = ("at", id(v), index_key(idx), self.width)
        hit = self.kb.memo_get(key)
        if hit is not None:
            return hit[0]
        if id(v) in self.overrides:
            r = self.overrides[id(v)](idx)
        elif id(v) in self.inputs:
            r = self.load(self.inputs[id(v)], list(idx))
        elif not isinstance(v.owner, Op) or not _inside(v.owner, self.region):
            raise IRError(f"lower-loops: {self.what}: a {v.type} value from outside the group "
                          "is used without being one of its operands")
        else:
            r = self._rule(v.owner)(self, v.owner, idx)
        self.kb.memo_put(key, r, _ix_values(idx))
        return r

    def _rule(self, op: Op) -> Callable[[Evaluator, Op, tuple], Value]:
        from lamina.passes import lower_reduce

        for cls, rule in _RULES:
            if isinstance(op, cls):
                return rule
        if isinstance(op, P.Reduce):
            return lower_reduce.reduce_at
        if isinstance(op, P.ArgReduce):
            return lower_reduce.argreduce_at
        if isinstance(op, P.DotGeneral):
            return lower_reduce.dot_at
        raise IRError(f"lower-loops: {self.what}: {op.where()} cannot be part of a kernel")

    # -- index arithmetic (on values or lanes) ---------------------------------------------
    def add(self, a: Ix, b: Ix) -> Ix:
        if isinstance(a, Lane) and isinstance(b, Lane):
            raise NotVectorizable("sum of two lane indices")
        if isinstance(a, Lane):
            return Lane(self.kb.emit("loop.add", a.base, b))
        if isinstance(b, Lane):
            return Lane(self.kb.emit("loop.add", a, b.base))
        return self.kb.emit("loop.add", a, b)

    def addc(self, a: Ix, c: int) -> Ix:
        return self.add(a, self.kb.index(c)) if c else a

    def mulc(self, a: Ix, c: int) -> Ix:
        if isinstance(a, Lane):
            if c != 1:
                raise NotVectorizable("lane index scaled")
            return a
        return self.kb.emit("loop.mul", a, self.kb.index(c))

    def scalar(self, a: Ix) -> Value:
        """An index that must be the same for every lane."""
        if isinstance(a, Lane):
            raise NotVectorizable("lane index in index arithmetic")
        return a

    def ix(self, name: str, *args: Ix) -> Value:
        return self.kb.emit(name, *(self.scalar(a) for a in args))

    # -- scalar and vector values --------------------------------------------------------------
    @staticmethod
    def is_vec(v: Value) -> bool:
        return isinstance(v.type, VectorType)

    def splat(self, v: Value) -> Value:
        return v if self.is_vec(v) else self.kb.emit("loop.splat", v, width=self.width)

    def lift(self, values: list[Value]) -> list[Value]:
        """Splat the scalars among ``values`` when any of them is a vector."""
        if any(self.is_vec(v) for v in values):
            return [self.splat(v) for v in values]
        return list(values)

    def ew(self, name: str, *values: Value, **attrs: Any) -> Value:
        return self.kb.emit(name, *self.lift(list(values)), **attrs)

    def cast(self, v: Value, dtype: ScalarType) -> Value:
        t = v.type.dtype if self.is_vec(v) else v.type
        return v if t == dtype else self.kb.emit("loop.cast", v, dtype=dtype)

    def const_like(self, value: Any, dtype: ScalarType, vector: bool) -> Value:
        c = self.kb.const(value, dtype)
        return self.splat(c) if vector else c

    # -- loads ----------------------------------------------------------------------------
    def load(self, memref: Value, idx: list[Ix]) -> Value:
        t = memref.type
        lanes = [k for k, i in enumerate(idx) if isinstance(i, Lane)]
        if not lanes:
            return self.kb.load(memref, idx)
        (k,) = lanes
        base = idx[k].base
        plain = idx[:k] + [base] + idx[k + 1:]
        if t.strides is not None and t.strides[k] == 0:
            return self.kb.load(memref, plain)  # every lane reads the same element
        if k == t.rank - 1 and (t.strides is None or t.strides[k] == 1):
            return self.kb.vload(memref, plain, self.width)
        raise NotVectorizable(f"lane along axis {k} of {t}")

    # -- loops ---------------------------------------------------------------------------------
    def nest(self, sizes: list[Value], inits: list[Value],
             body: Callable[[list[Value], list[Value]], list[Value]]) -> list[Value]:
        """Sequential loops over ``sizes`` carrying ``inits``; ``body(ivs, carried) -> next``."""
        if not sizes:
            return body([], list(inits))
        kb = self.kb
        with kb.loop(kb.index(0), sizes[0], kb.index(1), inits) as lp:
            outer = lp.iv
            lp.yield_(self.nest(sizes[1:], lp.args, lambda ivs, c: body([outer, *ivs], c)))
        return lp.results

    def guarded(self, cond: Value, default: Value, compute: Callable[[], Value]) -> Value:
        """``compute()`` when ``cond`` holds, else ``default``: the code runs only if needed."""
        kb = self.kb
        flag = kb.emit("loop.cast", cond, dtype=index)
        with kb.loop(kb.index(0), flag, kb.index(1), [default]) as lp:
            v = compute()
            lp.yield_([self.splat(v) if self.is_vec(default) else v])
        return lp.results[0]

    def in_range(self, j: Ix, lo_check: bool, n: Value | None) -> Value:
        """``0 <= j`` (when ``lo_check``) and ``j < n`` (when ``n``), as one i1."""
        conds = []
        if lo_check:
            conds.append(self.ix("loop.ge", j, self.kb.index(0)))
        if n is not None:
            conds.append(self.ix("loop.lt", j, n))
        out = None
        for c in conds:
            out = c if out is None else self.kb.emit("loop.and", out, c)
        return self.kb.const(True, i1) if out is None else out

    def clamp(self, j: Ix, lo: bool, hi: Value | None) -> Value:
        """``j`` moved into ``[0, hi - 1]`` (only the sides asked for)."""
        kb = self.kb
        if lo:
            j = self.ix("loop.max", j, kb.index(0))
        if hi is not None:
            j = self.ix("loop.min", j, kb.emit("loop.sub", hi, kb.index(1)))
        return j


# -- rules ---------------------------------------------------------------------------------
def _elementwise(ev: Evaluator, op: Op, idx: tuple) -> Value:
    args = [ev.at(v, idx) for v in op.operands]
    if op.fn == "div" and id(args[1]) in ev.row_divisors \
            and op.result.type.dtype.name in ("f32", "f64"):
        one = ev.kb.const(1.0, op.result.type.dtype)
        return ev.ew("loop.mul", args[0], ev.kb.emit("loop.div", one, args[1]))
    return ev.ew("loop." + op.fn, *args)


def _where(ev: Evaluator, op: Op, idx: tuple) -> Value:
    return ev.ew("loop.select", *(ev.at(v, idx) for v in op.operands))


def _cast(ev: Evaluator, op: Op, idx: tuple) -> Value:
    return ev.cast(ev.at(op.operands[0], idx), op.attrs["dtype"])


def _const(ev: Evaluator, op: Op, idx: tuple) -> Value:
    return ev.kb.const(op.attrs["value"], op.attrs["dtype"])


def _iota(ev: Evaluator, op: Op, idx: tuple) -> Value:
    return ev.cast(ev.scalar(idx[op.attrs["dim"]]), op.attrs["dtype"])


def _broadcast(ev: Evaluator, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    res = op.result.type.shape
    src: list[Ix] = []
    for i, dst in enumerate(op.attrs["dims"]):
        size = x.type.shape[i]
        if size == 1 or res[dst] == 1:
            src.append(ev.kb.index(0))
        elif size is not None or res[dst] is None:
            src.append(idx[dst])  # sizes agree (static, or both ? and so assumed equal)
        else:  # ? broadcast onto a static size: it may be 1 or the full size
            src.append(ev.ix("loop.min", idx[dst],
                             ev.kb.emit("loop.sub", ev.shapes.dim(x, i), ev.kb.index(1))))
    return ev.at(x, tuple(src))


def _permute(ev: Evaluator, op: Op, idx: tuple) -> Value:
    perm = op.attrs["perm"]
    src: list[Ix] = [None] * len(perm)
    for k, p in enumerate(perm):
        src[p] = idx[k]
    return ev.at(op.operands[0], tuple(src))


def _slice(ev: Evaluator, op: Op, idx: tuple) -> Value:
    src = [ev.addc(ev.mulc(i, step), start)
           for i, start, step in zip(idx, op.attrs["start"], op.attrs["step"])]
    return ev.at(op.operands[0], tuple(src))


def _reshape_groups(src: tuple, dst: tuple) -> list[tuple[list[int], list[int]]] | None:
    """Runs of axes with equal products on both sides, or None if there are none to find."""
    if None in src or 0 in src or 0 in dst:
        return None
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        gs, gd, ps, pd = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while ps != pd:
            if ps < pd:
                if i >= len(src):
                    return None
                ps, i = ps * src[i], i + 1
                gs.append(i - 1)
            else:
                if j >= len(dst):
                    return None
                pd, j = pd * dst[j], j + 1
                gd.append(j - 1)
        groups.append((gs, gd))
    rest_s, rest_d = list(range(i, len(src))), list(range(j, len(dst)))
    if groups:
        groups[-1][0].extend(rest_s)
        groups[-1][1].extend(rest_d)
    elif rest_s or rest_d:
        groups.append((rest_s, rest_d))
    return groups


def _reshape(ev: Evaluator, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    src_shape, dst_shape = x.type.shape, op.result.type.shape
    groups = _reshape_groups(src_shape, dst_shape)
    if groups is None:
        groups = [(list(range(len(src_shape))), list(range(len(dst_shape))))]
    src: list[Ix] = [None] * len(src_shape)
    kb = ev.kb
    for gs, gd in groups:
        live_d = [d for d in gd if dst_shape[d] != 1]
        live_s = [s for s in gs if src_shape[s] != 1]
        for s in gs:
            src[s] = kb.index(0)
        if len(live_s) == 1 and len(live_d) == 1:
            src[live_s[0]] = idx[live_d[0]]
            continue
        flat: Ix = kb.index(0)
        for d in live_d:
            flat = ev.add(ev.mulc(flat, dst_shape[d]), idx[d])
        if len(live_s) == 1:
            src[live_s[0]] = flat
            continue
        for s in reversed(live_s[1:]):
            size = ev.shapes.dim(x, s)
            src[s] = ev.ix("loop.rem", flat, size)
            flat = ev.ix("loop.div", flat, size)
        if live_s:
            src[live_s[0]] = flat
    return ev.at(x, tuple(src))


def _statically_nonempty(t: Any, axes: list[int]) -> bool:
    return all(t.shape[a] is not None and t.shape[a] >= 1 for a in axes)


def _pad(ev: Evaluator, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    kb = ev.kb
    low, high = op.attrs["low"], op.attrs["high"]
    dtype = op.result.type.dtype
    vector = any(isinstance(i, Lane) for i in idx)
    value = ev.const_like(op.attrs["value"], dtype, False)
    if any(d == 0 for d in x.type.shape):
        return value
    padded = [a for a, (lo, hi) in enumerate(zip(low, high)) if lo or hi]
    shifted = [ev.addc(i, -lo) if lo else i for i, lo in zip(idx, low)]
    cond = kb.const(True, i1)
    for a in padded:
        c = ev.in_range(shifted[a], low[a] > 0, ev.shapes.dim(x, a) if high[a] > 0 else None)
        cond = c if kb.const_of(cond) is True else kb.emit("loop.and", cond, c)
    if _statically_nonempty(x.type, padded):
        clamped = list(shifted)
        for a in padded:
            clamped[a] = ev.clamp(shifted[a], low[a] > 0,
                                  ev.shapes.dim(x, a) if high[a] > 0 else None)
        return ev.ew("loop.select", cond, ev.at(x, tuple(clamped)), value)
    default = ev.splat(value) if vector else value
    return ev.guarded(cond, default, lambda: ev.at(x, tuple(shifted)))


def _concat(ev: Evaluator, op: Op, idx: tuple) -> Value:
    axis = op.attrs["axis"]
    kb = ev.kb
    pieces = [v for v in op.operands if v.type.shape[axis] != 0]
    if not pieces:  # the result is empty: this is never run
        return kb.const(0, op.result.type.dtype)
    if len(pieces) == 1:
        return ev.at(pieces[0], idx)
    i = ev.scalar(idx[axis])
    vector = any(isinstance(j, Lane) for j in idx)
    result: Value | None = None
    offset: Value = kb.index(0)
    dtype = op.result.type.dtype

    def piece_index(j: Value) -> tuple:
        return tuple(j if a == axis else x for a, x in enumerate(idx))

    for k, piece in enumerate(pieces):
        size = ev.shapes.dim(piece, axis)
        local = kb.emit("loop.sub", i, offset)
        first, last = k == 0, k == len(pieces) - 1
        if piece.type.shape[axis] is not None:  # static and non-empty: clamp and select
            v = ev.at(piece, piece_index(ev.clamp(local, not first, None if last else size)))
            result = v if first else ev.ew("loop.select", kb.emit("loop.ge", i, offset), v,
                                           result)
        else:  # maybe empty: read it only where the index falls inside it
            cond = ev.in_range(local, not first, None if last else size)
            if result is None:
                result = ev.const_like(0, dtype, vector)
            result = ev.guarded(cond, ev.splat(result) if vector else result,
                                lambda piece=piece, local=local: ev.at(piece,
                                                                       piece_index(local)))
        offset = kb.emit("loop.add", offset, size)
    return result


_RULES: list[tuple[type, Callable[[Evaluator, Op, tuple], Value]]] = [
    (P.Unary, _elementwise), (P.Binary, _elementwise), (P.Where, _where), (P.Cast, _cast),
    (P.Const, _const), (P.Iota, _iota), (P.Broadcast, _broadcast), (P.Permute, _permute),
    (P.Slice, _slice), (P.Reshape, _reshape), (P.Pad, _pad), (P.Concat, _concat),
]


def register_rule(cls: type, rule: Callable[[Evaluator, Op, tuple], Value]) -> None:
    """Add the rule of a prim declared in another module (``lower_index``: gather, reverse)."""
    _RULES.append((cls, rule))


from lamina.passes import lower_random  # noqa: E402, F401  (registers the positional prims)
