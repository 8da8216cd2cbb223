"""``lamina.optim.RMSprop``: RMSprop with momentum, centering, weight decay and
``maximize`` (PyTorch's update, fused into one program per parameter shape)."""

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

__all__ = ["RMSprop"]


@functools.cache
def _rule(maximize: bool, decay: bool, centered: bool, momentum: bool,
          small_weight: bool) -> FusedRule:
    """``h = [wd, alpha, 1 - alpha, eps, momentum, -lr]``."""

    def rmsprop(p, g, sq, *rest):
        *extra, h = rest
        if maximize:
            g = -g
        if decay:
            g = g + h[0] * p
        sq = sq * h[1] + h[2] * g * g
        outs = [sq]
        if centered:
            gavg = lerp(extra.pop(0), g, h[2], small_weight)
            outs.append(gavg)
            avg = lamina.sqrt(sq - gavg * gavg)
        else:
            avg = lamina.sqrt(sq)
        avg = avg + h[3]
        if momentum:
            buf = extra.pop(0) * h[4] + g / avg
            outs.append(buf)
            return (p + h[5] * buf, *outs)
        return (p + h[5] * g / avg, *outs)

    return FusedRule(rmsprop)


class RMSprop(Optimizer):
    """RMSprop (Hinton), as ``torch.optim.RMSprop``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False,
                 foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False):
        check_common(lr=lr, differentiable=differentiable, foreach=foreach, fused=None)
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One RMSprop update of every parameter that has a gradient."""
        loss = self._closure_loss(closure)
        hyper = HyperCache()
        with updating():
            for group in self.param_groups:
                alpha, momentum, centered = group["alpha"], group["momentum"], group["centered"]
                wd = group["weight_decay"]
                rule = _rule(group["maximize"], wd != 0, centered, momentum > 0,
                             1 - alpha < 0.5)
                h = None
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state:
                        state["step"] = lamina.tensor(0.0)
                        state["square_avg"] = lamina.zeros_like(p)
                        if momentum > 0:
                            state["momentum_buffer"] = lamina.zeros_like(p)
                        if centered:
                            state["grad_avg"] = lamina.zeros_like(p)
                    next_step(state)
                    h = hyper([wd, alpha, 1 - alpha, group["eps"], momentum,
                               -float(group["lr"])], p.dtype)
                    names = ["square_avg"] + (["grad_avg"] if centered else []) + (
                        ["momentum_buffer"] if momentum > 0 else [])
                    new = rule(p, p.grad, [state[n] for n in names], h)
                    for n, t in zip(names, new):
                        state[n] = t
        return loss
