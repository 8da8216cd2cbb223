"""The channel-vectorised ``conv`` kernel (static sizes, output rows narrower than half a
vector): against a float64 numpy reference, plain and transposed, and its gradients inside
``lamina.compile`` against PyTorch (when installed) or finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
from lamina.ir import TensorType
from lamina.ir.types import f32, f64
from lamina.passes.lower_loops import LowerLoops
from tests.passes.lower_util import group, run
from tests.passes.test_lower_conv import (
    conv_attrs,
    kernel_of,
    ref_conv,
    ref_prepare,
    transposed_weight,
)

SEEDS = st.integers(0, 2**32 - 1)
DTYPES = {"f32": (f32, np.float32, 1e-4), "f64": (f64, np.float64, 1e-10)}


@st.composite
def small_convs(draw):
    """(x shape, w shape, stride, padding, groups) of a 2-d conv with a small output."""
    groups = draw(st.sampled_from([1, 2]))
    c = draw(st.sampled_from([16] if groups == 2 else [1, 3, 16]))
    o = draw(st.sampled_from([16, 32] if groups == 2 else [1, 5, 16, 32, 33]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(2))
    pad = draw(st.integers(0, 1))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(2))
    spatial = tuple(max(1, k - 2 * pad) + draw(st.integers(0, 5)) for k in kernel)
    spatial = tuple(min(s, 6) for s in spatial)
    n = draw(st.sampled_from([1, 3]))
    return (n, c, *spatial), (o, c // groups, *kernel), stride, pad, groups


def _uses_channel_kernel(module) -> bool:
    return any(g.name.endswith("_wt") for g in module.graphs)


@settings(max_examples=40, deadline=None)
@given(case=small_convs(), dtype=st.sampled_from(sorted(DTYPES)), seed=SEEDS)
def test_small_conv_matches_numpy(case, dtype, seed):
    xs, ws, stride, pad, groups = case
    ir_t, np_t, tol = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs).astype(np_t), rng.standard_normal(ws).astype(np_t)
    prep = dict(low=(pad, pad), high=(pad, pad), input_dilation=(1, 1))
    attrs = conv_attrs(stride, (1, 1), groups, **prep)
    m = kernel_of("prim.conv", [TensorType(xs, ir_t), TensorType(ws, ir_t)], **attrs)
    (got,) = run(m, x, w)
    want = ref_conv(ref_prepare(x, **prep), w, stride, (1, 1), groups)
    assert got.shape == want.shape and got.dtype == np_t
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    width = 16 if dtype == "f32" else 8
    taken = ws[0] // groups >= 4 and want.shape[-1] < width // 2
    assert _uses_channel_kernel(m) == taken


@settings(max_examples=25, deadline=None)
@given(case=small_convs(), dtype=st.sampled_from(sorted(DTYPES)), seed=SEEDS)
def test_small_transposed_conv_matches_numpy(case, dtype, seed):
    xs, ws, stride, pad, groups = case
    ir_t, np_t, tol = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    # a transposed conv's weight is (C_in, O / groups, *K)
    wt_shape = (xs[1], ws[0] // groups, *ws[2:])
    x, wt = rng.standard_normal(xs).astype(np_t), rng.standard_normal(wt_shape).astype(np_t)
    prep = dict(low=(pad, pad), high=(pad, pad), input_dilation=(1, 1))
    attrs = conv_attrs(stride, (1, 1), groups, True, **prep)
    m = kernel_of("prim.conv", [TensorType(xs, ir_t), TensorType(wt_shape, ir_t)], **attrs)
    (got,) = run(m, x, wt)
    plain = np.ascontiguousarray(transposed_weight(wt, groups))
    want = ref_conv(ref_prepare(x, **prep), plain, stride, (1, 1), groups)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(64, 16, 4, 4, 32), (64, 32, 2, 2, 32), (2, 3, 1, 1, 7)])
def test_digits_cnn_shapes_take_the_channel_kernel(shape):
    n, c, h, w_, o = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    prep = dict(low=(1, 1), high=(1, 1), input_dilation=(1, 1))
    types = [TensorType(x.shape, f32), TensorType(w.shape, f32)]
    m = kernel_of("prim.conv", types, **conv_attrs((1, 1), (1, 1), 1, **prep))
    assert _uses_channel_kernel(m)
    (got,) = run(m, x, w)
    want = ref_conv(ref_prepare(x, **prep), w, (1, 1), (1, 1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dynamic_or_wide_convs_keep_the_column_kernel():
    types = [TensorType((None, 16, None, None), f32), TensorType((32, 16, 3, 3), f32)]
    m = kernel_of("prim.conv", types, **conv_attrs((1, 1), (1, 1), 1))
    assert not _uses_channel_kernel(m)
    types = [TensorType((2, 16, 20, 20), f32), TensorType((32, 16, 3, 3), f32)]
    m = kernel_of("prim.conv", types, **conv_attrs((1, 1), (1, 1), 1))
    assert not _uses_channel_kernel(m)


def test_cuda_target_keeps_the_column_kernel():
    """The channel form is a CPU choice: ``target="cuda"`` lowers as before."""
    types = [TensorType((64, 16, 6, 6), f32), TensorType((32, 16, 3, 3), f32)]
    attrs = conv_attrs((1, 1), (1, 1), 1)
    prim_module = group(types, lambda b, *v: b("prim.conv", *v, **attrs))
    assert not _uses_channel_kernel(LowerLoops(target="cuda").run(prim_module))
    assert _uses_channel_kernel(LowerLoops(target="cpu").run(prim_module))


def _conv_loss(lib, x, w, g, stride, pad, groups):
    y = lib.nn.functional.conv2d(x, w, stride=stride, padding=pad, groups=groups)
    return (y * g).sum()


@settings(max_examples=10, deadline=None)
@given(case=small_convs(), seed=SEEDS)
def test_compiled_small_conv_gradients(case, seed):
    """Forward and both gradients of a compiled conv (sizes static) vs PyTorch, else vs
    central differences of the float64 reference along a random direction."""
    xs, ws, stride, pad, groups = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    prep = dict(low=(pad, pad), high=(pad, pad), input_dilation=(1, 1))
    out = ref_conv(ref_prepare(x, **prep), w, stride, (1, 1), groups)
    g = rng.standard_normal(out.shape).astype(np.float32)

    def step(xt, wt, gt):
        loss = _conv_loss(lamina, xt, wt, gt, stride, pad, groups)
        loss.backward()
        return loss

    xt = lamina.tensor(x, requires_grad=True)
    wt = lamina.tensor(w, requires_grad=True)
    loss = lamina.compile(step)(xt, wt, lamina.tensor(g))
    np.testing.assert_allclose(float(loss.numpy()), float(np.sum(out * g)), rtol=1e-4,
                               atol=1e-3)
    gx, gw = xt.grad.numpy(), wt.grad.numpy()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        _conv_loss(torch, tx, tw, torch.tensor(g), stride, pad, groups).backward()
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-4, atol=1e-4)
        return
    x64, w64, eps = x.astype(np.float64), w.astype(np.float64), 1e-6
    for arr, grad, is_x in ((x64, gx, True), (w64, gw, False)):
        v = rng.standard_normal(arr.shape)

        def f(t, is_x=is_x):
            xx, ww = (t, w64) if is_x else (x64, t)
            return np.sum(ref_conv(ref_prepare(xx, **prep), ww, stride, (1, 1), groups) * g)

        fd = (f(arr + eps * v) - f(arr - eps * v)) / (2 * eps)
        assert abs(fd - np.sum(grad * v)) < 1e-3 * (1 + abs(fd))


@settings(max_examples=25, deadline=None)
@given(case=small_convs(), dtype=st.sampled_from(sorted(DTYPES)), transposed=st.booleans(),
       seed=SEEDS)
def test_small_weight_grad_matches_numpy(case, dtype, transposed, seed):
    """The weight gradient (over batch and output positions) of the plain conv, stored in
    the plain or the transposed (flipped) weight layout."""
    xs, ws, stride, pad, groups = case
    ir_t, np_t, tol = DTYPES[dtype]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs).astype(np_t)
    prep = dict(low=(pad, pad), high=(pad, pad), input_dilation=(1, 1))
    xp = ref_prepare(x, **prep).astype(np.float64)
    out_sp = [(n - k) // s + 1 for n, k, s in zip(xp.shape[2:], ws[2:], stride)]
    g = rng.standard_normal((xs[0], ws[0], *out_sp)).astype(np_t)
    attrs = dict(conv_attrs(stride, (1, 1), groups, transposed, **prep), kernel=tuple(ws[2:]))
    m = kernel_of("prim.conv_weight_grad", [TensorType(xs, ir_t), TensorType(g.shape, ir_t)],
                  **attrs)
    (got,) = run(m, x, g)
    og, cg = ws[0] // groups, ws[1]
    want = np.zeros(ws)
    for o in range(ws[0]):
        grp = o // og
        for c in range(cg):
            for kh in range(ws[2]):
                for kw in range(ws[3]):
                    win = xp[:, grp * cg + c, kh:kh + (out_sp[0] - 1) * stride[0] + 1:stride[0],
                             kw:kw + (out_sp[1] - 1) * stride[1] + 1:stride[1]]
                    want[o, c, kh, kw] = np.sum(win * g[:, o].astype(np.float64))
    if transposed:  # (C, O / groups, *K), flipped in space
        want = np.flip(want.reshape(groups, og, cg, *ws[2:]).swapaxes(1, 2), (3, 4))
        want = want.reshape(groups * cg, og, *ws[2:])
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10)
    width = 16 if dtype == "f32" else 8
    taken = og >= 4 and out_sp[-1] < width // 2
    assert any(k.name.endswith("_gt") for k in m.graphs) == taken
