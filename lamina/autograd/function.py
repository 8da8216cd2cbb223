"""``Function``: user-defined ops with a hand-written backward (``torch.autograd.Function``)."""

from __future__ import annotations

from typing import Any, Sequence

from lamina.autograd import grad_mode
from lamina.autograd.derivative import SECOND_BACKWARD, check_version
from lamina.autograd.graph import INFERENCE_SAVE_ERROR, Node, collect_edges, set_history
from lamina.frontend import ops
from lamina.frontend.tensor import Tensor


class FunctionCtx:
    """The ``ctx`` passed to ``forward`` and ``backward``."""

    def __init__(self) -> None:
        self._saved: tuple[Tensor | None, ...] = ()
        self._saved_versions: tuple[int | None, ...] = ()
        self._released = False
        self._node_name = "Function"
        self.needs_input_grad: tuple[bool, ...] = ()
        self.non_differentiable: set[int] = set()
        self.materialize_grads = True

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save variables, but argument "
                                f"{len(self._saved)} is of type {type(t).__name__}")
        self._saved = tuple(tensors)
        self._saved_versions = tuple(None if t is None else t._version for t in tensors)

    @property
    def saved_tensors(self) -> tuple[Tensor | None, ...]:
        if self._released:
            raise RuntimeError(SECOND_BACKWARD)
        for i, (t, v) in enumerate(zip(self._saved, self._saved_versions)):
            if t is not None:
                check_version(t, v, self._node_name, i)
        return self._saved

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        self.non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors: Tensor) -> None:
        raise NotImplementedError("Function: in-place forward (mark_dirty) is not supported")

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class FunctionNode(Node):
    """The backward of one ``Function.apply`` call."""

    __slots__ = ("fn", "ctx", "arg_kinds", "out_types")

    def __init__(self, fn: type, ctx: FunctionCtx, args: Sequence[Any],
                 out_types: list[tuple[tuple[int, ...], Any]]):
        super().__init__(collect_edges(args))
        self.fn = fn
        self.ctx = ctx
        self.arg_kinds = [(tuple(a.shape), a.dtype) if isinstance(a, Tensor) else None
                          for a in args]
        self.out_types = out_types

    def name(self) -> str:
        return f"{self.fn.__name__}Backward"

    def apply(self, grads: list[Tensor | None], needs: Sequence[bool],
              create_graph: bool) -> list[Tensor | None]:
        if self.released:
            raise RuntimeError(SECOND_BACKWARD)
        if self.ctx.materialize_grads:
            grads = [ops.zeros(s, dtype=d) if g is None else g
                     for g, (s, d) in zip(grads, self.out_types)]
        result = self.fn.backward(self.ctx, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        n = len(self.arg_kinds)
        if len(result) > n and all(r is None for r in result[n:]):
            result = result[:n]
        if len(result) != n:
            raise RuntimeError(f"function {self.name()} returned an incorrect number of "
                               f"gradients (expected {n}, got {len(result)})")
        out: list[Tensor | None] = []
        for i, (g, kind, need) in enumerate(zip(result, self.arg_kinds, needs)):
            if g is None or kind is None or not need:
                out.append(None)
                continue
            if not isinstance(g, Tensor):
                raise TypeError(f"function {self.name()} returned a gradient of type "
                                f"{type(g).__name__} at index {i}; expected a Tensor or None")
            shape, dtype = kind
            if tuple(g.shape) != shape:
                raise RuntimeError(f"Function {self.name()} returned an invalid gradient at "
                                   f"index {i} - got {list(g.shape)} but expected shape "
                                   f"compatible with {list(shape)}")
            if g.dtype is not dtype:
                g = ops.cast(g, dtype)
            out.append(g)
        return out

    def release(self) -> None:
        self.released = True
        self.ctx._released = True
        self.ctx._saved = ()


class Function:
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grads)``, then call
    ``MyFunction.apply(*args)``."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs: Any) -> Any:
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode "
                                  "AD.")

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple, output: Any) -> None:
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        ctx = FunctionCtx()
        ctx._node_name = f"{cls.__name__}Backward"
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        separate = cls.setup_context is not Function.setup_context
        with grad_mode.no_grad():
            if separate:  # the newer style: forward(*args) plus setup_context
                output = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, output)
            else:
                output = cls.forward(ctx, *args, **kwargs)
        record = grad_mode.is_grad_enabled() and any(ctx.needs_input_grad)
        if not record:
            return output
        if any(isinstance(a, Tensor) and a.is_inference() for a in args):
            raise RuntimeError(INFERENCE_SAVE_ERROR)
        single = not isinstance(output, tuple)
        outs = (output,) if single else output
        fresh = []
        for o in outs:
            if isinstance(o, Tensor) and any(o is a for a in args):
                o = o.detach()  # an input returned as is: its own history stays untouched
            fresh.append(o)
        types = [(tuple(o.shape), o.dtype) if isinstance(o, Tensor) else ((), None)
                 for o in fresh]
        node = FunctionNode(cls, ctx, args, types)
        for i, o in enumerate(fresh):
            if (isinstance(o, Tensor) and o.dtype.is_floating_point
                    and id(o) not in ctx.non_differentiable):
                set_history(o, node, i)
        return fresh[0] if single else tuple(fresh)
