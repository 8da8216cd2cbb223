"""Attention: scaled_dot_product_attention and MultiheadAttention against numpy references
(shapes and masks by hypothesis), and against PyTorch with copied weights (outputs,
attention weights, input and parameter gradients); Transformer encoder/decoder layers and
stacks against PyTorch; init, dropout in train vs eval, errors."""

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


def _softmax(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)


def np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    """Reference in float64; a bool mask is True where attention is allowed."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if causal:
        mask = np.tril(np.ones(s.shape[-2:], bool))
    if mask is not None:
        s = s + (np.where(mask, 0.0, -np.inf) if mask.dtype == bool else mask)
    return _softmax(s) @ v


def np_mha(params, q, k, v, heads, attn_mask=None, kpm=None):
    """Reference for (L, N, E) inputs, packed in_proj; bool masks are True where forbidden."""
    e = q.shape[-1]
    w, b = params["in_proj_weight"], params["in_proj_bias"]
    qp, kp, vp = (x @ w[i * e:(i + 1) * e].T + b[i * e:(i + 1) * e]
                  for i, x in enumerate((q, k, v)))
    length, n, _ = q.shape
    src = k.shape[0]
    d = e // heads

    def split(x):  # (len, N, E) -> (N, heads, len, d)
        return x.reshape(x.shape[0], n, heads, d).transpose(1, 2, 0, 3)

    s = split(qp) @ split(kp).transpose(0, 1, 3, 2) / math.sqrt(d)
    if attn_mask is not None:
        add = np.where(attn_mask, -np.inf, 0.0) if attn_mask.dtype == bool else attn_mask
        s = s + (add if add.ndim == 2 else add.reshape(n, heads, length, src))
    if kpm is not None:
        s = s + np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    p = _softmax(s)
    o = (p @ split(vp)).transpose(2, 0, 1, 3).reshape(length, n, e)
    return o @ params["out_proj.weight"].T + params["out_proj.bias"], p


def _params(m: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float64) for k, v in m.state_dict().items()}


@settings(max_examples=30, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), length=st.integers(1, 5),
       source=st.integers(1, 5), e=st.integers(1, 6), ev=st.integers(1, 4),
       mask=st.sampled_from(["none", "bool", "float", "causal"]), scale=st.sampled_from(
           [None, 0.5]), seed=st.integers(0, 2**16))
def test_sdpa_matches_numpy(batch, length, source, e, ev, mask, scale, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((*batch, length, e)).astype(np.float32)
    k = rng.standard_normal((*batch, source, e)).astype(np.float32)
    v = rng.standard_normal((*batch, source, ev)).astype(np.float32)
    m = None
    if mask == "bool":
        m = rng.random((length, source)) > 0.4
        m[:, 0] = True  # every query sees a key: no NaN rows
    elif mask == "float":
        m = rng.standard_normal((length, source)).astype(np.float32)
    out = F.scaled_dot_product_attention(
        lamina.tensor(q), lamina.tensor(k), lamina.tensor(v),
        attn_mask=None if m is None else lamina.tensor(m), is_causal=mask == "causal",
        scale=scale)
    ref = np_sdpa(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), m,
                  mask == "causal", scale)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 4), source=st.integers(1, 4), n=st.integers(1, 3),
       heads=st.sampled_from([1, 2, 4]), mask=st.sampled_from(["none", "bool", "float3d"]),
       kpm=st.booleans(), seed=st.integers(0, 2**16))
def test_mha_matches_numpy(length, source, n, heads, mask, kpm, seed):
    rng = np.random.default_rng(seed)
    e = 8
    m = nn.MultiheadAttention(e, heads)
    p = _params(m)
    p["in_proj_bias"] = rng.standard_normal(3 * e)  # zero by default: make it count
    m.in_proj_bias.data.copy_(lamina.tensor(p["in_proj_bias"].astype(np.float32)))
    q = rng.standard_normal((length, n, e)).astype(np.float32)
    k = rng.standard_normal((source, n, e)).astype(np.float32)
    v = rng.standard_normal((source, n, e)).astype(np.float32)
    am = None
    if mask == "bool":
        am = rng.random((length, source)) > 0.6
        am[:, 0] = False
    elif mask == "float3d":
        am = rng.standard_normal((n * heads, length, source)).astype(np.float32)
    pad = None
    if kpm:
        pad = rng.random((n, source)) > 0.6
        pad[:, -1] = False
        if am is not None and am.dtype == bool:
            am[:, -1] = False
    out, w = m(lamina.tensor(q), lamina.tensor(k), lamina.tensor(v),
               key_padding_mask=None if pad is None else lamina.tensor(pad),
               attn_mask=None if am is None else lamina.tensor(am),
               average_attn_weights=False)
    ref, ref_w = np_mha(p, *(a.astype(np.float64) for a in (q, k, v)), heads, am, pad)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-5, atol=1e-6)


def test_mha_parameters_and_init():
    m = nn.MultiheadAttention(12, 3)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                    "out_proj.bias"]
    assert tuple(m.in_proj_weight.shape) == (36, 12)
    bound = math.sqrt(6 / (12 + 36))  # xavier_uniform on (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.all(np.abs(w) <= bound) and w.std() > bound / 4
    assert not np.any(m.in_proj_bias.detach().numpy())
    assert not np.any(m.out_proj.bias.detach().numpy())
    sep = nn.MultiheadAttention(12, 3, kdim=5, vdim=7, bias=False, add_bias_kv=True)
    assert [k for k, _ in sep.named_parameters()] == [
        "q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v", "out_proj.weight"]
    assert tuple(sep.k_proj_weight.shape) == (12, 5) and tuple(sep.bias_v.shape) == (1, 1, 12)
    with pytest.raises(AssertionError, match="divisible"):
        nn.MultiheadAttention(10, 3)


def test_mha_shapes_batch_first_unbatched_and_errors():
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = lamina.randn(3, 5, 8)
    out, w = m(x, x, x)
    assert tuple(out.shape) == (3, 5, 8) and tuple(w.shape) == (3, 5, 5)
    out2, w2 = m(x[1], x[1], x[1], need_weights=True, average_attn_weights=False)
    assert tuple(out2.shape) == (5, 8) and tuple(w2.shape) == (2, 5, 5)
    np.testing.assert_allclose(out2.numpy(), out[1].numpy(), rtol=1e-5, atol=1e-6)
    none_out, none_w = m(x, x, x, need_weights=False)
    assert none_w is None
    np.testing.assert_allclose(none_out.numpy(), out.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-5)
    with pytest.raises(AssertionError, match="embedding dimension of 8, but got 6"):
        m(lamina.randn(3, 5, 6), x, x)
    with pytest.raises(RuntimeError, match=r"2D attn_mask is \(4, 5\), but should be \(5, 5\)"):
        m(x, x, x, attn_mask=lamina.zeros(4, 5))
    with pytest.raises(AssertionError, match="key_padding_mask shape"):
        m(x, x, x, key_padding_mask=lamina.zeros(3, 4, dtype=lamina.bool))
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        m(x, x, x, is_causal=True)


def test_dropout_train_vs_eval():
    lamina.manual_seed(0)
    m = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = lamina.randn(6, 2, 8)
    m.eval()
    a = m(x, x, x)[0].numpy()
    np.testing.assert_array_equal(a, m(x, x, x)[0].numpy())
    m.train()
    assert not np.allclose(m(x, x, x)[0].numpy(), a)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3)
    layer.eval()
    b = layer(x).numpy()
    np.testing.assert_array_equal(b, layer(x).numpy())
    layer.train()
    assert not np.allclose(layer(x).numpy(), b)


def test_encoder_stack_copies_and_causal_mask():
    from lamina.nn.modules.transformer import generate_square_subsequent_mask

    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    enc = nn.TransformerEncoder(layer, 3)
    assert enc.layers[0].linear1.weight is not enc.layers[1].linear1.weight
    keys = list(enc.state_dict())
    assert "layers.2.self_attn.in_proj_weight" in keys and "layers.0.norm2.bias" in keys
    mask = generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(mask.numpy(), np.triu(np.full((4, 4), -np.inf), 1))
    x = lamina.randn(4, 2, 8)
    # causal: the first position's output does not depend on the later ones
    y1 = enc(x, mask=mask).numpy()
    x2 = x.clone()
    x2[3] = lamina.randn(2, 8)
    y2 = enc(x2, mask=mask).numpy()
    np.testing.assert_allclose(y1[:3], y2[:3], rtol=1e-5, atol=1e-5)
    assert not np.allclose(y1[3], y2[3])
    with pytest.raises(RuntimeError, match="activation should be relu/gelu"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")


# -- against PyTorch -------------------------------------------------------------------------


def _copy(lmod: nn.Module, tmod) -> None:
    assert list(lmod.state_dict()) == list(tmod.state_dict())
    lmod.load_state_dict({k: lamina.tensor(v.detach().numpy())
                          for k, v in tmod.state_dict().items()})


def _inputs(rng, *shapes):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return ([lamina.tensor(a, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _backward_and_compare(lmod, tmod, lo, to, lin, tin, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(lo.numpy(), to.detach().numpy(), rtol=rtol, atol=atol)
    w = np.random.default_rng(11).standard_normal(tuple(to.shape)).astype(np.float32)
    (lo * lamina.tensor(w)).sum().backward()
    (to * torch.tensor(w)).sum().backward()
    for a, b in zip(lin, tin):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tmod.named_parameters())
    for name, p in lmod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)


@needs_torch
@pytest.mark.parametrize("mask", ["none", "causal"])
def test_sdpa_against_torch(mask):
    rng = np.random.default_rng(2)
    lin, tin = _inputs(rng, (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 7))
    lo = F.scaled_dot_product_attention(*lin, is_causal=mask == "causal", scale=0.4)
    to = torch.nn.functional.scaled_dot_product_attention(*tin, is_causal=mask == "causal",
                                                          scale=0.4)
    _backward_and_compare(nn.Module(), torch.nn.Module(), lo, to, lin, tin)


@needs_torch
@pytest.mark.parametrize("kwargs,masks", [
    (dict(), "bool2d+kpm"),
    (dict(batch_first=True), "float3d"),
    (dict(kdim=5, vdim=3, add_bias_kv=True, add_zero_attn=True), "bool2d+kpm"),
    (dict(bias=False, batch_first=True), "none"),
])
def test_mha_against_torch(kwargs, masks):
    rng = np.random.default_rng(4)
    e, heads, n, length, source = 8, 2, 3, 4, 5
    tmod = torch.nn.MultiheadAttention(e, heads, **kwargs)
    lmod = nn.MultiheadAttention(e, heads, **kwargs)
    _copy(lmod, tmod)
    bf = kwargs.get("batch_first", False)

    def shape(length, dim):
        return (n, length, dim) if bf else (length, n, dim)

    lin, tin = _inputs(rng, shape(length, e), shape(source, kwargs.get("kdim", e)),
                       shape(source, kwargs.get("vdim", e)))
    lkw, tkw = {}, {}
    if masks == "bool2d+kpm":
        am = rng.random((length, source)) > 0.7
        am[:, 0] = False
        kpm = rng.random((n, source)) > 0.7
        kpm[:, 0] = False
        for kw, mod in ((lkw, lamina), (tkw, torch)):
            kw.update(attn_mask=mod.tensor(am), key_padding_mask=mod.tensor(kpm))
    elif masks == "float3d":
        am = rng.standard_normal((n * heads, length, source)).astype(np.float32)
        lkw["attn_mask"], tkw["attn_mask"] = lamina.tensor(am), torch.tensor(am)
    lo, lw = lmod(*lin, average_attn_weights=False, **lkw)
    to, tw = tmod(*tin, average_attn_weights=False, **tkw)
    np.testing.assert_allclose(lw.numpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    _backward_and_compare(lmod, tmod, lo, to, lin, tin)


@needs_torch
@pytest.mark.parametrize("norm_first,activation,batch_first", [
    (False, "relu", False), (True, "gelu", True)])
def test_encoder_against_torch(norm_first, activation, batch_first):
    rng = np.random.default_rng(6)
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    tmod = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, **kw), 2,
                                       norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
    lmod = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, **kw), 2, norm=nn.LayerNorm(8))
    _copy(lmod, tmod)
    lin, tin = _inputs(rng, (3, 5, 8) if batch_first else (5, 3, 8))
    mask = np.triu(np.ones((5, 5), bool), 1)
    kpm = np.zeros((3, 5), bool)  # (N, S) either way
    kpm[1, 3:] = True
    lo = lmod(lin[0], mask=lamina.tensor(mask), src_key_padding_mask=lamina.tensor(kpm))
    to = tmod(tin[0], mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm))
    _backward_and_compare(lmod, tmod, lo, to, lin, tin)


@needs_torch
def test_decoder_against_torch():
    rng = np.random.default_rng(8)
    kw = dict(dim_feedforward=16, dropout=0.0)
    tmod = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, **kw), 2)
    lmod = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, **kw), 2)
    _copy(lmod, tmod)
    lin, tin = _inputs(rng, (4, 2, 8), (6, 2, 8))
    mask = np.triu(np.full((4, 4), -np.inf, np.float32), 1)
    lo = lmod(*lin, tgt_mask=lamina.tensor(mask))
    to = tmod(*tin, tgt_mask=torch.tensor(mask))
    _backward_and_compare(lmod, tmod, lo, to, lin, tin)
