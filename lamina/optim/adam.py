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
    TracedStep,
    check_common,
    lerp,
    next_step,
    store,
    tracing,
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
        tr = tracing()
        traced = TracedStep(tr, self) if tr is not None else None
        hyper = HyperCache()
        index = 0
        with updating():
            for gi, group in enumerate(self.param_groups):
                amsgrad = group["amsgrad"]
                if traced is not None:
                    traced.guard(f"Adam group {gi} options", lambda g=group: _options(g))
                maximize, decay, small = _options(group)[:3]
                rule = _rule(maximize, decay, amsgrad, small)
                for p in group["params"]:
                    index += 1
                    if traced is not None:
                        if not traced.has_grad(p):
                            continue
                        state = traced.state(p, index - 1, lambda s, p=p, a=amsgrad: _init(s, p, a),
                                             False)
                        # the step count lives in the program; the bias corrections are
                        # computed before each call from the count it will reach
                        h = traced.hyper(lambda g=group, s=state: _values(
                            g, _count(s["step"]) + 1.0), 7, p.dtype,
                            f"Adam hyperparameters of group {gi}")
                        state["step"].add_(1)
                    else:
                        if p.grad is None:
                            continue
                        state = self.state[p]
                        if not state:
                            _init(state, p, amsgrad)
                        h = hyper(_values(group, next_step(state)), p.dtype)
                    tensors = [state["exp_avg"], state["exp_avg_sq"]]
                    if amsgrad:
                        tensors.append(state["max_exp_avg_sq"])
                    new = rule(p, p.grad, tensors, h)
                    keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")[:len(new)]
                    for key, value in zip(keys, new):
                        store(state, key, value, traced is not None)
        return loss


def _init(state: dict[str, Any], p: lamina.Tensor, amsgrad: bool) -> None:
    state["step"] = lamina.tensor(0.0)
    state["exp_avg"] = lamina.zeros_like(p)
    state["exp_avg_sq"] = lamina.zeros_like(p)
    if amsgrad:
        state["max_exp_avg_sq"] = lamina.zeros_like(p)


def _count(step: Any) -> float:
    return float(step.item()) if isinstance(step, lamina.Tensor) else float(step)


def _options(group: dict[str, Any]) -> tuple:
    """(maximize, decay kind, small first-moment weight, amsgrad): what selects the code."""
    wd = group["weight_decay"]
    decay = 0 if wd == 0 else (2 if group["decoupled_weight_decay"] else 1)
    beta1 = float(group["betas"][0])
    return group["maximize"], decay, 1 - beta1 < 0.5, group["amsgrad"]


def _values(group: dict[str, Any], step: float) -> list[float]:
    """``h`` of the rule for this step (see ``_rule``)."""
    lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
    beta1, beta2 = (float(b) for b in group["betas"])
    step_size = lr / (1 - beta1 ** step)
    bias2_sqrt = (1 - beta2 ** step) ** 0.5
    return [1 - lr * wd if group["decoupled_weight_decay"] else wd, 1 - beta1, beta2, 1 - beta2,
            bias2_sqrt, eps, -step_size]
