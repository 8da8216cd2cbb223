"""The eager tensor operations: type promotion, broadcasting and checks in Python,
then one generated kernel per call (or one op appended to the trace).

Every op is a ``build`` function over IR values plus a signature key; the same
``build`` runs eagerly (``dispatch.run_eager``) or inside ``lamina.compile``.
"""

from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any, Sequence

import numpy as np

from lamina.frontend import dispatch, trace
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import Tensor, _dim
from lamina.ir import Builder, Value
from lamina.ir.types import i64

Number = (bool, int, float)


# -- helpers ----------------------------------------------------------------------
def _alloc(shape: Sequence[int], dtype: dt.dtype) -> np.ndarray:
    """Uninitialised storage on the device the running op works on (see dispatch.on_device)."""
    dev = dispatch.current_device()
    if dev is not None:
        from lamina.runtime.cuda.array import CudaArray

        return CudaArray.empty(dev, tuple(shape), dtype.numpy)
    return _host_alloc(shape, dtype)


def _host_alloc(shape: Sequence[int], dtype: dt.dtype) -> np.ndarray:
    from lamina.runtime import empty

    return empty(tuple(shape), dtype.numpy)


def _check_tensor(x: Any, op: str, arg: str = "input") -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): argument '{arg}' must be Tensor, not {type(x).__name__}")
    return x


def broadcast_shapes(*shapes: Sequence[int], op: str = "broadcast") -> tuple[int, ...]:
    """PyTorch's broadcasting, with PyTorch's error message (plus the op name)."""
    rank = builtins.max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate(s):
            j = rank - len(s) + i
            if d != 1:
                if out[j] != 1 and out[j] != d:
                    raise RuntimeError(
                        f"{op}: The size of tensor a ({out[j]}) must match the size of tensor "
                        f"b ({d}) at non-singleton dimension {j}; shapes "
                        f"{[list(x) for x in shapes]}"
                    )
                out[j] = d
    return tuple(out)


def _expand_strides(a: np.ndarray, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Byte strides of ``a`` broadcast to ``shape`` (0 on broadcast axes)."""
    lead = len(shape) - a.ndim
    return tuple(
        0 if i < lead or a.shape[i - lead] == 1 and shape[i] != 1 else a.strides[i - lead]
        for i in range(len(shape))
    )


def _collapse(shape: tuple[int, ...], strides: list[tuple[int, ...]]
              ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Drop size-1 axes and merge adjacent axes that are contiguous in every operand.

    The output is contiguous, so two axes merge when each input steps over the
    inner axis exactly as a contiguous buffer would. Fewer axes mean fewer
    kernel variants and longer inner loops to vectorise.
    """
    keep = [i for i, d in enumerate(shape) if d != 1]
    cshape: list[int] = []
    cstr: list[list[int]] = [[] for _ in strides]
    for i in keep:
        if cshape and all(
            st[-1] == s[i] * shape[i] if s[i] != 0 else st[-1] == 0
            for st, s in zip(cstr, strides)
        ):
            cshape[-1] *= shape[i]
            for st, s in zip(cstr, strides):
                st[-1] = s[i]
            continue
        cshape.append(shape[i])
        for st, s in zip(cstr, strides):
            st.append(s[i])
    return tuple(cshape), [tuple(s) for s in cstr]


def _restride(a: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of ``a``'s memory with new shape and byte strides."""
    if type(a) is not np.ndarray:
        return a.as_strided(shape, strides)
    if a.flags.c_contiguous:
        # numpy checks that the view stays inside a's buffer
        v = np.ndarray(shape, a.dtype, buffer=a, strides=strides)
    else:
        v = np.lib.stride_tricks.as_strided(a, shape, strides)
    v.flags.writeable = False
    return v


def _scalar_array(x: bool | int | float, dtype: dt.dtype) -> np.ndarray:
    """A 0-d buffer holding a Python number (the number is an argument, not a constant,
    so a new value never compiles a new kernel)."""
    store = dt.float32 if dtype in (dt.float16, dt.bfloat16) else dtype
    return np.array(x, dtype=store.numpy)


# -- elementwise ------------------------------------------------------------------
def _elementwise(key: tuple, op: str, args: Sequence[Any], compute: dt.dtype, out: dt.dtype,
                 shape: tuple[int, ...] | None = None) -> Tensor:
    """Apply tensor-dialect op ``op`` to ``args`` (tensors or numbers), computing in
    ``compute`` and returning ``out``."""

    def build(b: Builder, *vals: Value) -> Value:
        vals = tuple(_cast(b, v, compute) for v in vals)
        return _cast(b, b(op, *vals), out)

    return _apply_elementwise(key, build, args, compute, out, shape)


def _apply_elementwise(key: tuple, build, args: Sequence[Any], scalar_dtype: dt.dtype,
                       out: dt.dtype, shape: tuple[int, ...] | None = None) -> Tensor:
    """Run an elementwise ``build`` over broadcast ``args``; numbers become 0-d
    arguments of ``scalar_dtype`` (constants when tracing)."""
    semantic = build  # over the op's own (broadcasting) arguments
    if shape is not None:
        def semantic(b: Builder, *vals: Value) -> Value:
            r = build(b, *vals)
            return r if tuple(r.type.shape) == shape else b("tensor.expand", r, shape=shape)

    # eagerly, the arguments arrive already broadcast (stride 0) to one shape
    return dispatch.apply(str(key[1] if len(key) > 1 else key[0]), semantic, args,
                          lambda: _eager_elementwise(key, build, args, scalar_dtype, out, shape),
                          scalar_dtype)


def _eager_elementwise(key: tuple, build, args: Sequence[Any], scalar_dtype: dt.dtype,
                       out: dt.dtype, shape: tuple[int, ...] | None) -> Tensor:
    arrays, types = [], []
    for x in args:
        if isinstance(x, Tensor):
            # eager (dispatch.apply saw no trace): a tensor has its array, or is a symbolic
            # one leaked out of a trace, which _concrete reports
            a = x._a
            arrays.append(a if a is not None else x._concrete(str(key[0])))
            types.append(x._dtype)
        else:
            arr = _scalar_array(x, scalar_dtype)
            arrays.append(arr)
            types.append(dt.from_numpy(arr.dtype))
    fast = _flat_views(arrays, shape)
    if fast is not None:
        views, layouts, out_shape = fast
        (res,) = dispatch.run_eager(key, build, views, [t.ir for t in types], layouts)
        return Tensor._wrap(res.reshape(out_shape), out)
    shapes = [a.shape for a in arrays] + ([shape] if shape is not None else [])
    out_shape = broadcast_shapes(*shapes, op=str(key[1] if len(key) > 1 else key[0]))
    if shape is not None and out_shape != shape:
        raise RuntimeError(f"cannot broadcast {[list(s) for s in shapes[:-1]]} to {list(shape)}")
    if 0 in out_shape:
        return Tensor._wrap(_alloc(out_shape, out), out)
    strides = [_expand_strides(a, out_shape) for a in arrays]
    cshape, cstrides = _collapse(out_shape, strides)
    views = [_restride(a, cshape, s) for a, s in zip(arrays, cstrides)]
    (res,) = dispatch.run_eager(key, build, views, [t.ir for t in types])
    return Tensor._wrap(res.reshape(out_shape), out)


def _flat_views(arrays: list[np.ndarray], shape: tuple[int, ...] | None) -> Any:
    """The common case without broadcasting work: contiguous tensors of one shape,
    plus 0-d numbers, seen as 1-d (a 0-d number as a stride-0 vector)."""
    out_shape = shape
    for a in arrays:
        if not a.flags.c_contiguous:
            return None
        if a.ndim:
            if out_shape is None:
                out_shape = a.shape
            elif a.shape != out_shape:
                return None
    if out_shape is None:
        out_shape = ()
    n = 1
    for d in out_shape:
        n *= d
    if n == 0:
        return None
    views, layouts = [], []
    for a in arrays:
        if a.ndim:
            views.append(a.reshape(n))
            layouts.append(_UNIT)
        elif type(a) is not np.ndarray:
            views.append(a.as_strided((n,), (0,)))
            layouts.append(_BROADCAST)
        else:
            views.append(np.ndarray((n,), a.dtype, buffer=a, strides=(0,)))
            layouts.append(_BROADCAST)
    return views, tuple(layouts), out_shape


_UNIT = (1,)
_BROADCAST = (0,)


def _cast(b: Builder, v: Value, to: dt.dtype) -> Value:
    if v.type.dtype == to.ir:
        return v
    if to in (dt.float16, dt.bfloat16) and v.type.dtype.name in ("f64", "i64", "i32"):
        # PyTorch converts to float16/bfloat16 through float32 (so it rounds twice)
        v = b("tensor.cast", v, dtype=dt.float32.ir)
    return b("tensor.cast", v, dtype=to.ir)


def _dtypes_of(args: Sequence[Any]) -> tuple[list[tuple[dt.dtype, int]], list[Any]]:
    tensors, scalars = [], []
    for x in args:
        if isinstance(x, Tensor):
            tensors.append((x._dtype, x.ndim))
        elif isinstance(x, Number):
            scalars.append(x)
        else:
            raise TypeError(f"unsupported operand type {type(x).__name__}")
    return tensors, scalars


def _binary(fn: str, a: Any, b: Any, kind: str = "arith") -> Tensor:
    a, b = (x.item() if isinstance(x, np.generic) else x for x in (a, b))  # numpy scalars
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{fn}(): expected at least one Tensor argument")
    compute = dt.result_type(*_dtypes_of((a, b)))
    out = compute
    if kind == "truediv" and compute.category < 2:
        compute = out = dt.default_float
    elif kind == "compare":
        out = dt.bool_
    elif kind == "logical":
        compute = out = dt.bool_
    if fn in ("mul", "truediv") and compute in _HALF and _opmath_scalar(fn, a, b):
        # PyTorch multiplies and divides a float16/bfloat16 tensor by a number (or by a 0-d
        # tensor as the second operand) in float32, the number not rounded to the half type
        compute = dt.float32
    tname = _TENSOR_NAME.get(fn, fn)
    if kind == "arith" and compute is dt.bool_:
        if fn == "sub":
            raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not "
                               "supported. Use the `^` or `logical_xor()` operator instead.")
        # on bools, + and max are "or"; * and min are "and" (PyTorch's results)
        tname = _BOOL_ARITH.get(fn, tname)
    return _elementwise(("ew", tname, compute.name, out.name), f"tensor.{tname}", (a, b),
                        compute, out)


_HALF = (dt.float16, dt.bfloat16)


def _opmath_scalar(fn: str, a: Any, b: Any) -> bool:
    if isinstance(b, Number) or isinstance(b, Tensor) and b.ndim == 0:
        return True
    return fn == "mul" and isinstance(a, Number)


_TENSOR_NAME = {"maximum": "maximum", "minimum": "minimum", "truediv": "div",
                "logical_and": "and", "logical_or": "or", "logical_xor": "xor",
                "remainder_c": "rem"}

_BOOL_ARITH = {"add": "or", "maximum": "or", "mul": "and", "minimum": "and"}

_FLOAT_UNARY = {"exp", "exp2", "expm1", "log", "log2", "log1p", "sqrt", "rsqrt", "sin", "cos",
                "tan", "tanh", "erf", "erfinv", "sigmoid"}


def _unary(fn: str, x: Tensor) -> Tensor:
    _check_tensor(x, fn)
    dtype = x._dtype
    tname = {"sigmoid": "logistic", "logical_not": "not"}.get(fn, fn)
    compute = out = dtype
    if fn in _FLOAT_UNARY and dtype.category < 2:
        compute = out = dt.default_float
    if fn in ("isnan",):
        out = dt.bool_
        if dtype.category < 2:
            return zeros(x.shape, dtype=dt.bool_)
    if fn == "logical_not":
        compute = out = dt.bool_
    if fn == "neg" and dtype is dt.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported.")
    if fn in ("floor", "ceil", "round", "trunc") and dtype.category < 2:
        return clone(x)
    if fn == "relu":
        return _elementwise(("relu", dtype.name), "tensor.relu", (x,), dtype, dtype)
    return _elementwise(("ew", tname, compute.name, out.name), f"tensor.{tname}", (x,),
                        compute, out)


def result_type(tensor1: Any, tensor2: Any) -> dt.dtype:
    """``torch.result_type`` of two tensors or numbers."""
    return dt.result_type(*_dtypes_of((tensor1, tensor2)))


def add(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("add", input, other)


def sub(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    if alpha != 1:
        other = mul(other, alpha)
    return _binary("sub", input, other)


def mul(input: Any, other: Any) -> Tensor:
    return _binary("mul", input, other)


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    if rounding_mode is None:
        return _binary("truediv", input, other, "truediv")
    from lamina.frontend import ops_math

    if rounding_mode == "floor":
        return ops_math.floor_divide(input, other)
    if rounding_mode == "trunc":
        return ops_math._division("div_trunc", "div_trunc_cpu", input, other,
                                  lambda e, x, y: e("div", x, y),
                                  lambda e, x, y: e("trunc", e("div", x, y)))
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
                     f"found '{rounding_mode}'")


def rdiv(self: Tensor, other: Any) -> Tensor:
    """``number / tensor`` (``Tensor.__rtruediv__``): ``reciprocal(tensor) * number``, rounded
    twice, as PyTorch computes it."""
    return mul(_binary("truediv", 1, self, "truediv"), other)


def pow(input: Any, exponent: Any) -> Tensor:  # noqa: A001 - PyTorch's name
    return _binary("pow", input, exponent)


def maximum(input: Tensor, other: Tensor) -> Tensor:
    _check_tensor(input, "maximum")
    _check_tensor(other, "maximum", "other")
    return _binary("maximum", input, other)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    _check_tensor(input, "minimum")
    _check_tensor(other, "minimum", "other")
    return _binary("minimum", input, other)


def eq(input: Any, other: Any) -> Tensor:
    return _binary("eq", input, other, "compare")


def ne(input: Any, other: Any) -> Tensor:
    return _binary("ne", input, other, "compare")


def lt(input: Any, other: Any) -> Tensor:
    return _binary("lt", input, other, "compare")


def le(input: Any, other: Any) -> Tensor:
    return _binary("le", input, other, "compare")


def gt(input: Any, other: Any) -> Tensor:
    return _binary("gt", input, other, "compare")


def ge(input: Any, other: Any) -> Tensor:
    return _binary("ge", input, other, "compare")


def logical_and(input: Any, other: Any) -> Tensor:
    return _binary("logical_and", input, other, "logical")


def logical_or(input: Any, other: Any) -> Tensor:
    return _binary("logical_or", input, other, "logical")


def logical_xor(input: Any, other: Any) -> Tensor:
    return _binary("logical_xor", input, other, "logical")


def _unary_fn(fn: str):
    def f(input: Tensor) -> Tensor:
        return _unary(fn, input)

    f.__name__ = fn
    f.__doc__ = f"Elementwise {fn} (a generated kernel)."
    return f


neg = _unary_fn("neg")
abs = _unary_fn("abs")  # noqa: A001
exp = _unary_fn("exp")
exp2 = _unary_fn("exp2")
expm1 = _unary_fn("expm1")
log = _unary_fn("log")
log2 = _unary_fn("log2")
log1p = _unary_fn("log1p")
sqrt = _unary_fn("sqrt")
rsqrt = _unary_fn("rsqrt")
sin = _unary_fn("sin")
cos = _unary_fn("cos")
tan = _unary_fn("tan")
tanh = _unary_fn("tanh")
sigmoid = _unary_fn("sigmoid")
erf = _unary_fn("erf")
floor = _unary_fn("floor")
ceil = _unary_fn("ceil")
round = _unary_fn("round")  # noqa: A001
trunc = _unary_fn("trunc")
sign = _unary_fn("sign")
relu = _unary_fn("relu")
isnan = _unary_fn("isnan")
logical_not = _unary_fn("logical_not")


def where(condition: Tensor, input: Any, other: Any) -> Tensor:
    _check_tensor(condition, "where", "condition")
    if condition._dtype is not dt.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a "
                           f"tensor with dtype {condition._dtype.name}")
    compute = dt.result_type(*_dtypes_of((input, other)))

    def build(b: Builder, c: Value, x: Value, y: Value) -> Value:
        return b("tensor.where", c, _cast(b, x, compute), _cast(b, y, compute))

    return _apply_elementwise(("where", compute.name), build, (condition, input, other),
                              compute, compute)


def cast(x: Tensor, dtype: dt.dtype) -> Tensor:
    """A copy converted to ``dtype`` (``Tensor.to(dtype)``)."""
    _check_tensor(x, "to")
    return _elementwise(("cast", dtype.name), "tensor.copy", (x,), dtype, dtype)


def clone(x: Tensor) -> Tensor:
    _check_tensor(x, "clone")
    return _elementwise(("copy", x._dtype.name), "tensor.copy", (x,), x._dtype, x._dtype)


def contiguous(x: Tensor) -> Tensor:
    if x._a is not None and x._a.flags.c_contiguous:
        return x
    if x._a is None:
        return x
    return clone(x)


# -- reductions ----------------------------------------------------------------------
def _norm_dims(dim: Any, ndim: int, op: str) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = tuple(sorted({_dim(d, ndim, op) for d in dims}))
    if len(out) != len(dims):
        raise RuntimeError(f"{op}: dim {list(dims)} appears multiple times in the list of dims")
    return out


def _reduce(fn: str, x: Tensor, dim: Any, keepdim: bool, dtype: dt.dtype | None = None
            ) -> Tensor:
    _check_tensor(x, fn)
    if dtype is not None and dtype is not x._dtype:
        x = cast(x, dtype)
    dims = _norm_dims(dim, x.ndim, fn)
    if fn in ("amax", "amin"):
        for d in dims:
            if x.shape[d] == 0:
                raise IndexError(f"{fn}(): Expected reduction dim {d} to have non-zero size.")
    out_dtype = x._dtype
    if fn in ("sum", "prod") and x._dtype.category < 2:
        out_dtype = dt.int64
    if fn == "mean" and x._dtype.category < 2:
        raise RuntimeError(
            f"mean(): could not infer output dtype. Input dtype must be either a floating "
            f"point or complex dtype. Got: {x._dtype.name.capitalize()}"
        )
    kept = tuple(d for i, d in enumerate(x.shape) if i not in dims)
    keep_shape = tuple(1 if i in dims else d for i, d in enumerate(x.shape))
    base_fn = "sum" if fn == "mean" else fn
    # the mean of float16/bfloat16 is scaled in float32 and rounded once, like PyTorch's
    acc_dtype = dt.float32 if fn == "mean" and out_dtype in _HALF else out_dtype
    def semantic(b: Builder, v: Value) -> Value:
        if base_fn in ("sum", "prod") and v.type.dtype != acc_dtype.ir:
            v = b("tensor.cast", v, dtype=acc_dtype.ir)
        if fn == "mean" and any(x.shape[d] is None for d in dims):
            # ``?`` reduced sizes (dynamic=True): divide the sum by the count read from the IR
            total = b("tensor.sum", v, dims=dims, keepdim=keepdim)
            n = b("tensor.cast", count_value(b, v, dims), dtype=acc_dtype.ir)
            v = b("tensor.div", total, n)
        elif dims:
            v = b(f"tensor.{fn}", v, dims=dims, keepdim=keepdim)
        return v if v.type.dtype == out_dtype.ir else b("tensor.cast", v, dtype=out_dtype.ir)

    def eager() -> Tensor:
        n = 1
        for d in dims:
            n *= x.shape[d]
        if not dims:
            result = cast(x, out_dtype) if out_dtype is not x._dtype else clone(x)
        elif n == 0 or x.numel() == 0:
            init = {"sum": 0, "mean": float("nan"), "prod": 1}[fn]
            result = full(kept, init, dtype=out_dtype)
        else:
            def build(b: Builder, v: Value) -> Value:
                if base_fn in ("sum", "prod") and v.type.dtype != acc_dtype.ir:
                    v = b("tensor.cast", v, dtype=acc_dtype.ir)
                return b(f"tensor.{base_fn}", v, dims=dims, keepdim=False)

            (res,) = dispatch.run_eager(("reduce", base_fn, dims, acc_dtype.name), build,
                                        [x._a], [x._dtype.ir])
            result = Tensor._wrap(res.reshape(kept), acc_dtype)
            if fn == "mean":
                result = _elementwise(("ew", "mul", acc_dtype.name, out_dtype.name),
                                      "tensor.mul", (result, 1.0 / n), acc_dtype, out_dtype)
        return Tensor._wrap(result._a.reshape(keep_shape), out_dtype) if keepdim else result

    return dispatch.apply(fn, semantic, (x,), eager)


def count_value(b: Builder, v: Value, dims: Sequence[int]) -> Value:
    """The number of elements of ``v`` along ``dims`` as a 0-d i64 value, read at run time
    where a size is ``?`` (the largest index along the axis, plus one), static otherwise.

    The ``iota_like`` reads no data: the reduction only counts trips over ``v``'s shape.
    An empty ``?`` axis counts as 0 (not the overflowing "largest index").
    """
    static = 1
    total = None
    for d in dims:
        size = v.type.shape[d]
        if size is not None:
            static *= size
            continue
        ids = b("prim.iota_like", v, dim=d, dtype=i64)
        last = b("prim.reduce_max", ids, axes=tuple(range(v.type.rank)))
        one = b("prim.const", value=1, shape=(), dtype=i64)
        zero = b("prim.const", value=0, shape=(), dtype=i64)
        n = b("prim.max", b("prim.add", last, one), zero)
        total = n if total is None else b("prim.mul", total, n)
    if total is None or static != 1:
        c = b("prim.const", value=static, shape=(), dtype=i64)
        total = c if total is None else b("prim.mul", total, c)
    return total


def numel_tensor(x: Tensor, dims: Sequence[int] | None = None,
                 dtype: dt.dtype | None = None) -> Tensor:
    """How many elements ``x`` has along ``dims`` (all when None) as a 0-d tensor, exact
    inside ``lamina.compile(dynamic=True)`` where a size is symbolic (``None``)."""
    dims = tuple(range(x.ndim)) if dims is None else tuple(_dim(d, x.ndim, "numel") for d in dims)
    out = dtype or dt.int64

    def build(b: Builder, v: Value) -> Value:
        n = count_value(b, v, dims)
        return n if out.ir == i64 else b("prim.cast", n, dtype=out.ir)

    def eager() -> Tensor:
        n = 1
        for d in dims:
            n *= x.shape[d]
        return full((), n, dtype=out)

    return dispatch.apply("numel", build, (x,), eager)


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *,  # noqa: A001
        dtype: dt.dtype | None = None) -> Tensor:
    return _reduce("sum", input, dim, keepdim, dtype)


def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *,
         dtype: dt.dtype | None = None) -> Tensor:
    return _reduce("mean", input, dim, keepdim, dtype)


def prod(input: Tensor, dim: int | None = None, keepdim: bool = False, *,
         dtype: dt.dtype | None = None) -> Tensor:
    return _reduce("prod", input, dim, keepdim, dtype)


def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return _reduce("amax", input, None if dim == () else dim, keepdim)


def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return _reduce("amin", input, None if dim == () else dim, keepdim)


def _argreduce(fn: str, x: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    _check_tensor(x, fn)
    if dim is None:
        flat = x.reshape(-1)
        r = _argreduce(fn, flat, 0, False)
        return r.reshape((1,) * x.ndim) if keepdim else r
    d = _dim(dim, x.ndim, fn)
    if x.ndim and x.shape[d] == 0:
        raise IndexError(f"{fn}(): Expected reduction dim {d} to have non-zero size.")
    if x.ndim == 0:
        return zeros((), dtype=dt.int64)
    kept = tuple(s for i, s in enumerate(x.shape) if i != d)

    def build(b: Builder, v: Value) -> Value:
        return b(f"tensor.{fn}", v, dim=d, keepdim=False)

    def semantic(b: Builder, v: Value) -> Value:
        return b(f"tensor.{fn}", v, dim=d, keepdim=keepdim)

    def eager() -> Tensor:
        if x.numel() == 0:
            result = zeros(kept, dtype=dt.int64)
        else:
            (res,) = dispatch.run_eager(("arg", fn, d), build, [x._a], [x._dtype.ir])
            result = Tensor._wrap(res.reshape(kept), dt.int64)
        return Tensor._wrap(result._a.reshape(keep_shape), dt.int64) if keepdim else result

    keep_shape = tuple(1 if i == d else s for i, s in enumerate(x.shape))
    return dispatch.apply(fn, semantic, (x,), eager)


def argmax(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return _argreduce("argmax", input, dim, keepdim)


def argmin(input: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return _argreduce("argmin", input, dim, keepdim)


ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _max_min(fn: str, input: Tensor, dim: Any, keepdim: bool, other: Any) -> Any:
    if isinstance(dim, Tensor):
        return (maximum if fn == "max" else minimum)(input, dim)
    if dim is None:
        if input.numel() == 0:
            raise RuntimeError(
                f"{fn}(): Expected reduction dim to be specified for input.numel() == 0. "
                "Specify the reduction dim with the 'dim' argument."
            )
        return _reduce("a" + fn, input, None, False)
    values = _reduce("a" + fn, input, dim, keepdim)
    indices = _argreduce("arg" + fn, input, dim, keepdim)
    return ValuesIndices(values, indices)


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    return _max_min("max", input, dim, keepdim, None)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:  # noqa: A001
    return _max_min("min", input, dim, keepdim, None)


# -- matmul ------------------------------------------------------------------------------
def matmul(input: Tensor, other: Tensor) -> Tensor:
    """``torch.matmul``: vectors, matrices and broadcast batches of matrices."""
    a, b = _check_tensor(input, "matmul"), _check_tensor(other, "matmul", "other")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and "
            f"{b.ndim}D"
        )
    if a._dtype is not b._dtype:
        raise RuntimeError(
            f"expected m1 and m2 to have the same dtype, but got: {a._dtype.name} != "
            f"{b._dtype.name}"
        )
    ash = (1,) + a.shape if a.ndim == 1 else tuple(a.shape)
    bsh = tuple(b.shape) + (1,) if b.ndim == 1 else tuple(b.shape)
    if ash[-1] != bsh[-2]:
        sa = "x".join(map(str, a.shape))
        sb = "x".join(map(str, b.shape))
        raise RuntimeError(f"matmul: mat1 and mat2 shapes cannot be multiplied ({sa} and {sb})")
    batch = broadcast_shapes(ash[:-2], bsh[:-2], op="matmul")
    out_shape = batch + ((ash[-2],) if a.ndim > 1 else ()) + ((bsh[-1],) if b.ndim > 1 else ())

    def build(bb: Builder, x: Value, y: Value) -> Value:
        return bb("tensor.matmul", x, y)

    return dispatch.apply("matmul", build, (a, b),
                          lambda: _eager_matmul(a, b, ash, bsh, batch, out_shape))


def _eager_matmul(a: Tensor, b: Tensor, ash: tuple, bsh: tuple, batch: tuple,
                  out_shape: tuple) -> Tensor:
    m, k, n = ash[-2], ash[-1], bsh[-1]
    nb = 1
    for d in batch:
        nb *= d
    if 0 in (m, n, nb):
        return zeros(out_shape, dtype=a._dtype)
    if k == 0:
        return zeros(out_shape, dtype=a._dtype)
    a3 = a.reshape(ash).expand(batch + ash[-2:]).reshape(-1, m, k) if batch else \
        a.reshape(ash)
    b3 = b.reshape(bsh).expand(batch + bsh[-2:]).reshape(-1, k, n) if batch else \
        b.reshape(bsh)
    # the contraction kernel reads rows with vector loads: give it unit inner strides
    av, bv = _unit_inner(a3._a, a._dtype), _unit_inner(b3._a, a._dtype)
    rank = av.ndim

    def build(bb: Builder, x: Value, y: Value) -> Value:
        return bb("tensor.matmul", x, y)

    (res,) = dispatch.run_eager(("matmul", rank), build, [av, bv], [a._dtype.ir] * 2)
    return Tensor._wrap(res.reshape(out_shape), a._dtype)


def _unit_inner(a: np.ndarray, dtype: dt.dtype | None = None) -> np.ndarray:
    if a.strides[-1] == a.itemsize or a.shape[-1] == 1 and a.strides[-1] == 0:
        if a.shape[-1] == 1 and a.strides[-1] != a.itemsize:
            return _restride(a, a.shape, a.strides[:-1] + (a.itemsize,))
        return a
    return clone(Tensor._wrap(a, dtype))._a


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2D tensors, got {input.ndim}D and {mat2.ndim}D")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {input.shape[0]} vs {mat2.shape[0]}")
    return matmul(input, mat2)


# -- creation -------------------------------------------------------------------------------
def _shape_arg(size: tuple, op: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for d in size:
        if isinstance(d, Tensor):
            d = int(d)
        if d is None and trace.symbolic_batch():  # the batch size of a dynamic trace
            out.append(d)
            continue
        if not isinstance(d, int) or isinstance(d, bool):
            raise TypeError(f"{op}(): size must be a sequence of ints, got {size!r}")
        if d < 0:
            raise RuntimeError(f"{op}(): Trying to create tensor with negative dimension {d}: "
                               f"{list(size)}")
        out.append(d)
    return tuple(out)


def empty(*size: Any, dtype: dt.dtype | None = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    from lamina.frontend.transfer import create

    dtype = dtype or dt.default_float
    shape = _shape_arg(size, "empty")
    if None in shape:  # a dynamic trace: sized by the batch, so filled like zeros
        return full(shape, 0, dtype=dtype, requires_grad=requires_grad)
    return _leaf(create(device, "empty", lambda: Tensor._wrap(_alloc(shape, dtype), dtype)),
                 requires_grad)


def _leaf(t: Tensor, requires_grad: bool) -> Tensor:
    """A created tensor, made a leaf that requires grad when asked."""
    return t.requires_grad_() if requires_grad else t


def full(size: Sequence[int], fill_value: Any, *, dtype: dt.dtype | None = None,
         device: Any = None, requires_grad: bool = False) -> Tensor:
    from lamina.frontend.transfer import create

    shape = _shape_arg(tuple(size), "full")
    if dtype is None:
        dtype = dt.scalar_dtype(fill_value)
    if trace.current() is not None:
        return dispatch.apply("full", lambda b: trace.fill(b, fill_value, shape, dtype.ir), (),
                              lambda: None)
    if 0 in shape:
        return _leaf(create(device, "full", lambda: Tensor._wrap(_alloc(shape, dtype), dtype)),
                     requires_grad)
    return _leaf(create(device, "full", lambda: _elementwise(
        ("fill", dtype.name), "tensor.copy", (fill_value,), dtype, dtype, shape=shape)),
        requires_grad)


def zeros(*size: Any, dtype: dt.dtype | None = None, device: Any = None,
          requires_grad: bool = False) -> Tensor:
    dtype = dtype or dt.default_float
    return full(_shape_arg(size, "zeros"), False if dtype is dt.bool_ else 0, dtype=dtype,
                device=device, requires_grad=requires_grad)


def ones(*size: Any, dtype: dt.dtype | None = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    dtype = dtype or dt.default_float
    return full(_shape_arg(size, "ones"), True if dtype is dt.bool_ else 1, dtype=dtype,
                device=device, requires_grad=requires_grad)


def zeros_like(x: Tensor, *, dtype: dt.dtype | None = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return zeros(x.shape, dtype=dtype or x.dtype, device=device or x.device,
                 requires_grad=requires_grad)


def ones_like(x: Tensor, *, dtype: dt.dtype | None = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return ones(x.shape, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def full_like(x: Tensor, fill_value: Any, *, dtype: dt.dtype | None = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=device or x.device,
                requires_grad=requires_grad)


def empty_like(x: Tensor, *, dtype: dt.dtype | None = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return empty(x.shape, dtype=dtype or x.dtype, device=device or x.device,
                 requires_grad=requires_grad)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: dt.dtype | None = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """Like ``torch.arange``; the values are made from Python numbers (interop, like
    ``lamina.tensor``), not computed by a kernel."""
    from lamina.frontend.transfer import create

    return _leaf(create(device, "arange", lambda: _arange(start, end, step, dtype)),
                 requires_grad)


def _arange(start: Any, end: Any, step: Any, dtype: dt.dtype | None) -> Tensor:
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if dtype is None:
        dtype = dt.result_type([], [start, end, step])
        if dtype is dt.bool_:
            dtype = dt.int64
    n = builtins.max(0, int(np.ceil((end - start) / step)))
    values = np.arange(n, dtype=np.float64 if dtype.category == 2 else np.int64) * step + start
    if dtype in (dt.float16, dt.bfloat16):  # rounded through float32, like tensor()
        return tensor(values, dtype=dtype)
    a = _host_alloc((n,), dtype)
    if n:
        a[...] = values
    return Tensor._wrap(a, dtype)


def tensor(data: Any, *, dtype: dt.dtype | None = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, numbers, arrays, tensors)."""
    from lamina.frontend.device import check_device
    from lamina.frontend.transfer import create, move

    if isinstance(data, Tensor):  # a copy (bfloat16 has no numpy form: copy by a kernel)
        src = data.detach()
        if device is not None:
            src = move(src, check_device(device, "tensor"))
        out = clone(src) if dtype is None or dtype is src.dtype else cast(src, dtype)
        return _leaf(out, requires_grad)
    return _leaf(create(device, "tensor", lambda: _host_tensor(data, dtype)), requires_grad)


def _host_tensor(data: Any, dtype: dt.dtype | None) -> Tensor:
    arr = np.asarray(data)
    # numpy arrays and numpy scalars keep their dtype; Python numbers get the defaults
    typed = isinstance(data, (np.ndarray, np.generic))
    if dtype is None:
        if arr.dtype.kind == "f":
            dtype = dt.from_numpy(arr.dtype) if typed else dt.default_float
        elif arr.dtype.kind in "iu":
            dtype = dt.int64 if not typed else dt.from_numpy(arr.dtype)
        elif arr.dtype.kind == "b":
            dtype = dt.bool_
        else:
            raise TypeError(f"tensor(): could not infer dtype of {type(data).__name__} "
                            f"(numpy dtype {arr.dtype})")
    out = _host_alloc(arr.shape, dtype)
    if dtype is dt.bfloat16:  # through float32, as PyTorch converts
        f32 = np.ascontiguousarray(arr, dtype=np.float32)
        f = f32.view(np.uint32)
        bits = ((f + 0x7FFF + ((f >> 16) & 1)) >> 16).astype(np.uint16)
        out[...] = np.where(np.isnan(f32), np.uint16(0x7FC0), bits)
    elif dtype is dt.float16:
        out[...] = np.asarray(arr, dtype=np.float32)
    else:
        out[...] = arr
    return Tensor._wrap(out, dtype)


def from_numpy(a: np.ndarray) -> Tensor:
    """A tensor sharing memory with a numpy array (no copy)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(a).__name__})")
    if any(s < 0 for s in a.strides):
        raise ValueError("At least one stride in the given numpy array is negative; "
                         "negative strides are not supported (use a.copy())")
    return Tensor._wrap(a, dt.from_numpy(a.dtype))
