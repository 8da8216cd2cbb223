"""Convolution and pooling primitives through the passes: decompositions and fusion as text,
kernel structure, the kernels run by the loop interpreter and natively against the prim
interpreter and an independent numpy convolution, and the VJP rules against finite
differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from lamina.backends.interp import run as prim_run
from lamina.ir import Builder, Graph, IRError, Module, TensorType, parse, verify
from lamina.ir.core import Return
from lamina.ir.types import f32, f64
from tests.passes.filecheck import filecheck, run_pipeline
from tests.passes.lower_util import dyn, group, lower, run
from tests.passes.test_vjp_rules import fd_check

SEEDS = st.integers(0, 2**32 - 1)


# -- an independent reference --------------------------------------------------------------
def ref_conv(x: np.ndarray, w: np.ndarray, stride, dilation, groups: int) -> np.ndarray:
    """Valid N-d correlation in float64 from sliding windows (PyTorch's conv, no padding)."""
    nd = x.ndim - 2
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    kernel = w.shape[2:]
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    win = sliding_window_view(x.astype(np.float64), span, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None), *(slice(None, None, s) for s in stride),
               *(slice(None, None, d) for d in dilation))]
    out_sp = win.shape[2:2 + nd]
    win = win.reshape(n, groups, cg, *out_sp, *kernel)
    wv = w.astype(np.float64).reshape(groups, o // groups, cg, *kernel)
    letters = "hijklm"[:nd]
    taps = "pqrstu"[:nd]
    spec = f"ngc{letters}{taps},goc{taps}->ngo{letters}"
    return np.einsum(spec, win, wv).reshape(n, o, *out_sp)


def one_op(name: str, types, **attrs) -> Module:
    """A prim func applying ``name`` to its arguments (no fusion yet)."""
    g = Graph("f", list(types), [f"a{i}" for i in range(len(types))])
    b = Builder(g.body)
    g.body.append(Return([b(name, *g.args, **attrs)], []))
    m = Module([g])
    verify(m)
    return m


def kernel_of(name: str, types, **attrs) -> Module:
    """The lowered (loop-stage) module of one fusion group holding ``name``."""
    return lower(group(types, lambda b, *v: b(name, *v, **attrs)))


def conv_attrs(stride, dilation, groups, transposed=False, low=None, high=None,
               input_dilation=None) -> dict:
    nd = len(stride)
    return dict(stride=tuple(stride), dilation=tuple(dilation), groups=groups,
                transposed=transposed, low=tuple(low or (0,) * nd),
                high=tuple(high or (0,) * nd),
                input_dilation=tuple(input_dilation or (1,) * nd))


# -- decomposition and fusion, as text -------------------------------------------------------
def test_conv_decomposes_to_one_padded_conv_in_its_own_group():
    out = run_pipeline("""
    func @f(%x: tensor<2x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<2x4x8x8xf32>) -> (tensor<2x4x8x8xf32>) {
      %0 = tensor.conv %x, %w {dilation = [1, 1], groups = 1, high = [1, 1], low = [1, 1], stride = [1, 1]} : tensor<2x4x8x8xf32>
      %1 = tensor.add %0, %b : tensor<2x4x8x8xf32>
      %2 = tensor.relu %1 : tensor<2x4x8x8xf32>
      return %2
    }""", "decompose,simplify,fuse")  # noqa: E501
    filecheck(out, """
        CHECK: prim.fusion %x, %w
        CHECK-NEXT: prim.conv
        CHECK-SAME: high = [1, 1], input_dilation = [1, 1], low = [1, 1]
        CHECK-SAME: transposed = false
        CHECK-NEXT: prim.yield
        CHECK: prim.fusion
        CHECK: prim.add
        CHECK: prim.where
        CHECK: return
    """)
    assert out.count("prim.fusion") == 2


def test_conv_transpose_decomposes_to_a_dilated_transposed_conv():
    out = run_pipeline("""
    func @f(%x: tensor<1x2x?x3xf32>, %w: tensor<2x4x3x3xf32>) -> (tensor<1x4x?x6xf32>) {
      %0 = tensor.conv_transpose %x, %w {dilation = [1, 1], groups = 1, output_padding = [0, 1], padding = [1, 1], stride = [2, 2]} : tensor<1x4x?x6xf32>
      return %0
    }""", "decompose")  # noqa: E501
    filecheck(out, """
        CHECK: prim.conv %x, %w
        CHECK-SAME: high = [1, 2], input_dilation = [2, 2], low = [1, 1], stride = [1, 1]
        CHECK-SAME: transposed = true
        CHECK-SAME: tensor<1x4x?x6xf32>
    """)


def test_conv_transpose_needs_a_static_kernel_to_decompose():
    text = """
    func @f(%x: tensor<1x2x3x3xf32>, %w: tensor<2x4x?x3xf32>) -> (tensor<1x4x?x5xf32>) {
      %0 = tensor.conv_transpose %x, %w {dilation = [1, 1], groups = 1, output_padding = [0, 0], padding = [1, 1], stride = [2, 2]} : tensor<1x4x?x5xf32>
      return %0
    }"""  # noqa: E501
    with pytest.raises(IRError, match="static kernel sizes"):
        run_pipeline(text, "decompose")


def test_pools_decompose_to_their_prims():
    out = run_pipeline("""
    func @f(%x: tensor<2x3x7x9xf32>) -> (tensor<2x3x4x5xf32>) {
      %0 = tensor.max_pool %x {ceil_mode = true, dilation = [1, 2], padding = [1, 1], stride = [2, 2], window = [3, 2]} : tensor<2x3x4x5xf32>
      return %0
    }""", "decompose")  # noqa: E501
    assert "prim.max_pool %x {ceil_mode = true, dilation = [1, 2], padding = [1, 1]" in out


@pytest.mark.parametrize("attrs, result, message", [
    ("dilation = [1, 1], groups = 2, stride = [1, 1]", "1x4x6x6", "expects"),
    ("dilation = [4, 4], groups = 1, stride = [1, 1]", "1x4x1x1", "smaller than the dilated"),
    ("dilation = [1], groups = 1, stride = [1, 1]", "1x4x6x6", "dilation must be a list of 2"),
])
def test_conv_shape_errors_name_the_op(attrs, result, message):
    extra = "high = [0, 0], input_dilation = [1, 1], low = [0, 0]"
    module = f"""
    func @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> (tensor<{result}xf32>) {{
      %0 = prim.conv %x, %w {{{attrs}, {extra}, transposed = false}} : tensor<{result}xf32>
      return %0
    }}"""
    with pytest.raises(IRError, match=message) as info:
        verify(parse(module))
    assert "prim.conv" in str(info.value)


# -- kernel structure --------------------------------------------------------------------------
def test_conv_kernel_is_tiled_over_channels_and_vectorised_along_rows():
    t = [dyn(TensorType((1, 1, 1, 1), f32))] * 2
    out = str(kernel_of("prim.conv", t, **conv_attrs((1, 1), (1, 1), 1)))
    filecheck(out, """
        CHECK: kernel @k0(%in0: memref<?x?x?x?xf32>, %in1: memref<?x?x?x?xf32>, %out: memref<?x?x?x?xf32>)
        CHECK: loop.parallel
        CHECK: : vector<16xf32>, vector<16xf32>
        CHECK: loop.vload %in0
        CHECK-SAME: {width = 16}
        CHECK: loop.load %in1
        CHECK: loop.splat
        CHECK: loop.yield
        CHECK: loop.vstore
        CHECK: func @f
        CHECK: loop.max
        CHECK: loop.alloc
        CHECK: loop.call %a0, %a1, %
    """)  # noqa: E501
    # 8 output channels x 2 vectors (of one row, or one of each of two rows) per tile
    assert max(line.count("vector<16xf32>") for line in out.splitlines()) >= 16
    assert max(line.count("vector<8xf32>") for line in out.splitlines()) >= 16


def test_strided_rows_are_split_into_phases():
    t = [dyn(TensorType((1, 1, 1, 1), f32))] * 2
    out = str(kernel_of("prim.conv", t, **conv_attrs((1, 2), (1, 1), 1)))
    filecheck(out, """
        CHECK: kernel @k0_pad(%x: memref<?x?x?x?xf32>, %out: memref<?x?x?x2x?xf32>)
        CHECK: kernel @k0(%in0: memref<?x?x?x2x?xf32>
        CHECK: loop.vload %in0
        CHECK-SAME: {width = 16}
        CHECK: func @f
        CHECK: loop.call %a0, %
        CHECK-SAME: {kernel = @k0_pad}
        CHECK: loop.call
        CHECK-SAME: {kernel = @k0}
    """)


def test_pool_and_weight_grad_kernels_are_parallel():
    x = dyn(TensorType((1, 1, 1, 1), f32))
    pool = str(kernel_of("prim.max_pool", [x], window=(2, 2), stride=(2, 2), dilation=(1, 1),
                         padding=(0, 0), ceil_mode=False))
    assert pool.count("loop.parallel") == 1 and "loop.isnan" in pool
    wgrad = str(kernel_of("prim.conv_weight_grad", [x, x], kernel=(3, 3),
                          **conv_attrs((1, 1), (1, 1), 1)))
    assert wgrad.count("loop.parallel") == 1 and 'loop.vreduce' in wgrad


# -- kernels vs references (loop interpreter) -------------------------------------------------
@st.composite
def conv_cases(draw, max_nd=2, prepare=True):
    """(x shape, w shape, stride, dilation, groups, prep): ``prep`` holds the padding
    (``low``/``high``, negative crops) and ``input_dilation`` of the prepared input."""
    nd = draw(st.integers(1, max_nd))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    pad = st.integers(-1, 2) if prepare else st.just(0)
    low = tuple(draw(pad) for _ in range(nd))
    high = tuple(draw(pad) for _ in range(nd))
    spread = tuple(draw(st.integers(1, 2) if prepare else st.just(1)) for _ in range(nd))
    spatial = []
    for a, (k, d, lo, hi, sp) in enumerate(zip(kernel, dilation, low, high, spread)):
        need = (k - 1) * d + 1 - 1 - lo - hi  # (S-1)*sp must reach this
        smallest = max(1, -(-need // sp) + 1)
        spatial.append(smallest + draw(st.integers(0, 6 if a == nd - 1 else 3)))
    n = draw(st.integers(1, 2))
    prep = dict(low=low, high=high, input_dilation=spread)
    return (n, groups * cg, *spatial), (groups * og, cg, *kernel), stride, dilation, groups, prep


def ref_prepare(x: np.ndarray, low, high, input_dilation) -> np.ndarray:
    """``x`` dilated by ``input_dilation`` and padded by ``low``/``high`` (negative crops),
    by a loop over its elements."""
    spread = input_dilation
    sizes = [(n - 1) * a + 1 + lo + hi for n, a, lo, hi in zip(x.shape[2:], spread, low, high)]
    out = np.zeros(x.shape[:2] + tuple(sizes), x.dtype)
    for idx in np.ndindex(*x.shape[2:]):
        pos = tuple(i * a + lo for i, a, lo in zip(idx, spread, low))
        if all(0 <= p < n for p, n in zip(pos, sizes)):
            out[(..., *pos)] = x[(..., *idx)]
    return out


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@settings(max_examples=30, deadline=None)
@given(case=conv_cases(), seed=SEEDS, dynamic=st.booleans())
def test_conv_kernel_matches_numpy(case, seed, dynamic):
    xs, ws, stride, dilation, groups, prep = case
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, xs), _rand(rng, ws)
    types = [TensorType(xs, f32), TensorType(ws, f32)]
    if dynamic:
        types = [dyn(t) for t in types]
    attrs = conv_attrs(stride, dilation, groups, **prep)
    (got,) = run(kernel_of("prim.conv", types, **attrs), x, w)
    want = ref_conv(ref_prepare(x, **prep), w, stride, dilation, groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    static = [TensorType(xs, f32), TensorType(ws, f32)]
    interp = prim_run(one_op("prim.conv", static, **attrs), x, w)
    np.testing.assert_allclose(interp[0], want, rtol=1e-5, atol=1e-5)


def transposed_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """The plain weight a ``transposed`` conv uses: swap channels within groups, flip space."""
    c, og = w.shape[:2]
    v = w.reshape(groups, c // groups, og, *w.shape[2:]).swapaxes(1, 2)
    v = v.reshape(groups * og, c // groups, *w.shape[2:])
    return np.flip(v, tuple(range(2, w.ndim)))


@settings(max_examples=20, deadline=None)
@given(case=conv_cases(), seed=SEEDS)
def test_transposed_conv_kernel_flips_and_transposes_the_weight(case, seed):
    xs, ws, stride, dilation, groups, prep = case
    rng = np.random.default_rng(seed)
    # the weight of a transposed conv is (C_in, O / groups, *K)
    wt_shape = (xs[1], ws[0] // groups, *ws[2:])
    x, wt = _rand(rng, xs), _rand(rng, wt_shape)
    types = [dyn(TensorType(xs, f32)), dyn(TensorType(wt_shape, f32))]
    m = kernel_of("prim.conv", types, **conv_attrs(stride, dilation, groups, True, **prep))
    (got,) = run(m, x, wt)
    want = ref_conv(ref_prepare(x, **prep), np.ascontiguousarray(transposed_weight(wt, groups)),
                    stride, dilation, groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(case=conv_cases(), seed=SEEDS, transposed=st.booleans())
def test_weight_grad_kernel_matches_the_interpreter(case, seed, transposed):
    xs, ws, stride, dilation, groups, prep = case
    rng = np.random.default_rng(seed)
    x = _rand(rng, xs)
    xp = ref_prepare(x, **prep)
    out_sp = [(n - (k - 1) * d - 1) // s + 1
              for n, k, s, d in zip(xp.shape[2:], ws[2:], stride, dilation)]
    g = _rand(rng, (xs[0], ws[0], *out_sp))
    attrs = dict(conv_attrs(stride, dilation, groups, transposed, **prep), kernel=tuple(ws[2:]))
    types = [TensorType(x.shape, f32), TensorType(g.shape, f32)]
    want = prim_run(one_op("prim.conv_weight_grad", types, **attrs), x, g)[0]
    (got,) = run(kernel_of("prim.conv_weight_grad", [dyn(t) for t in types], **attrs), x, g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if not transposed:  # it is the weight gradient of the reference convolution
        w = _rand(rng, ws)
        eps = 1e-3
        v = rng.standard_normal(ws)
        fd = (np.sum(ref_conv(xp, w + eps * v, stride, dilation, groups) * g)
              - np.sum(ref_conv(xp, w - eps * v, stride, dilation, groups) * g)) / (2 * eps)
        assert abs(fd - np.sum(want * v)) < 1e-3 * (1 + abs(fd))


@pytest.mark.parametrize("kernel", [4, 5, 7])
def test_weight_grad_tiles_long_kernel_rows(kernel):
    """Taps of the last kernel axis come in tiles of up to 3; the last tile is clamped."""
    rng = np.random.default_rng(kernel)
    x, g = _rand(rng, (2, 3, 20)), _rand(rng, (2, 4, 20 - kernel + 1))
    attrs = dict(conv_attrs((1,), (1,), 1), kernel=(kernel,))
    types = [TensorType(x.shape, f32), TensorType(g.shape, f32)]
    want = prim_run(one_op("prim.conv_weight_grad", types, **attrs), x, g)[0]
    (got,) = run(kernel_of("prim.conv_weight_grad", [dyn(t) for t in types], **attrs), x, g)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@st.composite
def pool_cases(draw):
    nd = draw(st.integers(1, 2))
    window = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple(draw(st.integers(0, ((k - 1) * d + 1) // 2))
                    for k, d in zip(window, dilation))
    spatial = tuple(draw(st.integers((k - 1) * d + 1, 9)) for k, d in zip(window, dilation))
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    return lead + spatial, window, stride, dilation, padding, draw(st.booleans())


def _pool_attrs(window, stride, dilation, padding, ceil, name):
    a = dict(window=window, stride=stride, padding=padding, ceil_mode=ceil)
    if name.startswith("prim.max"):
        a["dilation"] = dilation
    else:
        a.update(count_include_pad=bool(sum(padding) % 2), divisor=0)
    return a


@settings(max_examples=30, deadline=None)
@given(case=pool_cases(), seed=SEEDS,
       name=st.sampled_from(["prim.max_pool", "prim.max_pool_index", "prim.avg_pool"]))
def test_pool_kernels_match_the_interpreter(case, seed, name):
    shape, window, stride, dilation, padding, ceil = case
    if name == "prim.avg_pool":
        dilation = (1,) * len(window)
        padding = tuple(min(p, k // 2) for p, k in zip(padding, window))
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape)
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.1] = 1.0  # ties
    attrs = _pool_attrs(window, stride, dilation, padding, ceil, name)
    t = TensorType(shape, f32)
    want = prim_run(one_op(name, [t], **attrs), x)[0]
    (got,) = run(kernel_of(name, [dyn(t)], **attrs), x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(case=pool_cases(), seed=SEEDS,
       name=st.sampled_from(["prim.max_pool_grad", "prim.avg_pool_grad",
                             "prim.adaptive_avg_pool", "prim.adaptive_avg_pool_grad"]))
def test_adjoint_and_adaptive_kernels_match_the_interpreter(case, seed, name):
    shape, window, stride, dilation, padding, ceil = case
    nd = len(window)
    rng = np.random.default_rng(seed)
    x = _rand(rng, shape)
    if name.startswith("prim.adaptive"):
        attrs = dict(output=tuple(int(rng.integers(1, n + 3)) for n in shape[-nd:]))
        pooled = shape[:-nd] + attrs["output"]
    else:
        if name == "prim.avg_pool_grad":
            dilation = (1,) * nd
            padding = tuple(min(p, k // 2) for p, k in zip(padding, window))
        attrs = _pool_attrs(window, stride, dilation, padding, ceil, name)
        fwd = "prim.max_pool" if name == "prim.max_pool_grad" else "prim.avg_pool"
        fattrs = _pool_attrs(window, stride, dilation, padding, ceil, fwd)
        pooled = prim_run(one_op(fwd, [TensorType(shape, f32)], **fattrs), x)[0].shape
    g = _rand(rng, pooled)
    ops = [x, g] if name.endswith("_grad") else [x]
    types = [TensorType(a.shape, f32) for a in ops]
    want = prim_run(one_op(name, types, **attrs), *ops)[0]
    (got,) = run(kernel_of(name, [dyn(t) for t in types], **attrs), *ops)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_picks_the_first_max_and_the_last_nan():
    x = np.array([[1.0, 3.0, 3.0, 0.0, np.nan, 2.0, np.nan, 5.0]], np.float32)
    attrs = dict(window=(4,), stride=(4,), dilation=(1,), padding=(0,), ceil_mode=False)
    t = TensorType(x.shape, f32)
    (idx,) = run(kernel_of("prim.max_pool_index", [dyn(t)], **attrs), x)
    assert idx.tolist() == [[1, 6]]
    (val,) = run(kernel_of("prim.max_pool", [dyn(t)], **attrs), x)
    assert val[0, 0] == 3.0 and np.isnan(val[0, 1])


def test_avg_pool_divisors_follow_pytorch():
    x = np.ones((1, 5), np.float32)
    t = dyn(TensorType(x.shape, f32))
    common = dict(window=(3,), stride=(2,), padding=(1,), ceil_mode=True)
    (incl,) = run(kernel_of("prim.avg_pool", [t], count_include_pad=True, divisor=0,
                            **common), x)
    (excl,) = run(kernel_of("prim.avg_pool", [t], count_include_pad=False, divisor=0,
                            **common), x)
    (fixed,) = run(kernel_of("prim.avg_pool", [t], count_include_pad=False, divisor=4,
                             **common), x)
    # windows [-1, 2), [1, 4), [3, 6): the padded border counts, the ceil overhang does not
    np.testing.assert_allclose(incl, [[2 / 3, 1.0, 2 / 3]], rtol=1e-6)
    np.testing.assert_allclose(excl, [[1.0, 1.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(fixed, [[0.5, 0.75, 0.5]], rtol=1e-6)


# -- VJP rules against finite differences (float64, prim interpreter) -------------------------
def _fd_check(name: str, arrays: list[np.ndarray], rng: np.random.Generator, **attrs) -> None:
    m = one_op(name, [TensorType(a.shape, f64) for a in arrays], **attrs)
    fd_check(m, arrays, rng, rtol=1e-5, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(case=conv_cases(), seed=SEEDS, transposed=st.booleans())
def test_conv_vjps(case, seed, transposed):
    xs, ws, stride, dilation, groups, prep = case
    rng = np.random.default_rng(seed)
    if transposed:
        ws = (xs[1], ws[0] // groups, *ws[2:])
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    attrs = conv_attrs(stride, dilation, groups, transposed, **prep)
    _fd_check("prim.conv", [x, w], rng, **attrs)
    out = prim_run(one_op("prim.conv", [TensorType(xs, f64), TensorType(ws, f64)], **attrs),
                   x, w)[0]
    g = rng.standard_normal(out.shape)
    _fd_check("prim.conv_weight_grad", [x, g], rng, kernel=tuple(ws[2:]), **attrs)


@settings(max_examples=15, deadline=None)
@given(case=pool_cases(), seed=SEEDS)
def test_pool_vjps(case, seed):
    shape, window, stride, dilation, padding, ceil = case
    rng = np.random.default_rng(seed)
    x = rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) * 0.1
    _fd_check("prim.max_pool", [x], rng,
              **_pool_attrs(window, stride, dilation, padding, ceil, "prim.max_pool"))
    padding = tuple(min(p, k // 2) for p, k in zip(padding, window))
    _fd_check("prim.avg_pool", [x], rng,
              **_pool_attrs(window, stride, (1,) * len(window), padding, ceil, "prim.avg"))
    output = tuple(min(n, k + 1) for n, k in zip(shape[-len(window):], window))
    _fd_check("prim.adaptive_avg_pool", [x], rng, output=output)
    # the adjoints' own rules (second derivatives): linear in the cotangent, and not
    # depending on x (max pooling: only through which element is largest)
    for name, attrs in (
            ("prim.max_pool", _pool_attrs(window, stride, dilation, padding, ceil,
                                          "prim.max_pool")),
            ("prim.avg_pool", _pool_attrs(window, stride, (1,) * len(window), padding, ceil,
                                          "prim.avg")),
            ("prim.adaptive_avg_pool", dict(output=output))):
        pooled = prim_run(one_op(name, [TensorType(shape, f64)], **attrs), x)[0]
        _fd_check(name + "_grad", [x, rng.standard_normal(pooled.shape)], rng, **attrs)


# -- native runs (LLVM backend + runtime) --------------------------------------------------------
runtime = pytest.importorskip("lamina.runtime")
_native: dict = {}


def native_conv(attrs_key: tuple):
    """The compiled eager-style program (every size ?) of one conv signature."""
    if attrs_key not in _native:
        nd, stride, dilation, groups, transposed = attrs_key
        t = TensorType((None,) * (nd + 2), f32)
        loop = kernel_of("prim.conv", [t, t], **conv_attrs(stride, dilation, groups,
                                                          transposed))
        _native[attrs_key] = runtime.compile_program(loop, "f")
    return _native[attrs_key]


@pytest.mark.parametrize("xs, ws, stride, dilation, groups", [
    ((2, 3, 10, 37), (20, 3, 3, 3), (1, 1), (1, 1), 1),  # row tails of 16 and scalar columns
    ((1, 8, 6, 40), (8, 1, 3, 5), (1, 1), (2, 1), 8),  # depthwise: one-channel tiles
    ((2, 6, 9, 33), (9, 2, 2, 3), (2, 1), (1, 2), 3),  # groups, 3 channels per group
    ((1, 4, 12, 12), (16, 4, 3, 3), (2, 2), (1, 1), 1),  # strided rows: scalar columns
    ((3, 5, 70), (7, 5, 4), (1,), (3,), 1),  # 1-d
])
def test_native_conv_matches_numpy(xs, ws, stride, dilation, groups):
    rng = np.random.default_rng(len(xs) + ws[0])
    x, w = _rand(rng, xs), _rand(rng, ws)
    prog = native_conv((len(xs) - 2, stride, dilation, groups, False))
    (got,) = prog(x, w)
    np.testing.assert_allclose(got, ref_conv(x, w, stride, dilation, groups), rtol=1e-4,
                               atol=1e-4)
    # one program for every size: a different batch and width run without recompiling
    x2 = np.ascontiguousarray(x[:1, ..., :-1])
    (got2,) = prog(x2, w)
    np.testing.assert_allclose(got2, ref_conv(x2, w, stride, dilation, groups), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("low, high, spread", [
    ((1, 1), (1, 1), (1, 1)),  # zero padding: the copy kernel's vector rows
    ((2, -1), (0, 3), (1, 1)),  # a cropped axis
    ((1, 2), (2, 1), (2, 3)),  # a dilated input (a transposed convolution's stride)
])
def test_native_prepared_conv_matches_numpy(low, high, spread):
    rng = np.random.default_rng(sum(low) + 7 * sum(spread))
    x, w = _rand(rng, (2, 3, 7, 40)), _rand(rng, (5, 3, 3, 2))
    t = TensorType((None,) * 4, f32)
    attrs = conv_attrs((1, 1), (1, 1), 1, low=low, high=high, input_dilation=spread)
    prog = runtime.compile_program(kernel_of("prim.conv", [t, t], **attrs), "f")
    want = ref_conv(ref_prepare(x, low, high, spread), w, (1, 1), (1, 1), 1)
    np.testing.assert_allclose(prog(x, w)[0], want, rtol=1e-4, atol=1e-4)
    # rows without unit stride: the copy kernel's scalar form
    strided = lower(group([t, t], lambda b, u, v: b("prim.conv", u, v, **attrs)),
                    layouts=((None,) * 4, (None, None, None, 1)))
    view = np.asfortranarray(x)
    np.testing.assert_allclose(runtime.compile_program(strided, "f")(view, w)[0], want,
                               rtol=1e-4, atol=1e-4)


def test_native_conv_reads_strided_inputs():
    rng = np.random.default_rng(7)
    base = _rand(rng, (2, 3, 9, 40))
    x = base[:, :, :, ::2]  # a view: the kernel takes its scalar-column form
    w = _rand(rng, (4, 3, 3, 3))
    t = TensorType((None,) * 4, f32)
    loop = lower(group([t, t], lambda b, u, v: b("prim.conv", u, v,
                                                  **conv_attrs((1, 1), (1, 1), 1))),
                 layouts=((None, None, None, None), (None, None, None, 1)))
    (got,) = runtime.compile_program(loop, "f")(x, w)
    np.testing.assert_allclose(got, ref_conv(x, w, (1, 1), (1, 1), 1), rtol=1e-4, atol=1e-4)


def test_native_weight_grad_and_pools():
    rng = np.random.default_rng(3)
    x = _rand(rng, (3, 4, 11, 37))
    g = _rand(rng, (3, 6, 9, 35))
    attrs = dict(conv_attrs((1, 1), (1, 1), 2), kernel=(3, 3))
    t = TensorType((None,) * 4, f32)
    prog = runtime.compile_program(kernel_of("prim.conv_weight_grad", [t, t], **attrs), "f")
    want = prim_run(one_op("prim.conv_weight_grad", [TensorType(x.shape, f32),
                                                      TensorType(g.shape, f32)], **attrs),
                    x, g)[0]
    np.testing.assert_allclose(prog(x, g)[0], want, rtol=1e-4, atol=1e-4)
    for name in ("prim.max_pool", "prim.avg_pool"):
        attrs = _pool_attrs((3, 3), (2, 2), (1, 1), (1, 1), True, name)
        prog = runtime.compile_program(kernel_of(name, [t], **attrs), "f")
        want = prim_run(one_op(name, [TensorType(x.shape, f32)], **attrs), x)[0]
        np.testing.assert_allclose(prog(x)[0], want, rtol=1e-5, atol=1e-6)
