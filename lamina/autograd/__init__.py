"""Reverse-mode automatic differentiation of eager code (``torch.autograd``).

Importing this package installs the tape's recording hook into the frontend's
op dispatch (``lamina.frontend.dispatch.autograd_hook``).
"""

from lamina.autograd import graph as _graph
from lamina.autograd.engine import backward, grad
from lamina.autograd.function import Function, FunctionCtx
from lamina.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from lamina.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck
from lamina.frontend import dispatch as _dispatch

_dispatch.autograd_hook = _graph.record

__all__ = [
    "Function", "FunctionCtx", "GradcheckError", "backward", "enable_grad", "grad", "gradcheck",
    "gradgradcheck", "inference_mode", "is_grad_enabled", "is_inference_mode_enabled",
    "no_grad", "set_grad_enabled",
]
