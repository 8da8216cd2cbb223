"""Random numbers: ``lamina.Generator``, the default generator, and the kernels that draw.

A generator is a 64-bit ``seed`` and a 64-bit ``offset`` into the Philox4x32-10
stream of that seed (``prim.random_bits``; ``lamina.ir.dialects.prim_random``
documents the exact counter layout). Each draw reads the current offset and
advances it by the number of Philox counters the draw uses, so consecutive
draws never share a counter. The seed and the offset are run-time arguments
of the kernels (0-d buffers), never constants: a new seed or a later draw
reuses the compiled kernel of its signature (distribution, dtype).

The numbers are deterministic per seed and the same on every device, but they
are not PyTorch's stream (PyTorch's CPU generator is a Mersenne Twister):
``lamina.manual_seed(0); lamina.rand(3)`` does not equal ``torch.rand(3)``.

How bits become numbers (each element uses its own words of the stream):

* uniform ``[0, 1)``: the top ``m`` bits of one word times ``2**-m``, with ``m``
  the significand width of the dtype (f16 11, bf16 8, f32 24) so the value is
  exact and never rounds up to 1; float64 takes 53 bits from two words.
  ``uniform_(a, b)`` is ``a + (b - a) * u``, computed in float32 (float64 for
  float64) and rounded once.
* normal: Box-Muller, ``z = sqrt(-2 log u1) * cos(2 pi u2)`` with ``u1 = (w1 + 1/2)
  2**-32`` (never 0: no log of 0; ``|z| <= 6.8``) and ``u2 = w2 2**-32``, computed in
  float32 like PyTorch's CPU kernel (float64 with 53-bit uniforms for float64: ``|z|
  <= 8.7``), then ``mean + std * z`` rounded once to the dtype. Only the cosine half is
  used, so each element has its own pair of words.
* integers in ``[low, high)``: ``low + floor(w * span / 2**32)`` for a 32-bit word ``w``
  and ``span = high - low <= 2**32`` (a multiply and a shift: no division), else
  ``low + x mod span`` with 63 bits ``x`` from two words.
* bernoulli(p): ``u < p`` with a 32-bit ``u`` compared in float64.
* exponential(rate): ``-log1p(-u) / rate`` in float64.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import threading
from collections.abc import Iterator
from typing import Any, Callable, Sequence

import numpy as np

from lamina.frontend import dispatch, trace
from lamina.frontend import dtypes as dt
from lamina.frontend.device import check_device, cpu, device
from lamina.frontend.tensor import Tensor
from lamina.ir import Builder, Value
from lamina.ir.dialects.prim_random import elements_per_counter
from lamina.ir.types import f32, f64, i64

DEFAULT_SEED = 67280421310721  # PyTorch's default seed, so initial_seed() agrees
_U64 = 1 << 64


def _as_signed(x: int) -> int:
    """A value mod 2**64 as the int64 with the same bits (what a kernel argument holds)."""
    x %= _U64
    return x - _U64 if x >= 1 << 63 else x


class Generator:
    """``torch.Generator``: a seed and an offset into that seed's Philox stream."""

    def __init__(self, device: str | device = "cpu"):
        check_device(device, "Generator")
        self._lock = threading.Lock()
        self._seed = DEFAULT_SEED
        self._offset = 0

    @property
    def device(self) -> device:
        return cpu

    def manual_seed(self, seed: Any) -> Generator:
        """Restart the stream of ``seed`` (any int in ``[-2**63, 2**64)``)."""
        seed = _check_seed(seed)
        with self._lock:
            self._seed, self._offset = seed, 0
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy; returns the new seed."""
        s = int.from_bytes(os.urandom(8), "little")
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> Tensor:
        """The state as an int64 tensor ``[seed, offset]`` (bits of the unsigned values).

        PyTorch returns a uint8 tensor whose layout is its own; Lamina has no uint8
        dtype, and a state only ever goes back to ``set_state``."""
        from lamina.frontend.ops import tensor

        with self._lock:
            return tensor([_as_signed(self._seed), _as_signed(self._offset)], dtype=dt.int64)

    def set_state(self, new_state: Tensor) -> Generator:
        if not isinstance(new_state, Tensor):
            raise TypeError(f"set_state(): argument 'new_state' must be Tensor, not "
                            f"{type(new_state).__name__}")
        if new_state.dtype is not dt.int64 or tuple(new_state.shape) != (2,):
            raise RuntimeError(f"Generator.set_state: expected an int64 tensor of shape [2] "
                               f"(from get_state()), got {new_state.dtype} of shape "
                               f"{list(new_state.shape)}")
        seed, offset = new_state.tolist()
        with self._lock:
            self._seed, self._offset = seed % _U64, offset % _U64
        return self

    def advance(self, counters: int) -> tuple[int, int]:
        """Reserve ``counters`` Philox counters: the (key, offset) kernel arguments to use."""
        with self._lock:
            key, offset = self._seed, self._offset
            self._offset = (offset + counters) % _U64
        return _as_signed(key), _as_signed(offset)

    def __repr__(self) -> str:
        return f"<lamina.Generator object, seed={self._seed}, offset={self._offset}>"


def _check_seed(seed: Any) -> int:
    try:
        s = operator.index(seed)
    except TypeError:
        raise TypeError(f"manual_seed expected an int, got {type(seed).__name__}") from None
    if not -(1 << 63) <= s < _U64:
        raise RuntimeError(f"Overflow when unpacking long: seed {s} must be within "
                           f"[-0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff]")
    return s % _U64


default_generator = Generator()


def manual_seed(seed: Any) -> Generator:
    """Seed the default generator (``torch.manual_seed``); returns it."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the default generator from the OS's entropy; returns the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    return default_generator.get_state()


def set_rng_state(new_state: Tensor) -> None:
    default_generator.set_state(new_state)


@contextlib.contextmanager
def fork_rng(devices: Any = None, enabled: bool = True, **_: Any) -> Iterator[None]:
    """Run a block and restore the default generator's state afterwards."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def generator_of(generator: Generator | None, op: str) -> Generator:
    if generator is None:
        return default_generator
    if not isinstance(generator, Generator):
        raise TypeError(f"{op}(): argument 'generator' must be lamina.Generator, not "
                        f"{type(generator).__name__}")
    return generator


# -- bits -> numbers, as tensor-dialect builds over (key, offset, params...) --------------------
Core = Callable[..., Value]


def _const(b: Builder, value: Any, dtype: Any) -> Value:
    return b("tensor.full", value=value, shape=(), dtype=dtype)


def _bits(b: Builder, key: Value, offset: Value, stride: int) -> list[Value]:
    return [b("prim.random_bits", key, offset, stride=stride, word=w) for w in range(stride)]


def _shr(b: Builder, x: Value, n: int) -> Value:
    return b("tensor.shr", x, _const(b, n, i64))


def _scaled(b: Builder, x: Value, dtype: Any, scale: float) -> Value:
    """``x`` (an int) as ``dtype`` times ``scale`` (a power of two: exact)."""
    return b("tensor.mul", b("tensor.cast", x, dtype=dtype), _const(b, scale, dtype))


def _u53(b: Builder, hi: Value, lo: Value) -> Value:
    """53 random bits (the top 21 of ``hi``, all of ``lo``) as an int64 in [0, 2**53)."""
    top = b("tensor.shl", _shr(b, hi, 11), _const(b, 32, i64))
    return b("tensor.or", top, lo)


MANTISSA = {"f16": 11, "bf16": 8, "f32": 24}


def uniform_core(dtype: dt.dtype) -> tuple[int, Core]:
    """(stride, build) of ``low + (high - low) * u``, u uniform in [0, 1)."""
    compute = f64 if dtype is dt.float64 else dt.float32.ir

    def build(b: Builder, key: Value, offset: Value, low: Value, high: Value) -> Value:
        if dtype is dt.float64:
            u = _scaled(b, _u53(b, *_bits(b, key, offset, 2)), f64, 2.0**-53)
        else:
            m = MANTISSA[dtype.ir.name]
            (w,) = _bits(b, key, offset, 1)
            u = _scaled(b, _shr(b, w, 32 - m), compute, 2.0**-m)
        low, high = (b("tensor.cast", v, dtype=compute) for v in (low, high))
        r = b("tensor.add", low, b("tensor.mul", b("tensor.sub", high, low), u))
        return b("tensor.cast", r, dtype=dtype.ir)

    return (2 if dtype is dt.float64 else 1), build


def _open_unit(b: Builder, x: Value, bits: int, dtype: Any) -> Value:
    """An int ``x`` in [0, 2**bits) as (x + 1/2) 2**-bits: uniform in (0, 1] (in (0, 1) when
    ``dtype`` holds ``bits`` + 1 bits; float32 may round the largest values up to 1)."""
    half = b("tensor.add", b("tensor.cast", x, dtype=dtype), _const(b, 0.5, dtype))
    return b("tensor.mul", half, _const(b, 2.0**-bits, dtype))


def normal_core(dtype: dt.dtype) -> tuple[int, Core]:
    """(stride, build) of ``mean + std * z``, z standard normal by Box-Muller (float64 for
    float64, float32 otherwise)."""
    c = f64 if dtype is dt.float64 else f32

    def build(b: Builder, key: Value, offset: Value, mean: Value, std: Value) -> Value:
        if dtype is dt.float64:
            w = _bits(b, key, offset, 4)
            u1 = _open_unit(b, _u53(b, w[0], w[1]), 53, c)
            u2 = _scaled(b, _u53(b, w[2], w[3]), c, 2.0**-53)
        else:
            w = _bits(b, key, offset, 2)
            u1 = _open_unit(b, w[0], 32, c)
            u2 = _scaled(b, w[1], c, 2.0**-32)
        r = b("tensor.sqrt", b("tensor.mul", _const(b, -2.0, c), b("tensor.log", u1)))
        z = b("tensor.mul", r, b("tensor.cos", b("tensor.mul", u2, _const(b, 2 * np.pi, c))))
        mean, std = (b("tensor.cast", v, dtype=c) for v in (mean, std))
        return b("tensor.cast", b("tensor.add", mean, b("tensor.mul", std, z)), dtype=dtype.ir)

    return (4 if dtype is dt.float64 else 2), build


def _bits63(b: Builder, key: Value, offset: Value) -> Value:
    """63 random bits from two words, as a non-negative int64."""
    hi, lo = _bits(b, key, offset, 2)
    hi = b("tensor.and", hi, _const(b, 0x7FFFFFFF, i64))
    return b("tensor.or", b("tensor.shl", hi, _const(b, 32, i64)), lo)


def randint_core(dtype: dt.dtype, wide: bool) -> tuple[int, Core]:
    """(stride, build) of an integer in ``[low, low + span)`` (see the module docstring)."""

    def build(b: Builder, key: Value, offset: Value, low: Value, span: Value) -> Value:
        if wide:
            r = b("tensor.rem", _bits63(b, key, offset), span)
        else:  # floor(bits * span / 2**32): a multiply and a shift instead of a division
            prod = b("tensor.mul", _bits(b, key, offset, 1)[0], span)
            r = b("tensor.and", _shr(b, prod, 32), _const(b, 0xFFFFFFFF, i64))
        r = b("tensor.add", low, r)
        return r if dtype is dt.int64 else b("tensor.cast", r, dtype=dtype.ir)

    return (2 if wide else 1), build


def bernoulli_core(dtype: dt.dtype) -> tuple[int, Core]:
    """(stride, build) of ``u < p`` as ``dtype``, u a 32-bit uniform in float64."""

    def build(b: Builder, key: Value, offset: Value, p: Value) -> Value:
        (w,) = _bits(b, key, offset, 1)
        hit = b("tensor.lt", _scaled(b, w, f64, 2.0**-32), p)
        return b("tensor.cast", hit, dtype=dtype.ir)

    return 1, build


def exponential_core(dtype: dt.dtype) -> tuple[int, Core]:
    """(stride, build) of ``-log1p(-u) / rate`` in float64."""

    def build(b: Builder, key: Value, offset: Value, rate: Value) -> Value:
        if dtype is dt.float64:
            u = _scaled(b, _u53(b, *_bits(b, key, offset, 2)), f64, 2.0**-53)
        else:
            (w,) = _bits(b, key, offset, 1)
            u = _scaled(b, w, f64, 2.0**-32)
        e = b("tensor.neg", b("tensor.log1p", b("tensor.neg", u)))
        return b("tensor.cast", b("tensor.div", e, rate), dtype=dtype.ir)

    return (2 if dtype is dt.float64 else 1), build


def bits63_core() -> tuple[int, Core]:
    """(stride, build) of 63 random bits as a non-negative int64 (e.g. sort keys)."""
    return 2, _bits63


# -- running a draw ---------------------------------------------------------------------------
def _batch_counters(static: int, batch_axes: int, per: int, batch: int) -> int:
    """Counters of a draw of ``static * batch**batch_axes`` elements (what eager reserves)."""
    return -(-(static * batch**batch_axes) // per)


def draw(name: str, signature: tuple, core: tuple[int, Core], shape: Sequence[int],
         out: dt.dtype, params: Sequence[tuple[Any, dt.dtype]] = (),
         generator: Generator | None = None) -> Tensor:
    """A tensor of ``shape`` drawn by ``core`` from ``generator``'s stream.

    ``params`` are Python numbers with their dtypes; like the key and the offset
    they reach the kernel as 0-d arguments (captured inputs when tracing).
    """
    gen = generator_of(generator, name)
    stride, build = core
    shape = tuple(shape)
    n = 1
    for d in shape:
        n *= 1 if d is None else d
    per = elements_per_counter(stride)
    tr = trace.current()
    batch_axes = shape.count(None)  # the batch size (dynamic traces only, see ops._shape_arg)
    if tr is not None:  # the key and offset are inputs of the compiled step, read per call
        counters: Any = -(-n // per)
        if batch_axes:  # known per call: the eager count at the call's batch size
            counters = functools.partial(_batch_counters, n, batch_axes, per)
        key_t, offset_t = tr.random_inputs(gen, counters)
        arrays = [np.array(0, np.int64), np.array(0, np.int64)]
    else:
        key, offset = gen.advance(-(-n // per))
        arrays = [np.array(key, np.int64), np.array(offset, np.int64)]
    arrays += [np.array(v, d.numpy) for v, d in params]
    types = [dt.int64, dt.int64] + [d for _, d in params]
    args = [Tensor._wrap(a, t) for a, t in zip(arrays, types)]
    if tr is not None:
        args[:2] = [key_t, offset_t]

    def expand(b: Builder, v: Value) -> Value:
        if batch_axes:
            return trace.batch_broadcast(b, v, shape)
        return b("tensor.expand", v, shape=shape) if shape else v

    def semantic(b: Builder, *vals: Value) -> Value:
        return build(b, *(expand(b, v) for v in vals))

    def eager() -> Tensor:
        from lamina.runtime import empty

        if n == 0:
            return Tensor._wrap(empty(shape, out.numpy), out)
        views = [np.ndarray((n,), a.dtype, buffer=a, strides=(0,)) for a in arrays]
        (res,) = dispatch.run_eager(("random", name, signature, out.name), build, views,
                                    [t.ir for t in types], ((0,),) * len(views))
        return Tensor._wrap(res.reshape(shape), out)

    return dispatch.apply(name, semantic, args, eager)
