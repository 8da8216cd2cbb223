"""numpy reference implementations of the positional prims (``prim.random_bits``,
``prim.iota_like``), registered into the prim interpreter's ``TABLE``.

``philox4x32`` is the plain Philox4x32-R block function on uint64 arrays holding
32-bit words; the tests check it against Random123's published known answers,
and the generated kernels against it.
"""

from __future__ import annotations

import numpy as np

from lamina.backends.interp import numerics as nx
from lamina.backends.interp.prim_interp import TABLE, Call
from lamina.ir.dialects import prim_random as R

_M32 = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)


def philox4x32(counter: tuple, key: tuple, rounds: int = R.PHILOX_ROUNDS
               ) -> tuple[np.ndarray, ...]:
    """The 4 output words of Philox4x32 for 4 counter words and 2 key words (uint32 values)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) & _M32 for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) & _M32 for k in key)
    m0, m1 = np.uint64(R.PHILOX_M0), np.uint64(R.PHILOX_M1)
    w0, w1 = np.uint64(R.PHILOX_W0), np.uint64(R.PHILOX_W1)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + w0) & _M32, (k1 + w1) & _M32
        p0, p1 = m0 * c0, m1 * c2  # 32 x 32 -> 64 bits: never overflows uint64
        c0, c1, c2, c3 = ((p1 >> _SHIFT) ^ c1 ^ k0, p1 & _M32, (p0 >> _SHIFT) ^ c3 ^ k1,
                          p0 & _M32)
    return c0, c1, c2, c3


def random_bits(key: np.ndarray, offset: np.ndarray, shape: tuple[int, ...], stride: int,
                word: int) -> np.ndarray:
    """``prim.random_bits`` on arrays of ``shape`` (or broadcastable to it): int64 words."""
    per = R.elements_per_counter(stride)
    n = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64).reshape(shape)
    k = np.broadcast_to(np.asarray(key, dtype=np.int64), shape).astype(np.uint64)
    c = np.broadcast_to(np.asarray(offset, dtype=np.int64), shape).astype(np.uint64)
    c = c + n // np.uint64(per)  # wraps modulo 2**64, like the kernels
    words = philox4x32((c & _M32, c >> _SHIFT, 0, 0), (k & _M32, k >> _SHIFT))
    pick = (n % np.uint64(per)) * np.uint64(stride) + np.uint64(word)
    out = np.choose(pick.astype(np.int64), words) if n.size else np.zeros(shape, np.uint64)
    return out.astype(np.int64)


def _random_bits(c: Call, key: np.ndarray, offset: np.ndarray) -> np.ndarray:
    if key.shape != offset.shape:
        raise c.error("operand shapes differ at run time", key, offset)
    return random_bits(key, offset, key.shape, c.attrs["stride"], c.attrs["word"])


def _iota_like(c: Call, x: np.ndarray) -> np.ndarray:
    dim, dtype = c.attrs["dim"], c.attrs["dtype"]
    n = x.shape[dim]
    if n and not dtype.is_float:
        nx.scalar_storage(n - 1, dtype, c.op.where())  # the largest index must fit
    idx = nx.convert(np.arange(n, dtype=np.int64), dtype)
    view = [1] * x.ndim
    view[dim] = n
    return np.broadcast_to(idx.reshape(view), x.shape).copy()


TABLE.update({"prim.random_bits": _random_bits, "prim.iota_like": _iota_like})
