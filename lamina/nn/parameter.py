"""``nn.Parameter``: a tensor that a ``Module`` registers as one of its parameters.

A Parameter is a ``Tensor`` subclass sharing storage with the tensor it wraps
(like PyTorch's), so ``isinstance(p, nn.Parameter)`` and every Tensor method work.
Operations on a Parameter return plain tensors.
"""

from __future__ import annotations

import lamina
from lamina import Tensor


class Parameter(Tensor):
    """A tensor registered as a module parameter; ``requires_grad=True`` by default."""

    __slots__ = ()

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = lamina.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(
                f"Parameter(): argument 'data' must be a Tensor, not {type(data).__name__}"
            )
        # detach() shares storage and drops history; re-classing keeps that storage
        p = data.detach()
        p.__class__ = cls
        p.requires_grad_(requires_grad)
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # everything happens in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        with lamina.no_grad():
            result = Parameter(self.clone(), self.requires_grad)
        memo[id(self)] = result
        return result
