"""``lamina.optim.Adam``: Adam with amsgrad, L2 or decoupled weight decay and ``maximize``
(PyTorch's single-tensor update, fused into one program per parameter shape)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

import lamina
from lamina.optim.optimizer import (
    FusedRule,
    HyperCache,
    Optimizer,
    check_common,
    lerp,
    next_step,
    updating,
)

__all__ = ["Adam"]


@functools.cache
def _rule(maximize: bool, decay: int, amsgrad: bool, small_weight: bool) -> FusedRule:
    """``decay``: 0 none, 1 L2 (added to the gradient), 2 decoupled (AdamW).
    ``h = [wd or 1 - lr*wd, 1 - beta1, beta2, 1 - beta2, sqrt(bias2), eps, -step_size]``."""

    def adam(p, g, m, v, *rest):
        *vmax, h = rest
        if maximize:
            g = -g
        if decay == 1:
            g = g + h[0] * p
        elif decay == 2:
            p = p * h[0]
        m = lerp(m, g, h[1], small_weight)
        v = v * h[2] + h[3] * g * g
        outs = [m, v]
        if amsgrad:
            v = lamina.maximum(vmax[0], v)
            outs.append(v)
        denom = lamina.sqrt(v) / h[4] + h[5]
        return (p + h[6] * m / denom, *outs)

    return FusedRule(adam)


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``; ``decoupled_weight_decay=True`` is AdamW."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        check_common(lr=lr, differentiable=differentiable, foreach=foreach, fused=fused)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= float(beta) < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adam update of every parameter that has a gradient."""
        loss = self._closure_loss(closure)
        hyper = HyperCache()
        with updating():
            for group in self.param_groups:
                lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
                beta1, beta2 = (float(b) for b in group["betas"])
                amsgrad = group["amsgrad"]
                decoupled = group["decoupled_weight_decay"]
                decay = 0 if wd == 0 else (2 if decoupled else 1)
                rule = _rule(group["maximize"], decay, amsgrad, 1 - beta1 < 0.5)
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = lamina.tensor(0.0)
                        state["exp_avg"] = lamina.zeros_like(p)
                        state["exp_avg_sq"] = lamina.zeros_like(p)
                        if amsgrad:
                            state["max_exp_avg_sq"] = lamina.zeros_like(p)
                    step = next_step(state)
                    step_size = lr / (1 - beta1 ** step)
                    bias2_sqrt = (1 - beta2 ** step) ** 0.5
                    h = hyper([1 - lr * wd if decoupled else wd, 1 - beta1, beta2, 1 - beta2,
                               bias2_sqrt, eps, -step_size], p.dtype)
                    tensors = [state["exp_avg"], state["exp_avg_sq"]]
                    if amsgrad:
                        tensors.append(state["max_exp_avg_sq"])
                    new = rule(p, p.grad, tensors, h)
                    state["exp_avg"], state["exp_avg_sq"] = new[0], new[1]
                    if amsgrad:
                        state["max_exp_avg_sq"] = new[2]
        return loss
