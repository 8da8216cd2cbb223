"""Contractions with few output columns (``lower_dot``'s narrow tail vector): static
products whose N is below or not a multiple of the vector width, compiled to machine
code and run against a float64 numpy reference.

The three forms of a small-N product in a classifier's training step: the weight
gradient ``X.T @ G`` (A read transposed, B contiguous along N), the forward ``X @ W.T``
(B contiguous along K: its tail stays scalar) and ``X @ W``; plain, with a bias + relu
epilogue, batched, and with column blocks forced narrow."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina import runtime
from lamina.ir import TensorType
from lamina.ir.types import ScalarType
from lamina.passes import lower_dot
from tests.passes.lower_util import group, lower

NS = (1, 3, 7, 10, 15, 17)
MS = (1, 5, 64, 127, 128)
KS = (1, 9, 64)
TOL = {"f32": 2e-5, "f64": 1e-12, "f16": 2e-3}
# operand shapes of each form, as (x, w) from (batch lead, m, k, n)
FORMS = {
    "tn": lambda m, k, n: ((k, m), (k, n)),  # X.T @ G: the weight gradient
    "nk": lambda m, k, n: ((m, k), (n, k)),  # X @ W.T: a Linear's forward
    "kn": lambda m, k, n: ((m, k), (k, n)),  # X @ W
}


def _build(nb: int, form: str, epilogue: bool):
    def build(b, x, w, *bias):
        lc = (nb,) if form == "tn" else (nb + 1,)
        rc = (nb + 1,) if form == "nk" else (nb,)
        d = b("prim.dot_general", x, w, lhs_batch=tuple(range(nb)), rhs_batch=tuple(range(nb)),
              lhs_contract=lc, rhs_contract=rc)
        if not epilogue:
            return d
        shape, dtype = d.type.shape, d.type.dtype
        bb = b("prim.broadcast", bias[0], shape=shape, dims=(nb + 1,))
        zero = b("prim.broadcast", b("prim.const", value=0.0, shape=(), dtype=dtype),
                 shape=shape, dims=())
        return b("prim.max", b("prim.add", d, bb), zero)

    return build


def _module(form: str, m: int, k: int, n: int, batch: int | None, epilogue: bool,
            dtype: str, panel_bytes: int):
    """The lowered loop module of one static product (``panel_bytes`` sizes column blocks)."""
    t = ScalarType(dtype)
    lead = () if batch is None else (batch,)
    xs, ws = FORMS[form](m, k, n)
    types = [TensorType((*lead, *xs), t), TensorType((*lead, *ws), t)]
    if epilogue:
        types.append(TensorType((n,), t))
    module = group(types, _build(len(lead), form, epilogue))
    old = lower_dot.PANEL_BYTES
    lower_dot.PANEL_BYTES = panel_bytes
    try:
        return lower(module, tuple((None,) * (len(x.shape) - 1) + (1,) for x in types))
    finally:
        lower_dot.PANEL_BYTES = old


@functools.cache
def _program(*key) -> runtime.Program:
    return runtime.compile_program(_module(*key), "f")


def _check(form: str, m: int, k: int, n: int, *, batch: int | None = None,
           epilogue: bool = False, dtype: str = "f32", panel_bytes: int | None = None,
           seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    np_t = ScalarType(dtype).numpy
    lead = () if batch is None else (batch,)
    xs, ws = FORMS[form](m, k, n)
    x = rng.standard_normal((*lead, *xs)).astype(np_t)
    w = rng.standard_normal((*lead, *ws)).astype(np_t)
    args = [x, w]
    if epilogue:
        args.append(rng.standard_normal(n).astype(np_t))
    prog = _program(form, m, k, n, batch, epilogue, dtype, panel_bytes or lower_dot.PANEL_BYTES)
    out = prog(*args)[0]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    a = np.swapaxes(x64, -1, -2) if form == "tn" else x64
    ref = a @ (np.swapaxes(w64, -1, -2) if form == "nk" else w64)
    if epilogue:
        ref = np.maximum(ref + args[2].astype(np.float64), 0.0)
    assert out.shape == ref.shape and out.dtype == np_t
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=0,
                               atol=TOL[dtype] * np.sqrt(k) * 4,
                               err_msg=f"{form} {lead} {m}x{k}x{n} epilogue={epilogue}")


@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("form", sorted(FORMS))
def test_small_n_products(form, n):
    for i, (m, k) in enumerate([(1, 9), (5, 1), (64, 64), (127, 9), (128, 64)]):
        _check(form, m, k, n, epilogue=i % 2 == 1, seed=i)


@pytest.mark.parametrize("n", [10, 17])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_small_n_batched(form, n):
    _check(form, 5, 9, n, batch=3, epilogue=True)
    _check(form, 64, 64, n, batch=2)


@settings(max_examples=25, deadline=None)
@given(form=st.sampled_from(sorted(FORMS)), m=st.sampled_from(MS), k=st.sampled_from(KS),
       n=st.sampled_from(NS + (2, 26, 40)), epilogue=st.booleans(),
       dtype=st.sampled_from(["f32", "f64"]), batch=st.sampled_from([None, None, 2]))
def test_small_n_hypothesis(form, m, k, n, epilogue, dtype, batch):
    _check(form, m, k, n, epilogue=epilogue, dtype=dtype, batch=batch)


@pytest.mark.parametrize("n", [40, 58])
def test_tail_in_last_column_block(n):
    """Column blocks of one register tile: the tail vector runs in the last block only."""
    _check("tn", 64, 9, n, epilogue=True, panel_bytes=1)
    _check("kn", 17, 9, n, panel_bytes=1)


def test_f16_small_n():
    _check("tn", 64, 64, 10, dtype="f16", epilogue=True)


def _vector_ops(text: str, op: str, width: int) -> list[str]:
    return [ln for ln in text.splitlines() if op in ln and f"vector<{width}x" in ln]


def test_classifier_head_ir_uses_narrow_vectors():
    """dW = h.T @ g (128x10): B rows and C rows are one 10-wide vector per row, not 10
    scalars; A stays a splat per row."""
    text = str(_module("tn", 128, 64, 10, None, True, "f32", lower_dot.PANEL_BYTES))
    loads = _vector_ops(text, "loop.vload %in1", 10)
    assert loads and all("{width = 10}" in ln for ln in loads)
    assert not [ln for ln in text.splitlines() if "loop.load %in1" in ln]
    assert sum("loop.vstore" in ln for ln in text.splitlines()) == lower_dot.MR
    assert "loop.store" not in text
    assert _vector_ops(text, "loop.vload %in2", 10)  # the bias, as a vector too


def test_forward_head_keeps_scalar_tail():
    """x @ W.T with N=10: B is strided along N, so the tail is scalar and still right."""
    text = str(_module("nk", 64, 128, 10, None, False, "f32", lower_dot.PANEL_BYTES))
    assert not _vector_ops(text, "loop.vload %in1", 10)
    _check("nk", 64, 128, 10)


def test_compiled_weight_gradient():
    """Through ``lamina.compile``: the weight gradient of a classifier head."""
    rng = np.random.default_rng(3)
    h = rng.standard_normal((64, 128)).astype(np.float32)
    g = rng.standard_normal((64, 10)).astype(np.float32)
    f = lamina.compile(lambda h, g: h.t() @ g)
    th, tg = lamina.from_numpy(h), lamina.from_numpy(g)
    out = f(th, tg).numpy()
    np.testing.assert_allclose(out, h.T.astype(np.float64) @ g, rtol=0, atol=1e-4)
    assert "vector<10xf32>" in f.lower(th, tg).as_text("loop")
