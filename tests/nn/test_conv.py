"""Convolutions: functional forms against a numpy reference (always) and PyTorch (outputs and
gradients, when installed), the Conv/ConvTranspose modules (init, parameters, state_dict,
repr, padding modes, output_size), errors, and conv inside ``lamina.compile``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from tests.frontend.oracle import needs_torch, torch
from tests.nn.test_layers import compare_module
from tests.passes.test_lower_conv import ref_conv

SEEDS = st.integers(0, 2**32 - 1)


def _rand(rng: np.random.Generator, shape, dtype=np.float32) -> np.ndarray:
    return rng.standard_normal(tuple(shape)).astype(dtype)


# Attribute sets (stride, dilation, padding, groups): every new set compiles new kernels, so
# examples draw from a few of them and vary the sizes, which never recompile.
CONFIGS = {
    1: [((1,), (1,), (0,), 1), ((2,), (1,), (1,), 1), ((1,), (2,), (2,), 3)],
    2: [((1, 1), (1, 1), (1, 1), 1), ((2, 1), (1, 2), (0, 2), 2), ((1, 1), (1, 1), (0, 0), 3)],
}


@st.composite
def convs(draw, nd=None):
    nd = draw(st.integers(1, 2)) if nd is None else nd
    stride, dilation, padding, groups = draw(st.sampled_from(CONFIGS[nd]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    spatial = tuple(max(1, (k - 1) * d + 1 - 2 * p) + draw(st.integers(0, 5))
                    for k, d, p in zip(kernel, dilation, padding))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return dict(x=(n, groups * cg, *spatial), w=(groups * og, cg, *kernel), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=bias)


def _conv_fn(nd: int):
    return (lamina.conv1d, lamina.conv2d, lamina.conv3d)[nd - 1]


# -- forward against numpy -----------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(case=convs(), seed=SEEDS)
def test_conv_matches_numpy(case, seed):
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, case["x"]), _rand(rng, case["w"])
    b = _rand(rng, (case["w"][0],)) if case["bias"] else None
    nd = x.ndim - 2
    y = _conv_fn(nd)(lamina.tensor(x), lamina.tensor(w), None if b is None else lamina.tensor(b),
                     case["stride"], case["padding"], case["dilation"], case["groups"])
    pads = [(0, 0), (0, 0)] + [(p, p) for p in case["padding"]]
    want = ref_conv(np.pad(x, pads), w, case["stride"], case["dilation"], case["groups"])
    if b is not None:
        want = want + b.reshape((-1,) + (1,) * nd)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-4, atol=1e-4)


def test_same_padding_with_an_even_kernel_pads_more_on_the_right():
    rng = np.random.default_rng(0)
    x, w = _rand(rng, (1, 2, 7)), _rand(rng, (3, 2, 4))
    y = F.conv1d(lamina.tensor(x), lamina.tensor(w), padding="same", dilation=2)
    want = ref_conv(np.pad(x, [(0, 0), (0, 0), (3, 3)]), w, (1,), (2,), 1)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    x2, w2 = _rand(rng, (1, 2, 6)), _rand(rng, (3, 2, 4))
    y2 = F.conv1d(lamina.tensor(x2), lamina.tensor(w2), padding="same")
    want2 = ref_conv(np.pad(x2, [(0, 0), (0, 0), (1, 2)]), w2, (1,), (1,), 1)
    np.testing.assert_allclose(y2.numpy(), want2, rtol=1e-5, atol=1e-5)
    assert y2.shape == (1, 3, 6)


def test_unbatched_input_float64_and_empty_batch():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 6, 7)), rng.standard_normal((4, 3, 3, 2))
    y = F.conv2d(lamina.tensor(x), lamina.tensor(w), padding=1)
    assert y.dtype == lamina.float64 and y.shape == (4, 6, 8)
    want = ref_conv(np.pad(x[None], [(0, 0), (0, 0), (1, 1), (1, 1)]), w, (1, 1), (1, 1), 1)[0]
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)
    empty = F.conv2d(lamina.zeros(0, 3, 6, 7, dtype=lamina.float64), lamina.tensor(w))
    assert empty.shape == (0, 4, 4, 6)


def test_non_contiguous_input_reads_through_its_strides():
    rng = np.random.default_rng(2)
    base = _rand(rng, (2, 5, 3, 9))
    x = lamina.tensor(base).permute(0, 2, 1, 3)  # (2, 3, 5, 9), not contiguous
    w = _rand(rng, (4, 3, 3, 3))
    y = F.conv2d(x, lamina.tensor(w))
    want = ref_conv(np.ascontiguousarray(base.transpose(0, 2, 1, 3)), w, (1, 1), (1, 1), 1)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)


# -- against PyTorch: outputs and gradients --------------------------------------------------------
def _grads_vs_torch(lfn, tfn, arrays: list[np.ndarray | None], rtol=1e-4, atol=1e-4) -> None:
    lins = [None if a is None else lamina.tensor(a, requires_grad=True) for a in arrays]
    tins = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    lo, to = lfn(*lins), tfn(*tins)
    np.testing.assert_allclose(lo.detach().numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(5).standard_normal(tuple(to.shape)).astype(np.float32)
    lo.backward(lamina.tensor(g))
    to.backward(torch.tensor(g))
    for li, ti in zip(lins, tins):
        if li is not None:
            np.testing.assert_allclose(li.grad.numpy(), ti.grad.numpy(), rtol=rtol * 10,
                                       atol=atol * 10)


# one attribute set per rank for the gradient tests (a backward compiles several kernels)
GRAD_CONFIGS = {1: [CONFIGS[1][1]], 2: [CONFIGS[2][1]]}


@st.composite
def grad_convs(draw):
    case = draw(convs())
    nd = len(case["stride"])
    stride, dilation, padding, groups = GRAD_CONFIGS[nd][0]
    cg, og = case["x"][1] // case["groups"], case["w"][0] // case["groups"]
    # a fixed kernel: the backward's padding depends on it (sizes alone never recompile)
    kernel = (3, 2)[:nd]
    spatial = tuple(max(1, (k - 1) * d + 1 - 2 * p) + draw(st.integers(0, 5))
                    for k, d, p in zip(kernel, dilation, padding))
    return dict(x=(case["x"][0], groups * cg, *spatial), w=(groups * og, cg, *kernel),
                stride=stride, padding=padding, dilation=dilation, groups=groups, bias=True)


@needs_torch
@settings(max_examples=15, deadline=None)
@given(case=grad_convs(), seed=SEEDS)
def test_conv_and_its_gradients_match_torch(case, seed):
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, case["x"]), _rand(rng, case["w"])
    b = _rand(rng, (case["w"][0],)) if case["bias"] else None
    nd = x.ndim - 2
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
              groups=case["groups"])
    tfn = (torch.nn.functional.conv1d, torch.nn.functional.conv2d)[nd - 1]
    _grads_vs_torch(lambda u, v, c: _conv_fn(nd)(u, v, c, **kw),
                    lambda u, v, c: tfn(u, v, c, **kw), [x, w, b])


TRANSPOSED = [  # (stride, dilation, padding, output_padding, groups)
    ((3,), (2,), (1,), (1,), 1), ((2, 1), (1, 2), (1, 1), (1, 0), 2),
]


@needs_torch
@settings(max_examples=12, deadline=None)
@given(config=st.sampled_from(TRANSPOSED), data=st.data(), seed=SEEDS)
def test_conv_transpose_and_its_gradients_match_torch(config, data, seed):
    stride, dilation, padding, output_padding, groups = config
    nd = len(stride)
    rng = np.random.default_rng(seed)
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    kernel = (2, 3)[:nd]
    # the output must not be empty: (n-1)*s - 2p + d*(k-1) + op + 1 > 0
    spatial = tuple(data.draw(st.integers((2 * p - 1) // s + 2 if p else 1, 6))
                    for p, s in zip(padding, stride))
    x = _rand(rng, (data.draw(st.integers(1, 2)), cin, *spatial))
    w = _rand(rng, (cin, cout // groups, *kernel))
    b = _rand(rng, (cout,))
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    lfn = (lamina.conv_transpose1d, lamina.conv_transpose2d)[nd - 1]
    tfn = (torch.nn.functional.conv_transpose1d, torch.nn.functional.conv_transpose2d)[nd - 1]
    _grads_vs_torch(lambda u, v, c: lfn(u, v, c, **kw), lambda u, v, c: tfn(u, v, c, **kw),
                    [x, w, b])


@needs_torch
def test_conv3d_matches_torch():
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, (2, 4, 5, 6, 7)), _rand(rng, (6, 2, 3, 2, 3)), _rand(rng, (6,))
    kw = dict(stride=(1, 2, 1), padding=(1, 0, 2), dilation=(1, 1, 2), groups=2)
    _grads_vs_torch(lambda u, v, c: F.conv3d(u, v, c, **kw),
                    lambda u, v, c: torch.nn.functional.conv3d(u, v, c, **kw), [x, w, b])


# -- modules -------------------------------------------------------------------------------------
def test_conv_default_init_parameters_and_state_dict():
    lamina.manual_seed(0)
    m = nn.Conv2d(4, 8, (3, 5), groups=2)
    assert m.weight.shape == (8, 2, 3, 5) and m.bias.shape == (8,)
    assert list(m.state_dict()) == ["weight", "bias"]
    bound = 1 / math.sqrt(2 * 3 * 5)  # kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in))
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.all(np.abs(w) <= bound) and np.abs(w).max() > 0.8 * bound
    assert np.all(np.abs(b) <= bound)
    t = nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)
    assert t.weight.shape == (4, 3, 3, 3) and t.bias is None
    assert list(t.state_dict()) == ["weight"]
    assert [n for n, _ in nn.Conv1d(2, 2, 3).named_parameters()] == ["weight", "bias"]


@pytest.mark.parametrize("make, text", [
    (lambda: nn.Conv2d(3, 8, 3), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))"),
    (lambda: nn.Conv2d(4, 8, (3, 2), stride=2, padding=1, dilation=2, groups=2, bias=False,
                       padding_mode="reflect"),
     "Conv2d(4, 8, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(2, 2), "
     "groups=2, bias=False, padding_mode=reflect)"),
    (lambda: nn.Conv1d(2, 4, 3, padding="same"),
     "Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding=same)"),
    (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1),
     "ConvTranspose2d(4, 2, kernel_size=(3, 3), stride=(2, 2), output_padding=(1, 1))"),
])
def test_conv_reprs(make, text):
    assert repr(make()) == text


@needs_torch
@pytest.mark.parametrize("make", [
    lambda m: m.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), padding=(0, 2), groups=2,
                       bias=False),
    lambda m: m.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"),
    lambda m: m.Conv1d(3, 6, 5, stride=2, padding=1, padding_mode="circular"),
    lambda m: m.Conv1d(3, 6, 5, stride=2, padding=1, padding_mode="replicate"),
    lambda m: m.ConvTranspose2d(4, 6, 3, stride=(2, 1), padding=1, output_padding=(1, 0),
                                dilation=(1, 2), groups=2),
])
def test_conv_modules_match_torch(make):
    lmod, tmod = make(nn), make(torch.nn)
    shape = (2, lmod.in_channels, 7, 9)[:2 + lmod._nd]
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    compare_module(lmod, tmod, x, rtol=1e-4, atol=1e-4)
    assert repr(lmod) == repr(tmod)


@needs_torch
def test_conv_transpose_output_size():
    lmod, tmod = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), \
        torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    lmod.load_state_dict({k: lamina.tensor(v.detach().numpy())
                          for k, v in tmod.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((1, 2, 4, 5)).astype(np.float32)
    y = lmod(lamina.tensor(x), output_size=[8, 10])
    ty = tmod(torch.tensor(x), output_size=[8, 10])
    assert y.shape == (1, 3, 8, 10)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="requested an output size"):
        lmod(lamina.tensor(x), output_size=[12, 10])


# -- errors -----------------------------------------------------------------------------------
def test_conv_errors_name_the_shapes():
    x, w = lamina.zeros(1, 4, 5, 5), lamina.zeros(6, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"expected input\[1, 4, 5, 5\] to have 3 channels"):
        F.conv2d(x, w)
    with pytest.raises(RuntimeError, match="divisible by 4"):
        F.conv2d(x, lamina.zeros(6, 1, 3, 3), groups=4)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        F.conv2d(lamina.zeros(1, 3, 2, 2), w)
    with pytest.raises(RuntimeError, match="Expected 3D .unbatched. or 4D"):
        F.conv2d(lamina.zeros(5, 5), w)
    with pytest.raises(ValueError, match="strided convolutions"):
        F.conv2d(lamina.zeros(1, 3, 5, 5), w, stride=2, padding="same")
    with pytest.raises(RuntimeError, match="bias"):
        F.conv2d(lamina.zeros(1, 3, 5, 5), w, lamina.zeros(5))
    with pytest.raises(RuntimeError, match="not implemented for 'Long'"):
        F.conv2d(lamina.zeros(1, 3, 5, 5, dtype=lamina.int64),
                 lamina.zeros(6, 3, 3, 3, dtype=lamina.int64))
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(ValueError, match="Invalid padding string"):
        nn.Conv2d(3, 6, 3, padding="full")


# -- traced -------------------------------------------------------------------------------------
def test_conv_and_conv_transpose_inside_compile():
    rng = np.random.default_rng(8)
    x, w, wt = _rand(rng, (2, 3, 8, 8)), _rand(rng, (4, 3, 3, 3)), _rand(rng, (4, 2, 3, 3))

    def fn(u, v, vt):
        return F.conv_transpose2d(F.relu(F.conv2d(u, v, padding=1)), vt, stride=2)

    f = lamina.compile(fn)
    args = [lamina.tensor(a) for a in (x, w, wt)]
    got = f(*args).numpy()
    np.testing.assert_allclose(got, fn(*args).numpy(), rtol=1e-4, atol=1e-4)
    assert "prim.conv" in f.lower(*args).as_text("prim")
