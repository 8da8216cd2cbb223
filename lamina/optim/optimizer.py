"""``lamina.optim.Optimizer``: parameter groups, per-parameter state, state dicts, and
the fused update machinery every optimizer shares.

An optimizer's update of one parameter is written once, as a pure function of
tensors (``rule(p, g, *state, h) -> (p_new, *state_new)``; ``h`` is a 1-d tensor
of this step's hyperparameters). ``lamina.compile`` traces it per parameter
shape and dtype into a few fused kernels (one per output), so an eager step
costs one program call plus the in-place write of the parameter instead of a
dozen single-op kernels. State tensors are replaced by the new ones rather than
copied into. Hyperparameters are kernel arguments, never constants, so a new
learning rate does not recompile.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from copy import deepcopy
from itertools import chain
from typing import Any, Callable, Iterable

import numpy as np

import lamina

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a default that every parameter group must set (SGD's ``lr`` in old PyTorch)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def _typename(x: Any) -> str:
    if isinstance(x, lamina.Tensor):
        return "lamina.Tensor"
    return f"{type(x).__module__}.{type(x).__qualname__}"


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer`` semantics)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        self.defaults = defaults
        self.state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, lamina.Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {_typename(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (missing ones take the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, lamina.Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):
            param_group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        param_group["params"] = params
        for p in params:
            if not isinstance(p, lamina.Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if not self.defaults.get("differentiable") and not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error; see "
                          "github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # -- state dicts ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}``.

        Parameters are numbered in group order, as PyTorch does, so a state dict saved
        by either framework loads into the other's optimizer over the same model.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, lamina.Tensor) else k): v
                 for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore groups' options and per-parameter state saved by ``state_dict``."""
        saved_groups = deepcopy(state_dict["param_groups"])
        groups = self.param_groups
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                p = id_map[key]
                state[p] = _cast_state(p, value, None)
            else:
                state[key] = value
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            new_groups.append(saved)
        self.state = state
        self.param_groups = new_groups

    # -- gradients -----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: to ``None`` (default) or to zeros in place."""
        tr = tracing()
        for group in self.param_groups:
            for p in group["params"]:
                if tr is not None:
                    tr.note_leaf(p)
                    if set_to_none:  # whatever it was: the step does not depend on it
                        p.grad = None
                        tr.grad_set(p)
                        continue
                    tr.grad_read(p)
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with lamina.enable_grad():
            return closure()


# -- inside lamina.compile -------------------------------------------------------------------
def tracing() -> Any:
    """The ``lamina.compile`` trace recording this step, or None (eager)."""
    from lamina.frontend import trace

    return trace.current()


class TracedStep:
    """What an optimizer's ``step`` does differently while ``lamina.compile`` traces it.

    State tensors are created concretely (once, outside the graph) and updated in
    place, read and written through ``state[key]`` at each call (eager steps replace
    them); hyperparameters are computed before each call from the live
    ``param_groups`` (an LR scheduler's new lr needs no recompile); the option
    flags that choose the update's shape are guards.
    """

    def __init__(self, tr: Any, optimizer: Optimizer):
        from lamina.frontend.guards import Guard

        self.tr = tr
        self.opt = optimizer
        self.Guard = Guard

    def has_grad(self, p: lamina.Tensor) -> bool:
        self.tr.note_leaf(p)
        self.tr.grad_read(p)
        return p.grad is not None

    def guard(self, what: str, get: Callable[[], Any]) -> None:
        self.tr.guards.append(self.Guard(what, get, get()))

    def state(self, p: lamina.Tensor, index: int, init: Callable[[dict], None],
              code_reads_init: bool) -> dict:
        """``p``'s state, initialised concretely if empty; its tensors bound to it.

        ``code_reads_init``: the traced update differs on the first step (SGD's
        momentum buffer starts as the gradient), so the step is valid only for the
        state layout found before initialising it.
        """
        from lamina.frontend import trace

        state = self.opt.state[p]
        before = sorted(state)
        if not state:
            with trace.suspended():
                init(state)
            self.tr.on_abort.append(state.clear)
        self.tr.guards.append(self.Guard(f"state keys of parameter {index}",
                                         lambda: sorted(state),
                                         before if code_reads_init else sorted(state)))
        for key, value in state.items():
            if isinstance(value, lamina.Tensor):
                self.tr.bind(value, trace.ItemSource(state, key))
        return state

    def hyper(self, values: Callable[[], list[float]], n: int, dtype: Any, what: str
              ) -> lamina.Tensor:
        """A hyperparameter tensor of ``n`` values (as ``hyper``) recomputed by ``values()``
        before every call (and only then: it may consume per-call state)."""
        hd = lamina.float32 if dtype in _LOW_PRECISION else dtype
        return self.tr.dynamic_input(lambda ctx: np.array(values(), dtype=hd.numpy), hd, (n,),
                                     what)


def store(state: dict[str, Any], key: str, value: lamina.Tensor, traced: bool) -> None:
    """Keep a new state tensor: replaced eagerly, written in place when traced."""
    if traced:
        state[key].copy_(value)
    else:
        state[key] = value


def _cast_state(p: lamina.Tensor, value: Any, key: Any) -> Any:
    """Loaded state follows its parameter's dtype, except the step counters."""
    if isinstance(value, lamina.Tensor):
        if key != "step" and p.dtype.is_floating_point and value.dtype is not p.dtype:
            return value.to(p.dtype)
        return value
    if isinstance(value, dict):
        return {k: _cast_state(p, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_state(p, v, key) for v in value)
    return value


def check_common(lr: Any, differentiable: bool, foreach: Any, fused: Any) -> None:
    """The argument checks every optimizer shares."""
    if isinstance(lr, lamina.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if _scalar(lr) < 0.0:
        raise ValueError(f"Invalid learning rate: {lr}")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if differentiable:
        raise NotImplementedError("lamina.optim: differentiable=True (autograd through the "
                                  "optimizer step) is not supported")


def next_step(state: dict[str, Any]) -> float:
    """Advance ``state['step']`` (a 0-d float32 tensor, as in PyTorch; old checkpoints hold
    a number); return the new count."""
    if tracing() is not None:
        raise NotImplementedError("lamina.compile: this optimizer's step cannot be traced yet "
                                  "(SGD, Adam, AdamW, RMSprop and Adagrad can); call "
                                  "optimizer.step() outside the compiled function")
    step = state["step"]
    step = (step.item() if isinstance(step, lamina.Tensor) else float(step)) + 1.0
    state["step"] = lamina.from_numpy(np.array(step, dtype=np.float32))
    return step


def lerp(start: lamina.Tensor, end: lamina.Tensor, weight: lamina.Tensor,
         small_weight: bool) -> lamina.Tensor:
    """``start.lerp(end, weight)`` with PyTorch's two formulas (exact at both ends)."""
    if small_weight:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def _scalar(x: Any) -> float:
    """A learning rate or beta given as a number or a one-element tensor, as a float."""
    return float(x.item()) if isinstance(x, lamina.Tensor) else float(x)


# -- fused updates ---------------------------------------------------------------------------
_LOW_PRECISION = (lamina.float16, lamina.bfloat16)


class FusedRule:
    """A parameter update rule compiled into fused kernels (per shape and dtype).

    ``fn(p, g, *state, h)`` returns ``(p_new, *state_new)``. Half-precision
    tensors are computed in float32 and rounded once at the end, which is what
    PyTorch's per-op float32 arithmetic approximates.
    """

    def __init__(self, fn: Callable[..., tuple]):
        self.fn = fn

        def kernel(*args: lamina.Tensor) -> tuple:
            *tensors, h = args
            dtype = tensors[0].dtype
            if dtype in _LOW_PRECISION:
                outs = fn(*(t.float() for t in tensors), h)
                return tuple(o.to(dtype) for o in outs)
            return tuple(fn(*tensors, h))

        kernel.__name__ = kernel.__qualname__ = fn.__name__
        self.kernel = kernel
        from lamina.frontend.compile import CompiledFunction

        # one entry per parameter shape: expected, so no recompile warnings
        self.compiled = CompiledFunction(kernel, warn=False)

    def __call__(self, p: lamina.Tensor, g: lamina.Tensor, state: list[lamina.Tensor],
                 h: lamina.Tensor) -> list[lamina.Tensor]:
        """Update ``p`` in place; return the new state tensors."""
        if g.dtype is not p.dtype:
            g = g.to(p.dtype)
        # Empty tensors skip compilation: their eager ops allocate and launch nothing.
        run = self.kernel if p.numel() == 0 else self.compiled
        if p.is_cuda:  # eager kernels on the GPU (compiled programs run on the CPU only)
            run, h = self.kernel, h.to(p.device)
        outs = run(p, g, *state, h)
        p.copy_(outs[0])
        return list(outs[1:])


def hyper(values: list[float], dtype: Any) -> lamina.Tensor:
    """This step's hyperparameters as one 1-d tensor (float32 for half-precision params)."""
    if dtype in _LOW_PRECISION:
        dtype = lamina.float32
    return lamina.from_numpy(np.array(values, dtype=dtype.numpy))


class HyperCache:
    """One hyperparameter tensor per (dtype, values) within a step: groups share it."""

    def __init__(self) -> None:
        self.cache: dict[tuple, lamina.Tensor] = {}

    def __call__(self, values: list[float], dtype: Any) -> lamina.Tensor:
        key = (dtype, *values)
        h = self.cache.get(key)
        if h is None:
            h = self.cache[key] = hyper(values, dtype)
        return h


@contextlib.contextmanager
def updating() -> Any:
    """Parameter updates never enter the autograd graph."""
    with lamina.no_grad():
        yield
