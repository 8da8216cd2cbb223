"""``simplify``: dead-code elimination, common-subexpression elimination and constant
folding, each also a pass of its own (``dce``, ``cse``, ``fold``), run to a fixed point.

Every rewrite here is exact: folding evaluates only functions whose result IEEE
arithmetic defines to the bit (no transcendentals, whose last bit differs
between libraries, and no computed nan, whose sign differs between CPUs), and
algebraic identities are used only where they hold for every input (``x * 1``
and ``x + (-0.0)`` are ``x``; ``x + 0.0`` is not, for ``x = -0.0``). A func
result that folds to a func argument is returned through a copy group, so
results stay fresh buffers. All passes edit the module in place and return it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lamina.ir import Block, Builder, Graph, Module, Op, TensorType, Value
from lamina.ir.core import OPS, Return
from lamina.passes.manager import Pass, register_pass
from lamina.passes.rewrite import copy_group, is_removable

_MAX_ROUNDS = 100


# -- dead-code elimination -------------------------------------------------------------
def dce_block(block: Block, live: set[Value] | None = None) -> bool:
    """Drop pure ops whose results are unused (nested regions too); True if any was."""
    live = set() if live is None else live
    kept: list[Op] = []
    changed = False
    for op in reversed(block.ops):
        if is_removable(op) and not any(r in live for r in op.results):
            changed = True
            continue
        for r in op.regions:
            changed |= dce_block(r, live)
        live.update(op.operands)
        kept.append(op)
    block.ops = kept[::-1]
    return changed


# -- common-subexpression elimination ---------------------------------------------------
def _attr_key(v: Any) -> Any:
    # 1 == 1.0 == True, 0.0 == -0.0 and nan != nan in Python; keys compare floats by their bits
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    if isinstance(v, float):
        return ("float", struct.pack("<d", v))
    return (type(v).__name__, v)


def _cse_key(op: Op) -> tuple | None:
    if not op.has("pure") or op.regions or not op.results or op.has("terminator"):
        return None
    operands: Any = tuple(op.operands)
    if op.has("commutative"):
        operands = frozenset(operands)  # a+b == b+a; a+a keeps its single entry
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in op.attrs.items()))
    return (op.name, operands, attrs, tuple(r.type for r in op.results))


def cse_block(block: Block, table: dict | None = None, subst: dict | None = None) -> bool:
    """Replace each pure op equal to an earlier visible one by that one; True if any was."""
    table = {} if table is None else table
    subst = {} if subst is None else subst
    kept: list[Op] = []
    changed = False
    for op in block.ops:
        op.operands = [subst.get(v, v) for v in op.operands]
        for r in op.regions:
            changed |= cse_block(r, dict(table), subst)  # inner entries do not escape
        key = _cse_key(op)
        if key is not None:
            prev = table.get(key)
            if prev is not None:
                subst.update(zip(op.results, prev.results))
                changed = True
                continue
            table[key] = op
        kept.append(op)
    block.ops = kept
    return changed


# -- constant folding -----------------------------------------------------------------------
_NONE = object()


def splat_value(v: Value) -> Any:
    """The value every element of ``v`` has, if ``v`` is a (moved) prim.const; else ``_NONE``."""
    op = v.owner
    while isinstance(op, Op) and op.name in ("prim.broadcast", "prim.reshape", "prim.permute",
                                             "prim.slice"):
        op = op.operands[0].owner
    if isinstance(op, Op) and op.name == "prim.const":
        return op.attrs["value"]
    return _NONE


def _same_number(a: Any, b: Any) -> bool:
    """Equal as stored: floats bit for bit (-0.0 is not 0.0, a nan only its own bits)."""
    if isinstance(a, float) or isinstance(b, float):
        return struct.pack("<d", float(a)) == struct.pack("<d", float(b))
    return a == b and type(a) is type(b)


def _np_ok(t: TensorType) -> bool:
    return t.dtype.name not in ("bf16", "index")  # numpy cannot compute these exactly


def _no_signed_zero_tie(*xs: np.ndarray) -> bool:
    # max/min of +0.0 and -0.0, or with a nan, depend on the backend's choice of instruction
    return not any(np.isnan(x) for x in xs if x.dtype.kind == "f") and not (
        all(x == 0 for x in xs) and len({bool(np.signbit(x)) for x in xs}) > 1)


# fn -> (numpy function, guard on the operands or None)
_EXACT: dict[str, tuple[Callable, Callable | None]] = {
    "neg": (np.negative, None), "abs": (np.abs, None), "sqrt": (np.sqrt, None),
    "floor": (np.floor, None), "ceil": (np.ceil, None), "trunc": (np.trunc, None),
    "not": (np.invert, None), "isnan": (np.isnan, None),
    "add": (np.add, None), "sub": (np.subtract, None), "mul": (np.multiply, None),
    "div": (np.true_divide, lambda a, b: a.dtype.kind == "f"),
    "max": (np.maximum, _no_signed_zero_tie), "min": (np.minimum, _no_signed_zero_tie),
    "and": (np.bitwise_and, None), "or": (np.bitwise_or, None), "xor": (np.bitwise_xor, None),
    "eq": (np.equal, None), "ne": (np.not_equal, None), "lt": (np.less, None),
    "le": (np.less_equal, None), "gt": (np.greater, None), "ge": (np.greater_equal, None),
}


def _py(x: np.ndarray) -> int | float | bool:
    return x.item()


def _const(op: Op, value: Any) -> Op:
    t = op.result.type
    return OPS["prim.const"].build(value=value, shape=t.shape, dtype=t.dtype, loc=op.loc)


def _fold_cast(x: np.ndarray, to: Any) -> np.ndarray | None:
    if to.name in ("bf16", "index"):
        return None
    target = to.numpy
    if x.dtype.kind == "f" and target.kind in "iu":
        info = np.iinfo(target)
        # compared as Python numbers: exact, where numpy would round the bound to x's dtype
        if not np.isfinite(x) or not info.min <= float(np.trunc(x)) <= info.max:
            return None  # out of range: undefined in LLVM, so never folded
    if target.kind == "b":
        return np.asarray(x != 0)
    return np.asarray(x).astype(target)


def _fold_elementwise(op: Op) -> Op | None:
    t = op.result.type
    values = [splat_value(v) for v in op.operands]
    if any(v is _NONE for v in values) or not isinstance(t, TensorType) or not t.is_static:
        return None
    if not all(_np_ok(v.type) for v in op.operands) or not _np_ok(t):
        return None
    xs = [np.asarray(v, dtype=o.type.dtype.numpy) for v, o in zip(values, op.operands)]
    with np.errstate(all="ignore"):
        if op.name == "prim.where":
            return _const(op, _py(xs[1] if xs[0] else xs[2]))
        if op.name == "prim.cast":
            r = _fold_cast(xs[0], op.attrs["dtype"])
            return None if r is None or _is_nan(r) else _const(op, _py(r))
        entry = _EXACT.get(getattr(type(op), "fn", ""))
        if entry is None:
            return None
        fn, guard = entry
        if guard is not None and not guard(*xs):
            return None
        r = np.asarray(fn(*xs)).astype(t.dtype.numpy)
        return None if _is_nan(r) else _const(op, _py(r))


def _is_nan(r: np.ndarray) -> bool:
    # the bits of a computed nan differ between CPUs and GPUs: leave computing it to them
    return r.dtype.kind == "f" and bool(np.isnan(r))


def _fold_movement(op: Op) -> Op | Value | None:
    """Moving a splat constant gives a splat constant; identities give the operand."""
    t = op.result.type
    x = op.operands[0] if op.operands else None
    if op.name == "prim.concat":
        values = [splat_value(v) for v in op.operands]
        if len(op.operands) == 1 and x.type == t:
            return x
        if t.is_static and values[0] is not _NONE and all(
                _same_number(v, values[0]) for v in values[1:]):
            return _const(op, values[0])
        return None
    value = splat_value(x)
    if op.name == "prim.pad" and value is not _NONE and not _same_number(value,
                                                                         op.attrs["value"]):
        value = _NONE
    if value is not _NONE and t.is_static:
        return _const(op, value)
    if x.type == t and _is_identity(op):
        return x
    return _compose(op)


def _is_identity(op: Op) -> bool:
    a = op.attrs
    rank = op.result.type.rank
    if op.name == "prim.permute":
        return a["perm"] == tuple(range(rank))
    if op.name == "prim.broadcast":
        return a["dims"] == tuple(range(rank))
    if op.name == "prim.slice":
        return all(s == 0 for s in a["start"]) and all(s == 1 for s in a["step"])
    if op.name == "prim.pad":
        return all(x == 0 for x in a["low"] + a["high"])
    return op.name == "prim.reshape"


def _compose(op: Op) -> Op | None:
    """Two movements in a row that one can do: permute∘permute, broadcast∘broadcast,
    reshape∘reshape, and broadcast of a reshape that only inserts size-1 axes (keepdim)."""
    inner = op.operands[0].owner
    if not isinstance(inner, Op):
        return None
    x = inner.operands[0] if inner.operands else None
    build = type(op).build
    if op.name == "prim.permute" and inner.name == "prim.permute":
        p, q = op.attrs["perm"], inner.attrs["perm"]
        return build(x, perm=tuple(q[i] for i in p), loc=op.loc)
    if op.name == "prim.reshape" and inner.name == "prim.reshape":
        return build(x, shape=op.attrs["shape"], loc=op.loc)
    if op.name != "prim.broadcast":
        return None
    shape, dims = op.attrs["shape"], op.attrs["dims"]
    if inner.name == "prim.broadcast":
        return build(x, shape=shape, dims=tuple(dims[d] for d in inner.attrs["dims"]),
                     loc=op.loc)
    if inner.name == "prim.reshape":
        where = _unit_reshape_map(x.type.shape, inner.result.type.shape)
        if where is not None:
            return build(x, shape=shape, dims=tuple(dims[j] for j in where), loc=op.loc)
    return None


def _unit_reshape_map(src: tuple, dst: tuple) -> list[int] | None:
    """Where each axis of ``src`` lands in ``dst`` if the reshape only inserts size-1 axes."""
    out: list[int] = []
    j = 0
    for d in src:
        while j < len(dst) and dst[j] == 1 and d != 1:
            j += 1
        if d is None or j == len(dst) or dst[j] != d:
            return None
        out.append(j)
        j += 1
    return out if all(d == 1 for d in dst[j:]) else None


def _fold_identity(op: Op) -> Value | None:
    """x * 1, x / 1, x + (-0.0), x - 0.0 (x + 0 and x - 0 for ints), cast to its own dtype."""
    t = op.result.type
    if op.name == "prim.cast":
        x = op.operands[0]
        return x if x.type == t else None
    fn = getattr(type(op), "fn", "")
    if fn not in ("mul", "div", "add", "sub") or len(op.operands) != 2:
        return None
    is_float = t.dtype.is_float
    zero = -0.0 if is_float else 0
    candidates = {"mul": [(0, 1), (1, 1)], "div": [(0, 1)], "add": [(0, zero), (1, zero)],
                  "sub": [(0, 0.0 if is_float else 0)]}[fn]
    for keep, unit in candidates:
        x, other = op.operands[keep], op.operands[1 - keep]
        value = splat_value(other)
        if value is not _NONE and x.type == t and (
                _same_number(value, unit) or (not is_float and value == unit)):
            return x
    return None


def fold_block(block: Block, subst: dict[Value, Value] | None = None) -> bool:
    """Fold constants and exact identities (nested regions too); True if anything changed."""
    subst = {} if subst is None else subst
    kept: list[Op] = []
    changed = False
    for op in block.ops:
        if isinstance(op, Return) and isinstance(block.parent, Graph):
            _keep_results_fresh(op, subst, kept)
        op.operands = [subst.get(v, v) for v in op.operands]
        for r in op.regions:
            changed |= fold_block(r, subst)
        new = _fold_op(op)
        if new is None:
            kept.append(op)
            continue
        changed = True
        if isinstance(new, Op):
            new.parent = block
            kept.append(new)
            new = new.result
        subst[op.result] = new
    block.ops = kept
    return changed


def _keep_results_fresh(ret: Op, subst: dict[Value, Value], kept: list[Op]) -> None:
    """A func result that folding turned into a func argument (``return x * 1``) is copied:
    results stay fresh contiguous buffers, never aliases of (possibly strided) arguments."""
    scratch = Block()
    for v in ret.operands:
        new = subst.get(v, v)
        if new is not v and isinstance(new.owner, Block) and isinstance(v.owner, Op):
            subst[v] = copy_group(Builder(scratch, v.owner.loc), new)
    for op in scratch.ops:
        op.parent = ret.parent
        kept.append(op)


def _fold_op(op: Op) -> Op | Value | None:
    if not op.name.startswith("prim.") or op.regions or len(op.results) != 1:
        return None
    if op.has("elementwise"):
        return _fold_identity(op) or _fold_elementwise(op)
    if op.has("movement"):
        return _fold_movement(op)
    return None


# -- the passes --------------------------------------------------------------------------------
def _each_body(module: Module, fn: Callable[[Block], bool]) -> bool:
    changed = False
    for g in module.graphs:
        changed |= fn(g.body)
    return changed


def simplify_module(module: Module) -> Module:
    """fold, cse and dce until nothing changes."""
    for _ in range(_MAX_ROUNDS):
        changed = _each_body(module, fold_block)
        changed |= _each_body(module, cse_block)
        changed |= _each_body(module, dce_block)
        if not changed:
            return module
    raise RuntimeError(f"simplify did not reach a fixed point in {_MAX_ROUNDS} rounds")


@register_pass
@dataclass(frozen=True)
class DCE(Pass):
    """Drop pure ops whose results are unused."""

    name = "dce"

    def run(self, module: Module) -> Module:
        _each_body(module, dce_block)
        return module


@register_pass
@dataclass(frozen=True)
class CSE(Pass):
    """Merge pure region-free ops with equal names, operands and attributes."""

    name = "cse"

    def run(self, module: Module) -> Module:
        _each_body(module, cse_block)
        return module


@register_pass
@dataclass(frozen=True)
class Fold(Pass):
    """Fold constants and exact identities, compose movements (leaves dead ops to dce)."""

    name = "fold"

    def run(self, module: Module) -> Module:
        _each_body(module, fold_block)
        return module


@register_pass
@dataclass(frozen=True)
class Simplify(Pass):
    """fold, cse and dce to a fixed point."""

    name = "simplify"

    def run(self, module: Module) -> Module:
        return simplify_module(module)


__all__ = ["CSE", "DCE", "Fold", "Simplify", "cse_block", "dce_block", "fold_block",
           "simplify_module", "splat_value"]
