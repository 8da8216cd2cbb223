"""``nn.functional`` losses (re-exported by ``lamina.nn.functional``).

Each loss is a short composition of public tensor ops; the class-index losses
select the target class with a mask and fold weights and normalisation into
coefficients computed without gradient, so the tape records few nodes. Where
PyTorch's analytic gradient differs from the naive one at a kink (clamps at
margins), the ``where``-based clamps of ``functional`` reproduce PyTorch's.
"""

from __future__ import annotations

import math
import warnings

import lamina
from lamina import Tensor
from lamina.nn.functional import (
    _clamp_min,
    _class_shape,
    log_softmax,
    logsigmoid,
    pairwise_distance,
    softplus,
)

__all__ = [
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss",
    "cross_entropy", "gaussian_nll_loss", "hinge_embedding_loss", "huber_loss", "kl_div",
    "l1_loss", "margin_ranking_loss", "mse_loss", "multilabel_soft_margin_loss", "nll_loss",
    "poisson_nll_loss", "smooth_l1_loss", "soft_margin_loss", "triplet_margin_loss",
]


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


def _any(t: Tensor) -> bool:
    """Whether a bool tensor has a True element (a host sync)."""
    return t.numel() > 0 and bool(t.amax())


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
    from lamina.frontend.compile import is_compiling

    if is_compiling() or safe.numel() == 0:  # traced: the gather clamps, nothing to check
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
    hit = target.unsqueeze(cdim) == lamina.arange(n_classes, device=target.device).reshape(cshape)
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
