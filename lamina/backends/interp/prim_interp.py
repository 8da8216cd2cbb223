"""A numpy interpreter of prim-dialect funcs: the oracle every backend is tested against.

``TABLE`` maps each prim op name to its reference implementation (JAX-style "impl"
rules); ``run(graph_or_module, *arrays)`` evaluates a func op by op, entering
``prim.fusion`` regions. Only prim ops run here: tensor-dialect graphs must be
decomposed first.

Tensors are numpy arrays in their storage dtype (``ScalarType.numpy``; bf16 is a
uint16 bit pattern). These semantics define the prim dialect:

* Floats: every elementwise op computes on exact float64 values and rounds the
  result once, to nearest even, to the result dtype (so f16/bf16/f32 ``add``,
  ``sub``, ``mul``, ``div``, ``sqrt`` are correctly rounded, as in IEEE).
  ``max``/``min`` propagate NaN; ``rem`` is C ``fmod`` (sign of the dividend);
  ``round`` is half-to-even; ``sign`` is -1/0/+1 with ``sign(NaN) == 0`` (like
  ``torch.sign``); comparisons with NaN are false except ``ne``.
* Integers (i8, i32, i64, index) wrap modulo 2**bits. ``div`` truncates toward
  zero and ``rem`` has the sign of the dividend (C); ``x / 0 == x % 0 == 0`` and
  ``MIN / -1 == MIN``. ``pow`` with a negative exponent is ``trunc(1 / x**-e)``
  (1 for x == 1, +-1 for x == -1, else 0). ``shl`` by an amount outside
  ``[0, bits)`` gives 0; ``shr`` is arithmetic, fills with the sign bit for
  amounts >= bits and gives 0 for negative amounts (like torch).
  ``not``/``and``/``or``/``xor`` are bitwise on ints and logical on i1.
* ``cast``: floats to ints truncate toward zero (NaN and out-of-range values are
  implementation-defined; this interpreter saturates and maps NaN to 0); ints to
  ints wrap; anything to i1 is ``!= 0`` (NaN is true); to floats rounds once to
  nearest even (bf16 too, even from f64 or i64).
* ``const``/``pad`` values and ``iota`` indices must be representable in the
  dtype (a float value rounds to a float dtype; an int dtype needs an integral
  value in range).
* Reductions remove ``axes``; over zero elements they give the identity (sum 0,
  prod 1, max -inf / MIN / false, min +inf / MAX / true). f16 and bf16
  accumulate in f32, f32 in f32, f64 in f64; ints wrap.
* ``argmax``/``argmin`` return the first index (i64) of the extreme value; NaN
  counts as the extreme for both, so the result is the first NaN (this is what
  ``torch.argmax``/``torch.argmin`` and numpy do). An empty reduced axis is an
  error, as in torch.
* ``dot_general``: result axes are batch, lhs free, rhs free. f16/bf16 accumulate
  in f32, f32 in f32 (as PyTorch), f64 in f64; ints are exact modulo 2**bits; i1
  is or-of-ands.
* Movement ops check their run-time sizes: operand shapes of elementwise ops must
  be equal (broadcasting is explicit), ``reshape`` keeps the element count,
  ``broadcast`` needs size 1 or equal, ``slice`` must stay in bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lamina.backends.interp import numerics as nx
from lamina.ir import OPS, Block, Graph, Module, Op, Value, verify
from lamina.ir.dialects import elementwise as ew
from lamina.ir.types import ScalarType, TensorType


@dataclass(frozen=True)
class Call:
    """One application of a rule: the op being run, with its types at hand."""

    op: Op

    @property
    def attrs(self) -> dict[str, Any]:
        return self.op.attrs

    @property
    def in_types(self) -> list[TensorType]:
        return [v.type for v in self.op.operands]

    @property
    def out_type(self) -> TensorType:
        return self.op.result.type

    def error(self, message: str, *arrays: np.ndarray) -> ValueError:
        """A ValueError naming the op, its location and the run-time operand shapes."""
        shapes = ", ".join(f"{list(a.shape)} {t.dtype}" for a, t in zip(arrays, self.in_types))
        return ValueError(f"{self.op.where()}: {message}" + (f" (operands {shapes})" if shapes
                                                               else ""))


Rule = Callable[..., np.ndarray]
TABLE: dict[str, Rule] = {}


def _same_shapes(c: Call, *xs: np.ndarray) -> None:
    if len({x.shape for x in xs}) > 1:
        raise c.error("operand shapes differ at run time", *xs)


# -- elementwise ------------------------------------------------------------------
def _fsign(x: np.ndarray) -> np.ndarray:
    return (x > 0).astype(np.float64) - (x < 0).astype(np.float64)


def _logistic(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_FLOAT_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "neg": np.negative, "abs": np.abs, "sign": _fsign, "exp": np.exp, "exp2": np.exp2,
    "expm1": np.expm1, "log": np.log, "log2": np.log2, "log1p": np.log1p, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x), "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "tanh": np.tanh, "logistic": _logistic, "erf": nx.erf, "erfinv": nx.erfinv,
    "floor": np.floor, "ceil": np.ceil, "round": np.rint, "trunc": np.trunc, "isnan": np.isnan,
}
_INT_UNARY = {"neg": np.negative, "abs": np.abs, "sign": np.sign, "not": np.invert}
_BOOL_UNARY = {"not": np.logical_not}

_FLOAT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "rem": np.fmod,
    "pow": np.power, "max": np.maximum, "min": np.minimum, "atan2": np.arctan2,
}
_INT_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": nx.int_div, "rem": nx.int_rem,
    "pow": nx.int_pow, "max": np.maximum, "min": np.minimum, "and": np.bitwise_and,
    "or": np.bitwise_or, "xor": np.bitwise_xor, "shl": nx.shl, "shr": nx.shr,
}
_BOOL_BINARY = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}
_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
            "gt": np.greater, "ge": np.greater_equal}


def _pick(table: tuple[dict, dict, dict], fn: str, t: ScalarType, c: Call) -> Callable:
    floats, ints, bools = table
    family = floats if t.is_float else ints if t.is_int else bools
    if fn not in family:
        raise TypeError(f"{c.op.where()}: {fn} is not defined on {t}")
    return family[fn]


def _values(x: np.ndarray, t: ScalarType) -> np.ndarray:
    """What an elementwise op computes on: float64 for floats, the stored ints/bools otherwise."""
    return nx.as_f64(x, t) if t.is_float else x


def _unary(fn: str) -> Rule:
    def rule(c: Call, x: np.ndarray) -> np.ndarray:
        t = c.in_types[0].dtype
        f = _pick((_FLOAT_UNARY, _INT_UNARY, _BOOL_UNARY), fn, t, c)
        return nx.convert(f(_values(x, t)), c.out_type.dtype)

    return rule


def _binary(fn: str) -> Rule:
    def rule(c: Call, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        _same_shapes(c, x, y)
        t = c.in_types[0].dtype
        f = _pick((_FLOAT_BINARY, _INT_BINARY, _BOOL_BINARY), fn, t, c)
        return nx.convert(f(_values(x, t), _values(y, t)), c.out_type.dtype)

    return rule


def _compare(fn: str) -> Rule:
    def rule(c: Call, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        _same_shapes(c, x, y)
        t = c.in_types[0].dtype
        return _COMPARE[fn](_values(x, t), _values(y, t))

    return rule


TABLE.update({f"prim.{f}": _unary(f) for f in ew.UNARY})
TABLE.update({f"prim.{f}": _binary(f) for f in ew.BINARY})
TABLE.update({f"prim.{f}": _compare(f) for f in ew.COMPARE})


def _where(c: Call, cond: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    _same_shapes(c, cond, x, y)
    return np.where(cond, x, y)


def _cast(c: Call, x: np.ndarray) -> np.ndarray:
    return nx.convert(nx.decode(x, c.in_types[0].dtype), c.attrs["dtype"])


# -- sources ----------------------------------------------------------------------
def _const(c: Call) -> np.ndarray:
    t = c.out_type
    value = nx.scalar_storage(c.attrs["value"], t.dtype, c.op.where())
    return np.full(t.shape, value, t.dtype.numpy)


def _iota(c: Call) -> np.ndarray:
    t = c.out_type
    dim = c.attrs["dim"]
    n = t.shape[dim]
    if n and not t.dtype.is_float:
        nx.scalar_storage(n - 1, t.dtype, c.op.where())  # the largest index must fit
    idx = nx.convert(np.arange(n, dtype=np.int64), t.dtype)
    view = [1] * t.rank
    view[dim] = n
    return np.broadcast_to(idx.reshape(view), t.shape).copy()


# -- reductions ---------------------------------------------------------------------
def _accumulator(t: ScalarType) -> np.dtype:
    if t.is_float:
        return np.dtype(np.float64 if t.name == "f64" else np.float32)
    return t.numpy


def _extremes(dtype: np.dtype) -> tuple[Any, Any]:
    """The identities of max and min: the lowest and highest values of ``dtype``."""
    if dtype.kind == "f":
        return -np.inf, np.inf
    if dtype.kind == "b":
        return False, True
    info = np.iinfo(dtype)
    return info.min, info.max


def _reduce(fn: str) -> Rule:
    def rule(c: Call, x: np.ndarray) -> np.ndarray:
        t = c.in_types[0].dtype
        axes = tuple(c.attrs["axes"])
        v = nx.decode(x, t).astype(_accumulator(t))
        if fn == "sum":
            r = np.sum(v, axis=axes, dtype=v.dtype)
        elif fn == "prod":
            r = np.prod(v, axis=axes, dtype=v.dtype)
        else:
            lo, hi = _extremes(v.dtype)
            ufunc = np.maximum if fn == "max" else np.minimum
            r = ufunc.reduce(v, axis=axes, initial=lo if fn == "max" else hi)
        return nx.convert(np.asarray(r), t)

    return rule


def _arg(fn: str) -> Rule:
    def rule(c: Call, x: np.ndarray) -> np.ndarray:
        t = c.in_types[0].dtype
        axis = c.attrs["axis"]
        if x.shape[axis] == 0:
            raise c.error(f"arg{fn} over an empty axis {axis}", x)
        v = nx.decode(x, t)
        return (np.argmax if fn == "max" else np.argmin)(v, axis=axis).astype(np.int64)

    return rule


TABLE.update({f"prim.reduce_{f}": _reduce(f) for f in ("sum", "prod", "max", "min")})
TABLE.update({f"prim.arg{f}": _arg(f) for f in ("max", "min")})


# -- movement -----------------------------------------------------------------------
def _reshape(c: Call, x: np.ndarray) -> np.ndarray:
    shape = tuple(c.attrs["shape"])
    if int(np.prod(shape, dtype=np.int64)) != x.size:
        raise c.error(f"cannot reshape {x.size} elements to {list(shape)}", x)
    return x.reshape(shape)


def _reshape_tail(c: Call, x: np.ndarray) -> np.ndarray:
    """Keep the leading ``keep`` axes (symbolic batch sizes), reshape the static rest."""
    keep = int(c.attrs["keep"])
    tail = tuple(c.attrs["shape"])[keep:]
    if int(np.prod(tail, dtype=np.int64)) != int(np.prod(x.shape[keep:], dtype=np.int64)):
        raise c.error(f"cannot reshape the tail {list(x.shape[keep:])} to {list(tail)}", x)
    return x.reshape(x.shape[:keep] + tail)


def _permute(c: Call, x: np.ndarray) -> np.ndarray:
    return np.transpose(x, c.attrs["perm"])


def _broadcast_stretchy(c: Call, x: np.ndarray) -> tuple[np.ndarray, frozenset[int]]:
    """Broadcast, and the result axes whose ``?`` size it cannot know (left at size 1).

    Such an axis is new (not mapped from the operand) or mapped from a size-1 axis;
    the elementwise op that consumes the value stretches it to the other operands' size.
    """
    shape, dims = tuple(c.attrs["shape"]), tuple(c.attrs["dims"])
    source = dict(zip(dims, x.shape))
    sizes: list[int] = []
    stretchy: set[int] = set()
    for d, n in enumerate(shape):
        src = source.get(d, 1)
        if n is not None and src not in (1, n):
            raise c.error(f"cannot broadcast to {list(shape)} with dims {list(dims)}", x)
        if n is None and src == 1:
            stretchy.add(d)
        sizes.append(src if n is None else n)
    view = [1] * len(shape)
    for src, d in zip(x.shape, dims):
        view[d] = src
    return np.broadcast_to(x.reshape(view), sizes), frozenset(stretchy)


def _broadcast(c: Call, x: np.ndarray) -> np.ndarray:
    return _broadcast_stretchy(c, x)[0]


def _slice(c: Call, x: np.ndarray) -> np.ndarray:
    start, stop, step = c.attrs["start"], c.attrs["stop"], c.attrs["step"]
    for d, (n, b) in enumerate(zip(x.shape, stop)):
        if b > n:
            raise c.error(f"slice stop {b} is past the size {n} of axis {d}", x)
    return x[tuple(slice(a, b, s) for a, b, s in zip(start, stop, step))]


def _pad(c: Call, x: np.ndarray) -> np.ndarray:
    t = c.out_type.dtype
    value = nx.scalar_storage(c.attrs["value"], t, c.op.where())
    if x.ndim == 0:  # np.pad rejects an empty pad width
        return x.copy()
    return np.pad(x, list(zip(c.attrs["low"], c.attrs["high"])), constant_values=value)


def _concat(c: Call, *xs: np.ndarray) -> np.ndarray:
    axis = c.attrs["axis"]
    rests = {x.shape[:axis] + x.shape[axis + 1:] for x in xs}
    if len(rests) > 1:
        raise c.error(f"concat along axis {axis}: other sizes differ at run time", *xs)
    return np.concatenate(xs, axis=axis)


# -- contraction --------------------------------------------------------------------
def _dot_general(c: Call, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lb, rb = tuple(c.attrs["lhs_batch"]), tuple(c.attrs["rhs_batch"])
    lc, rc = tuple(c.attrs["lhs_contract"]), tuple(c.attrs["rhs_contract"])
    for i, j in zip(lb + lc, rb + rc):
        if a.shape[i] != b.shape[j]:
            raise c.error(f"lhs axis {i} (size {a.shape[i]}) does not match rhs axis {j} "
                          f"(size {b.shape[j]})", a, b)
    t = c.in_types[0].dtype
    lfree = tuple(i for i in range(a.ndim) if i not in lb + lc)
    rfree = tuple(i for i in range(b.ndim) if i not in rb + rc)

    def size(x: np.ndarray, axes: tuple[int, ...]) -> int:
        return int(np.prod([x.shape[i] for i in axes], dtype=np.int64))

    acc = np.dtype(np.int64) if not t.is_float else _accumulator(t)
    av = nx.decode(a, t).astype(acc)
    bv = nx.decode(b, t).astype(acc)
    nb, m, k, n = size(a, lb), size(a, lfree), size(a, lc), size(b, rfree)
    lhs = np.transpose(av, lb + lfree + lc).reshape(nb, m, k)
    rhs = np.transpose(bv, rb + rc + rfree).reshape(nb, k, n)
    shape = tuple(a.shape[i] for i in lb + lfree) + tuple(b.shape[i] for i in rfree)
    out = np.matmul(lhs, rhs).reshape(shape)
    return nx.convert(out, t)


TABLE.update({
    "prim.where": _where, "prim.cast": _cast, "prim.const": _const, "prim.iota": _iota,
    "prim.reshape": _reshape, "prim.reshape_tail": _reshape_tail, "prim.permute": _permute,
    "prim.broadcast": _broadcast,
    "prim.slice": _slice, "prim.pad": _pad, "prim.concat": _concat,
    "prim.dot_general": _dot_general,
})

# Ops the interpreter handles itself rather than through a rule.
STRUCTURAL = frozenset({"prim.fusion", "prim.yield", "return"})


# -- the interpreter -------------------------------------------------------------------
def _select(g: Graph | Module, func_name: str | None) -> Graph:
    if isinstance(g, Graph):
        if func_name is not None and func_name != g.name:
            raise KeyError(f"run: graph is @{g.name}, not @{func_name}")
        graph = g
    elif func_name is not None:
        graph = g.get(func_name)
    else:
        funcs = [x for x in g.graphs if x.kind == "func"]
        if len(funcs) != 1:
            raise ValueError(f"run: the module has {len(funcs)} funcs "
                             f"({', '.join('@' + x.name for x in funcs)}); pass func_name")
        graph = funcs[0]
    if graph.kind != "func":
        raise TypeError(f"run: @{graph.name} is a {graph.kind}; the prim interpreter runs funcs")
    return graph


def _check_array(x: np.ndarray, t: TensorType, what: str) -> None:
    shape_ok = x.ndim == t.rank and all(d is None or d == s for d, s in zip(t.shape, x.shape))
    if x.dtype != t.dtype.numpy or not shape_ok:
        raise ValueError(f"{what}: expected {t} (numpy {t.dtype.numpy}), got "
                         f"{x.dtype} array of shape {list(x.shape)}")


def _bind_args(graph: Graph, arrays: tuple[Any, ...]) -> list[np.ndarray]:
    sig = ", ".join(f"{a.type}" for a in graph.args)
    if len(arrays) != len(graph.args):
        raise TypeError(f"run: @{graph.name}({sig}) takes {len(graph.args)} arguments, "
                        f"got {len(arrays)}")
    out = []
    for i, (x, a) in enumerate(zip(arrays, graph.args)):
        if not isinstance(a.type, TensorType):
            raise TypeError(f"run: argument {i} of @{graph.name} has type {a.type}; the prim "
                            "interpreter takes tensors only")
        if not isinstance(x, (np.ndarray, np.generic)):
            raise TypeError(f"run: argument {i} of @{graph.name} must be a numpy array, "
                            f"got {type(x).__name__}")
        x = np.asarray(x)
        if x.dtype != a.type.dtype.numpy:
            raise TypeError(f"run: argument {i} of @{graph.name} must have dtype "
                            f"{a.type.dtype.numpy} for {a.type}, got {x.dtype}")
        _check_array(x, a.type, f"run: argument {i} of @{graph.name}")
        out.append(x)
    return out


def _unsupported(op: Op) -> str:
    if op.name.startswith("prim."):
        return f"prim interpreter: no rule for {op.where()}"
    return f"prim interpreter: {op.where()} is not a prim op; decompose the graph first"


class _Frame:
    """Values of the running graph, and which of their axes are stretchy.

    A stretchy axis is a size-1 axis left by a broadcast to a ``?`` size (see
    ``_broadcast_stretchy``); elementwise ops stretch it to their other operands'
    size, permute and broadcast carry it along, and any other use is an error,
    since its real size is unknowable there.
    """

    def __init__(self) -> None:
        self.env: dict[Value, np.ndarray] = {}
        self.stretchy: dict[Value, frozenset[int]] = {}

    def bind(self, value: Value, x: np.ndarray, stretchy: frozenset[int] = frozenset()) -> None:
        self.env[value] = x
        if stretchy:
            self.stretchy[value] = stretchy

    def get(self, values: list[Value]) -> tuple[list[np.ndarray], list[frozenset[int]]]:
        empty: frozenset[int] = frozenset()
        return [self.env[v] for v in values], [self.stretchy.get(v, empty) for v in values]


def _stretch(op: Op, xs: list[np.ndarray], axes: list[frozenset[int]]
             ) -> tuple[list[np.ndarray], frozenset[int]]:
    """Stretch the operands of an elementwise op; returns them and the result's stretchy axes."""
    every = frozenset.intersection(*axes)
    target = list(max(xs, key=lambda x: x.ndim).shape)
    for a in frozenset.union(*axes) - every:
        target[a] = max(x.shape[a] for x, w in zip(xs, axes) if a not in w)
    out = []
    for x, w in zip(xs, axes):
        shape = [target[a] if a in w else n for a, n in enumerate(x.shape)]
        out.append(np.broadcast_to(x, shape) if w else x)
    return out, every


def _stretchy_result(op: Op, xs: list[np.ndarray], axes: list[frozenset[int]]
                     ) -> tuple[list[np.ndarray], frozenset[int]]:
    if not any(axes) or op.name == "prim.fusion":  # a fusion's region args carry them
        return xs, frozenset()
    if op.has("elementwise"):
        return _stretch(op, xs, axes)
    if op.name == "prim.permute":
        perm = list(op.attrs["perm"])
        return xs, frozenset(perm.index(a) for a in axes[0])
    if op.name == "prim.broadcast":
        dims = op.attrs["dims"]
        return xs, frozenset(dims[a] for a in axes[0] if op.attrs["shape"][dims[a]] is None)
    i = next(i for i, w in enumerate(axes) if w)
    raise ValueError(f"prim interpreter: {op.where()} needs the run-time size of axis "
                     f"{min(axes[i])} of operand {i}, which comes from a broadcast to a ? size "
                     "that nothing determines")


def _run_block(block: Block, frame: _Frame) -> list[Value]:
    """Run a block's ops; returns the values named by its terminator."""
    for op in block.ops:
        if op.name in ("return", "prim.yield"):
            return list(op.operands)
        args, axes = frame.get(op.operands)
        args, out_axes = _stretchy_result(op, args, axes)
        if op.name == "prim.fusion":
            for a, x, w in zip(op.regions[0].args, args, axes):
                frame.bind(a, x, w)
            yielded = _run_block(op.regions[0], frame)
            outs, outs_axes = frame.get(yielded)
        else:
            rule = TABLE.get(op.name)
            if rule is None:
                raise NotImplementedError(_unsupported(op))
            if op.name == "prim.broadcast":
                out, fresh = _broadcast_stretchy(Call(op), *args)
                out_axes = out_axes | fresh
            else:
                out = rule(Call(op), *args)
            outs, outs_axes = [np.asarray(out)], [out_axes]
        for r, x, w in zip(op.results, outs, outs_axes):
            _check_array(x, r.type, f"{op.where()}: result")
            frame.bind(r, x, w)
    return []


def run(graph_or_module: Graph | Module, *arrays: Any, func_name: str | None = None
        ) -> list[np.ndarray]:
    """Evaluate a prim-dialect func on numpy arrays; returns fresh arrays for its results.

    Arrays must match the func's argument types exactly (dtype ``ScalarType.numpy``,
    bf16 as uint16 bits; rank; static sizes). The graph is verified first.
    """
    graph = _select(graph_or_module, func_name)
    verify(graph)
    frame = _Frame()
    for a, x in zip(graph.args, _bind_args(graph, arrays)):
        frame.bind(a, x)
    with np.errstate(all="ignore"):
        results, axes = frame.get(_run_block(graph.body, frame))
    for i, w in enumerate(axes):
        if w:
            raise ValueError(f"run: result {i} of @{graph.name} has axis {min(w)} from a "
                             "broadcast to a ? size that nothing determines")
    return [np.array(x, copy=True) for x in results]


def unsupported_ops() -> list[str]:
    """Registered prim op names without a rule (empty when the table is complete)."""
    return sorted(n for n in OPS if n.startswith("prim.") and n not in TABLE
                  and n not in STRUCTURAL)


__all__ = ["Call", "TABLE", "run", "unsupported_ops"]
