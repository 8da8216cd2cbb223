"""Creation ops: random sampling, ``linspace``/``logspace``, ``eye``, ``tril``/``triu``,
``Tensor.new_*`` and the in-place samplers (``uniform_``, ``normal_``, ...).

Everything numeric runs in generated kernels: random numbers come from the
Philox prim (``lamina.frontend.random``), index patterns from ``prim.iota_like``
over a run-time shape (an eager kernel never depends on sizes, seeds, bounds
or diagonal offsets: all are kernel arguments).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from lamina.frontend import dispatch, ops, ops_reduce
from lamina.frontend import dtypes as dt
from lamina.frontend import random as rnd
from lamina.frontend.device import check_device
from lamina.frontend.random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)
from lamina.frontend.tensor import Tensor
from lamina.frontend.transfer import create, host_array
from lamina.ir import Builder, Value
from lamina.ir.types import i64

random = rnd  # ``lamina.random.manual_seed`` etc., like ``torch.random``


# -- helpers ------------------------------------------------------------------------------
def _leaf(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_() if requires_grad else t


def _float_dtype(dtype: dt.dtype | None, op: str) -> dt.dtype:
    dtype = dtype or dt.default_float
    if not isinstance(dtype, dt.dtype):
        raise TypeError(f"{op}(): argument 'dtype' must be lamina.dtype, not "
                        f"{type(dtype).__name__}")
    if not dtype.is_floating_point:
        raise RuntimeError(f"{op}(): expected a floating point dtype, got {dtype}")
    return dtype


def _number(x: Any, op: str, arg: str) -> Any:
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise RuntimeError(f"{op}(): argument '{arg}' must be a number or a one-element "
                               f"tensor, got a tensor of shape {list(x.shape)}")
        return x.item()
    if not isinstance(x, (bool, int, float)):
        raise TypeError(f"{op}(): argument '{arg}' must be a number, not {type(x).__name__}")
    return x


def _size(size: tuple, op: str, keyword: Any = None) -> tuple[int, ...]:
    """The shape from ``f(2, 3)``, ``f((2, 3))`` or ``f(size=(2, 3))``."""
    if keyword is not None:
        if size:
            raise TypeError(f"{op}() got the size both positionally and as size=")
        size = (keyword,)
    return ops._shape_arg(size, op)


def _options(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """PyTorch's keyword options of creation functions: ``layout``, ``pin_memory`` and
    ``memory_format`` mean nothing for CPU strided tensors; ``out=`` receives a copy of the
    result (it must have its shape and dtype). Any other unknown keyword is a TypeError."""

    @functools.wraps(fn)
    def wrapper(*args: Any, out: Tensor | None = None, layout: Any = None,
                pin_memory: bool = False, memory_format: Any = None, **kwargs: Any) -> Tensor:
        spec = kwargs.get("device")
        if spec is not None and check_device(spec, fn.__name__).type != "cpu":
            # the CPU definition, its kernels run on the GPU (see transfer.create)
            kwargs.pop("device")
            grad = kwargs.pop("requires_grad", False)
            r = _leaf(create(spec, fn.__name__, lambda: fn(*args, **kwargs)), grad)
        else:
            r = fn(*args, **kwargs)
        if out is None:
            return r
        if not isinstance(out, Tensor):
            raise TypeError(f"{fn.__name__}(): argument 'out' must be Tensor, not "
                            f"{type(out).__name__}")
        if tuple(out.shape) != tuple(r.shape) or out.dtype is not r.dtype:
            raise RuntimeError(f"{fn.__name__}(): out= has shape {list(out.shape)} and dtype "
                               f"{out.dtype}, the result {list(r.shape)} and {r.dtype}")
        return out.copy_(r)

    return wrapper


def _write(self: Tensor, value: Tensor) -> Tensor:
    """``self`` overwritten with ``value`` (same dtype and shape): the in-place samplers."""
    return self.copy_(value)


# -- uniform and normal ----------------------------------------------------------------------
def _uniform(shape: Sequence[int], low: float, high: float, dtype: dt.dtype,
             generator: Generator | None, op: str) -> Tensor:
    return rnd.draw(op, ("uniform", dtype.name), rnd.uniform_core(dtype), shape, dtype,
                    [(low, dt.float64), (high, dt.float64)], generator)


def _normal(shape: Sequence[int], mean: float, std: float, dtype: dt.dtype,
            generator: Generator | None, op: str) -> Tensor:
    if std < 0:
        raise RuntimeError(f"{op}: normal expects std >= 0.0, but found std {std}")
    return rnd.draw(op, ("normal", dtype.name), rnd.normal_core(dtype), shape, dtype,
                    [(mean, dt.float64), (std, dt.float64)], generator)


@_options
def rand(*size: Any, generator: Generator | None = None, dtype: dt.dtype | None = None,
         device: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor:
    """Uniform samples in [0, 1) (``torch.rand``)."""
    check_device(device, "rand")
    dtype = _float_dtype(dtype, "rand")
    size = _size(size, "rand", kw.pop("size", None))
    if kw:
        raise TypeError(f"rand() got an unexpected keyword argument '{next(iter(kw))}'")
    return _leaf(_uniform(size, 0.0, 1.0, dtype, generator, "rand"),
                 requires_grad)


@_options
def randn(*size: Any, generator: Generator | None = None, dtype: dt.dtype | None = None,
          device: Any = None, requires_grad: bool = False, **kw: Any) -> Tensor:
    """Standard normal samples (``torch.randn``)."""
    check_device(device, "randn")
    dtype = _float_dtype(dtype, "randn")
    size = _size(size, "randn", kw.pop("size", None))
    if kw:
        raise TypeError(f"randn() got an unexpected keyword argument '{next(iter(kw))}'")
    return _leaf(_normal(size, 0.0, 1.0, dtype, generator, "randn"),
                 requires_grad)


@_options
def rand_like(input: Tensor, *, dtype: dt.dtype | None = None, device: Any = None,
              requires_grad: bool = False, generator: Generator | None = None) -> Tensor:
    ops._check_tensor(input, "rand_like")
    return rand(tuple(input.shape), dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad, generator=generator)


@_options
def randn_like(input: Tensor, *, dtype: dt.dtype | None = None, device: Any = None,
               requires_grad: bool = False, generator: Generator | None = None) -> Tensor:
    ops._check_tensor(input, "randn_like")
    return randn(tuple(input.shape), dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad, generator=generator)


@_options
def normal(mean: Any = 0.0, std: Any = 1.0, size: Any = None, *,
           generator: Generator | None = None, dtype: dt.dtype | None = None,
           device: Any = None, requires_grad: bool = False) -> Tensor:
    """``torch.normal``: tensor or float ``mean``/``std`` (broadcast), or floats and ``size``."""
    check_device(device, "normal")
    tensors = [x for x in (mean, std) if isinstance(x, Tensor)]
    if not tensors:
        if size is None:
            raise TypeError("normal() received an invalid combination of arguments: with a "
                            "float mean and std, 'size' is required")
        mean, std = _number(mean, "normal", "mean"), _number(std, "normal", "std")
        dtype = _float_dtype(dtype, "normal")
        return _leaf(_normal(_size((size,), "normal"), mean, std, dtype, generator,
                             "normal"), requires_grad)
    if size is not None:
        raise TypeError("normal(): 'size' is only allowed with a float mean and std")
    out_dtype = dt.result_type(*ops._dtypes_of((mean, std)))
    if not out_dtype.is_floating_point:
        raise RuntimeError(f"normal expects floating point mean and std, got {out_dtype}")
    if isinstance(std, Tensor):
        if std.numel() and ops.amin(std).item() < 0:
            raise RuntimeError("normal expects all elements of std >= 0.0")
    elif std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    shape = ops.broadcast_shapes(*(tuple(t.shape) for t in tensors), op="normal")
    z = _normal(shape, 0.0, 1.0, out_dtype, generator, "normal")
    return ops.add(ops.mul(z, std), mean)


# -- integers --------------------------------------------------------------------------------
def _int_bounds(dtype: dt.dtype) -> tuple[int, int] | None:
    if dtype is dt.bool_:
        return 0, 1
    if dtype.category == 1:
        info = np.iinfo(dtype.numpy)
        return int(info.min), int(info.max)
    return None


def _randint(shape: Sequence[int], low: int, high: int, dtype: dt.dtype,
             generator: Generator | None, op: str) -> Tensor:
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} "
                           f">= to={high}")
    bounds = _int_bounds(dtype)
    if bounds is not None and not (bounds[0] <= low and high - 1 <= bounds[1]):
        raise RuntimeError(f"{op}: [{low}, {high - 1}] is out of bounds for {dtype}")
    span = high - low
    if span >= 1 << 63 or not -(1 << 63) <= low < 1 << 63:
        raise RuntimeError(f"{op}: the range [{low}, {high}) is too wide: at most 2**63 - 1 "
                           "values, within int64")
    wide = span > 1 << 32
    return rnd.draw(op, ("randint", dtype.name, wide), rnd.randint_core(dtype, wide), shape,
                    dtype, [(low, dt.int64), (span, dt.int64)], generator)


def _randint_args(args: tuple, low: Any, high: Any, size: Any, op: str) -> tuple[int, int, Any]:
    args = list(args)
    if size is None and args and isinstance(args[-1], (tuple, list)):
        size = args.pop()
    if high is None and args:
        high = args.pop()
    if low is None:
        low = args.pop() if args else 0
    if args or high is None or size is None:
        raise TypeError(f"{op}() expects (high, size) or (low, high, size)")
    low, high = (_number(v, op, n) for v, n in ((low, "low"), (high, "high")))
    if not all(isinstance(v, int) or float(v).is_integer() for v in (low, high)):
        raise TypeError(f"{op}(): low and high must be integers, got {low} and {high}")
    return int(low), int(high), size


@_options
def randint(*args: Any, size: Any = None, low: Any = None, high: Any = None,
            generator: Generator | None = None, dtype: dt.dtype | None = None,
            device: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers in [low, high) (``torch.randint(low=0, high, size)``; int64 by default)."""
    check_device(device, "randint")
    low, high, size = _randint_args(args, low, high, size, "randint")
    dtype = dtype or dt.int64
    return _leaf(_randint(_size((size,), "randint"), low, high, dtype, generator, "randint"),
                 requires_grad)


@_options
def randint_like(input: Tensor, *args: Any, low: Any = None, high: Any = None,
                 dtype: dt.dtype | None = None, device: Any = None,
                 requires_grad: bool = False, generator: Generator | None = None) -> Tensor:
    ops._check_tensor(input, "randint_like")
    low, high, _ = _randint_args(args + (tuple(input.shape),), low, high, None, "randint_like")
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype,
                   device=device or input.device, requires_grad=requires_grad,
                   generator=generator)


@_options
def randperm(n: int, *, generator: Generator | None = None, dtype: dt.dtype | None = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1: the stable argsort of 63-bit random keys (ties, at
    odds of about n**2 / 2**64, keep their order)."""
    check_device(device, "randperm")
    n = int(_number(n, "randperm", "n"))
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    dtype = dtype or dt.int64
    bounds = _int_bounds(dtype)
    if bounds is not None and n - 1 > bounds[1]:
        raise RuntimeError(f"randperm: n = {n} is too large for result tensor type {dtype}")
    keys = rnd.draw("randperm", ("bits63",), rnd.bits63_core(), (n,), dt.int64, (),
                    generator)
    perm = ops_reduce.argsort(keys)
    return _leaf(perm if dtype is dt.int64 else ops.cast(perm, dtype), requires_grad)


# -- bernoulli, exponential, multinomial ---------------------------------------------------------
def _check_probability(p: float, op: str) -> None:
    if not 0 <= p <= 1:
        raise RuntimeError(f"{op}: bernoulli_ expects p to be in [0, 1], but got p={p}")


def _bernoulli_scalar(shape: Sequence[int], p: float, dtype: dt.dtype,
                      generator: Generator | None, op: str) -> Tensor:
    _check_probability(p, op)
    return rnd.draw(op, ("bernoulli", dtype.name), rnd.bernoulli_core(dtype), shape, dtype,
                    [(p, dt.float64)], generator)


def _check_probabilities(p: Tensor, op: str) -> None:
    if not p.dtype.is_floating_point:
        raise RuntimeError(f"{op}: expected a floating point probability tensor, got {p.dtype}")
    if p.numel() and not (ops.amin(p).item() >= 0 and ops.amax(p).item() <= 1):
        raise RuntimeError(f"{op}: Expected p_in >= 0 && p_in <= 1 to be true, but got false")


@_options
def bernoulli(input: Tensor, p: Any = None, *, generator: Generator | None = None) -> Tensor:
    """1 with probability ``input`` (or ``p``) elementwise, in ``input``'s dtype."""
    ops._check_tensor(input, "bernoulli")
    if p is not None and not isinstance(p, Tensor):
        return _bernoulli_scalar(tuple(input.shape), float(p), input.dtype, generator,
                                 "bernoulli")
    probs = input if p is None else p
    _check_probabilities(probs, "bernoulli")
    u = _uniform(tuple(probs.shape), 0.0, 1.0, dt.float64, generator, "bernoulli")
    out = ops.cast(ops.lt(u, probs), input.dtype)
    return out if tuple(out.shape) == tuple(input.shape) else \
        ops.contiguous(out.expand(tuple(input.shape)))


def _exponential(shape: Sequence[int], rate: float, dtype: dt.dtype,
                 generator: Generator | None, op: str) -> Tensor:
    if not rate > 0:
        raise RuntimeError(f"{op}: exponential_ expects lambda > 0.0, but found lambda={rate}")
    return rnd.draw(op, ("exponential", dtype.name), rnd.exponential_core(dtype), shape, dtype,
                    [(rate, dt.float64)], generator)


@_options
def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    """Category indices drawn with weights ``input`` (1-d or one distribution per row)."""
    ops._check_tensor(input, "multinomial")
    if input.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got {input.ndim}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"multinomial only supports floating-point dtypes for input, got: "
                           f"{input.dtype}")
    n = input.shape[-1]
    if num_samples <= 0:
        raise RuntimeError("multinomial: cannot sample n_sample <= 0 samples")
    if not replacement and num_samples > n:
        raise RuntimeError("multinomial: cannot sample n_sample > prob_dist.size(-1) samples "
                           "without replacement")
    p = ops.cast(input, dt.float64)
    rows = p if p.ndim == 2 else p.reshape(1, n)
    if rows.shape[0] == 0:
        return ops.zeros(tuple(input.shape[:-1]) + (num_samples,), dtype=dt.int64)
    from lamina.frontend.ops_math import isfinite

    if n == 0 or not ops.sum(ops.logical_not(isfinite(rows))).item() == 0 or \
            ops.amin(rows).item() < 0:
        raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or "
                           "element < 0")
    positive = ops.sum(ops.gt(rows, 0), dim=1)
    if ops.amin(positive).item() == 0:
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of "
                           "probabilities <= 0)")
    if not replacement and ops.amin(positive).item() < num_samples:
        raise RuntimeError("multinomial: invalid multinomial distribution (with "
                           "replacement=False, not enough non-negative category to sample)")
    r = rows.shape[0]
    if replacement:
        cdf = ops_reduce.cumsum(rows, 1)
        u = _uniform((r, num_samples), 0.0, 1.0, dt.float64, generator, "multinomial")
        u = ops.mul(u, cdf[:, n - 1:])
        below = ops.le(cdf.reshape(r, 1, n), u.reshape(r, num_samples, 1))
        idx = ops.minimum(ops.sum(below, dim=2), ops.full((), n - 1, dtype=dt.int64))
    else:
        # the exponential race: the smallest E_i / p_i (E_i ~ Exp(1)) come in the order of
        # sampling without replacement; p_i = 0 gives inf or nan, sorted last
        e = _exponential((r, n), 1.0, dt.float64, generator, "multinomial")
        idx = ops.contiguous(ops_reduce.argsort(ops.div(e, rows))[:, :num_samples])
    return idx if input.ndim == 2 else idx.reshape(num_samples)


# -- in-place samplers (Tensor methods) ---------------------------------------------------------
def uniform_(self: Tensor, from_: float = 0.0, to: float = 1.0, *,
             generator: Generator | None = None, **kw: Any) -> Tensor:
    from_, to = kw.pop("from", from_), kw.pop("to", to)
    if not self.dtype.is_floating_point:
        raise RuntimeError(f"uniform_ is not implemented for {self.dtype}")
    if from_ > to:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found "
                           f"from={from_} > to={to}")
    return _write(self, _uniform(tuple(self.shape), float(from_), float(to), self.dtype,
                                 generator, "uniform_"))


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *,
            generator: Generator | None = None) -> Tensor:
    if not self.dtype.is_floating_point:
        raise RuntimeError(f"normal_ is not implemented for {self.dtype}")
    return _write(self, _normal(tuple(self.shape), float(mean), float(std), self.dtype,
                                generator, "normal_"))


def bernoulli_(self: Tensor, p: Any = 0.5, *, generator: Generator | None = None) -> Tensor:
    if isinstance(p, Tensor):
        _check_probabilities(p, "bernoulli_")
        u = _uniform(tuple(self.shape), 0.0, 1.0, dt.float64, generator, "bernoulli_")
        return _write(self, ops.cast(ops.lt(u, p), self.dtype))
    return _write(self, _bernoulli_scalar(tuple(self.shape), float(p), self.dtype, generator,
                                          "bernoulli_"))


def exponential_(self: Tensor, lambd: float = 1.0, *,
                 generator: Generator | None = None) -> Tensor:
    if not self.dtype.is_floating_point:
        raise RuntimeError(f"exponential_ is not implemented for {self.dtype}")
    return _write(self, _exponential(tuple(self.shape), float(lambd), self.dtype, generator,
                                     "exponential_"))


def random_(self: Tensor, from_: Any = None, to: Any = None, *,
            generator: Generator | None = None, **kw: Any) -> Tensor:
    """Integers in [from, to); ``random_(to)`` is [0, to); no bounds: the dtype's range
    (for floats, the integers its significand holds exactly)."""
    from_, to = kw.pop("from", from_), kw.pop("to", to)
    if to is None and from_ is not None:
        from_, to = 0, from_
    if from_ is None:
        from_ = 0
    if to is None:
        bounds = _int_bounds(self.dtype)
        if bounds is not None:
            to = bounds[1] + 1
        else:
            to = 2 ** {"f16": 11, "bf16": 8, "f32": 24, "f64": 53}[self.dtype.ir.name] + 1
    return _write(self, _randint(tuple(self.shape), int(from_), int(to), self.dtype, generator,
                                 "random_"))


# -- linspace, logspace, eye --------------------------------------------------------------------
def _carrier(shape: Sequence[int], value: Any, dtype: dt.dtype) -> np.ndarray:
    """A 0-d buffer seen with ``shape`` and zero strides: a kernel argument whose only job is
    to carry the run-time sizes (and one number)."""
    a = np.array(value, dtype=dtype.numpy)
    return np.ndarray(tuple(shape), a.dtype, buffer=a, strides=(0,) * len(shape))


def _compute_dtype(dtype: dt.dtype) -> dt.dtype:
    if dtype in (dt.float16, dt.bfloat16):
        return dt.float32
    return dtype if dtype.is_floating_point else dt.float64


def _range_build(dtype: dt.dtype, log: bool) -> Any:
    """``linspace`` over a carrier: start + step * i in the first half, end - step * (n-1-i)
    in the second (PyTorch's symmetric formula), then ``base ** x`` for ``logspace``."""
    c = _compute_dtype(dtype).ir

    def build(b: Builder, start: Value, end: Value, nm1: Value, half: Value,
              base: Value | None = None) -> Value:
        i = b("prim.iota_like", start, dim=0, dtype=i64)
        step = b("tensor.div", b("tensor.sub", end, start), nm1)
        lo = b("tensor.add", start, b("tensor.mul", step, b("tensor.cast", i, dtype=c)))
        back = b("tensor.cast", b("tensor.sub", b("tensor.cast", nm1, dtype=i64), i), dtype=c)
        hi = b("tensor.sub", end, b("tensor.mul", step, back))
        x = b("tensor.where", b("tensor.lt", i, half), lo, hi)
        if log:
            x = b("tensor.pow", base, x)
        return b("tensor.cast", x, dtype=dtype.ir)

    return build


def _space(op: str, start: Any, end: Any, steps: Any, base: float | None,
           dtype: dt.dtype | None, device: Any, requires_grad: bool) -> Tensor:
    check_device(device, op)
    start, end = _number(start, op, "start"), _number(end, op, "end")
    steps = _number(steps, op, "steps")
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"{op}(): argument 'steps' must be int, not {type(steps).__name__}")
    if steps < 0:
        raise RuntimeError(f"{op}(): number of steps must be non-negative")
    dtype = dtype or dt.default_float
    c = _compute_dtype(dtype)
    if not dtype.is_floating_point:  # PyTorch converts the ends to the dtype first
        start, end = int(start), int(end)
    if steps <= 1:
        if steps == 0:
            return _leaf(ops.empty(0, dtype=dtype), requires_grad)
        first = start if base is None else ops.pow(ops.full((), base, dtype=c), start).item()
        return _leaf(ops.full((1,), first, dtype=dtype), requires_grad)
    arrays = [_carrier((steps,), start, c), _carrier((steps,), end, c),
              _carrier((steps,), steps - 1, c), _carrier((steps,), steps // 2, dt.int64)]
    types = [c.ir, c.ir, c.ir, i64]
    if base is not None:
        arrays.append(_carrier((steps,), base, c))
        types.append(c.ir)
    build = _range_build(dtype, base is not None)
    (res,) = dispatch.run_eager((op, dtype.name), build, arrays, types,
                                ((0,),) * len(arrays))
    return _leaf(Tensor._wrap(res, dtype), requires_grad)


@_options
def linspace(start: Any, end: Any, steps: int, *, dtype: dt.dtype | None = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` (computed by a kernel)."""
    return _space("linspace", start, end, steps, None, dtype, device, requires_grad)


@_options
def logspace(start: Any, end: Any, steps: int, base: float = 10.0, *,
             dtype: dt.dtype | None = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    """``base ** linspace(start, end, steps)``."""
    return _space("logspace", start, end, steps, float(base), dtype, device, requires_grad)


@_options
def eye(n: int, m: int | None = None, *, dtype: dt.dtype | None = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    """The ``n x m`` identity matrix (ones where row == column)."""
    check_device(device, "eye")
    m = n if m is None else m
    for name, v in (("n", n), ("m", m)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"eye(): argument '{name}' must be int, not {type(v).__name__}")
        if v < 0:
            raise RuntimeError(f"eye(): {name} must be greater or equal to 0, got {v}")
    dtype = dtype or dt.default_float
    if n == 0 or m == 0:
        return _leaf(ops.empty(n, m, dtype=dtype), requires_grad)

    def build(b: Builder, c: Value) -> Value:
        rows = b("prim.iota_like", c, dim=0, dtype=i64)
        cols = b("prim.iota_like", c, dim=1, dtype=i64)
        return b("tensor.cast", b("tensor.eq", rows, cols), dtype=dtype.ir)

    (res,) = dispatch.run_eager(("eye", dtype.name), build, [_carrier((n, m), 0, dt.int8)],
                                [dt.int8.ir], ((0, 0),))
    return _leaf(Tensor._wrap(res, dtype), requires_grad)


# -- tril / triu --------------------------------------------------------------------------------
def _triangle(op: str, x: Tensor, diagonal: int) -> Tensor:
    ops._check_tensor(x, op)
    if x.ndim < 2:
        raise RuntimeError(f"{op}: input tensor must have at least 2 dimensions, got "
                           f"{x.ndim}")
    diagonal = int(_number(diagonal, op, "diagonal"))
    rank = x.ndim
    keep_fn = "tensor.le" if op == "tril" else "tensor.ge"
    zero = False if x.dtype is dt.bool_ else 0

    def build(b: Builder, v: Value, d: Value) -> Value:
        rows = b("prim.iota_like", v, dim=rank - 2, dtype=i64)
        cols = b("prim.iota_like", v, dim=rank - 1, dtype=i64)
        keep = b(keep_fn, b("tensor.sub", cols, rows), d)
        return b("tensor.where", keep, v, b("tensor.full", value=zero, shape=(),
                                            dtype=x.dtype.ir))

    def eager() -> Tensor:
        if x.numel() == 0:
            return ops.clone(x)
        a = x._concrete(op)
        (res,) = dispatch.run_eager((op, rank, x.dtype.name), build,
                                    [a, np.array(diagonal, np.int64)], [x.dtype.ir, i64])
        return Tensor._wrap(res, x.dtype)

    diag = Tensor._wrap(np.array(diagonal, np.int64), dt.int64)
    return dispatch.apply(op, build, (x, diag), eager)


@_options
def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """The lower triangle (``col - row <= diagonal``) of the last two dims; zeros elsewhere."""
    return _triangle("tril", input, diagonal)


@_options
def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """The upper triangle (``col - row >= diagonal``) of the last two dims; zeros elsewhere."""
    return _triangle("triu", input, diagonal)


# -- Tensor.new_* -------------------------------------------------------------------------------
def _new_kw(self: Tensor, dtype: dt.dtype | None) -> dt.dtype:
    return dtype or self.dtype


@_options
def new_zeros(self: Tensor, *size: Any, dtype: dt.dtype | None = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return _leaf(ops.zeros(_size(size, "new_zeros"), dtype=_new_kw(self, dtype),
                           device=device or self.device), requires_grad)


@_options
def new_ones(self: Tensor, *size: Any, dtype: dt.dtype | None = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    return _leaf(ops.ones(_size(size, "new_ones"), dtype=_new_kw(self, dtype),
                          device=device or self.device), requires_grad)


@_options
def new_empty(self: Tensor, *size: Any, dtype: dt.dtype | None = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return _leaf(ops.empty(_size(size, "new_empty"), dtype=_new_kw(self, dtype),
                           device=device or self.device), requires_grad)


@_options
def new_full(self: Tensor, size: Any, fill_value: Any, *, dtype: dt.dtype | None = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    return _leaf(ops.full(_size((size,), "new_full"), fill_value,
                          dtype=_new_kw(self, dtype), device=device or self.device), requires_grad)


@_options
def new_tensor(self: Tensor, data: Any, *, dtype: dt.dtype | None = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    if isinstance(data, Tensor):
        data = ops.contiguous(data.detach() if hasattr(data, "detach") else data)
        if data.dtype is dt.bfloat16:
            data = ops.cast(data, dt.float32)
        data = host_array(data)
    return _leaf(ops.tensor(data, dtype=_new_kw(self, dtype), device=device or self.device),
                 requires_grad)


_TYPE_NAMES = {
    "float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
    "bfloat16": "BFloat16Tensor", "int64": "LongTensor", "int32": "IntTensor",
    "int8": "CharTensor", "bool": "BoolTensor",
}


def type_(self: Tensor, dtype: Any = None, non_blocking: bool = False) -> Any:
    """``Tensor.type()``: the type name (``lamina.FloatTensor``), or a cast to ``dtype`` (a
    dtype or such a name)."""
    if dtype is None:
        return f"lamina.{_TYPE_NAMES[self.dtype.name]}"
    if isinstance(dtype, str):
        by_name = {f"{p}.{v}": k for k, v in _TYPE_NAMES.items() for p in ("lamina", "torch")}
        if dtype not in by_name:
            raise ValueError(f"invalid type: '{dtype}'")
        dtype = dt._by_name(by_name[dtype])
    return self if dtype is self.dtype else ops.cast(self, dtype)


__all__ = [
    "Generator", "bernoulli", "default_generator", "eye", "get_rng_state", "initial_seed",
    "linspace", "logspace", "manual_seed", "multinomial", "normal", "rand", "rand_like",
    "randint", "randint_like", "randn", "randn_like", "random", "randperm", "seed",
    "set_rng_state", "tril", "triu",
]

# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {
    "uniform_": uniform_, "normal_": normal_, "bernoulli_": bernoulli_,
    "exponential_": exponential_, "random_": random_, "bernoulli": bernoulli,
    "multinomial": multinomial, "tril": tril, "triu": triu,
    "tril_": lambda self, diagonal=0: _write(self, tril(self, diagonal)),
    "triu_": lambda self, diagonal=0: _write(self, triu(self, diagonal)),
    "new_zeros": new_zeros, "new_ones": new_ones, "new_empty": new_empty,
    "new_full": new_full, "new_tensor": new_tensor, "type": type_,
}
