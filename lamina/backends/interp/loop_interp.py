"""A scalar-by-scalar Python interpreter of loop-stage modules: the oracle of ``lower-loops``.

It runs programs (``loop.dim``, index math, ``loop.alloc``, ``loop.call``) and
kernels on numpy arrays, one element at a time, so it is slow and meant for
tiny sizes. Every access goes through the numpy view of the buffer (so any
strides, including 0, are honoured) and is bounds-checked: an out-of-bounds
load or store raises instead of reading memory, which is the property the
lowering tests rely on.

Semantics of the scalar functions (they define the loop dialect; the LLVM
backend implements the same):

- integers wrap around; ``div`` truncates toward zero, ``rem`` has the sign of
  the dividend, and both give 0 for a zero divisor; ``shl``/``shr`` are
  arithmetic shifts, a shift amount outside ``[0, bits)`` gives 0 (``shr`` of
  a negative value gives -1); ``pow`` of integers with a negative exponent is
  ``1 // base**-exp`` truncated (0 unless the base is 1 or -1, 0 for base 0);
- floats are IEEE: f32/f16/bf16 math is evaluated in float64 and rounded to
  the type (round to nearest even; bf16 values are float32 numbers with a
  bf16 mantissa and are stored as uint16 bit patterns); ``rem`` is C ``fmod``;
  ``max``/``min`` propagate NaN; ``round`` is half-to-even; comparisons are
  ordered except ``ne``;
- casts float -> int truncate toward zero (NaN gives 0, out-of-range values
  saturate); casts to i1 are ``!= 0``; i1 -> number gives 0 or 1;
- ``vreduce`` with ``max``/``min`` propagates NaN like ``loop.max``/``loop.min``.

``loop.parallel`` runs its iterations in reverse order: any result that
depends on the order is a bug in the kernel, and reversing shows it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from lamina.ir.core import Block, Graph, Module, Op, Return
from lamina.ir.dialects import loop as L
from lamina.ir.types import MemRefType, ScalarType, Type, VectorType, element_type


class LoopInterpError(RuntimeError):
    """A loop-stage module did something the loop dialect does not allow at run time."""


# -- element types ------------------------------------------------------------------
# The numpy type that holds a value of each scalar type while computing.
_COMPUTE = {"f16": np.float16, "bf16": np.float32, "f32": np.float32, "f64": np.float64,
            "i1": np.bool_, "i8": np.int8, "i32": np.int32, "i64": np.int64,
            "index": np.int64}


def _bf16_round(x: Any) -> Any:
    """Round float32 values to the nearest bf16 (ties to even), kept as float32."""
    a = np.asarray(x, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    rounded = np.where(np.isnan(a), bits | 0x400000, rounded).astype(np.uint32)
    out = rounded.view(np.float32)
    return out if out.ndim else np.float32(out[()])


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) to float32 values."""
    out = (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(out) if isinstance(bits, np.ndarray) else out


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values to bf16 bit patterns (uint16), rounding to nearest even."""
    r = np.asarray(_bf16_round(x), dtype=np.float32)
    bits = (r.view(np.uint32) >> 16).astype(np.uint16)
    return np.asarray(bits) if isinstance(x, np.ndarray) else bits


def _fit(x: Any, t: ScalarType) -> Any:
    """Convert a numpy value to the compute type of ``t`` (floats round, ints wrap)."""
    if t.name == "bf16":
        return _bf16_round(np.asarray(x).astype(np.float32))
    out = np.asarray(x).astype(_COMPUTE[t.name])
    return out if out.ndim else out[()]


def _is_float(t: ScalarType) -> bool:
    return t.is_float


def _float_math(fn: Callable[[Any], Any]) -> Callable[[Any, ScalarType], Any]:
    def run(x: Any, t: ScalarType) -> Any:
        return _fit(fn(np.asarray(x, dtype=np.float64)), t)

    return run


def _erfinv(y: np.ndarray) -> np.ndarray:
    """Inverse error function in float64: a rough start refined by Newton steps."""
    y = np.asarray(y, dtype=np.float64)
    out = np.empty_like(y)
    for i, v in np.ndenumerate(y):
        if math.isnan(v) or abs(v) > 1:
            out[i] = math.nan
        elif abs(v) == 1:
            out[i] = math.copysign(math.inf, v)
        else:
            w = -math.log((1 - v) * (1 + v))
            x = math.copysign(math.sqrt(max(w - math.log(max(w, 1e-300)) / 2, 0.0)), v)
            if abs(v) < 0.5:
                x = v * math.sqrt(math.pi) / 2
            for _ in range(60):
                err = math.erf(x) - v
                step = err / (2 / math.sqrt(math.pi) * math.exp(-x * x))
                x -= step
                if abs(step) <= 1e-17 * max(1.0, abs(x)):
                    break
            out[i] = x
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _neg(x, t):
    return _fit(-np.asarray(x, dtype=np.float64), t) if _is_float(t) else _fit(np.negative(x), t)


def _not(x, t):
    return np.logical_not(x) if t.is_bool else np.invert(x)


UNARY: dict[str, Callable[[Any, ScalarType], Any]] = {
    "neg": _neg,
    "abs": lambda x, t: _fit(np.abs(x), t),
    "sign": lambda x, t: _fit(np.sign(x), t),
    "exp": _float_math(np.exp),
    "exp2": _float_math(np.exp2),
    "expm1": _float_math(np.expm1),
    "log": _float_math(np.log),
    "log2": _float_math(np.log2),
    "log1p": _float_math(np.log1p),
    "sqrt": _float_math(np.sqrt),
    "rsqrt": _float_math(lambda x: 1.0 / np.sqrt(x)),
    "sin": _float_math(np.sin),
    "cos": _float_math(np.cos),
    "tan": _float_math(np.tan),
    "tanh": _float_math(np.tanh),
    "logistic": _float_math(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "erf": _float_math(_erf),
    "erfinv": _float_math(_erfinv),
    "floor": _float_math(np.floor),
    "ceil": _float_math(np.ceil),
    "round": _float_math(np.rint),
    "trunc": _float_math(np.trunc),
    "not": _not,
    "isnan": lambda x, t: np.isnan(x),
}


def _int_div(a, b, t):
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    zero = b == 0
    safe = np.where(zero, 1, b)
    q = np.abs(a) // np.abs(safe)  # int64 min // 1 wraps, like the machine
    q = np.where((a < 0) != (safe < 0), -q, q)
    return _fit(np.where(zero, 0, q), t)


def _int_rem(a, b, t):
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    q = np.asarray(_int_div(a, b, ScalarType("i64")), dtype=np.int64)
    return _fit(np.where(b64 == 0, 0, a64 - q * b64), t)


def _int_pow(a, b, t):
    a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.empty(np.broadcast(a64, b64).shape, dtype=np.int64)
    for i, (x, e) in enumerate(zip(np.broadcast_to(a64, out.shape).ravel(),
                                   np.broadcast_to(b64, out.shape).ravel())):
        x, e = int(x), int(e)
        if e < 0:
            r = 1 if x == 1 else (-1 if e % 2 else 1) if x == -1 else 0
        else:
            r = pow(x, e, 1 << 64)
        out.flat[i] = (r + (1 << 63)) % (1 << 64) - (1 << 63)
    return _fit(out if out.ndim else out[()], t)


def _shift(left: bool):
    def run(a, b, t):
        a64, b64 = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        bits = t.bits
        inside = (b64 >= 0) & (b64 < bits)
        amount = np.where(inside, b64, 0)
        if left:
            r = np.where(inside, np.left_shift(a64, amount), 0)
        else:
            r = np.where(inside, np.right_shift(a64, amount), np.where(a64 < 0, -1, 0))
        return _fit(r, t)

    return run


def _arith(float_fn, int_fn):
    def run(a, b, t):
        if _is_float(t):
            return _fit(float_fn(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)),
                        t)
        return int_fn(a, b, t)

    return run


def _wrap(fn):
    return lambda a, b, t: _fit(fn(np.asarray(a), np.asarray(b)), t)


BINARY: dict[str, Callable[[Any, Any, ScalarType], Any]] = {
    "add": _arith(np.add, _wrap(np.add)),
    "sub": _arith(np.subtract, _wrap(np.subtract)),
    "mul": _arith(np.multiply, _wrap(np.multiply)),
    "div": _arith(np.divide, _int_div),
    "rem": _arith(np.fmod, _int_rem),
    "pow": _arith(np.power, _int_pow),
    "max": _arith(np.maximum, _wrap(np.maximum)),
    "min": _arith(np.minimum, _wrap(np.minimum)),
    "atan2": _arith(np.arctan2, None),
    "and": _wrap(np.bitwise_and),
    "or": _wrap(np.bitwise_or),
    "xor": _wrap(np.bitwise_xor),
    "shl": _shift(True),
    "shr": _shift(False),
}

COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}


def cast(x: Any, src: ScalarType, dst: ScalarType) -> Any:
    """``loop.cast`` semantics on a numpy scalar or array."""
    if src == dst:
        return x
    if dst.is_bool:
        return np.not_equal(x, 0)
    if src.is_float and dst.is_int:
        info = np.iinfo(_COMPUTE[dst.name])
        f = np.trunc(np.asarray(x, dtype=np.float64))
        big, small = f >= 2.0 ** (info.bits - 1), f < -(2.0 ** (info.bits - 1))
        safe = np.where(big | small | np.isnan(f), 0.0, f).astype(np.int64)
        return _fit(np.where(big, info.max, np.where(small, info.min, safe)), dst)
    if src.is_bool:
        x = np.asarray(x).astype(np.int64)
    return _fit(np.asarray(x), dst)




def vreduce(fn: str, v: np.ndarray, t: ScalarType) -> Any:
    """``loop.vreduce``: lanes combined in order, NaN-propagating for max/min."""
    if fn in ("max", "min"):
        if t.is_float and np.isnan(v).any():
            return _fit(np.nan, t)
        return _fit(np.max(v) if fn == "max" else np.min(v), t)
    acc = v[0]
    for lane in v[1:]:
        acc = BINARY["add" if fn == "sum" else "mul"](acc, lane, t)
    return acc


# -- buffers ---------------------------------------------------------------------------
def _check_buffer(a: Any, t: MemRefType, what: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise LoopInterpError(f"{what}: expected a numpy array for {t}, got {type(a).__name__}")
    if a.dtype != t.dtype.numpy or a.ndim != t.rank:
        raise LoopInterpError(f"{what}: array of dtype {a.dtype} and rank {a.ndim} passed for {t}")
    for axis, (size, want) in enumerate(zip(a.shape, t.shape)):
        if want is not None and size != want:
            raise LoopInterpError(f"{what}: axis {axis} has size {size}, {t} needs {want}")
    if t.strides is None:
        if not a.flags.c_contiguous:
            raise LoopInterpError(f"{what}: {t} needs a contiguous array, got strides "
                                  f"{a.strides}")
    else:
        for axis, (st, want) in enumerate(zip(a.strides, t.strides)):
            if want is not None and a.size and a.shape[axis] > 1 and st != want * a.itemsize:
                raise LoopInterpError(f"{what}: axis {axis} has stride {st // a.itemsize}, "
                                      f"{t} needs {want}")
    return a


def _bounds(op: Op, a: np.ndarray, idx: tuple[int, ...], width: int = 1) -> None:
    for axis, (i, n) in enumerate(zip(idx, a.shape)):
        last = axis == len(idx) - 1
        hi = i + (width if last else 1)
        if i < 0 or hi > n:
            span = f"[{i}, {hi})" if last and width > 1 else str(i)
            raise LoopInterpError(f"{op.where()}: index {span} out of bounds for axis {axis} "
                                  f"of size {n} (shape {list(a.shape)})")


def _load_value(raw: Any, t: ScalarType) -> Any:
    return bf16_to_f32(raw) if t.name == "bf16" else raw


def _store_value(v: Any, t: ScalarType) -> Any:
    return f32_to_bf16(v) if t.name == "bf16" else v


# -- the interpreter -----------------------------------------------------------------
Env = dict  # Value -> numpy value
Step = Callable[[Env], None]


class _Compiler:
    """Turns each op into a closure once, so loops re-run closures, not dispatch."""

    def __init__(self, module: Module | None):
        self.module = module

    def block(self, block: Block) -> list[Step]:
        return [self.op(op) for op in block.ops if not isinstance(op, (L.Yield, Return))]

    def op(self, op: Op) -> Step:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            if isinstance(op, L.SUnary):
                return _unary(op)
            if isinstance(op, L.SBinary):
                return _binary(op)
            raise LoopInterpError(f"{op.where()}: not a loop-stage op")
        return handler(self, op)


def _scalar_type(t: Type) -> ScalarType:
    return element_type(t)


def _unary(op: Op) -> Step:
    fn = UNARY[op.fn]
    (x,), r, t = op.operands, op.result, _scalar_type(op.operands[0].type)

    def run(env: Env) -> None:
        env[r] = fn(env[x], t)

    return run


def _binary(op: Op) -> Step:
    (a, b), r, t = op.operands, op.result, _scalar_type(op.operands[0].type)
    if op.predicate:
        cmp = COMPARE[op.fn]

        def run(env: Env) -> None:
            env[r] = cmp(env[a], env[b])
    else:
        fn = BINARY[op.fn]
        if fn is None or (op.fn == "atan2" and not t.is_float):
            raise LoopInterpError(f"{op.where()}: unsupported type {t}")

        def run(env: Env) -> None:
            env[r] = fn(env[a], env[b], t)

    return run


def _const(c: _Compiler, op: Op) -> Step:
    r = op.result
    value = _fit(op.attrs["value"], r.type)

    def run(env: Env) -> None:
        env[r] = value

    return run


def _select(c: _Compiler, op: Op) -> Step:
    (cond, a, b), r = op.operands, op.result
    if isinstance(r.type, VectorType):
        def run(env: Env) -> None:
            env[r] = np.where(env[cond], env[a], env[b])
    else:
        def run(env: Env) -> None:
            env[r] = env[a] if env[cond] else env[b]
    return run


def _cast(c: _Compiler, op: Op) -> Step:
    (x,), r = op.operands, op.result
    src, dst = _scalar_type(x.type), _scalar_type(r.type)

    def run(env: Env) -> None:
        env[r] = cast(env[x], src, dst)

    return run


def _splat(c: _Compiler, op: Op) -> Step:
    (x,), r = op.operands, op.result
    width, dt = op.attrs["width"], _COMPUTE[r.type.dtype.name]

    def run(env: Env) -> None:
        env[r] = np.full(width, env[x], dtype=dt)

    return run


def _vreduce(c: _Compiler, op: Op) -> Step:
    (x,), r, fn = op.operands, op.result, op.attrs["fn"]
    t = r.type

    def run(env: Env) -> None:
        env[r] = vreduce(fn, env[x], t)

    return run


def _dim(c: _Compiler, op: Op) -> Step:
    (m,), r, axis = op.operands, op.result, op.attrs["axis"]

    def run(env: Env) -> None:
        env[r] = np.int64(env[m].shape[axis])

    return run


def _idx(env: Env, vals: list) -> tuple[int, ...]:
    return tuple(int(env[v]) for v in vals)


def _load(c: _Compiler, op: Op) -> Step:
    m, idx, r = op.operands[0], op.operands[1:], op.result
    t = m.type.dtype

    def run(env: Env) -> None:
        a = env[m]
        i = _idx(env, idx)
        _bounds(op, a, i)
        env[r] = _load_value(a[i], t)

    return run


def _store(c: _Compiler, op: Op) -> Step:
    v, m, idx = op.operands[0], op.operands[1], op.operands[2:]
    t = m.type.dtype

    def run(env: Env) -> None:
        a = env[m]
        i = _idx(env, idx)
        _bounds(op, a, i)
        a[i] = _store_value(env[v], t)

    return run


def _vload(c: _Compiler, op: Op) -> Step:
    m, idx, r = op.operands[0], op.operands[1:], op.result
    width, t = op.attrs["width"], m.type.dtype

    def run(env: Env) -> None:
        a = env[m]
        i = _idx(env, idx)
        _bounds(op, a, i, width)
        env[r] = _load_value(a[i[:-1] + (slice(i[-1], i[-1] + width),)].copy(), t)

    return run


def _vstore(c: _Compiler, op: Op) -> Step:
    v, m, idx = op.operands[0], op.operands[1], op.operands[2:]
    width, t = v.type.width, m.type.dtype

    def run(env: Env) -> None:
        a = env[m]
        i = _idx(env, idx)
        _bounds(op, a, i, width)
        a[i[:-1] + (slice(i[-1], i[-1] + width),)] = _store_value(env[v], t)

    return run


def _range(op: Op, env: Env) -> range:
    lb, ub, step = (int(env[v]) for v in op.operands[:3])
    if step <= 0:
        raise LoopInterpError(f"{op.where()}: step must be positive, got {step}")
    return range(lb, ub, step)


def _for(c: _Compiler, op: Op) -> Step:
    body = op.regions[0]
    steps = c.block(body)
    iv, carried_args = body.args[0], body.args[1:]
    inits = op.operands[3:]
    last = body.ops[-1] if body.ops else None
    yielded = list(last.operands) if isinstance(last, L.Yield) else []
    results = op.results

    def run(env: Env) -> None:
        values = [env[v] for v in inits]
        for i in _range(op, env):
            env[iv] = np.int64(i)
            for a, v in zip(carried_args, values):
                env[a] = v
            for s in steps:
                s(env)
            values = [env[v] for v in yielded]
        for r, v in zip(results, values):
            env[r] = v

    return run


def _parallel(c: _Compiler, op: Op) -> Step:
    body = op.regions[0]
    steps = c.block(body)
    iv = body.args[0]

    def run(env: Env) -> None:
        for i in reversed(_range(op, env)):
            env[iv] = np.int64(i)
            for s in steps:
                s(env)

    return run


def _alloc(c: _Compiler, op: Op) -> Step:
    r, sizes = op.result, op.operands
    t: MemRefType = r.type

    def run(env: Env) -> None:
        dyn = iter(int(env[v]) for v in sizes)
        shape = tuple(next(dyn) if d is None else d for d in t.shape)
        env[r] = np.full(shape, _poison(t.dtype), dtype=t.dtype.numpy)

    return run


def _poison(t: ScalarType) -> Any:
    """What a fresh buffer holds, so kernels that forget to write show it."""
    if t.name == "bf16":
        return 0x7FC1
    if t.is_float:
        return np.nan
    if t.is_bool:
        return True
    return np.iinfo(t.numpy).min + 77


def _call(c: _Compiler, op: Op) -> Step:
    if c.module is None:
        raise LoopInterpError(f"{op.where()}: loop.call needs the module of its kernels")
    name = op.attrs["kernel"].name
    try:
        kernel = c.module.get(name)
    except KeyError:
        raise LoopInterpError(f"{op.where()}: no kernel @{name} in the module") from None
    if kernel.kind != "kernel":
        raise LoopInterpError(f"{op.where()}: @{name} is a {kernel.kind}, not a kernel")
    args = op.operands
    cache: list = []

    def run(env: Env) -> None:
        if not cache:
            cache.append(_prepare(kernel, c.module))
        cache[0]([env[a] for a in args])

    return run


_HANDLERS: dict[type, Callable[[_Compiler, Op], Step]] = {
    L.SConst: _const, L.Select: _select, L.SCast: _cast, L.Splat: _splat, L.VReduce: _vreduce,
    L.Dim: _dim, L.Load: _load, L.Store: _store, L.VLoad: _vload, L.VStore: _vstore,
    L.For: _for, L.Parallel: _parallel, L.Alloc: _alloc, L.Call: _call,
}


def _prepare(graph: Graph, module: Module | None) -> Callable[[list], list]:
    steps = _Compiler(module).block(graph.body)
    returned = graph.returned

    def run(arrays: list) -> list:
        if len(arrays) != len(graph.args):
            raise LoopInterpError(f"@{graph.name} takes {len(graph.args)} buffers, got "
                                  f"{len(arrays)}")
        env: Env = {}
        for k, (a, v) in enumerate(zip(arrays, graph.args)):
            if isinstance(v.type, MemRefType):
                a = _check_buffer(a, v.type, f"@{graph.name} argument {k}")
            env[v] = a
        with np.errstate(all="ignore"):
            for s in steps:
                s(env)
        return [env[v] for v in returned]

    return run


def run_kernel(graph: Graph, *arrays: np.ndarray, module: Module | None = None) -> None:
    """Run one ``kernel`` graph on numpy arrays; it writes its output arrays in place."""
    if graph.kind != "kernel":
        raise LoopInterpError(f"@{graph.name} is a {graph.kind}, not a kernel")
    _prepare(graph, module)(list(arrays))


def run_program(module: Module, func_name: str | None, *arrays: np.ndarray) -> list[np.ndarray]:
    """Run the program ``func_name`` (the only func when None) of a loop-stage module."""
    funcs = [g for g in module.graphs if g.kind == "func"]
    if func_name is None:
        if len(funcs) != 1:
            raise LoopInterpError(f"module has {len(funcs)} funcs; name the one to run")
        graph = funcs[0]
    else:
        graph = module.get(func_name)
        if graph.kind != "func":
            raise LoopInterpError(f"@{func_name} is a kernel, not a program func")
    return _prepare(graph, module)(list(arrays))
