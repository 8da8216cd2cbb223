"""``lamina.grad`` and ``lamina.value_and_grad``: JAX-style function transformations.

The function is traced like ``lamina.compile`` traces it (once per input
signature), then the pipeline runs ``decompose -> autodiff -> simplify -> fuse ->
lower`` so the forward and the backward sweep compile into one fused program.
``lamina.grad(fn).lower(*args).as_text("prim")`` shows the backward graph.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from lamina.frontend import dtypes as dt
from lamina.frontend import trace
from lamina.frontend.compile import CompiledFunction, _signature
from lamina.frontend.tensor import Tensor
from lamina.ir import Module

ArgNums = int | tuple[int, ...]


def _check_argnums(argnums: Any, what: str) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if (not isinstance(nums, tuple) or not nums
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in nums)):
        raise TypeError(f"{what}: argnums must be an int or a non-empty tuple of ints, got "
                        f"{argnums!r}")
    if len(set(nums)) != len(nums) or min(nums) < 0:
        raise ValueError(f"{what}: argnums must be distinct and >= 0, got {argnums!r}")
    return nums


def _leaves(aux: Any, what: str) -> tuple[list[Tensor], Any]:
    """Flatten the auxiliary output: a tensor or a tuple/list of tensors."""
    if isinstance(aux, Tensor):
        return [aux], None
    if isinstance(aux, (tuple, list)) and all(isinstance(a, Tensor) for a in aux):
        return list(aux), type(aux)
    raise TypeError(f"{what}: the auxiliary output must be a tensor or a tuple/list of tensors, "
                    f"got {type(aux).__name__}")


class GradFunction(CompiledFunction):
    """A function's gradient (and optionally its value), compiled per input signature."""

    def __init__(self, fn: Callable[..., Any], argnums: ArgNums, has_aux: bool,
                 with_value: bool):
        self.what = "lamina.value_and_grad" if with_value else "lamina.grad"
        self.argnums = _check_argnums(argnums, self.what)
        self.single = isinstance(argnums, int)
        self.has_aux = has_aux
        self.with_value = with_value
        self._aux_trees: dict[tuple, Any] = {}
        prefix = "value_and_grad_" if with_value else "grad_"
        super().__init__(self._flat(fn), prefix + getattr(fn, "__name__", "fn"))

    def _flat(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` returning the flat tuple (loss, *aux), checked while it is traced."""

        @functools.wraps(fn)
        def flat(*args: Tensor) -> tuple[Tensor, ...]:
            for i in self.argnums:
                if i >= len(args):
                    raise ValueError(f"{self.what}: argnums {self.argnums} out of range for "
                                     f"{len(args)} positional arguments")
                if not args[i].dtype.is_floating_point:
                    raise TypeError(f"{self.what}: argument {i} has dtype {args[i].dtype}; "
                                    "gradients need floating-point inputs")
            out = fn(*args)
            aux: list[Tensor] = []
            if self.has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"{self.what}: with has_aux=True the function must return "
                                    f"a pair (loss, aux), got {type(out).__name__}")
                out, extra = out
                aux, self._aux_trees[_signature(args)] = _leaves(extra, self.what)
            if not isinstance(out, Tensor):
                raise TypeError(f"{self.what}: the function must return a scalar tensor"
                                f"{' (and aux)' if self.has_aux else ''}, got "
                                f"{type(out).__name__}")
            if out.ndim != 0 or not out.dtype.is_floating_point:
                raise TypeError(f"{self.what}: the function must return a scalar floating-point "
                                f"tensor, got shape {list(out.shape)} and dtype {out.dtype}")
            return (out, *aux)

        return flat

    @property
    def _keep_outputs(self) -> bool:
        return self.with_value or self.has_aux

    def _lower_module(self, module: Module, target: str = "cpu") -> Any:
        from lamina.passes.autodiff import Autodiff
        from lamina.passes.pipeline import lower

        return lower(module, autodiff=Autodiff(wrt=self.argnums,
                                               keep_outputs=self._keep_outputs), target=target)

    def __call__(self, *args: Tensor) -> Any:
        tr = trace.current()
        if tr is not None:  # inside a compiled step: differentiate into its graph
            return self._assemble(args, self._traced(tr, args))
        entry = self._entry(args)
        types = entry.lowered.stages.prim.get(self.name).result_types
        outs = [Tensor._wrap(a, dt.from_ir(t.dtype))
                for a, t in zip(entry.lowered.program(*entry.inputs(args)), types)]
        return self._assemble(args, outs)

    def _traced(self, tr: trace.Trace, args: tuple) -> list[Tensor]:
        """(loss, *aux, *grads) as values of the enclosing trace."""
        from lamina.autograd import grad_mode
        from lamina.frontend import step_backward

        inputs = list(args)
        for i in self.argnums:  # fresh differentiable copies: the caller's tensors stay as
            if i < len(inputs):  # they are
                inputs[i] = tr.wrap(tr.detached(tr.value_of(args[i])), True)
        with grad_mode.enable_grad():
            outs = list(self.fn(*inputs))
            wrt = [inputs[i] for i in self.argnums]
            grads = step_backward.grad(tr, outs[:1], wrt, [None], None, False, True, True)
        return [*outs, *grads]

    def _assemble(self, args: tuple, outs: list[Tensor]) -> Any:
        n = len(outs) - len(self.argnums)
        grads = outs[n] if self.single else tuple(outs[n:])
        if not self._keep_outputs:
            return grads
        value: Any = outs[0]
        if self.has_aux:
            tree = self._aux_trees[_signature(args)]
            aux = outs[1] if tree is None else tree(outs[1:n])
            if not self.with_value:
                return grads, aux
            value = (value, aux)
        return value, grads


def grad(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False) -> GradFunction:
    """The gradient of a scalar-valued ``fn`` with respect to the arguments ``argnums``.

    Like ``jax.grad``: an int ``argnums`` gives one tensor, a tuple gives a tuple;
    with ``has_aux`` the function returns ``(loss, aux)`` and the result is
    ``(grads, aux)``.
    """
    return GradFunction(fn, argnums, has_aux, with_value=False)


def value_and_grad(fn: Callable[..., Any], argnums: ArgNums = 0,
                   has_aux: bool = False) -> GradFunction:
    """``(fn(*args), grad(fn)(*args))`` from one compiled program; with ``has_aux`` the value
    is ``(loss, aux)``."""
    return GradFunction(fn, argnums, has_aux, with_value=True)
