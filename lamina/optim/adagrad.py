"""``lamina.optim.Adagrad``: Adagrad with learning-rate decay, an initial accumulator,
weight decay and ``maximize`` (PyTorch's update, fused into one program)."""

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
    next_step,
    store,
    tracing,
    updating,
)

__all__ = ["Adagrad"]


@functools.cache
def _rule(maximize: bool, decay: bool) -> FusedRule:
    """``h = [wd, eps, -clr]`` where ``clr`` is the decayed learning rate."""

    def adagrad(p, g, acc, h):
        if maximize:
            g = -g
        if decay:
            g = g + h[0] * p
        acc = acc + g * g
        return p + h[2] * g / (lamina.sqrt(acc) + h[1]), acc

    return FusedRule(adagrad)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), as ``torch.optim.Adagrad``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        check_common(lr=lr, differentiable=differentiable, foreach=foreach, fused=fused)
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError("Invalid initial_accumulator_value value: "
                             f"{initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p: lamina.Tensor, group: dict[str, Any]) -> None:
        """Adagrad's state exists from construction on (PyTorch's state dicts show it)."""
        state = self.state[p]
        state["step"] = lamina.tensor(0.0)
        state["sum"] = lamina.full_like(p, group["initial_accumulator_value"])

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One Adagrad update of every parameter that has a gradient."""
        loss = self._closure_loss(closure)
        tr = tracing()
        traced = TracedStep(tr, self) if tr is not None else None
        hyper = HyperCache()
        index = 0
        with updating():
            for gi, group in enumerate(self.param_groups):
                wd = group["weight_decay"]
                if traced is not None:
                    traced.guard(f"Adagrad group {gi} options",
                                 lambda g=group: (g["maximize"], g["weight_decay"] != 0))
                rule = _rule(group["maximize"], wd != 0)
                for p in group["params"]:
                    index += 1
                    if traced is not None:
                        if not traced.has_grad(p):
                            continue
                        state = traced.state(p, index - 1, lambda s, p=p, g=group: (
                            self._init_state(p, g)), False)
                        h = traced.hyper(lambda g=group, s=state: _values(
                            g, _count(s["step"]) + 1.0), 3, p.dtype,
                            f"Adagrad hyperparameters of group {gi}")
                        state["step"].add_(1)
                    else:
                        if p.grad is None:
                            continue
                        if not self.state[p]:  # added by add_param_group after construction
                            self._init_state(p, group)
                        state = self.state[p]
                        h = hyper(_values(group, next_step(state)), p.dtype)
                    (new,) = rule(p, p.grad, [state["sum"]], h)
                    store(state, "sum", new, traced is not None)
        return loss


def _count(step: Any) -> float:
    return float(step.item()) if isinstance(step, lamina.Tensor) else float(step)


def _values(group: dict[str, Any], step: float) -> list[float]:
    clr = float(group["lr"]) / (1 + (step - 1) * group["lr_decay"])
    return [group["weight_decay"], group["eps"], -clr]
