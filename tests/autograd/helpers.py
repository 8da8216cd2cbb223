"""Gradient oracles: central finite differences (always) and PyTorch (when installed)."""

from __future__ import annotations

from typing import Callable

import numpy as np

import lamina
from tests.frontend.oracle import torch


def leaf(a: np.ndarray) -> lamina.Tensor:
    return lamina.tensor(a).requires_grad_()


def tape_grads(fn: Callable, arrays: list[np.ndarray], weight: np.ndarray | None = None
               ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Forward value and d(sum(fn(...) * weight))/d(input) through lamina's tape."""
    xs = [leaf(a) for a in arrays]
    out = fn(lamina, *xs)
    w = np.ones(tuple(out.shape)) if weight is None else weight
    (out * lamina.tensor(w.astype(np.asarray(out.detach()).dtype))).sum().backward()
    return out.detach().numpy().copy(), [None if x.grad is None else x.grad.numpy().copy()
                                         for x in xs]


def torch_grads(fn: Callable, arrays: list[np.ndarray], weight: np.ndarray | None = None
                ) -> tuple[np.ndarray, list[np.ndarray | None]]:
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(torch, *xs)
    w = np.ones(tuple(out.shape)) if weight is None else weight
    (out * torch.tensor(w, dtype=out.dtype)).sum().backward()
    return out.detach().numpy(), [None if x.grad is None else x.grad.numpy() for x in xs]


def finite_differences(fn: Callable, arrays: list[np.ndarray], weight: np.ndarray | None,
                       eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of sum(fn(...) * weight) in float64, element by element."""
    grads = []
    with lamina.no_grad():
        def value(xs: list[np.ndarray]) -> float:
            out = fn(lamina, *[lamina.tensor(x) for x in xs]).numpy().astype(np.float64)
            w = np.ones(out.shape) if weight is None else weight
            return float((out * w).sum())

        for i, a in enumerate(arrays):
            g = np.zeros(a.shape)
            flat = g.reshape(-1)
            for j in range(a.size):
                xs = [x.astype(np.float64) for x in arrays]
                xs[i] = xs[i].copy()
                xs[i].reshape(-1)[j] += eps
                up = value(xs)
                xs[i].reshape(-1)[j] -= 2 * eps
                flat[j] = (up - value(xs)) / (2 * eps)
            grads.append(g)
    return grads


def check(fn: Callable, *arrays: np.ndarray, seed: int = 0, rtol: float = 1e-6,
          atol: float = 1e-7, fd: bool = True) -> None:
    """The tape's gradients against finite differences and (if installed) PyTorch."""
    arrays_ = [np.asarray(a, dtype=np.float64) for a in arrays]
    with lamina.no_grad():
        shape = tuple(fn(lamina, *[lamina.tensor(a) for a in arrays_]).shape)
    w = np.random.default_rng(seed).uniform(0.5, 1.5, size=shape)
    out, got = tape_grads(fn, arrays_, w)
    for g, a in zip(got, arrays_):
        assert g is not None and g.shape == a.shape and g.dtype == np.float64
    if fd:
        for g, e in zip(got, finite_differences(fn, arrays_, w)):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    if torch is not None:
        tout, texp = torch_grads(fn, arrays_, w)
        np.testing.assert_allclose(out, tout, rtol=1e-10, atol=1e-12)
        for g, e in zip(got, texp):
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
