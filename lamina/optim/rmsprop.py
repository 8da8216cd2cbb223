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
    TracedStep,
    check_common,
    lerp,
    next_step,
    store,
    tracing,
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
        tr = tracing()
        traced = TracedStep(tr, self) if tr is not None else None
        hyper = HyperCache()
        index = 0
        with updating():
            for gi, group in enumerate(self.param_groups):
                momentum, centered = group["momentum"], group["centered"]
                if traced is not None:
                    traced.guard(f"RMSprop group {gi} options", lambda g=group: _options(g))
                rule = _rule(*_options(group))
                for p in group["params"]:
                    index += 1
                    if traced is not None:
                        if not traced.has_grad(p):
                            continue
                        state = traced.state(p, index - 1, lambda s, p=p, g=group: _init(
                            s, p, g), False)
                        h = traced.hyper(lambda g=group: _values(g), 6, p.dtype,
                                         f"RMSprop hyperparameters of group {gi}")
                        state["step"].add_(1)
                    else:
                        if p.grad is None:
                            continue
                        state = self.state[p]
                        if not state:
                            _init(state, p, group)
                        next_step(state)
                        h = hyper(_values(group), p.dtype)
                    names = ["square_avg"] + (["grad_avg"] if centered else []) + (
                        ["momentum_buffer"] if momentum > 0 else [])
                    new = rule(p, p.grad, [state[n] for n in names], h)
                    for n, t in zip(names, new):
                        store(state, n, t, traced is not None)
        return loss


def _init(state: dict[str, Any], p: lamina.Tensor, group: dict[str, Any]) -> None:
    state["step"] = lamina.tensor(0.0)
    state["square_avg"] = lamina.zeros_like(p)
    if group["momentum"] > 0:
        state["momentum_buffer"] = lamina.zeros_like(p)
    if group["centered"]:
        state["grad_avg"] = lamina.zeros_like(p)


def _options(group: dict[str, Any]) -> tuple:
    """What selects the update's code (the numbers are inputs)."""
    return (group["maximize"], group["weight_decay"] != 0, group["centered"],
            group["momentum"] > 0, 1 - group["alpha"] < 0.5)


def _values(group: dict[str, Any]) -> list[float]:
    alpha = group["alpha"]
    return [group["weight_decay"], alpha, 1 - alpha, group["eps"], group["momentum"],
            -float(group["lr"])]
