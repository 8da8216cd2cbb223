"""Grad modes: whether ops are recorded on the tape (``no_grad``, ``enable_grad``,
``set_grad_enabled``) and ``inference_mode``, each a context manager and a decorator.

The state is per thread, like PyTorch's.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class _State(threading.local):
    enabled = True
    inference = False


_state = _State()


def is_grad_enabled() -> bool:
    """Whether new ops are recorded for autograd."""
    return _state.enabled


def is_inference_mode_enabled() -> bool:
    return _state.inference


class _Mode:
    """Base of the grad-mode managers: ``with mode:`` and ``@mode`` (or ``@mode()``)."""

    def _set(self) -> tuple[bool, bool]:
        raise NotImplementedError

    def __enter__(self) -> None:
        self._prev = (_state.enabled, _state.inference)
        _state.enabled, _state.inference = self._set()

    def __exit__(self, *exc: Any) -> None:
        _state.enabled, _state.inference = self._prev

    def clone(self) -> _Mode:
        return type(self)()

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.clone():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_grad(_Mode):  # noqa: N801 - PyTorch's name
    """Do not record ops: results do not require grad (``torch.no_grad``)."""

    def __new__(cls, fn: Any = None) -> Any:
        if callable(fn):  # used as a bare decorator: @no_grad
            return cls()(fn)
        return super().__new__(cls)

    def __init__(self, fn: Any = None):
        pass

    def _set(self) -> tuple[bool, bool]:
        return False, _state.inference


class enable_grad(_Mode):  # noqa: N801
    """Record ops again inside a ``no_grad`` region (``torch.enable_grad``)."""

    def __new__(cls, fn: Any = None) -> Any:
        if callable(fn):
            return cls()(fn)
        return super().__new__(cls)

    def __init__(self, fn: Any = None):
        pass

    def _set(self) -> tuple[bool, bool]:
        return True, _state.inference


class set_grad_enabled(_Mode):  # noqa: N801
    """``set_grad_enabled(mode)``: takes effect at once when called as a function, and is
    restored on leaving when used as a context manager or decorator."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = (_state.enabled, _state.inference)
        _state.enabled = self.mode

    def _set(self) -> tuple[bool, bool]:
        return self.mode, _state.inference

    def __enter__(self) -> None:
        pass  # already in effect since __init__

    def clone(self) -> _Mode:
        return set_grad_enabled(self.mode)

    def __call__(self, fn: F) -> F:
        _state.enabled = self._prev[0]  # as a decorator it applies only inside ``fn``
        return super().__call__(fn)


class inference_mode(_Mode):  # noqa: N801
    """No recording, and tensors made here are inference tensors: they can never be
    saved for backward later (``torch.inference_mode``)."""

    def __new__(cls, mode: Any = True) -> Any:
        if callable(mode):
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode: Any = True):
        self.mode = bool(mode)

    def _set(self) -> tuple[bool, bool]:
        if not self.mode:
            return _state.enabled, False
        return False, True

    def clone(self) -> _Mode:
        return inference_mode(self.mode)
