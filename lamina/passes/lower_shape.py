"""Lowering, derivative and reference rules of ``prim.reshape_tail`` and ``prim.fill_batch``
(``ir/dialects/prim_shape``).

The kept axes pass their index through; the static tail is remapped like a
static reshape (row-major flat index, unravelled by the operand's tail sizes).
``prim.slice_keep`` maps each kept axis to
``start + i * step`` (``?`` axes pass through) and reads a dropped axis at its
start. ``prim.fill_batch`` reads its 0-d operand at
every index and never reads ``like`` (only its size). Importing this module
registers the rules (the reference interpreter's too,
for the two prims this layer added) (the frontend does, before it
records the op).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lamina.backends.interp import prim_interp
from lamina.ir.core import Op, Value
from lamina.ir.dialects import prim_shape as PS
from lamina.passes import lower_eval
from lamina.passes.vjp_rules import vjp


def _reshape_tail_at(ev: Any, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    keep = op.attrs["keep"]
    src_tail, dst_tail = x.type.shape[keep:], op.result.type.shape[keep:]
    kb = ev.kb
    live_d = [(k, d) for k, d in enumerate(dst_tail) if d != 1]
    live_s = [(k, d) for k, d in enumerate(src_tail) if d != 1]
    src = list(idx[:keep]) + [kb.index(0)] * len(src_tail)
    if len(live_s) == 1 and len(live_d) == 1:
        src[keep + live_s[0][0]] = idx[keep + live_d[0][0]]
        return ev.at(x, tuple(src))
    flat = None
    for k, d in live_d:
        flat = idx[keep + k] if flat is None else ev.add(ev.mulc(flat, d), idx[keep + k])
    if flat is None:
        return ev.at(x, tuple(src))
    for k, d in reversed(live_s[1:]):
        src[keep + k] = ev.ix("loop.rem", flat, kb.index(d))
        flat = ev.ix("loop.div", flat, kb.index(d))
    if live_s:
        src[keep + live_s[0][0]] = flat
    return ev.at(x, tuple(src))


lower_eval.register_rule(PS.ReshapeTail, _reshape_tail_at)


@vjp("prim.reshape_tail")
def _reshape_tail_vjp(e: Any, attrs: dict, inputs: list, outputs: list, cts: list,
                      need: list) -> list:
    shape = tuple(e.shape(inputs[0]))
    return [e.prim("prim.reshape_tail", cts[0], keep=attrs["keep"], shape=shape)]



def _fill_batch_at(ev: Any, op: Op, idx: tuple) -> Value:
    return ev.at(op.operands[0], ())


lower_eval.register_rule(PS.FillBatch, _fill_batch_at)


@vjp("prim.fill_batch")
def _fill_batch_vjp(e: Any, attrs: dict, inputs: list, outputs: list, cts: list,
                    need: list) -> list:
    """The frontend only fills constants and random state: nothing to differentiate."""
    return [None, None]


def _slice_keep_at(ev: Any, op: Op, idx: tuple) -> Value:
    (x,) = op.operands
    start, step, drop = op.attrs["start"], op.attrs["step"], op.attrs["drop"]
    src, k = [], 0
    for axis in range(x.type.rank):
        if axis in drop:
            src.append(ev.kb.index(start[axis]))
            continue
        i = idx[k]
        k += 1
        if step[axis] != 1:
            i = ev.mulc(i, step[axis])
        src.append(ev.addc(i, start[axis]))
    return ev.at(x, tuple(src))


lower_eval.register_rule(PS.SliceKeep, _slice_keep_at)


@vjp("prim.slice_keep")
def _slice_keep_vjp(e: Any, attrs: dict, inputs: list, outputs: list, cts: list,
                    need: list) -> list:
    """The cotangent put back in place: dropped axes re-inserted as size 1 (a broadcast,
    which keeps ``?`` axes linked), then zeros padded around the static slices."""
    (x,), (g,) = inputs, cts
    start, stop, step, drop = (attrs[k] for k in ("start", "stop", "step", "drop"))
    if any(s != 1 for s in step):
        raise NotImplementedError("prim.slice_keep: the derivative of a strided slice over a "
                                  "symbolic batch is not supported")
    xs = tuple(e.shape(x))
    kept = [a for a in range(len(xs)) if a not in drop]
    if drop:
        shape = tuple(1 if a in drop else (None if xs[a] is None else stop[a] - start[a])
                      for a in range(len(xs)))
        g = e.prim("prim.broadcast", g, shape=shape, dims=tuple(kept))
    high = tuple(0 if d is None else d - b for d, b in zip(xs, stop))
    if any(start) or any(high):
        zero = 0.0 if e.dtype(g).is_float else 0
        g = e.prim("prim.pad", g, low=tuple(start), high=high, value=zero)
    return [g]


# -- reference interpreter rules (numpy) -------------------------------------------------------
def _fill_batch_ref(c: Any, x: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.ndim == 0:
        raise c.error("like must have a leading axis", x, like)
    shape = tuple(like.shape[0] if d is None else d for d in c.attrs["shape"])
    return np.array(np.broadcast_to(x, shape))


def _slice_keep_ref(c: Any, x: np.ndarray) -> np.ndarray:
    start, stop, step, drop = (c.attrs[k] for k in ("start", "stop", "step", "drop"))
    static = [d for d in c.in_types[0].shape]
    if any(d is not None and d != n for d, n in zip(static, x.shape)):
        raise c.error(f"the operand does not have the static sizes {static}", x)
    key = tuple(a if axis in drop else slice(a, b, s)
                for axis, (a, b, s) in enumerate(zip(start, stop, step)))
    return np.array(x[key])


prim_interp.TABLE.update({"prim.fill_batch": _fill_batch_ref,
                          "prim.slice_keep": _slice_keep_ref})
