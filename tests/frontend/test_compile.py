"""``lamina.compile``: one fused program, same numbers as eager, IR at every stage."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from tests.frontend.oracle import assert_close


def _inputs(rng, *shapes):
    return [lamina.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]


def test_elementwise_chain_and_reduction_fuse_into_one_kernel():
    f = lamina.compile(lambda x, y: ((x * y + 1.0).exp()).sum(dim=1))
    x, y = _inputs(np.random.default_rng(0), (8, 16), (8, 16))
    loop = f.lower(x, y).as_text("loop")
    assert loop.count("kernel @") == 1, loop
    out = f(x, y)
    ref = np.exp(x.numpy() * y.numpy() + 1.0).sum(axis=1)
    assert_close(out.numpy(), ref, dtype=np.float32, rtol=1e-5)


def test_stages_text():
    f = lamina.compile(lambda x, w, b: lamina.relu(x @ w + b))
    x, w, b = _inputs(np.random.default_rng(1), (4, 8), (8, 3), (3,))
    low = f.lower(x, w, b)
    assert "tensor.matmul" in low.as_text("tensor")
    assert "prim.dot_general" in low.as_text("prim")
    assert "kernel @" in low.as_text("loop")
    assert "define" in low.as_text("llvm")
    with pytest.raises(ValueError, match="unknown stage"):
        low.as_text("bogus")
    out = f(x, w, b)
    ref = np.maximum(x.numpy() @ w.numpy() + b.numpy(), 0)
    assert_close(out.numpy(), ref, rtol=1e-5)


def test_compiled_matches_eager_and_reads_captured_tensors():
    rng = np.random.default_rng(2)
    w = lamina.from_numpy(rng.standard_normal((5, 5)).astype(np.float32))

    def fn(x):
        h = lamina.tanh(x @ w) * 0.5 - x.mean(dim=1, keepdim=True)
        return h.amax(dim=0), lamina.sigmoid(h)

    (x,) = _inputs(rng, (6, 5))
    f = lamina.compile(fn)
    for got, want in zip(f(x), fn(x)):
        assert_close(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    w.numpy()[...] = 0.0  # captured weights are read afresh on each call
    for got, want in zip(f(x), fn(x)):
        assert_close(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert f.compiles == 1
    f(*_inputs(rng, (3, 5)))
    assert f.compiles == 2


def test_views_inside_compile():
    def fn(x):
        return (x.t()[1:, ::2] * 2).reshape(-1) + x[0, 0]

    (x,) = _inputs(np.random.default_rng(3), (4, 6))
    assert_close(lamina.compile(fn)(x).numpy(), fn(x).numpy())


def test_data_dependent_control_flow_is_a_clear_error():
    def fn(x):
        if x.sum().item() > 0:
            return x
        return -x

    with pytest.raises(RuntimeError, match="symbolic inside lamina.compile"):
        lamina.compile(fn)(lamina.ones(3))
