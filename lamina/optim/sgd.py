"""``lamina.optim.SGD``: stochastic gradient descent with momentum, dampening, Nesterov
momentum, weight decay and ``maximize`` (PyTorch's update, fused into one program)."""

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
    store,
    tracing,
    updating,
)

__all__ = ["SGD"]


@functools.cache
def _rule(maximize: bool, decay: bool, momentum: bool, first: bool, nesterov: bool) -> FusedRule:
    """The update for one combination of options;
    ``h = [-lr, wd, momentum, 1 - dampening, momentum]`` (the last for Nesterov's look-ahead:
    a traced step runs its first update as ``0 * buf + 1 * g``, exactly ``g``, by zeroing
    ``h[2]`` and setting ``h[3]`` to 1 for that call only)."""

    def sgd(p, g, *rest):
        *buf, h = rest
        if maximize:
            g = -g
        if decay:
            g = g + h[1] * p
        outs = []
        if momentum:
            b = g if first else buf[0] * h[2] + h[3] * g
            outs.append(b)
            g = g + h[4] * b if nesterov else b
        return (p + h[0] * g, *outs)

    return FusedRule(sgd)


class SGD(Optimizer):
    """Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None):
        check_common(lr=lr, differentiable=differentiable, foreach=foreach, fused=fused)
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        self._fresh: set[int] = set()  # params whose momentum buffer a trace created

    def _new_buffer(self, state: dict[str, Any], p: lamina.Tensor, tr: Any) -> None:
        """A traced step's momentum buffer: zeros, marked fresh so that its first update
        stores the gradient itself, as eager's first step does."""
        state["momentum_buffer"] = lamina.zeros_like(p)
        self._fresh.add(id(p))
        tr.on_abort.append(lambda: self._fresh.discard(id(p)))

    def _values(self, group: dict[str, Any], p: lamina.Tensor, traced: bool) -> list[float]:
        """``h`` for ``p`` this call; a fresh traced buffer takes the gradient as is (and is
        fresh no more)."""
        m, keep = group["momentum"], 1 - group["dampening"]
        if traced and id(p) in self._fresh:
            self._fresh.discard(id(p))
            m, keep = 0.0, 1.0
        return [-float(group["lr"]), group["weight_decay"], m, keep, group["momentum"]]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient."""
        loss = self._closure_loss(closure)
        tr = tracing()
        traced = TracedStep(tr, self) if tr is not None else None
        hyper = HyperCache()
        index = 0
        with updating():
            for gi, group in enumerate(self.param_groups):
                wd, momentum = group["weight_decay"], group["momentum"]
                if traced is not None:
                    traced.guard(f"SGD group {gi} options", lambda g=group: _options(g))
                for p in group["params"]:
                    index += 1
                    if traced is not None:
                        if not traced.has_grad(p):
                            continue
                    elif p.grad is None:
                        continue
                    g = p.grad
                    buf = None
                    state: dict[str, Any] = {}
                    if momentum != 0:
                        state = self.state[p]
                        buf = state.get("momentum_buffer")
                        if id(p) in self._fresh:  # created by a trace, not stepped yet
                            buf = None
                            if traced is None:
                                self._fresh.discard(id(p))
                        if traced is not None:
                            state = traced.state(p, index - 1, lambda s, p=p: self._new_buffer(
                                s, p, tr), False)
                            buf = state["momentum_buffer"]
                    rule = _rule(group["maximize"], wd != 0, momentum != 0, buf is None,
                                 group["nesterov"])
                    if traced is not None:
                        h = traced.hyper(lambda g=group, p=p: self._values(g, p, True),
                                         5, p.dtype, f"SGD hyperparameters of group {gi}")
                    else:
                        h = hyper(self._values(group, p, False), p.dtype)
                    new = rule(p, g, [] if buf is None else [buf], h)
                    if momentum != 0:
                        store(state, "momentum_buffer", new[0], traced is not None)
        return loss




def _options(group: dict[str, Any]) -> tuple:
    """What selects the update's code (the numbers themselves are inputs)."""
    return (group["maximize"], group["weight_decay"] != 0, group["momentum"] != 0,
            group["nesterov"])
