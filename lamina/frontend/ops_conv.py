"""Tensor operations: convolution, pooling and normalisation (``torch.conv2d``,
``torch.max_pool2d``, ``torch.batch_norm``, ...).

Each op checks its arguments with PyTorch's messages, then goes through
``dispatch.apply`` with a *semantic* build over its own arguments (what a trace
records and the autograd tape differentiates) and an eager path. Eagerly a
convolution is one program: the padding kernel (when there is padding), the
tiled convolution kernel and the bias add; a pool is one kernel; a
normalisation is one build of fused reductions and elementwise ops (its
parameters passed as stride-0 views of the input's shape, ``1/n`` and ``eps``
as run-time numbers), so sizes never enter a kernel's cache key.
``conv_transpose`` states its primitive directly in the eager build (its padding
depends on the kernel size, which the tensor op leaves to the decomposition).
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Sequence

import numpy as np

from lamina.frontend import dispatch, trace, views
from lamina.frontend import dtypes as dt
from lamina.frontend.ops import _check_tensor, add, div, mul, numel_tensor, sub, zeros
from lamina.frontend.tensor import Tensor
from lamina.ir import Builder, Value

__all__ = [
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "batch_norm", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "group_norm", "layer_norm", "max_pool1d",
    "max_pool1d_with_indices", "max_pool2d", "max_pool2d_with_indices", "max_pool3d",
    "max_pool3d_with_indices", "pixel_shuffle", "pixel_unshuffle",
]

# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {}


# -- argument checks --------------------------------------------------------------------------
def _ntuple(v: Any, nd: int, op: str, name: str, low: int) -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints (one int repeats), each ``>= low``."""
    if isinstance(v, Tensor):
        v = v.tolist()
    items = [v] * nd if isinstance(v, (int, np.integer)) else list(v)
    if len(items) == 1 and nd > 1:
        items = items * nd
    if len(items) != nd or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                   for a in items):
        raise TypeError(f"{op}(): argument '{name}' must be an int or a tuple of {nd} ints, "
                        f"got {v!r}")
    out = tuple(int(a) for a in items)
    if any(a < low for a in out):
        what = {1: "positive", 0: "non-negative"}[low]
        raise RuntimeError(f"{op}(): {name} must be {what}, got {list(out)}")
    return out


_TORCH_NAMES = {"int64": "Long", "int32": "Int", "int8": "Char", "bool": "Bool",
                "uint8": "Byte", "int16": "Short"}


def _float_input(x: Tensor, op: str) -> None:
    if not x.dtype.is_floating_point:
        name = _TORCH_NAMES.get(x.dtype.name, x.dtype.name.capitalize())
        raise RuntimeError(f'"{op}" not implemented for \'{name}\' (input of shape '
                           f"{list(x.shape)})")


def _batched(x: Tensor, nd: int, op: str, what: str = "input") -> bool:
    """Whether ``x`` has a batch axis (``nd + 2`` axes) or not (``nd + 1``)."""
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) "
                           f"{what}, but got {what} of size: {list(x.shape)}")
    return x.ndim == nd + 2


def _bcast(x: Tensor, shape: tuple[int, ...], axes: Sequence[int]) -> np.ndarray:
    """``x`` (whose axes are ``axes`` of ``shape``) as a stride-0 view of ``shape``."""
    view = [1] * len(shape)
    for a, n in zip(axes, x.shape):
        view[a] = n
    return np.broadcast_to(x._a.reshape(view), shape)


def _sizes(shape: Sequence[int]) -> str:
    return " x ".join(str(n) for n in shape)


# -- convolution ---------------------------------------------------------------------------
def _conv_padding(padding: Any, nd: int, kernel: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int], op: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * nd, (0,) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 "convolutions")
            total = [d * (k - 1) for k, d in zip(kernel, dilation)]
            low = tuple(t // 2 for t in total)
            return low, tuple(t - lo for t, lo in zip(total, low))
        raise ValueError(f"{op}: Invalid padding string '{padding}', should be one of "
                         "{'valid', 'same'}")
    p = _ntuple(padding, nd, op, "padding", 0)
    return p, p


def _check_conv(op: str, nd: int, x: Tensor, w: Tensor, bias: Tensor | None, groups: int,
                transposed: bool) -> None:
    _check_tensor(w, op, "weight")
    if w.ndim != nd + 2:
        raise RuntimeError(f"{op}: weight should have {nd + 2} dimensions, got weight of size "
                           f"{list(w.shape)}")
    for t, what in ((w, "weight"), (bias, "bias")):
        if t is not None and t.dtype is not x.dtype:
            raise RuntimeError(f"{op}: Input type ({x.dtype.name}) and {what} type "
                               f"({t.dtype.name}) should be the same")
    _float_input(x, op)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise RuntimeError(f"{op}: non-positive groups is not supported (groups={groups!r})")
    c = x.shape[1]
    if transposed:
        if w.shape[0] != c:
            raise RuntimeError(f"{op}: Given transposed=1, weight of size {list(w.shape)}, "
                               f"expected input{list(x.shape)} to have {w.shape[0]} channels, "
                               f"but got {c} channels instead")
        if c % groups:
            raise RuntimeError(f"{op}: Given groups={groups}, expected input channels {c} to be "
                               f"divisible by {groups}")
        out_c = w.shape[1] * groups
    else:
        if w.shape[0] % groups:
            raise RuntimeError(f"{op}: Given groups={groups}, expected weight to be divisible "
                               f"by {groups} at dimension 0, but got weight of size "
                               f"{list(w.shape)} instead")
        if c != w.shape[1] * groups:
            raise RuntimeError(f"{op}: Given groups={groups}, weight of size {list(w.shape)}, "
                               f"expected input{list(x.shape)} to have {w.shape[1] * groups} "
                               f"channels, but got {c} channels instead")
        out_c = w.shape[0]
    if bias is not None:
        _check_tensor(bias, op, "bias")
        if tuple(bias.shape) != (out_c,):
            raise RuntimeError(f"{op}: Given weight of size {list(w.shape)}, expected bias to "
                               f"be 1-dimensional with {out_c} elements, but got bias of size "
                               f"{list(bias.shape)} instead")


def _with_bias(b: Builder, y: Value, bias: Value, nd: int) -> Value:
    channels = bias.type.shape[0]
    return b("tensor.add", y, b("tensor.reshape", bias, shape=(channels,) + (1,) * nd))


def _conv(op: str, nd: int, input: Tensor, weight: Tensor, bias: Tensor | None, stride: Any,
          padding: Any, dilation: Any, groups: int) -> Tensor:
    x = _check_tensor(input, op)
    if not _batched(x, nd, op):
        return views.squeeze(_conv(op, nd, views.unsqueeze(x, 0), weight, bias, stride, padding,
                                   dilation, groups), 0)
    _check_conv(op, nd, x, weight, bias, groups, False)
    w = weight
    stride = _ntuple(stride, nd, op, "stride", 1)
    dilation = _ntuple(dilation, nd, op, "dilation", 1)
    kernel = tuple(w.shape[2:])
    low, high = _conv_padding(padding, nd, kernel, stride, dilation, op)
    padded = [n + lo + hi for n, lo, hi in zip(x.shape[2:], low, high)]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if any(p < s for p, s in zip(padded, span)):
        raise RuntimeError(f"{op}: Calculated padded input size per channel: ({_sizes(padded)})"
                           f". Kernel size: ({_sizes(span)}). Kernel size can't be greater than "
                           "actual input size")
    out_shape = (x.shape[0], w.shape[0],
                 *((p - s) // st + 1 for p, s, st in zip(padded, span, stride)))
    attrs = dict(stride=stride, dilation=dilation, groups=groups, low=low, high=high)
    args = (x, w) if bias is None else (x, w, bias)

    def semantic(b: Builder, xv: Value, wv: Value, *bv: Value) -> Value:
        y = b("tensor.conv", xv, wv, **attrs)
        return _with_bias(b, y, bv[0], nd) if bv else y

    def eager() -> Tensor:
        if 0 in out_shape or w.shape[1] == 0 or 0 in kernel:
            out = zeros(out_shape, dtype=x.dtype)
            return out if bias is None else add(out, views.reshape(bias, (-1,) + (1,) * nd))
        arrays = [x._a, w._a]
        if bias is not None:
            arrays.append(_bcast(bias, out_shape, (1,)))

        def build(b: Builder, xv: Value, wv: Value, *bv: Value) -> Value:
            y = b("tensor.conv", xv, wv, **attrs)
            return b("tensor.add", y, bv[0]) if bv else y

        key = ("conv", tuple(sorted(attrs.items())), bias is not None)
        (res,) = dispatch.run_eager(key, build, arrays, [x.dtype.ir] * len(arrays))
        return Tensor._wrap(res.reshape(out_shape), x.dtype)

    return dispatch.apply(op, semantic, args, eager)


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """1-d convolution over ``(N, C, L)`` (a generated tiled kernel)."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """2-d convolution over ``(N, C, H, W)`` (a generated tiled kernel)."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """3-d convolution over ``(N, C, D, H, W)``."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op: str, nd: int, input: Tensor, weight: Tensor, bias: Tensor | None,
                    stride: Any, padding: Any, output_padding: Any, groups: int,
                    dilation: Any) -> Tensor:
    from lamina.ir.dialects.tensor_conv import transpose_size
    from lamina.passes.decompose_conv import transposed_conv_attrs

    x = _check_tensor(input, op)
    if not _batched(x, nd, op):
        return views.squeeze(_conv_transpose(op, nd, views.unsqueeze(x, 0), weight, bias,
                                             stride, padding, output_padding, groups,
                                             dilation), 0)
    _check_conv(op, nd, x, weight, bias, groups, True)
    w = weight
    stride = _ntuple(stride, nd, op, "stride", 1)
    dilation = _ntuple(dilation, nd, op, "dilation", 1)
    padding = _ntuple(padding, nd, op, "padding", 0)
    output_padding = _ntuple(output_padding, nd, op, "output_padding", 0)
    for o, s, d in zip(output_padding, stride, dilation):
        if o >= builtins.max(s, d):
            raise RuntimeError(f"{op}: output padding must be smaller than either stride or "
                               f"dilation, but got output_padding={list(output_padding)}, "
                               f"stride={list(stride)}, dilation={list(dilation)}")
    spatial = tuple(transpose_size(n, k, s, d, p, o) for n, k, s, d, p, o in
                    zip(x.shape[2:], w.shape[2:], stride, dilation, padding, output_padding))
    if any(n <= 0 for n in spatial):
        raise RuntimeError(f"{op}: Given input size per channel: ({_sizes(x.shape[2:])}). "
                           f"Calculated output size per channel: ({_sizes(spatial)}). Output "
                           "size is too small")
    out_shape = (x.shape[0], w.shape[1] * groups, *spatial)
    attrs = dict(stride=stride, dilation=dilation, groups=groups, padding=padding,
                 output_padding=output_padding)
    args = (x, w) if bias is None else (x, w, bias)

    def semantic(b: Builder, xv: Value, wv: Value, *bv: Value) -> Value:
        y = b("tensor.conv_transpose", xv, wv, **attrs)
        return _with_bias(b, y, bv[0], nd) if bv else y

    def eager() -> Tensor:
        if 0 in out_shape or 0 in x.shape or 0 in w.shape:
            out = zeros(out_shape, dtype=x.dtype)
            return out if bias is None else add(out, views.reshape(bias, (-1,) + (1,) * nd))
        # the primitive itself: its padding depends on the (concrete) kernel size
        prim_attrs = transposed_conv_attrs(tuple(w.shape[2:]), attrs)
        arrays = [x._a, w._a]
        if bias is not None:
            arrays.append(_bcast(bias, out_shape, (1,)))

        def build(b: Builder, xv: Value, wv: Value, *bv: Value) -> Value:
            y = b("prim.conv", xv, wv, **prim_attrs)
            return b("tensor.add", y, bv[0]) if bv else y

        key = ("conv_transpose", tuple(sorted(prim_attrs.items())), bias is not None)
        (res,) = dispatch.run_eager(key, build, arrays, [x.dtype.ir] * len(arrays))
        return Tensor._wrap(res.reshape(out_shape), x.dtype)

    return dispatch.apply(op, semantic, args, eager)


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:
    """Transposed 2-d convolution: the input gradient of ``conv2d`` (the same kernel)."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
                     padding: Any = 0, output_padding: Any = 0, groups: int = 1,
                     dilation: Any = 1) -> Tensor:
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# -- pooling -----------------------------------------------------------------------------------
def _pool_common(op: str, nd: int, x: Tensor, kernel_size: Any, stride: Any, padding: Any,
                 dilation: Any, ceil_mode: bool, has_dilation: bool) -> dict:
    _check_tensor(x, op)
    _batched(x, nd, op)
    _float_input(x, op)
    window = _ntuple(kernel_size, nd, op, "kernel_size", 1)
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = window
    stride = _ntuple(stride, nd, op, "stride", 1)
    padding = _ntuple(padding, nd, op, "padding", 0)
    dilation = _ntuple(dilation, nd, op, "dilation", 1)
    for k, d, p in zip(window, dilation, padding):
        if 2 * p > (k - 1) * d + 1:
            what = "effective kernel size" if has_dilation else "kernel size"
            extra = f" and dilation={d}" if has_dilation else ""
            raise RuntimeError(f"{op}: pad should be at most half of {what}, but got pad={p}, "
                               f"kernel_size={k}{extra}")
    if any(n == 0 for n in x.shape[x.ndim - nd:]) or (x.ndim == nd + 2 and x.shape[1] == 0):
        raise RuntimeError(f"{op}: Expected input's non-batch dimensions to have positive "
                           f"length, but input has a shape of {list(x.shape)}")
    attrs = dict(window=window, stride=stride, padding=padding, ceil_mode=bool(ceil_mode))
    if has_dilation:
        attrs["dilation"] = dilation
    return attrs


def _pool_shape(op: str, x: Tensor, attrs: dict, nd: int) -> tuple[int, ...]:
    from lamina.ir.dialects.prim_conv import pool_size

    lead = tuple(x.shape[:x.ndim - nd])
    dil = attrs.get("dilation", (1,) * nd)
    out = tuple(pool_size(n, k, s, d, p, attrs["ceil_mode"]) for n, k, s, d, p in
                zip(x.shape[x.ndim - nd:], attrs["window"], attrs["stride"], dil,
                    attrs["padding"]))
    if any(o <= 0 for o in out):
        inner = "x".join(str(n) for n in x.shape[x.ndim - nd - 1:])
        outer = "x".join(str(n) for n in (x.shape[x.ndim - nd - 1], *out))
        raise RuntimeError(f"{op}: Given input size: ({inner}). Calculated output size: "
                           f"({outer}). Output size is too small")
    return lead + out


def _pool_op(op: str, tensor_op: str, x: Tensor, attrs: dict, out_shape: tuple[int, ...],
             out_dtype: dt.dtype) -> Tensor:
    def build(b: Builder, v: Value) -> Value:
        return b(tensor_op, v, **attrs)

    def eager() -> Tensor:
        if 0 in out_shape:
            return zeros(out_shape, dtype=out_dtype)
        key = (tensor_op, tuple(sorted(attrs.items())))
        (res,) = dispatch.run_eager(key, build, [x._a], [x.dtype.ir])
        return Tensor._wrap(res.reshape(out_shape), out_dtype)

    return dispatch.apply(op, build, (x,), eager)


def _max_pool(op: str, nd: int, input: Tensor, kernel_size: Any, stride: Any, padding: Any,
              dilation: Any, ceil_mode: bool, return_indices: bool) -> Any:
    attrs = _pool_common(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, True)
    shape = _pool_shape(op, input, attrs, nd)
    values = _pool_op(op, "tensor.max_pool", input, attrs, shape, input.dtype)
    if not return_indices:
        return values
    return values, _pool_op(op, "tensor.max_pool_index", input, attrs, shape, dt.int64)


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """Max pooling over ``(N, C, H, W)``; the gradient goes to each window's (first) max."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool3d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Any:
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool1d_with_indices(input: Tensor, kernel_size: Any, stride: Any = None,
                            padding: Any = 0, dilation: Any = 1,
                            ceil_mode: bool = False) -> tuple[Tensor, Tensor]:
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input: Tensor, kernel_size: Any, stride: Any = None,
                            padding: Any = 0, dilation: Any = 1,
                            ceil_mode: bool = False) -> tuple[Tensor, Tensor]:
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(input: Tensor, kernel_size: Any, stride: Any = None,
                            padding: Any = 0, dilation: Any = 1,
                            ceil_mode: bool = False) -> tuple[Tensor, Tensor]:
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _avg_pool(op: str, nd: int, input: Tensor, kernel_size: Any, stride: Any, padding: Any,
              ceil_mode: bool, count_include_pad: bool, divisor_override: int | None) -> Tensor:
    attrs = _pool_common(op, nd, input, kernel_size, stride, padding, 1, ceil_mode, False)
    if divisor_override is not None and (not isinstance(divisor_override, int)
                                         or divisor_override == 0):
        raise RuntimeError(f"{op}: divisor must be not zero (got {divisor_override!r})")
    attrs.update(count_include_pad=bool(count_include_pad), divisor=int(divisor_override or 0))
    shape = _pool_shape(op, input, attrs, nd)
    return _pool_op(op, "tensor.avg_pool", input, attrs, shape, input.dtype)


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True) -> Tensor:
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    """Average pooling over ``(N, C, H, W)``, PyTorch's divisor rules."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool3d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: int | None = None) -> Tensor:
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def _adaptive_avg_pool(op: str, nd: int, input: Tensor, output_size: Any) -> Tensor:
    x = _check_tensor(input, op)
    _batched(x, nd, op)
    _float_input(x, op)
    spatial = tuple(x.shape[x.ndim - nd:])
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size,) * nd
    sizes = list(output_size)
    if len(sizes) == 1 and nd > 1:
        sizes = sizes * nd
    if len(sizes) != nd:
        raise TypeError(f"{op}(): output_size must be an int or a tuple of {nd} ints, got "
                        f"{output_size!r}")
    out = tuple(n if s is None else int(s) for s, n in zip(sizes, spatial))
    if any(o < 0 for o in out):
        raise RuntimeError(f"{op}: elements of output_size must be greater than or equal to "
                           f"0 but received {list(out)}")
    if any(n == 0 for n in x.shape[1:]):
        raise RuntimeError(f"{op}(): Expected input to have non-zero size for non-batch "
                           f"dimensions, but input has sizes {list(x.shape)} with dimension "
                           f"{next(i for i, n in enumerate(x.shape) if n == 0 and i)} being "
                           "empty")
    shape = tuple(x.shape[:x.ndim - nd]) + out
    if 0 in out:
        return zeros(shape, dtype=x.dtype)
    return _pool_op(op, "tensor.adaptive_avg_pool", x, {"output": out}, shape, x.dtype)


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Averages over PyTorch's adaptive windows ``[floor(i*H/h), ceil((i+1)*H/h))``."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool3d(input: Tensor, output_size: Any) -> Tensor:
    return _adaptive_avg_pool("adaptive_avg_pool3d", 3, input, output_size)


# -- normalisation --------------------------------------------------------------------------
def _compute(d: dt.dtype) -> dt.dtype:
    """Normalisations of f16/bf16 compute in f32 (like PyTorch's accumulation)."""
    return dt.float32 if d in (dt.float16, dt.bfloat16) else d


def _as(b: Builder, v: Value | None, d: dt.dtype) -> Value | None:
    if v is None or v.type.dtype == d.ir:
        return v
    return b("tensor.cast", v, dtype=d.ir)


def _normalize(b: Builder, x: Value, dims: tuple[int, ...], inv_n: Value, eps: Value
               ) -> tuple[Value, Value, Value]:
    """(normalised x, mean, biased variance) over ``dims``; mean/var keep the axes. The
    result has the dtype of ``inv_n`` (the compute dtype)."""
    d = dt.from_ir(inv_n.type.dtype)
    x, eps = _as(b, x, d), _as(b, eps, d)
    mean = b("tensor.mul", b("tensor.sum", x, dims=dims, keepdim=True), inv_n)
    xc = b("tensor.sub", x, mean)
    var = b("tensor.mul", b("tensor.sum", b("tensor.mul", xc, xc), dims=dims, keepdim=True),
            inv_n)
    return b("tensor.mul", xc, b("tensor.rsqrt", b("tensor.add", var, eps))), mean, var


def _affine(b: Builder, y: Value, w: Value | None, bias: Value | None,
            out: dt.dtype | None = None) -> Value:
    """``y * w + bias`` in ``y``'s dtype, then converted to ``out``."""
    d = dt.from_ir(y.type.dtype)
    if w is not None:
        y = b("tensor.mul", y, _as(b, w, d))
    if bias is not None:
        y = b("tensor.add", y, _as(b, bias, d))
    return y if out is None else _as(b, y, out)


def _param(p: Tensor | None, x: Tensor, op: str, what: str, shape: tuple[int, ...]) -> None:
    if p is None:
        return
    _check_tensor(p, op, what)
    if tuple(p.shape) != shape:
        raise RuntimeError(f"{op}: expected {what} of shape {list(shape)}, got "
                           f"{list(p.shape)} (input {list(x.shape)})")
    if p.dtype is not x.dtype:
        raise RuntimeError(f"{op}: expected {what} to have dtype {x.dtype.name}, got "
                           f"{p.dtype.name}")


def _present(*ts: Tensor | None) -> tuple[Tensor, ...]:
    return tuple(t for t in ts if t is not None)


def batch_norm(input: Tensor, weight: Tensor | None, bias: Tensor | None,
               running_mean: Tensor | None, running_var: Tensor | None, training: bool,
               momentum: float, eps: float, cudnn_enabled: bool = True) -> Tensor:
    """``torch.batch_norm``: batch statistics (biased variance) when ``training``, updating
    the running statistics in place (unbiased variance) under no recording; running
    statistics otherwise."""
    op = "batch_norm"
    x = _check_tensor(input, op)
    _float_input(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: expected at least 2D input (got {x.ndim}D input)")
    c = x.shape[1]
    for p, what in ((weight, "weight"), (bias, "bias"), (running_mean, "running_mean"),
                    (running_var, "running_var")):
        _param(p, x, op, what, (c,))
    stats_axes = (0, *range(2, x.ndim))
    # ``?`` batch size (compile(dynamic=True)): the count is a traced value, checked by nobody
    n: Any = numel_tensor(x, stats_axes, _compute(x.dtype)) if None in x.shape else (
        x.numel() // c if c else 0)
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError(f"{op}: running_mean and running_var must be defined in evaluation "
                           "mode")
    if training and isinstance(n, int) and n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {list(x.shape)}")
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    shape = tuple(x.shape)

    if training:
        def semantic(b: Builder, xv: Value, *rest: Value) -> Value:
            *params, inv_n, e = rest
            y, _, _ = _normalize(b, xv, stats_axes, inv_n, e)
            return _affine(b, y, *_unpack(b, params, weight, bias, per_channel), x.dtype)

        args = (x, *_present(weight, bias), _inverse(n), float(eps))

        def eager() -> Tensor:
            return _batch_norm_train(x, weight, bias, running_mean, running_var, momentum,
                                     eps, n, stats_axes)

        if trace.current() is not None:  # traced: the running statistics as traced ops
            y = dispatch.apply(op, semantic, args, eager, _compute(x.dtype))
            _traced_running_stats(x, running_mean, running_var, momentum, n, stats_axes)
            return y
    else:
        def semantic(b: Builder, xv: Value, rm: Value, rv: Value, *rest: Value) -> Value:
            *params, e = rest
            d = dt.from_ir(e.type.dtype)
            mean = _as(b, b("tensor.reshape", rm, shape=per_channel), d)
            var = _as(b, b("tensor.reshape", rv, shape=per_channel), d)
            y = b("tensor.mul", b("tensor.sub", _as(b, xv, d), mean),
                  b("tensor.rsqrt", b("tensor.add", var, e)))
            return _affine(b, y, *_unpack(b, params, weight, bias, per_channel), x.dtype)

        args = (x, running_mean, running_var, *_present(weight, bias), float(eps))

        def eager() -> Tensor:
            def build(b: Builder, xv: Value, rm: Value, rv: Value, *rest: Value) -> Value:
                *params, e = rest
                d = dt.from_ir(e.type.dtype)
                y = b("tensor.mul", b("tensor.sub", _as(b, xv, d), _as(b, rm, d)),
                      b("tensor.rsqrt", b("tensor.add", _as(b, rv, d), e)))
                return _affine(b, y, *_flags(params, weight, bias), x.dtype)

            arrays = [x._a, *(_bcast(t, shape, (1,)) for t in
                              (running_mean, running_var, *_present(weight, bias)))]
            return _run_norm(("batch_norm_eval", weight is not None, bias is not None), build,
                             x, arrays, eps)

    return dispatch.apply(op, semantic, args, eager, _compute(x.dtype))


def _unpack(b: Builder, params: Sequence[Value], weight: Any, bias: Any,
            shape: tuple[int, ...]) -> tuple[Value | None, Value | None]:
    it = iter(params)
    w = b("tensor.reshape", next(it), shape=shape) if weight is not None else None
    bb = b("tensor.reshape", next(it), shape=shape) if bias is not None else None
    return w, bb


def _flags(params: Sequence[Value], weight: Any, bias: Any) -> tuple[Value | None, ...]:
    it = iter(params)
    return (next(it) if weight is not None else None, next(it) if bias is not None else None)


def _number(value: float, d: dt.dtype) -> np.ndarray:
    store = dt.float32 if d in (dt.float16, dt.bfloat16) else d
    return np.array(value, dtype=store.numpy)


def _run_norm(key: tuple, build: Any, x: Tensor, arrays: list, eps: float,
              numbers: Sequence[float] = ()) -> Any:
    """Run a normalisation build on ``arrays`` then the numbers (``numbers``, then eps):
    its one result as a tensor of ``x``'s dtype, or its results as arrays."""
    scal = [_number(v, _compute(x.dtype)) for v in (*numbers, eps)]
    types = [x.dtype.ir] * len(arrays) + [dt.from_numpy(a.dtype).ir for a in scal]
    res = dispatch.run_eager(key, build, [*arrays, *scal], types)
    if len(res) == 1:
        return Tensor._wrap(res[0], x.dtype)
    return res


def _inverse(n: Any) -> Any:
    """``1 / n`` for a count that is an int, or a 0-d tensor under a symbolic batch size."""
    return 1.0 / n if isinstance(n, int) else div(1.0, n)


def _traced_running_stats(x: Tensor, running_mean: Tensor | None,
                          running_var: Tensor | None, momentum: float | None, n: Any,
                          axes: tuple[int, ...]) -> None:
    from lamina.frontend.ops import sum as total

    m = 0.1 if momentum is None else momentum
    mean = mul(total(x, axes), _inverse(n))
    centred = sub(x, views.reshape(mean, (1, -1) + (1,) * (x.ndim - 2)))
    unbiased = mul(total(mul(centred, centred), axes), _inverse(n - 1))
    for buf, stat in ((running_mean, mean), (running_var, unbiased)):
        if buf is not None:
            buf.copy_(add(mul(buf, 1.0 - m), mul(stat, m)))


def _batch_norm_train(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                      running_mean: Tensor | None, running_var: Tensor | None, momentum: float,
                      eps: float, n: int, axes: tuple[int, ...]) -> Tensor:
    shape = tuple(x.shape)
    track = running_mean is not None or running_var is not None

    def build(b: Builder, xv: Value, *rest: Value) -> Any:
        *params, inv_n, e = rest
        y, mean, var = _normalize(b, xv, axes, inv_n, e)
        y = _affine(b, y, *_flags(params, weight, bias), x.dtype)
        if not track:
            return y
        # the statistics themselves, one value per channel (cheap second outputs)
        return (y, b("tensor.sum", mean, dims=axes, keepdim=False),
                b("tensor.sum", var, dims=axes, keepdim=False))

    arrays = [x._a, *(_bcast(t, shape, (1,)) for t in _present(weight, bias))]
    key = ("batch_norm_train", axes, weight is not None, bias is not None, track)
    res = _run_norm(key, build, x, arrays, eps, (1.0 / n,))
    if not track:
        return res
    y, mean, var = res
    m = 0.1 if momentum is None else momentum
    c = x.shape[1]
    if running_mean is not None:
        new = add(mul(running_mean, 1.0 - m), mul(Tensor._wrap(mean.reshape(c)), m))
        running_mean.copy_(new)
    if running_var is not None:
        unbiased = mul(Tensor._wrap(var.reshape(c)), n / (n - 1))
        running_var.copy_(add(mul(running_var, 1.0 - m), mul(unbiased, m)))
    return Tensor._wrap(y.reshape(shape), x.dtype)


def layer_norm(input: Tensor, normalized_shape: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5,
               cudnn_enable: bool = True) -> Tensor:
    """Normalise over the last ``len(normalized_shape)`` axes (biased variance), then the
    elementwise affine map: one build of two reductions and the elementwise tail."""
    op = "layer_norm"
    x = _check_tensor(input, op)
    _float_input(x, op)
    norm = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(norm)
    if k == 0 or k > x.ndim or tuple(x.shape[x.ndim - k:]) != norm:
        raise RuntimeError(f"{op}: Given normalized_shape={list(norm)}, expected input with "
                           f"shape [*, {', '.join(map(str, norm))}], but got input of size "
                           f"{list(x.shape)}")
    _param(weight, x, op, "weight", norm)
    _param(bias, x, op, "bias", norm)
    axes = tuple(range(x.ndim - k, x.ndim))
    n = math.prod(norm)
    shape = tuple(x.shape)

    def semantic(b: Builder, xv: Value, *rest: Value) -> Value:
        *params, inv_n, e = rest
        y, _, _ = _normalize(b, xv, axes, inv_n, e)
        return _affine(b, y, *_flags(params, weight, bias), x.dtype)

    def eager() -> Tensor:
        if x.numel() == 0:
            return zeros(shape, dtype=x.dtype)
        arrays = [x._a, *(_bcast(t, shape, axes) for t in _present(weight, bias))]
        key = ("layer_norm", axes, weight is not None, bias is not None)
        return _run_norm(key, semantic, x, arrays, eps, (1.0 / n,))

    args = (x, *_present(weight, bias), 1.0 / n, float(eps))
    return dispatch.apply(op, semantic, args, eager, _compute(x.dtype))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5,
               cudnn_enabled: bool = True) -> Tensor:
    """Normalise each group of ``C / num_groups`` channels (and all spatial positions)."""
    op = "group_norm"
    x = _check_tensor(input, op)
    _float_input(x, op)
    if x.ndim < 2:
        raise RuntimeError(f"{op}: Expected at least 2 dimensions for input tensor but "
                           f"received {x.ndim}")
    n_, c = x.shape[0], x.shape[1]
    g = int(num_groups)
    if g <= 0 or c % g:
        raise RuntimeError(f"{op}: Expected number of channels in input to be divisible by "
                           f"num_groups, but got input of shape {list(x.shape)} and "
                           f"num_groups={num_groups}")
    _param(weight, x, op, "weight", (c,))
    _param(bias, x, op, "bias", (c,))
    spatial = math.prod(x.shape[2:])
    grouped = (n_, g, c // g, spatial)
    count = (c // g) * spatial
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    shape = tuple(x.shape)

    def semantic(b: Builder, xv: Value, *rest: Value) -> Value:
        *params, inv_n, e = rest
        y, _, _ = _normalize(b, b("tensor.reshape", xv, shape=grouped), (2, 3), inv_n, e)
        y = b("tensor.reshape", y, shape=shape)
        return _affine(b, y, *_unpack(b, params, weight, bias, per_channel), x.dtype)

    def eager() -> Tensor:
        if x.numel() == 0:
            return zeros(shape, dtype=x.dtype)
        xg = views.reshape(x, grouped)
        params = [_bcast(views.reshape(t, (g, c // g)), grouped, (1, 2))
                  for t in _present(weight, bias)]

        def build(b: Builder, xv: Value, *rest: Value) -> Value:
            *ps, inv_n, e = rest
            y, _, _ = _normalize(b, xv, (2, 3), inv_n, e)
            return _affine(b, y, *_flags(ps, weight, bias), x.dtype)

        key = ("group_norm", weight is not None, bias is not None)
        y = _run_norm(key, build, x, [xg._a, *params], eps, (1.0 / count,))
        return Tensor._wrap(y._a.reshape(shape), x.dtype)

    args = (x, *_present(weight, bias), 1.0 / count, float(eps))
    return dispatch.apply(op, semantic, args, eager, _compute(x.dtype))


# -- rearrangement ----------------------------------------------------------------------------
def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """``(*, C*r*r, H, W) -> (*, C, H*r, W*r)`` (views, then one copy)."""
    x = _check_tensor(input, "pixel_shuffle")
    r = int(upscale_factor)
    if x.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got "
                           f"input with {x.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = x.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be "
                           f"divisible by the square of upscale_factor, but input.size(-3)={c}"
                           f" is not divisible by {r * r}")
    k = len(lead)
    v = views.reshape(x, (*lead, c // (r * r), r, r, h, w))
    v = views.permute(v, (*range(k), k, k + 3, k + 1, k + 4, k + 2))
    return views.reshape(v, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """``(*, C, H*r, W*r) -> (*, C*r*r, H, W)``, the inverse of ``pixel_shuffle``."""
    x = _check_tensor(input, "pixel_unshuffle")
    r = int(downscale_factor)
    if x.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but "
                           f"got input with {x.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = x.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by "
                           f"downscale_factor, but input.size(-2)={h} and input.size(-1)={w}"
                           f" are not divisible by {r}")
    k = len(lead)
    v = views.reshape(x, (*lead, c, h // r, r, w // r, r))
    v = views.permute(v, (*range(k), k, k + 2, k + 4, k + 1, k + 3))
    return views.reshape(v, (*lead, c * r * r, h // r, w // r))

