"""``nn.functional``: layers, activations and losses as functions of tensors.

Written only against the public tensor API (``import lamina``): every function is a
short composition of tensor ops, each of which runs a generated kernel and is
differentiated by the autograd tape. Where a numerically naive formula would
overflow or produce NaN gradients in a masked-out branch (softplus, elu, bce),
the operand of the dangerous op is clamped first so both branches stay finite.
Convolution, pooling and normalisation live in ``functional_conv`` and are
re-exported here.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Sequence

import lamina
from lamina import Tensor
from lamina.nn.functional_conv import *  # noqa: F403 - convolution, pooling, normalisation

# -- helpers -------------------------------------------------------------------------


def _activate(input: Tensor, inplace: bool, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn(input)``, or with ``inplace`` its result written into ``input``.

    The ops of ``fn`` may save their operand for the backward pass; when the tape is
    recording they get a copy, so overwriting ``input`` does not invalidate it.
    """
    if not inplace:
        return fn(input)
    src = input.clone() if input.requires_grad and lamina.is_grad_enabled() else input
    return input.copy_(fn(src))


def _legacy_reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    """PyTorch's deprecated ``size_average``/``reduce`` flags as a ``reduction`` string."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  "reduction='{}' instead.", UserWarning, stacklevel=3)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _warn_size(input: Tensor, target: Tensor) -> None:
    if target.shape != input.shape:
        warnings.warn(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)


def _clamp_min(x: Tensor, lo: float) -> Tensor:
    """``max(x, lo)`` whose gradient is 1 where ``x == lo`` (``torch.clamp_min``'s)."""
    return lamina.where(x < lo, lo, x)


def _clamp_max(x: Tensor, hi: float) -> Tensor:
    """``min(x, hi)`` whose gradient is 1 where ``x == hi`` (``torch.clamp_max``'s)."""
    return lamina.where(x > hi, hi, x)


def _clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """``torch.clamp``: gradient 1 on the closed interval, NaN passes through."""
    return lamina.where(x < lo, lo, lamina.where(x > hi, hi, x))


def _any(t: Tensor) -> bool:
    """Whether a bool tensor has a True element (a host sync)."""
    return t.numel() > 0 and bool(t.amax())


def _class_shape(ndim: int, n: int, dim: int = 1) -> list[int]:
    """The shape that broadcasts a per-class vector of length ``n`` along axis ``dim``."""
    shape = [1] * ndim
    shape[dim] = n
    return shape


# -- linear ----------------------------------------------------------------------------


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``."""
    if weight.ndim == 2 and input.ndim >= 1 and input.shape[-1] != weight.shape[1]:
        rows = input.numel() // input.shape[-1] if input.shape[-1] else 0
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and "
            f"{weight.shape[1]}x{weight.shape[0]})"
        )
    out = input.matmul(weight.t())
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None
             ) -> Tensor:
    """``y[..., o] = input1[..., i] * weight[o, i, j] * input2[..., j] + bias[o]``."""
    out_f, in1, in2 = weight.shape
    if input1.shape[-1] != in1 or input2.shape[-1] != in2 or input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(
            f"bilinear: input1 {tuple(input1.shape)} and input2 {tuple(input2.shape)} do not "
            f"match weight {tuple(weight.shape)} (expected (..., {in1}) and (..., {in2}))"
        )
    lead = input1.shape[:-1]
    x1 = input1.reshape(-1, in1)
    x2 = input2.reshape(-1, in2)
    # u[n, o, j] = sum_i x1[n, i] w[o, i, j]: one matmul against the (i, o*j) weight view
    u = x1.matmul(weight.permute(1, 0, 2).reshape(in1, out_f * in2)).reshape(-1, out_f, in2)
    out = u.matmul(x2.unsqueeze(-1)).reshape(*lead, out_f)
    return out if bias is None else out + bias


# -- activations -----------------------------------------------------------------------


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else lamina.relu(input)


def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0,
             inplace: bool = False) -> Tensor:
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    # gradient 0 on the boundaries, like PyTorch's hardtanh (unlike clamp)
    return _activate(input, inplace, lambda x: lamina.where(
        x <= min_val, min_val, lamina.where(x >= max_val, max_val, x)))


def hardtanh_(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return hardtanh(input, min_val, max_val, True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: lamina.where(x > 0, x, x * negative_slope))


def leaky_relu_(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return leaky_relu(input, negative_slope, True)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    # expm1 of min(x, 0): the unselected branch never overflows (no inf * 0 gradients)
    return _activate(input, inplace, lambda x: lamina.where(
        x > 0, x, lamina.expm1(_clamp_max(x, 0.0)) * alpha))


def elu_(input: Tensor, alpha: float = 1.0) -> Tensor:
    return elu(input, alpha, True)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError: alpha cannot be 0 for CELU")
    return _activate(input, inplace, lambda x: lamina.where(
        x > 0, x, lamina.expm1(_clamp_max(x, 0.0) / alpha) * alpha))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: lamina.where(
        x > 0, x * _SELU_SCALE, lamina.expm1(_clamp_max(x, 0.0)) * (_SELU_ALPHA * _SELU_SCALE)))


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)`` with the exact erf (``'none'``) or PyTorch's tanh approximation."""
    if approximate == "none":
        return input * (lamina.erf(input * (1 / math.sqrt(2))) + 1) * 0.5
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2 / math.pi)
        return input * (lamina.tanh(inner) + 1) * 0.5
    raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: x * lamina.sigmoid(x))


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: x * lamina.tanh(softplus(x)))


def sigmoid(input: Tensor) -> Tensor:
    return lamina.sigmoid(input)


def tanh(input: Tensor) -> Tensor:
    return lamina.tanh(input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """``log(1 + exp(beta * x)) / beta``, linear where ``beta * x > threshold``."""
    bx = input * beta if beta != 1 else input
    soft = lamina.log1p(lamina.exp(_clamp_max(bx, threshold)))
    if beta != 1:
        soft = soft / beta
    return lamina.where(bx > threshold, input, soft)


def logsigmoid(input: Tensor) -> Tensor:
    return -softplus(-input)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    # gradient 0 on the boundaries x = +-3, like PyTorch's
    def fn(x: Tensor) -> Tensor:
        y = x * (1 / 6) + 0.5
        return lamina.where(y <= 0, 0.0, lamina.where(y >= 1, 1.0, y))

    return _activate(input, inplace, fn)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: x * _clamp(x + 3, 0.0, 6.0) * (1 / 6))


def softsign(input: Tensor) -> Tensor:
    return input / (input.abs() + 1)


def tanhshrink(input: Tensor) -> Tensor:
    return input - lamina.tanh(input)


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    return _activate(input, inplace, lambda x: lamina.where(x > threshold, x, value))


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    return lamina.where(input.abs() > lambd, input, 0.0)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    return lamina.where(input > lambd, input - lambd,
                        lamina.where(input < -lambd, input + lambd, 0.0))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    w = weight
    if weight.numel() != 1:
        if input.ndim < 2 and weight.numel() != input.shape[-1] or (
                input.ndim >= 2 and weight.numel() != input.shape[1]):
            raise RuntimeError(
                f"Mismatch of parameter numbers and input channel size. Found parameter "
                f"numbers = {weight.numel()} and channel size = "
                f"{input.shape[1] if input.ndim >= 2 else input.shape[-1]}."
            )
        if input.ndim >= 2:
            w = weight.reshape(_class_shape(input.ndim, weight.numel()))
    return lamina.where(input > 0, input, input * w)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(
            f"Halving dimension must be even, but dimension {dim % input.ndim} is size {n}"
        )
    a, b = input.split(n // 2, dim)
    return a * lamina.sigmoid(b)


def _softmax_dim(ndim: int, name: str) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmax")
    return lamina.softmax(input, dim, dtype=dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
            dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmin")
    return lamina.softmax(-(input if dtype is None else input.to(dtype)), dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim(input.ndim, "log_softmax")
    return lamina.log_softmax(input, dim, dtype=dtype)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12,
              out: Tensor | None = None) -> Tensor:
    """``input / max(||input||_p along dim, eps)``."""
    denom = _clamp_min(_pnorm(input, p, dim, keepdim=True), eps)
    res = input / denom
    return res if out is None else out.copy_(res)


def _pnorm(x: Tensor, p: float, dim: Any, keepdim: bool = False) -> Tensor:
    if p == 2:
        return (x * x).sum(dim, keepdim=keepdim).sqrt()
    if p == 1:
        return x.abs().sum(dim, keepdim=keepdim)
    if p == math.inf:
        return x.abs().amax(dim, keepdim=keepdim)
    if p == -math.inf:
        return x.abs().amin(dim, keepdim=keepdim)
    if p == 0:
        return (x != 0).to(x.dtype).sum(dim, keepdim=keepdim)
    return (x.abs() ** p).sum(dim, keepdim=keepdim) ** (1.0 / p)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    # PyTorch clamps each norm at eps separately
    n1 = _clamp_min(_pnorm(x1, 2, dim), eps)
    n2 = _clamp_min(_pnorm(x2, 2, dim), eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    return _pnorm(x1 - x2 + eps, p, -1, keepdim)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    if tensor.dtype != lamina.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        num_classes = int(tensor.max()) + 1 if tensor.numel() else 0
    elif tensor.numel() and (int(tensor.max()) >= num_classes or int(tensor.min()) < 0):
        raise RuntimeError("Class values must be smaller than num_classes.")
    classes = lamina.arange(num_classes)
    return (tensor.unsqueeze(-1) == classes).to(lamina.int64)


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant",
        value: float | None = None) -> Tensor:
    """Pad the last ``len(pad) // 2`` axes, ``pad = (last_lo, last_hi, prev_lo, ...)``.

    ``constant`` concatenates filled blocks (negative amounts crop); ``reflect``,
    ``replicate`` and ``circular`` read ``input`` through an index map, so their
    gradients accumulate into the rows they copied.
    """
    if len(pad) % 2:
        raise ValueError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise ValueError(
            "Padding length should be less than or equal to two times the input dimension but "
            f"got padding length {len(pad)} and input of dimension {input.ndim}"
        )
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if mode != "constant" and value is not None and value != 0:
        raise ValueError(f'Padding mode "{mode}"" doesn\'t take in value argument')
    k = len(pad) // 2
    if mode != "constant" and not (1 <= k <= 3 and input.ndim in (k + 1, k + 2)):
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {input.ndim}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
        )
    out = input
    for i in range(k):
        dim = input.ndim - 1 - i
        lo, hi = int(pad[2 * i]), int(pad[2 * i + 1])
        if lo or hi:
            out = (_pad_constant(out, dim, lo, hi, 0.0 if value is None else value)
                   if mode == "constant" else _pad_indexed(out, dim, lo, hi, mode))
    return out


def _pad_constant(x: Tensor, dim: int, lo: int, hi: int, value: float) -> Tensor:
    n = x.shape[dim]
    if n + min(lo, 0) + min(hi, 0) < 0:
        raise RuntimeError(
            f"The input size {n}, plus negative padding {lo} and {hi} resulted in a negative "
            f"output size, which is invalid. Check dimension {dim} of your input."
        )
    x = x.narrow(dim, -min(lo, 0), n + min(lo, 0) + min(hi, 0))
    parts = []
    for amount in (lo, hi):
        shape = list(x.shape)
        shape[dim] = max(amount, 0)
        parts.append(lamina.full(shape, value, dtype=x.dtype))
    return lamina.cat([parts[0], x, parts[1]], dim)


def _pad_indexed(x: Tensor, dim: int, lo: int, hi: int, mode: str) -> Tensor:
    n = x.shape[dim]
    if mode == "reflect" and (lo >= n or hi >= n):
        raise RuntimeError(
            f"Argument #4: Padding size should be less than the corresponding input dimension, "
            f"but got: padding ({lo}, {hi}) at dimension {dim} of input {list(x.shape)}"
        )
    if mode == "circular" and (lo > n or hi > n):
        raise RuntimeError("Padding value causes wrapping around more than once.")
    if n == 0:
        raise RuntimeError(f"{mode} padding of an empty dimension {dim}")
    idx = lamina.arange(-lo, n + hi)
    if mode == "replicate":
        idx = idx.clamp(0, n - 1)
    elif mode == "circular":
        idx = idx % n
    else:  # reflect about the first and last elements (which are not repeated)
        idx = idx.abs()
        idx = lamina.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    return x.index_select(dim, idx)


# -- dropout -----------------------------------------------------------------------------


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout_mask(input: Tensor, p: float, shape: Sequence[int]) -> Tensor:
    """Keep-mask of ``shape`` scaled by 1/(1-p), in ``input``'s dtype."""
    if p == 1.0:
        return lamina.zeros(shape, dtype=input.dtype)
    keep = lamina.rand(shape) >= p
    return keep.to(input.dtype) * (1.0 / (1.0 - p))


def dropout(input: Tensor, p: float = 0.5, training: bool = True,
            inplace: bool = False) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    mask = _dropout_mask(input, p, input.shape)
    return _activate(input, inplace, lambda x: x * mask)


def _feature_dropout(input: Tensor, p: float, training: bool, inplace: bool, name: str,
                     batched_ndim: int) -> Tensor:
    """Drop whole channels: one mask entry per (sample, channel)."""
    _check_p(p)
    if input.ndim not in (batched_ndim - 1, batched_ndim):
        raise RuntimeError(
            f"{name}: Expected {batched_ndim - 1}D or {batched_ndim}D input, but received a "
            f"{input.ndim}D input"
        )
    if not training or p == 0.0:
        return input
    if input.ndim == batched_ndim:
        shape = list(input.shape[:2]) + [1] * (input.ndim - 2)
    else:
        shape = [input.shape[0]] + [1] * (input.ndim - 1)
    mask = _dropout_mask(input, p, shape)
    return _activate(input, inplace, lambda x: x * mask)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, "dropout1d", 3)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, "dropout2d", 4)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True,
              inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, inplace, "dropout3d", 5)


# -- embedding -----------------------------------------------------------------------------


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` selected by the integer tensor ``input``.

    ``padding_idx`` rows get no gradient; ``max_norm`` renormalises, in place, the
    rows that ``input`` refers to whose norm exceeds it (like PyTorch).
    """
    if input.dtype not in (lamina.int64, lamina.int32):
        raise RuntimeError(
            "Expected tensor for argument #1 'indices' to have one of the following scalar "
            f"types: Long, Int; but got {input.type()} instead (while checking arguments for "
            "embedding)"
        )
    if weight.ndim != 2:
        raise RuntimeError("'weight' must be 2-D")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx %= num
    flat = input.reshape(-1)
    if max_norm is not None:
        _embedding_renorm_(weight, flat, max_norm, norm_type)
    out = weight.index_select(0, flat)
    if padding_idx is not None:
        # same values, but rows read at padding_idx contribute no gradient to weight
        pad = (flat == padding_idx).unsqueeze(1)
        out = lamina.where(pad, out.detach(), out)
    return out.reshape(*input.shape, weight.shape[1])


def _embedding_renorm_(weight: Tensor, idx: Tensor, max_norm: float, norm_type: float) -> None:
    with lamina.no_grad():
        rows = weight.index_select(0, idx)
        norms = _pnorm(rows, norm_type, 1, keepdim=True)
        scale = lamina.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        weight[idx] = rows * scale


# -- losses --------------------------------------------------------------------------------


def _weighted(loss: Tensor, weight: Tensor | None) -> Tensor:
    return loss if weight is None else loss * weight


def mse_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
             reduce: bool | None = None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _warn_size(input, target)
    d = input - target
    return _reduce(_weighted(d * d, weight), reduction)


def l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
            reduce: bool | None = None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _warn_size(input, target)
    return _reduce(_weighted((input - target).abs(), weight), reduction)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                   reduce: bool | None = None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    _warn_size(input, target)
    a = (input - target).abs()
    if beta == 0:
        return _reduce(a, reduction)
    loss = lamina.where(a < beta, a * a * (0.5 / beta), a - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    _check_reduction(reduction)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    _warn_size(input, target)
    a = (input - target).abs()
    loss = lamina.where(a < delta, a * a * 0.5, (a - 0.5 * delta) * delta)
    return _reduce(_weighted(loss, weight), reduction)


def _check_targets(safe: Tensor, n_classes: int) -> None:
    """PyTorch's bounds check of class indices (host syncs, like PyTorch's CPU kernel);
    ``safe`` holds the targets with ignored ones replaced by 0."""
    if safe.numel() == 0:
        return
    lo, hi = int(safe.amin()), int(safe.amax())
    if lo < 0 or hi >= n_classes:
        raise IndexError(f"Target {hi if hi >= n_classes else lo} is out of bounds.")


def _nll_checks(input: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    if target.dtype not in (lamina.int64, lamina.int8):
        raise RuntimeError(
            f"expected target dtype to be Long or Byte, but got {target.dtype.name.capitalize()}"
        )
    if input.ndim == 1:
        if target.ndim != 0:
            raise RuntimeError(
                f"1D target tensor expects 0D target, but got target of size "
                f"{list(target.shape)}"
            )
    elif target.ndim == 0 or target.shape[0] != input.shape[0]:
        raise ValueError(
            f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
            f"({target.shape[0] if target.ndim else 0})."
        )
    elif tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise RuntimeError(
            f"Expected target size {[input.shape[0], *input.shape[2:]]}, got "
            f"{list(target.shape)}"
        )
    n_classes = input.shape[0 if input.ndim == 1 else 1]
    if weight is not None and (weight.ndim != 1 or weight.numel() != n_classes):
        raise RuntimeError(
            f"weight tensor should be defined either for all {n_classes} classes or no classes "
            f"but got weight tensor of shape: {list(weight.shape)}"
        )


def _nll(logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
         reduction: str, smoothing: float = 0.0) -> Tensor:
    """``-weight[t] * logp[t]`` per sample (blended with the label-smoothing term), reduced.

    The target class is selected with a mask (target == class), and every weight and
    normalisation is folded into coefficients computed without gradient, so the tape
    records only a ``where``, a product and a sum after ``log_softmax``.
    """
    cdim = 0 if logp.ndim == 1 else 1
    n_classes = logp.shape[cdim]
    cshape = _class_shape(logp.ndim, n_classes, cdim)
    valid = target != ignore_index
    _check_targets(lamina.where(valid, target, 0), n_classes)
    hit = target.unsqueeze(cdim) == lamina.arange(n_classes).reshape(cshape)
    if 0 <= ignore_index < n_classes:
        hit = hit & valid.unsqueeze(cdim)
    wcls = None if weight is None else weight.to(logp.dtype).reshape(cshape)
    w = valid.to(logp.dtype) if wcls is None else lamina.where(hit, wcls, 0.0).sum(cdim)
    picked = lamina.where(hit, logp, 0.0)  # one nonzero per sample along cdim
    if reduction == "none":
        loss = picked.sum(cdim) * -w
        if smoothing:
            wc = logp if wcls is None else logp * wcls
            smooth = lamina.where(valid, wc.sum(cdim), 0.0)
            loss = loss * (1 - smoothing) - smooth * (smoothing / n_classes)
        return loss
    # per-sample coefficient -w / sum(w) ('mean') or -w ('sum')
    scale = -1.0 / w.sum() if reduction == "mean" else -1.0
    coef = w * scale
    if not smoothing:
        return (picked * coef.unsqueeze(cdim)).sum()
    # sum_c logp_c * ((1 - s) coef [c == t] + (s / C) scale w_c): the smoothing term
    # spreads over all classes of the non-ignored samples
    spread = valid.to(logp.dtype).unsqueeze(cdim) * (scale * (smoothing / n_classes))
    if wcls is not None:
        spread = spread * wcls
    k = lamina.where(hit, coef.unsqueeze(cdim) * (1 - smoothing), 0.0) + spread
    return (lamina.where(valid.unsqueeze(cdim), logp, 0.0) * k).sum()


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
             size_average: bool | None = None, ignore_index: int = -100,
             reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of class indices ``target`` under log-probabilities ``input``
    of shape (C,), (N, C) or (N, C, d1, ...)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    _nll_checks(input, target, weight)
    return _nll(input, target, weight, ignore_index, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """``nll_loss(log_softmax(input, 1), target)`` for class indices, or the soft-label
    cross entropy when ``target`` holds class probabilities (same shape as ``input``)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(
            f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}"
        )
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    cdim = 0 if input.ndim == 1 else 1
    if target.shape == input.shape and target.is_floating_point():
        return _soft_cross_entropy(log_softmax(input, cdim), target, weight, reduction,
                                   label_smoothing, cdim)
    _nll_checks(input, target, weight)
    return _nll(log_softmax(input, cdim), target, weight, ignore_index, reduction,
                label_smoothing)


def _soft_cross_entropy(logp: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
                        label_smoothing: float, cdim: int) -> Tensor:
    n_classes = logp.shape[cdim]
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / n_classes
    prod = logp * target
    if weight is not None:
        prod = prod * weight.reshape(_class_shape(logp.ndim, n_classes, cdim))
    loss = -prod.sum(cdim)
    if reduction == "mean":  # PyTorch divides by the number of samples, not by weights
        return loss.sum() / (logp.numel() // n_classes if n_classes else 0)
    return _reduce(loss, reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    """``-w (t log x + (1 - t) log(1 - x))`` with each log clamped at -100 like PyTorch."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Using a target size ({target.shape}) that is different to the input size "
            f"({input.shape}) is deprecated. Please ensure they have the same size."
        )
    if _any((input < 0) | (input > 1)):
        raise RuntimeError("all elements of input should be between 0 and 1")
    log_x = lamina.log(input).clamp(min=-100)
    log_1mx = lamina.log1p(-input).clamp(min=-100)
    loss = -(target * (log_x - log_1mx) + log_1mx)
    return _reduce(_weighted(loss, weight), reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     weight: Tensor | None = None,
                                     size_average: bool | None = None,
                                     reduce: bool | None = None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """``-w (p t log sigmoid(x) + (1 - t) log(1 - sigmoid(x)))`` in the stable form
    ``(1 - t) x + (1 + (p - 1) t) softplus(-x)``."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(
            f"Target size ({target.shape}) must be the same as input size ({input.shape})"
        )
    sp = softplus(-input)  # -log(sigmoid(x)), finite for every x
    if pos_weight is None:
        loss = (1 - target) * input + sp
    else:
        loss = (1 - target) * input + ((pos_weight - 1) * target + 1) * sp
    return _reduce(_weighted(loss, weight), reduction)


def kl_div(input: Tensor, target: Tensor, size_average: bool | None = None,
           reduce: bool | None = None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """``target * (log(target) - input)`` pointwise (0 where target is 0)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction not in ("mean", "sum", "none", "batchmean"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support "
            "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
            "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
            "major release.", UserWarning, stacklevel=2)
    if log_target:
        loss = lamina.exp(target) * (target - input)
    else:
        # xlogy(t, t): t * log(t), defined as 0 at t == 0
        tlogt = lamina.where(target > 0, target * lamina.log(target), 0.0)
        loss = tlogt - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                          size_average: bool | None = None, reduce: bool | None = None,
                          reduction: str = "mean") -> Tensor:
    """``1 - cos(x1, x2)`` where target is 1, ``max(0, cos - margin)`` where it is -1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input1.ndim not in (1, 2) or input1.shape != input2.shape:
        raise RuntimeError(
            f"cosine_embedding_loss: expected input1 and input2 of equal 1D or 2D shape, got "
            f"{tuple(input1.shape)} and {tuple(input2.shape)}"
        )
    if target.ndim != input1.ndim - 1:
        raise RuntimeError(
            f"{input1.ndim - 1}D target tensor expects {input1.ndim}D input tensors, but found "
            f"inputs with sizes {list(input1.shape)} and {list(input2.shape)}."
        )
    eps = 1e-12
    dot = (input1 * input2).sum(-1)
    mag = ((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps)
    cos = dot / mag.sqrt()
    loss = (lamina.where(target == 1, 1 - cos, 0.0)
            + lamina.where(target == -1, _clamp_min(cos - margin, 0.0), 0.0))
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    return _reduce(_clamp_min(-target * (input1 - input2) + margin, 0.0), reduction)


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    loss = (lamina.where(target == 1, input, 0.0)
            + lamina.where(target == -1, _clamp_min(margin - input, 0.0), 0.0))
    return _reduce(loss, reduction)


def soft_margin_loss(input: Tensor, target: Tensor, size_average: bool | None = None,
                     reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    return _reduce(softplus(-target * input), reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: bool | None = None, eps: float = 1e-8,
                     reduce: bool | None = None, reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if log_input:
        loss = lamina.exp(input) - target * input
    else:
        loss = input - target * lamina.log(input + eps)
    if full:
        # Stirling's term, only where target > 1
        stirling = (target * lamina.log(target.clamp(min=1)) - target
                    + lamina.log(target.clamp(min=1) * (2 * math.pi)) * 0.5)
        loss = loss + lamina.where(target > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor | float, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    _check_reduction(reduction)
    if not isinstance(var, Tensor):
        var = lamina.full(input.shape, float(var), dtype=input.dtype)
    elif var.shape != input.shape:
        if var.shape == input.shape[:-1]:  # one variance per sample, last axis omitted
            var = var.unsqueeze(-1)
        elif not (var.shape[:-1] == input.shape[:-1] and var.shape[-1:] == (1,)):
            raise ValueError("var is of incorrect size")
    if _any(var < 0):
        raise ValueError("var has negative entry/entries")
    # PyTorch clamps a copy of var under no_grad: the gradient passes as if unclamped
    var = var + (var.detach().clamp(min=eps) - var.detach())
    loss = (lamina.log(var) + (input - target) ** 2 / var) * 0.5
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False,
                        size_average: bool | None = None, reduce: bool | None = None,
                        reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = lamina.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(_clamp_min(d_pos - d_neg + margin, 0.0), reduction)


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                size_average: bool | None = None, reduce: bool | None = None,
                                reduction: str = "mean") -> Tensor:
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    loss = _weighted(loss, weight).sum(-1) / input.shape[-1]
    return _reduce(loss, reduction)
