"""``nn.functional``: layers, activations and (from ``functional_loss``) losses as functions.

Written only against the public tensor API (``import lamina``): every function is a
short composition of tensor ops, each of which runs a generated kernel and is
differentiated by the autograd tape. Where a numerically naive formula would
overflow or produce NaN gradients in a masked-out branch (softplus, elu, bce),
the operand of the dangerous op is clamped first so both branches stay finite.
Losses live in ``functional_loss``; convolution, pooling and normalisation in
``functional_conv``; both are re-exported here.
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


def _clamp_min(x: Tensor, lo: float) -> Tensor:
    """``max(x, lo)`` whose gradient is 1 where ``x == lo`` (``torch.clamp_min``'s)."""
    return lamina.where(x < lo, lo, x)


def _clamp_max(x: Tensor, hi: float) -> Tensor:
    """``min(x, hi)`` whose gradient is 1 where ``x == hi`` (``torch.clamp_max``'s)."""
    return lamina.where(x > hi, hi, x)


def _clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """``torch.clamp``: gradient 1 on the closed interval, NaN passes through."""
    return lamina.where(x < lo, lo, lamina.where(x > hi, hi, x))


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
        return lamina.zeros(shape, dtype=input.dtype, device=input.device)
    keep = lamina.rand(shape, device=input.device) >= p
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


# the losses and attention live in their own modules; they are part of this namespace
from lamina.nn.functional_attention import *  # noqa: E402, F403
from lamina.nn.functional_loss import *  # noqa: E402, F403
