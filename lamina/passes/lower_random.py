"""Lowering of the positional prims (``prim.random_bits``, ``prim.iota_like``) at an index.

Philox4x32-10 is emitted with the loop dialect's i64 arithmetic: each 32-bit
word lives zero-extended in an i64, so the 32 x 32 -> 64 bit product of a
round is one ``loop.mul`` (wrapping, bits exact) and its high and low halves a
shift and two masks. Words known at compile time (the counter's upper half is
zero) are folded here, and the key schedule depends only on the key, so the
kernel builder hoists it out of the loops. See ``lamina.ir.dialects.prim_random``
for the stream layout every backend reproduces bit for bit.

Both prims read the element's own index, which has no vector form: a lane
index raises ``NotVectorizable`` and the lowering emits scalar code (LLVM's
loop vectorizer may still vectorize it).

Neither prim has a derivative: their VJP rules are registered here, next to the
rest of what a new prim needs.
"""

from __future__ import annotations

from typing import Any

from lamina.ir.core import Op, Value
from lamina.ir.dialects import prim_random as R
from lamina.ir.types import i64
from lamina.passes import lower_eval
from lamina.passes.vjp_rules import vjp

Word = int | Value  # a 32-bit word: known (Python int) or computed (i64 value)
_M32 = 0xFFFFFFFF


class _Philox:
    """Emits Philox4x32 on i64 words, folding the words known at compile time."""

    def __init__(self, ev: Any):
        self.ev = ev
        self.kb = ev.kb

    def const(self, value: int) -> Value:
        return self.kb.const(value, i64)

    def emit(self, name: str, a: Word, b: Word) -> Value:
        a = self.const(a) if isinstance(a, int) else a
        b = self.const(b) if isinstance(b, int) else b
        return self.ev.ew(name, a, b)

    def low(self, x: Value) -> Value:
        return self.emit("loop.and", x, _M32)

    def high(self, x: Value) -> Value:
        # shr is arithmetic: the mask drops the sign fill of a product >= 2**63
        return self.low(self.emit("loop.shr", x, 32))

    def xor(self, a: Word, b: Word) -> Word:
        if isinstance(a, int) and isinstance(b, int):
            return a ^ b
        if isinstance(a, int) and a == 0:
            return b
        if isinstance(b, int) and b == 0:
            return a
        return self.emit("loop.xor", a, b)

    def mulhilo(self, m: int, x: Word) -> tuple[Word, Word]:
        if isinstance(x, int):
            p = m * x
            return p >> 32, p & _M32
        p = self.emit("loop.mul", x, m)
        return self.high(p), self.low(p)

    def bump(self, k: Word, w: int) -> Word:
        return (k + w) & _M32 if isinstance(k, int) else self.low(self.emit("loop.add", k, w))

    def block(self, ctr: list[Word], key: list[Word]) -> list[Word]:
        c0, c1, c2, c3 = ctr
        k0, k1 = key
        for r in range(R.PHILOX_ROUNDS):
            if r:
                k0, k1 = self.bump(k0, R.PHILOX_W0), self.bump(k1, R.PHILOX_W1)
            hi0, lo0 = self.mulhilo(R.PHILOX_M0, c0)
            hi1, lo1 = self.mulhilo(R.PHILOX_M1, c2)
            c0, c1, c2, c3 = self.xor(self.xor(hi1, c1), k0), lo1, \
                self.xor(self.xor(hi0, c3), k1), lo0
        return [c0, c1, c2, c3]


def _linear_index(ev: Any, op: Op, idx: tuple) -> Value:
    """The row-major position of ``idx`` in the result's shape (an index value)."""
    kb = ev.kb
    n = kb.index(0)
    for axis, i in enumerate(idx):
        size = ev.shapes.dim(op.result, axis)
        n = kb.emit("loop.add", kb.emit("loop.mul", n, size), ev.scalar(i))
    return n


def random_bits_at(ev: Any, op: Op, idx: tuple) -> Value:
    """Element ``idx`` of ``prim.random_bits``: one word of one Philox block."""
    kb = ev.kb
    n = _linear_index(ev, op, idx)
    key, offset = (ev.at(v, idx) for v in op.operands)
    stride, word = op.attrs["stride"], op.attrs["word"]
    per = R.elements_per_counter(stride)
    q = kb.emit("loop.div", n, kb.index(per))
    ph = _Philox(ev)
    counter = ph.emit("loop.add", offset, ev.cast(q, i64))
    out = ph.block([ph.low(counter), ph.high(counter), 0, 0], [ph.low(key), ph.high(key)])
    words = [ph.const(w) if isinstance(w, int) else w for w in out]
    if per == 1:
        return words[word]
    r = kb.emit("loop.rem", n, kb.index(per))
    result = words[(per - 1) * stride + word]
    for k in range(per - 2, -1, -1):
        result = ev.ew("loop.select", kb.emit("loop.eq", r, kb.index(k)),
                       words[k * stride + word], result)
    return result


def iota_like_at(ev: Any, op: Op, idx: tuple) -> Value:
    return ev.cast(ev.scalar(idx[op.attrs["dim"]]), op.attrs["dtype"])


lower_eval.register_rule(R.RandomBits, random_bits_at)
lower_eval.register_rule(R.IotaLike, iota_like_at)


@vjp("prim.random_bits", "prim.iota_like")
def _no_derivative(e: Any, attrs: dict, inputs: list, outputs: list, cts: list,
                   need: list) -> list:
    return [None] * len(inputs)
