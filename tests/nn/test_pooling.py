"""Pooling and resampling: max/avg/adaptive pooling against numpy references (always) and
PyTorch (values, indices, gradients), the pooling modules, ``pixel_shuffle``,
``interpolate`` and ``Upsample``, and their errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from tests.frontend.oracle import needs_torch, torch
from tests.nn.test_layers import compare_module

SEEDS = st.integers(0, 2**32 - 1)


def _rand(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(np.float32)


# -- numpy references ------------------------------------------------------------------------
def _out_size(n: int, k: int, s: int, d: int, p: int, ceil: bool) -> int:
    span = (k - 1) * d + 1
    out = (n + 2 * p - span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def ref_max_pool2d(x, k, s, p, d, ceil):
    """Values and flat indices: a direct loop over windows (no NaNs in the inputs)."""
    n, c, h, w = x.shape
    oh, ow = (_out_size(a, *args, ceil) for a, args in
              zip((h, w), zip(k, s, d, p)))
    vals = np.full((n, c, oh, ow), -np.inf, np.float32)
    idx = np.zeros((n, c, oh, ow), np.int64)
    for i, j in itertools.product(range(oh), range(ow)):
        taps = [(i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1])
                for a in range(k[0]) for b in range(k[1])]
        taps = [(r, q) for r, q in taps if 0 <= r < h and 0 <= q < w]
        window = np.stack([x[:, :, r, q] for r, q in taps], -1)
        best = np.argmax(window, -1)
        vals[:, :, i, j] = np.take_along_axis(window, best[..., None], -1)[..., 0]
        idx[:, :, i, j] = np.array([r * w + q for r, q in taps])[best]
    return vals, idx


def ref_avg_pool2d(x, k, s, p, ceil, include_pad, divisor):
    n, c, h, w = x.shape
    oh, ow = (_out_size(a, kk, ss, 1, pp, ceil) for a, kk, ss, pp in zip((h, w), k, s, p))
    out = np.zeros((n, c, oh, ow), np.float64)
    for i, j in itertools.product(range(oh), range(ow)):
        r0, q0 = i * s[0] - p[0], j * s[1] - p[1]
        r1, q1 = min(r0 + k[0], h + p[0]), min(q0 + k[1], w + p[1])
        size = (r1 - r0) * (q1 - q0)
        r0c, q0c, r1c, q1c = max(r0, 0), max(q0, 0), min(r1, h), min(q1, w)
        total = x[:, :, r0c:r1c, q0c:q1c].sum(axis=(2, 3), dtype=np.float64)
        count = divisor or (size if include_pad else (r1c - r0c) * (q1c - q0c))
        out[:, :, i, j] = total / count
    return out


def ref_adaptive_avg_pool2d(x, out):
    n, c, h, w = x.shape
    res = np.zeros((n, c, *out))
    for i, j in itertools.product(range(out[0]), range(out[1])):
        r0, r1 = i * h // out[0], -(-(i + 1) * h // out[0])
        q0, q1 = j * w // out[1], -(-(j + 1) * w // out[1])
        res[:, :, i, j] = x[:, :, r0:r1, q0:q1].mean(axis=(2, 3))
    return res


# Attribute sets (kernel, stride, padding, dilation): each set is one compiled kernel, so
# the examples draw from a few and vary the sizes.
MAX_CONFIGS = [((2, 2), (2, 2), (0, 0), (1, 1)), ((3, 2), (2, 1), (1, 1), (1, 2)),
               ((3, 3), (1, 2), (1, 0), (2, 1))]
AVG_CONFIGS = [((2, 2), (2, 2), (0, 0)), ((3, 2), (2, 1), (1, 1)), ((3, 3), (3, 2), (1, 0))]


@st.composite
def pool_inputs(draw, configs, seed=SEEDS):
    config = draw(st.sampled_from(configs))
    k, d = config[0], config[3] if len(config) > 3 else (1, 1)
    ceil = draw(st.booleans())
    h = draw(st.integers((k[0] - 1) * d[0] + 1, 9))
    w = draw(st.integers((k[1] - 1) * d[1] + 1, 9))
    rng = np.random.default_rng(draw(seed))
    return config, ceil, _rand(rng, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w))


@settings(max_examples=25, deadline=None)
@given(case=pool_inputs(MAX_CONFIGS))
def test_max_pool2d_values_and_indices_match_numpy(case):
    (k, s, p, d), ceil, x = case
    vals, idx = F.max_pool2d(lamina.tensor(x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    want_v, want_i = ref_max_pool2d(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(vals.numpy(), want_v)
    np.testing.assert_array_equal(idx.numpy(), want_i)
    assert idx.dtype == lamina.int64


@settings(max_examples=25, deadline=None)
@given(case=pool_inputs(AVG_CONFIGS), include_pad=st.booleans(),
       divisor=st.sampled_from([None, 3]))
def test_avg_pool2d_matches_numpy(case, include_pad, divisor):
    (k, s, p), ceil, x = case
    y = F.avg_pool2d(lamina.tensor(x), k, s, p, ceil, include_pad, divisor)
    np.testing.assert_allclose(y.numpy(), ref_avg_pool2d(x, k, s, p, ceil, include_pad, divisor),
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, h=st.integers(1, 10), w=st.integers(1, 10), oh=st.integers(1, 6),
       ow=st.integers(1, 6))
def test_adaptive_avg_pool2d_matches_numpy(seed, h, w, oh, ow):
    x = _rand(np.random.default_rng(seed), (2, 3, h, w))
    y = F.adaptive_avg_pool2d(lamina.tensor(x), (oh, ow))
    np.testing.assert_allclose(y.numpy(), ref_adaptive_avg_pool2d(x, (oh, ow)), rtol=1e-5,
                               atol=1e-6)


def test_pools_take_unbatched_and_1d_inputs():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    y = F.max_pool2d(lamina.tensor(x), 2)
    assert y.shape == (2, 1, 2)
    np.testing.assert_array_equal(y.numpy(), [[[5, 7]], [[17, 19]]])
    z = F.avg_pool1d(lamina.tensor(x), 2)
    np.testing.assert_allclose(z.numpy(), x.reshape(2, 3, 2, 2).mean(-1))
    a = F.adaptive_avg_pool1d(lamina.tensor(x), 1)
    np.testing.assert_allclose(a.numpy(), x.mean(-1, keepdims=True), rtol=1e-6)
    v, i = F.max_pool1d(lamina.tensor(x), 3, 1, return_indices=True)
    np.testing.assert_array_equal(i.numpy(), np.broadcast_to([2, 3], (2, 3, 2)))


def test_max_pool_propagates_nan_like_pytorch():
    x = np.array([[[[1.0, np.nan, 3.0, 4.0]]]], np.float32)
    v, i = F.max_pool2d(lamina.tensor(x), (1, 2), return_indices=True)
    assert np.isnan(v.numpy()[0, 0, 0, 0]) and v.numpy()[0, 0, 0, 1] == 4.0
    assert i.numpy().tolist() == [[[[1, 3]]]]


# -- against PyTorch: values, indices and gradients -------------------------------------------
def _vs_torch(lfn, tfn, x: np.ndarray, rtol=1e-5, atol=1e-6):
    lx, tx = lamina.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ly, ty = lfn(lx), tfn(tx)
    np.testing.assert_allclose(ly.detach().numpy(), ty.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(1).standard_normal(tuple(ty.shape)).astype(np.float32)
    ly.backward(lamina.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=rtol * 10, atol=atol * 10)


@needs_torch
@settings(max_examples=20, deadline=None)
@given(case=pool_inputs(MAX_CONFIGS), ties=st.booleans())
def test_max_pool2d_and_its_gradient_match_torch(case, ties):
    (k, s, p, d), ceil, x = case
    if ties:  # the gradient goes to the first maximum of a window, like PyTorch's
        x = np.round(x)
    kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    _vs_torch(lambda t: F.max_pool2d(t, **kw), lambda t: torch.nn.functional.max_pool2d(t, **kw),
              x)
    _, li = F.max_pool2d(lamina.tensor(x), return_indices=True, **kw)
    _, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(li.numpy(), ti.numpy())


@needs_torch
@settings(max_examples=20, deadline=None)
@given(case=pool_inputs(AVG_CONFIGS), include_pad=st.booleans())
def test_avg_pool2d_and_its_gradient_match_torch(case, include_pad):
    (k, s, p), ceil, x = case
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil, count_include_pad=include_pad)
    _vs_torch(lambda t: F.avg_pool2d(t, **kw), lambda t: torch.nn.functional.avg_pool2d(t, **kw),
              x)


@needs_torch
@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 5),
       ow=st.integers(1, 5))
def test_adaptive_avg_pool2d_gradient_matches_torch(seed, h, w, oh, ow):
    x = _rand(np.random.default_rng(seed), (2, 2, h, w))
    _vs_torch(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)),
              lambda t: torch.nn.functional.adaptive_avg_pool2d(t, (oh, ow)), x)


@needs_torch
def test_1d_pools_match_torch():
    x = _rand(np.random.default_rng(2), (2, 3, 11))
    tf = torch.nn.functional
    _vs_torch(lambda t: F.max_pool1d(t, 3, 2, 1, ceil_mode=True),
              lambda t: tf.max_pool1d(t, 3, 2, 1, ceil_mode=True), x)
    _vs_torch(lambda t: F.avg_pool1d(t, 4, 3, 2, count_include_pad=False),
              lambda t: tf.avg_pool1d(t, 4, 3, 2, count_include_pad=False), x)
    _vs_torch(lambda t: F.adaptive_avg_pool1d(t, 4), lambda t: tf.adaptive_avg_pool1d(t, 4), x)


# -- modules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, text", [
    (lambda m: m.MaxPool2d(2), "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, "
                               "ceil_mode=False)"),
    (lambda m: m.MaxPool1d(3, 2, 1, ceil_mode=True),
     "MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)"),
    (lambda m: m.AvgPool2d((3, 2), padding=1),
     "AvgPool2d(kernel_size=(3, 2), stride=(3, 2), padding=1)"),
    (lambda m: m.AvgPool1d(2), "AvgPool1d(kernel_size=(2,), stride=(2,), padding=(0,))"),
    (lambda m: m.AdaptiveAvgPool2d((5, None)), "AdaptiveAvgPool2d(output_size=(5, None))"),
    (lambda m: m.PixelShuffle(3), "PixelShuffle(upscale_factor=3)"),
    (lambda m: m.Upsample(scale_factor=2, mode="bilinear"),
     "Upsample(scale_factor=2.0, mode='bilinear')"),
    (lambda m: m.UpsamplingNearest2d(size=(4, 5)), "UpsamplingNearest2d(size=(4, 5), "
                                                    "mode='nearest')"),
])
def test_module_reprs(make, text):
    assert repr(make(nn)) == text
    if torch is not None:
        assert repr(make(torch.nn)) == text


@needs_torch
@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(3, 2, 1, ceil_mode=True),
    lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False),
    lambda m: m.AdaptiveAvgPool2d((3, None)),
    lambda m: m.PixelShuffle(2),
    lambda m: m.PixelUnshuffle(2),
    lambda m: m.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True),
])
def test_pooling_modules_match_torch(make):
    x = _rand(np.random.default_rng(3), (2, 8, 6, 10))
    compare_module(make(nn), make(torch.nn), x)


def test_max_pool_module_returns_indices():
    v, i = nn.MaxPool2d(2, return_indices=True)(lamina.tensor(np.eye(4, dtype=np.float32)[None]))
    np.testing.assert_array_equal(i.numpy(), [[[0, 2], [8, 10]]])  # first maximum of each window
    np.testing.assert_array_equal(v.numpy(), [[[1, 0], [0, 1]]])


# -- pixel shuffle and interpolation ----------------------------------------------------------
def test_pixel_shuffle_round_trips_and_matches_numpy():
    x = np.arange(2 * 18 * 2 * 3, dtype=np.float32).reshape(2, 18, 2, 3)
    y = F.pixel_shuffle(lamina.tensor(x), 3)
    want = x.reshape(2, 2, 3, 3, 2, 3).transpose(0, 1, 4, 2, 5, 3).reshape(2, 2, 6, 9)
    np.testing.assert_array_equal(y.numpy(), want)
    np.testing.assert_array_equal(F.pixel_unshuffle(y, 3).numpy(), x)
    with pytest.raises(RuntimeError, match="divisible by the square of upscale_factor"):
        F.pixel_shuffle(lamina.tensor(x), 4)


def test_nearest_interpolation_matches_numpy():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
    y = F.interpolate(lamina.tensor(x), scale_factor=2, mode="nearest")
    np.testing.assert_array_equal(y.numpy(), x.repeat(2, 2).repeat(2, 3))
    z = F.interpolate(lamina.tensor(x), size=(2, 2))  # src = floor(dst * in / out)
    np.testing.assert_array_equal(z.numpy(), x[:, :, [0, 1]][:, :, :, [0, 2]])


def test_bilinear_align_corners_matches_numpy():
    x = np.array([[[[0.0, 3.0], [6.0, 9.0]]]], np.float32)
    y = F.interpolate(lamina.tensor(x), size=(3, 4), mode="bilinear", align_corners=True)
    rows = np.array([0.0, 3.0, 6.0])[:, None] + np.array([0.0, 1.0, 2.0, 3.0])[None]
    np.testing.assert_allclose(y.numpy()[0, 0], rows, rtol=1e-6, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("kw", [
    dict(size=(7, 9), mode="nearest"), dict(scale_factor=1.7, mode="nearest"),
    dict(size=(7, 9), mode="nearest-exact"),
    dict(size=(7, 9), mode="bilinear", align_corners=False),
    dict(size=(3, 4), mode="bilinear", align_corners=True),
    dict(scale_factor=(2, 0.5), mode="bilinear"),
    dict(scale_factor=0.5, mode="bilinear", recompute_scale_factor=True),
    dict(size=(3, 4), mode="area"),
])
def test_interpolate_and_its_gradient_match_torch(kw):
    x = _rand(np.random.default_rng(4), (2, 3, 5, 6))
    _vs_torch(lambda t: F.interpolate(t, **kw), lambda t: torch.nn.functional.interpolate(t, **kw),
              x)


@needs_torch
def test_linear_and_trilinear_match_torch():
    rng = np.random.default_rng(5)
    tf = torch.nn.functional
    x1 = _rand(rng, (2, 3, 5))
    _vs_torch(lambda t: F.interpolate(t, scale_factor=2.5, mode="linear"),
              lambda t: tf.interpolate(t, scale_factor=2.5, mode="linear"), x1)
    x3 = _rand(rng, (1, 2, 3, 4, 5))
    _vs_torch(lambda t: F.interpolate(t, size=(4, 3, 6), mode="trilinear"),
              lambda t: tf.interpolate(t, size=(4, 3, 6), mode="trilinear"), x3)


# -- errors -----------------------------------------------------------------------------------
def test_pool_errors():
    x = lamina.zeros(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="pad should be at most half of kernel size"):
        F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.max_pool2d(lamina.zeros(1, 2, 2, 2), 3)
    with pytest.raises(RuntimeError, match="Expected 3D .unbatched. or 4D"):
        F.max_pool2d(lamina.zeros(4, 4), 2)
    with pytest.raises(RuntimeError, match="divisor must be not zero"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        F.max_pool2d(lamina.zeros(1, 2, 4, 4, dtype=lamina.int64), 2)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(x, size=2, align_corners=True)
