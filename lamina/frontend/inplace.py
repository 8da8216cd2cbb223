"""In-place ops (``add_``, ``mul_``, ``copy_``, ``zero_``, ...), PyTorch's semantics.

Each computes its result out of place with the ordinary op (so type
promotion, broadcasting and autograd recording are the ordinary ones), checks
that the result fits the destination (PyTorch's casting rule: no float into an
integer tensor, nothing but bool into a bool tensor; the shape must not grow),
then writes it into the destination's memory with a generated strided copy
kernel (converting the dtype on the way), so every view of that storage sees
the new values. The storage's version counter is bumped; the destination's
autograd history becomes the op's (``x.add_(y)`` acts as ``x = x + y``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from lamina.frontend import dispatch, ops, views
from lamina.frontend import dtypes as dt
from lamina.frontend.tensor import Tensor, bump_version, storage_owner
from lamina.ir import Module, parse
from lamina.ir.types import ScalarType

_TORCH_TYPE = {"float32": "Float", "float64": "Double", "float16": "Half",
               "bfloat16": "BFloat16", "int64": "Long", "int32": "Int", "int8": "Char",
               "bool": "Bool"}


# -- the strided copy kernel ----------------------------------------------------------------
def _memref(rank: int, dtype: ScalarType, layout: tuple[int | None, ...]) -> str:
    strides = ", ".join("?" if s is None else str(s) for s in layout)
    return f"memref<{'?x' * rank}{dtype}, strided<[{strides}]>>"


def copy_module(name: str, rank: int, src: ScalarType, dst: ScalarType,
                src_layout: tuple[int | None, ...], dst_layout: tuple[int | None, ...]
                ) -> Module:
    """The loop-stage program ``@name(src, dst)``: ``dst[i] = cast(src[i])`` over dst's
    shape (src has the same shape; both strided, layouts as in the eager contract)."""
    s, d = _memref(rank, src, src_layout), _memref(rank, dst, dst_layout)
    idx = ", ".join(f"%i{k}" for k in range(rank))
    at = f", {idx}" if rank else ""
    lines = [f"kernel @{name}_k(%src: {s}, %dst: {d}) {{"]
    if rank:
        lines += ["  %c0 = loop.const {value = 0} : index",
                  "  %c1 = loop.const {value = 1} : index"]
        lines += [f"  %n{k} = loop.dim %dst {{axis = {k}}} : index" for k in range(rank)]
    for k in range(rank):
        loop = "loop.parallel" if k == 0 else "loop.for"
        lines.append(f"{'  ' * (k + 1)}{loop} %c0, %n{k}, %c1 (%i{k}: index) {{")
    pad = "  " * (rank + 1)
    lines.append(f"{pad}%x = loop.load %src{at} : {src}")
    value = "%x"
    if src != dst:
        lines.append(f"{pad}%y = loop.cast %x {{dtype = {dst}}} : {dst}")
        value = "%y"
    lines.append(f"{pad}loop.store {value}, %dst{at}")
    lines += [f"{'  ' * (k + 1)}}}" for k in reversed(range(rank))]
    lines += ["}", "", f"func @{name}(%src: {s}, %dst: {d}) -> () {{",
              f"  loop.call %src, %dst {{kernel = @{name}_k}}", "  return", "}"]
    return parse("\n".join(lines) + "\n")


_programs: dict[tuple, Any] = {}
_lock = threading.Lock()


def _copy_program(rank: int, src: ScalarType, dst: ScalarType,
                  src_layout: tuple, dst_layout: tuple) -> Any:
    key = (rank, src, dst, src_layout, dst_layout)
    prog = _programs.get(key)
    if prog is None:
        with _lock:
            prog = _programs.get(key)
            if prog is None:
                from lamina.passes.prepare_loops import PrepareLoops
                from lamina.runtime import compile_program

                name = f"copy_{src}_{dst}_r{rank}"
                module = PrepareLoops().run(copy_module(name, rank, src, dst, src_layout,
                                                        dst_layout))
                prog = _programs[key] = compile_program(module, name)
    return prog


def write(dst: Tensor, src: Tensor) -> None:
    """Copy ``src`` (broadcast to ``dst``'s shape, any dtype) into ``dst``'s memory."""
    d, s = dst._a, src._a
    shape = d.shape
    if 0 in shape:
        return
    if type(d) is not np.ndarray or type(s) is not np.ndarray:  # a CUDA tensor
        from lamina.frontend.transfer import device_write

        return device_write(dst, src)
    if np.may_share_memory(d, s) and not (
            s.shape == shape and s.strides == d.strides and s.dtype == d.dtype
            and s.__array_interface__["data"][0] == d.__array_interface__["data"][0]):
        # overlapping differently (x.copy_(x.t())): an element could be read after it
        # was written, so read from a copy
        s = ops.clone(Tensor._wrap(s, src._dtype))._a
    src_strides = ops._expand_strides(s, shape)
    cshape, (cs, cd) = ops._collapse(shape, [src_strides, d.strides])
    sv = ops._restride(s, cshape, cs)
    dv = np.lib.stride_tricks.as_strided(d, cshape, cd)  # writeable, like d
    prog = _copy_program(len(cshape), src._dtype.ir, dst._dtype.ir, dispatch.layout_of(sv),
                         dispatch.layout_of(dv))
    prog(sv, dv)


# -- checks -------------------------------------------------------------------------------
def _check_target(x: Tensor, op: str) -> None:
    from lamina.autograd import grad_mode

    if not isinstance(x, Tensor):
        raise TypeError(f"{op}(): self must be a Tensor, got {type(x).__name__}")
    ag = x._ag
    if ag is not None:
        if ag.inference and not grad_mode.is_inference_mode_enabled():
            raise RuntimeError(
                "Inplace update to inference tensor outside InferenceMode is not allowed.You "
                "can make a clone to get a normal tensor before doing inplace update.See "
                "https://github.com/pytorch/rfcs/pull/17 for more details.")
        if ag.requires_grad and grad_mode.is_grad_enabled():
            if ag.grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an "
                                   "in-place operation.")
            if ag.is_view:
                raise NotImplementedError(
                    f"{op}: an in-place operation on a view of a tensor that requires grad is "
                    "not supported yet (the base's history would have to be rewritten); "
                    "operate on a clone of the view, or on the base")
    a = x._a
    if a is None:
        return
    if any(st == 0 and n > 1 for st, n in zip(a.strides, a.shape)):
        raise RuntimeError("unsupported operation: more than one element of the written-to "
                           "tensor refers to a single memory location. Please clone() the "
                           "tensor before performing the operation.")
    if not a.flags.writeable:
        raise RuntimeError(f"{op}: the tensor's memory is read-only (shape {list(x.shape)}, "
                           f"strides {list(x.stride())}); clone() it first")


def _check_result(x: Tensor, r: Tensor, op: str) -> None:
    if r._dtype.category > x._dtype.category:
        raise RuntimeError(f"result type {_TORCH_TYPE[r._dtype.name]} can't be cast to the "
                           f"desired output type {_TORCH_TYPE[x._dtype.name]}")
    if tuple(r.shape) != tuple(x.shape):
        raise RuntimeError(f"output with shape {list(x.shape)} doesn't match the broadcast "
                           f"shape {list(r.shape)}")


# -- the generic in-place op ------------------------------------------------------------------
def inplace(x: Tensor, op: str, compute: Callable[[], Tensor], check: bool = True) -> Tensor:
    """``x`` updated to ``compute()`` (computed out of place, then written into x)."""
    _check_target(x, op)
    from lamina.autograd.graph import next_seq

    start = next_seq()
    r = compute()
    if check:
        _check_result(x, r, op)
    if x._a is None or r._a is None or _tracing():
        return _traced(x, r, op)
    recorded = r._ag is not None and r._ag.grad_fn is not None
    if recorded:
        _protect_saved(r._ag.grad_fn, x, start)
        if r._dtype is not x._dtype:
            r = ops.cast(r, x._dtype)  # the gradient flowing into x's history has x's dtype
    write(x, r)
    bump_version(x._a)
    if recorded:
        from lamina.autograd.graph import bump_epoch, set_history

        set_history(x, r._ag.grad_fn, r._ag.output_nr)
        x._ag.is_view = False
        bump_epoch(x)  # the other tensors on this storage now carry a stale history
    return x


def _protect_saved(node: Any, x: Tensor, start: int) -> None:
    """The nodes recorded since ``start`` (those of this op) may have saved ``x`` (or a
    view of its storage) for a backward that reads it: they save a copy of the old
    value instead, since x is about to be overwritten."""
    from lamina.autograd.derivative import program_for

    owner = storage_owner(x._a)
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen or n.seq < start:
            continue
        seen.add(id(n))
        stack.extend(e[0] for e in n.next_edges if e is not None)
        args = getattr(n, "args", None)
        hit = [i for i, a in enumerate(args or ()) if isinstance(a, Tensor) and a._a is not None
               and storage_owner(a._a) is owner]
        if not hit:
            continue
        prog = program_for(n, [e is not None for e in n.next_edges], True)
        for i in hit:
            if i in prog.reads_args:
                args[i] = ops.clone(args[i])
                n.versions[i] = 0


def _traced(x: Tensor, r: Tensor, op: str) -> Tensor:
    """Inside ``lamina.compile``: an in-place op rebinds the traced value (views of x in the
    trace do not see it); into a concrete tensor it is recorded as that tensor's new value,
    written back after each run of the compiled step."""
    from lamina.frontend import trace

    if r._dtype is not x._dtype:
        r = ops.cast(r, x._dtype)
    if x._a is not None:
        tr = trace.current()
        if tr is None:
            raise RuntimeError(f"{op}: a symbolic value was written into a concrete tensor "
                               "outside lamina.compile")
        tr.write(x, r, op)
        return x
    x._value = r._value
    if r._ag is not None:
        x._ag = r._ag
    return x


def _tracing() -> bool:
    from lamina.frontend import trace

    return trace.current() is not None


# -- the ops ---------------------------------------------------------------------------------
def _number_as(value: Any, d: dt.dtype) -> Any:
    if isinstance(value, Tensor):
        return value
    if d is dt.bool_:
        return bool(value)
    if d.category == 1:
        return int(value)
    return float(value)


def _unary_inplace(name: str) -> Callable[[Tensor], Tensor]:
    fn = getattr(ops, name)

    def f(self: Tensor) -> Tensor:
        return inplace(self, f"{name}_", lambda: fn(self))

    f.__name__ = f"{name}_"
    f.__doc__ = f"In-place {name}."
    return f


def _binary_inplace(name: str) -> Callable[..., Tensor]:
    fn = getattr(ops, name)

    def f(self: Tensor, other: Any, **kwargs: Any) -> Tensor:
        return inplace(self, f"{name}_", lambda: fn(self, other, **kwargs))

    f.__name__ = f"{name}_"
    f.__doc__ = f"In-place {name}."
    return f


def _compare_inplace(name: str) -> Callable[..., Tensor]:
    fn = getattr(ops, name)

    def f(self: Tensor, other: Any) -> Tensor:
        # the 0/1 result is written in self's dtype (bool converts to anything)
        return inplace(self, f"{name}_", lambda: fn(self, other))

    f.__name__ = f"{name}_"
    return f


UNARY = ("neg", "abs", "exp", "exp2", "expm1", "log", "log2", "log1p", "sqrt", "rsqrt", "sin",
         "cos", "tan", "tanh", "sigmoid", "erf", "floor", "ceil", "round", "trunc", "sign",
         "relu", "logical_not")
BINARY = ("add", "sub", "mul", "div", "pow", "logical_and", "logical_or", "logical_xor")
COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")

_fns: dict[str, Callable[..., Tensor]] = {}
for _n in UNARY:
    _fns[f"{_n}_"] = _unary_inplace(_n)
for _n in BINARY:
    _fns[f"{_n}_"] = _binary_inplace(_n)
for _n in COMPARE:
    _fns[f"{_n}_"] = _compare_inplace(_n)

add_ = _fns["add_"]
sub_ = _fns["sub_"]
mul_ = _fns["mul_"]
div_ = _fns["div_"]
pow_ = _fns["pow_"]
neg_ = _fns["neg_"]
exp_ = _fns["exp_"]


def clamp_(self: Tensor, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """Limit values to [min, max] in place (either bound may be None)."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")

    def compute() -> Tensor:
        r = self
        if min is not None:
            r = ops._binary("maximum", r, min)
        if max is not None:
            r = ops._binary("minimum", r, max)
        return r if r is not self else ops.clone(self)

    return inplace(self, "clamp_", compute)


def clamp_min_(self: Tensor, min: Any) -> Tensor:  # noqa: A002
    return clamp_(self, min=min)


def clamp_max_(self: Tensor, max: Any) -> Tensor:  # noqa: A002
    return clamp_(self, max=max)


def _fill_build(shape: tuple[int, ...], d: dt.dtype) -> Callable:
    def build(b: Any, x: Any, v: Any) -> Any:
        if v.type.dtype != d.ir:
            v = b("tensor.cast", v, dtype=d.ir)
        if tuple(v.type.shape) != shape:
            v = b("tensor.expand", v, shape=shape)
        return v

    return build


def _needs_tape(*tensors: Any) -> bool:
    from lamina.autograd import grad_mode

    return grad_mode.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad for t in tensors)


def _direct(x: Tensor, src: Tensor, op: str) -> Tensor:
    """Write ``src`` into ``x`` with nothing to record: one copy kernel, converting."""
    write(x, src)
    bump_version(x._a)
    return x


def fill_(self: Tensor, value: Any) -> Tensor:
    """Set every element to ``value`` (a number or a 0-d tensor)."""
    _check_target(self, "fill_")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                           f"{value.ndim} dimensions.")
    shape, d = tuple(self.shape), self._dtype
    value = _number_as(value, d)
    if self._a is not None and not _needs_tape(self, value) and not _tracing():
        src = value if isinstance(value, Tensor) else Tensor._wrap(ops._scalar_array(value, d))
        return _direct(self, src, "fill_")

    def eager() -> Tensor:
        if isinstance(value, Tensor):
            return views.expand(ops.cast(value, d) if value._dtype is not d else value, shape)
        return ops.full(shape, value, dtype=d)

    sdt = None if isinstance(value, Tensor) else d
    # recorded over (self, value): self's old history gets no gradient, value's gets it
    return inplace(self, "fill_", lambda: dispatch.apply("fill_", _fill_build(shape, d),
                                                         (self, value), eager, sdt),
                   check=False)


def zero_(self: Tensor) -> Tensor:
    return fill_(self, 0)


def copy_(self: Tensor, src: Tensor, non_blocking: bool = False) -> Tensor:
    """Copy ``src`` (broadcast to self's shape, converted to self's dtype) into self."""
    _check_target(self, "copy_")
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_(): argument 'src' must be Tensor, not {type(src).__name__}")
    shape, d = tuple(self.shape), self._dtype
    full = ops.broadcast_shapes(tuple(src.shape), shape, op="copy_")
    if full != shape:
        raise RuntimeError(f"output with shape {list(shape)} doesn't match the broadcast shape "
                           f"{list(full)}")
    if (self._a is not None and src._a is not None and not _needs_tape(self, src)
            and not _tracing()):
        return _direct(self, src, "copy_")

    def eager() -> Tensor:
        return views.expand(ops.cast(src, d) if src._dtype is not d else src, shape)

    return inplace(self, "copy_", lambda: dispatch.apply("copy_", _fill_build(shape, d),
                                                         (self, src), eager), check=False)


def masked_fill_(self: Tensor, mask: Tensor, value: Any) -> Tensor:
    """Set the elements where ``mask`` is True to ``value``."""
    if not isinstance(mask, Tensor) or mask._dtype is not dt.bool_:
        got = mask._dtype.name if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{got}")
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value.ndim} dimension(s).")
    d = self._dtype
    v = _number_as(value, d)
    if isinstance(v, Tensor) and v._dtype is not d:
        v = ops.cast(v, d)
    return inplace(self, "masked_fill_", lambda: ops.where(mask, v, self))


def addcmul_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """``self += value * tensor1 * tensor2``."""
    return inplace(self, "addcmul_",
                   lambda: ops.add(self, ops.mul(ops.mul(tensor1, tensor2), value)))


def addcdiv_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """``self += value * tensor1 / tensor2``."""
    return inplace(self, "addcdiv_",
                   lambda: ops.add(self, ops.mul(ops.div(tensor1, tensor2), value)))


def lerp_(self: Tensor, end: Tensor, weight: Any) -> Tensor:
    """``self += weight * (end - self)``."""
    return inplace(self, "lerp_", lambda: ops.add(self, ops.mul(ops.sub(end, self), weight)))


def _iop(fn: Callable[..., Tensor]) -> Callable[[Tensor, Any], Tensor]:
    return lambda self, other: fn(self, other)


TENSOR_METHODS: dict[str, Callable[..., Tensor]] = {
    **_fns,
    "clamp_": clamp_, "clamp_min_": clamp_min_, "clamp_max_": clamp_max_, "clip_": clamp_,
    "fill_": fill_, "zero_": zero_, "copy_": copy_, "masked_fill_": masked_fill_,
    "addcmul_": addcmul_, "addcdiv_": addcdiv_, "lerp_": lerp_,
    "sigmoid_": _fns["sigmoid_"], "true_divide_": _fns["div_"], "multiply_": _fns["mul_"],
    "subtract_": _fns["sub_"], "negative_": _fns["neg_"],
    "__iadd__": _iop(add_), "__isub__": _iop(sub_), "__imul__": _iop(mul_),
    "__itruediv__": _iop(div_), "__ipow__": _iop(pow_),
    "__iand__": _iop(_fns["logical_and_"]), "__ior__": _iop(_fns["logical_or_"]),
    "__ixor__": _iop(_fns["logical_xor_"]),
}

__all__ = ["TENSOR_METHODS", "add_", "clamp_", "copy_", "fill_", "inplace", "masked_fill_",
           "mul_", "write", "zero_"]
