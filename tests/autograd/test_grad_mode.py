"""no_grad, enable_grad, set_grad_enabled and inference_mode: context managers and decorators."""

from __future__ import annotations

import threading

import pytest

import lamina


def leaf() -> lamina.Tensor:
    return lamina.ones(2).requires_grad_()


def test_no_grad_context_and_decorators() -> None:
    x = leaf()
    with lamina.no_grad():
        assert not lamina.is_grad_enabled()
        assert not (x * 2).requires_grad
    assert lamina.is_grad_enabled() and (x * 2).requires_grad

    @lamina.no_grad()
    def f(t):
        return t * 2

    @lamina.no_grad
    def g(t):
        return t * 2

    assert not f(x).requires_grad and not g(x).requires_grad
    assert f.__name__ == "f"
    assert lamina.is_grad_enabled()


def test_enable_grad_inside_no_grad() -> None:
    x = leaf()
    with lamina.no_grad():
        with lamina.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad

        @lamina.enable_grad()
        def f(t):
            return t * 2

        assert f(x).requires_grad


def test_set_grad_enabled_as_call_context_and_decorator() -> None:
    x = leaf()
    with lamina.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert lamina.is_grad_enabled()
    lamina.set_grad_enabled(False)
    try:
        assert not lamina.is_grad_enabled()
    finally:
        lamina.set_grad_enabled(True)
    assert lamina.is_grad_enabled()

    @lamina.set_grad_enabled(False)
    def f(t):
        return t * 2

    assert lamina.is_grad_enabled()  # decorating does not switch it
    assert not f(x).requires_grad
    assert lamina.is_grad_enabled()


def test_modes_are_restored_after_exceptions() -> None:
    with pytest.raises(ValueError):
        with lamina.no_grad():
            raise ValueError
    assert lamina.is_grad_enabled()


def test_grad_mode_is_per_thread() -> None:
    seen = []
    with lamina.no_grad():
        t = threading.Thread(target=lambda: seen.append(lamina.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_inference_mode() -> None:
    x = leaf()
    with lamina.inference_mode():
        assert lamina.is_inference_mode_enabled() and not lamina.is_grad_enabled()
        y = x * 2
        assert not y.requires_grad and y.is_inference()
        y.add_(1)  # allowed inside
    assert not lamina.is_inference_mode_enabled() and lamina.is_grad_enabled()
    assert not x.is_inference()
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
        y * x
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside "
                                           "InferenceMode"):
        y.add_(1)
    with pytest.raises(RuntimeError, match="Setting requires_grad=True on inference tensor"):
        y.requires_grad_()
    z = y.clone()  # a normal tensor again
    assert not z.is_inference()
    (z * x).sum().backward()
    assert x.grad is not None


def test_inference_mode_decorator_and_disabled() -> None:
    x = leaf()

    @lamina.inference_mode()
    def f(t):
        return t * 2

    assert f(x).is_inference()
    with lamina.inference_mode(False):
        assert (x * 2).requires_grad
