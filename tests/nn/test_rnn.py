"""Recurrent layers and cells: outputs against a numpy reference (shapes by hypothesis),
outputs and gradients (inputs, initial states, parameters) against PyTorch with copied
weights, parameter names and init, dropout between layers, unbatched inputs, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
from tests.frontend.oracle import needs_torch, torch

MODES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _sig(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _np_cell(mode: str, xg: np.ndarray, hg: np.ndarray, h: np.ndarray, c: np.ndarray | None,
             relu: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """One step in float64 from the two projections (each with its bias)."""
    if mode == "LSTM":
        i, f, g, o = np.split(xg + hg, 4, axis=-1)
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        return _sig(o) * np.tanh(c), c
    if mode == "GRU":
        xr, xz, xn = np.split(xg, 3, axis=-1)
        hr, hz, hn = np.split(hg, 3, axis=-1)
        r, z = _sig(xr + hr), _sig(xz + hz)
        n = np.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None
    a = xg + hg
    return (np.maximum(a, 0) if relu else np.tanh(a)), None


def np_rnn(mode: str, params: dict[str, np.ndarray], x: np.ndarray, layers: int, dirs: int,
           h0: np.ndarray, c0: np.ndarray | None, relu: bool = False):
    """Reference stack over (L, N, H_in): returns output, h_n, c_n."""
    h_n, c_n = [], []
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            k = layer * dirs + d
            h = h0[k].astype(np.float64)
            c = c0[k].astype(np.float64) if c0 is not None else None
            out = [None] * x.shape[0]
            for t in (range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])):
                xg = x[t] @ params["weight_ih" + sfx].T + params.get("bias_ih" + sfx, 0)
                hg = h @ params["weight_hh" + sfx].T + params.get("bias_hh" + sfx, 0)
                h, c = _np_cell(mode, xg, hg, h, c, relu)
                out[t] = h
            outs.append(np.stack(out))
            h_n.append(h)
            c_n.append(c)
        x = np.concatenate(outs, axis=-1)
    return x, np.stack(h_n), (np.stack(c_n) if c0 is not None else None)


def _make(mode: str, *args, **kwargs) -> nn.Module:
    return getattr(nn, mode)(*args, **kwargs)


@settings(max_examples=25, deadline=None)
@given(mode=st.sampled_from(sorted(MODES)), steps=st.integers(1, 4), batch=st.integers(1, 3),
       in_size=st.integers(1, 5), hidden=st.integers(1, 6), layers=st.integers(1, 2),
       bidir=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_stack_matches_numpy(mode, steps, batch, in_size, hidden, layers, bidir, bias, seed):
    rng = np.random.default_rng(seed)
    m = _make(mode, in_size, hidden, num_layers=layers, bias=bias, bidirectional=bidir)
    params = {k: v.detach().numpy().astype(np.float64) for k, v in m.state_dict().items()}
    dirs = 2 if bidir else 1
    x = rng.standard_normal((steps, batch, in_size)).astype(np.float32)
    h0 = rng.standard_normal((layers * dirs, batch, hidden)).astype(np.float32)
    c0 = rng.standard_normal(h0.shape).astype(np.float32) if mode == "LSTM" else None
    hx = (lamina.tensor(h0), lamina.tensor(c0)) if c0 is not None else lamina.tensor(h0)
    out, state = m(lamina.tensor(x), hx)
    ref_out, ref_h, ref_c = np_rnn(mode, params, x.astype(np.float64), layers, dirs, h0, c0)
    assert tuple(out.shape) == (steps, batch, dirs * hidden)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-5, atol=1e-5)
    h = state[0] if mode == "LSTM" else state
    np.testing.assert_allclose(h.numpy(), ref_h, rtol=1e-5, atol=1e-5)
    if mode == "LSTM":
        np.testing.assert_allclose(state[1].numpy(), ref_c, rtol=1e-5, atol=1e-5)


def test_parameter_names_shapes_and_init():
    m = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    names = [f"{w}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
             for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(m.state_dict()) == names
    assert tuple(m.weight_ih_l0.shape) == (20, 3)
    assert tuple(m.weight_ih_l1_reverse.shape) == (20, 10)
    assert tuple(m.bias_hh_l1.shape) == (20,)
    bound = 1 / math.sqrt(5)
    for name, p in m.named_parameters():
        a = p.detach().numpy()
        assert np.all(np.abs(a) <= bound), name
        assert a.std() > bound / 4, name  # actually random, not constant
    assert [n for n, _ in nn.GRU(2, 4, bias=False).named_parameters()] == ["weight_ih_l0",
                                                                         "weight_hh_l0"]
    assert tuple(nn.GRU(2, 4).weight_hh_l0.shape) == (12, 4)
    assert tuple(nn.RNN(2, 4).weight_hh_l0.shape) == (4, 4)
    assert repr(nn.LSTM(3, 5, 2, batch_first=True)) == "LSTM(3, 5, num_layers=2, batch_first=True)"


def test_defaults_batch_first_and_unbatched():
    m = nn.GRU(3, 4, num_layers=2, batch_first=True)
    x = lamina.randn(2, 5, 3)
    out, h = m(x)
    assert tuple(out.shape) == (2, 5, 4) and tuple(h.shape) == (2, 2, 4)
    ref, href = nn.GRU.forward(m, x[0:1], None)
    np.testing.assert_allclose(out[0:1].numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    # unbatched: (L, H_in) -> (L, H_out), h_n (layers, H_out); equals batch of one
    single, hs = m(x[0])
    assert tuple(single.shape) == (5, 4) and tuple(hs.shape) == (2, 4)
    np.testing.assert_allclose(single.numpy(), out[0].numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hs.numpy(), h[:, 0].numpy(), rtol=1e-6, atol=1e-6)
    lstm = nn.LSTM(3, 4)
    o, (hn, cn) = lstm(x[0], (lamina.zeros(1, 4), lamina.zeros(1, 4)))
    assert tuple(o.shape) == (5, 4) and tuple(cn.shape) == (1, 4)


def test_dropout_between_layers_train_vs_eval():
    lamina.manual_seed(0)
    m = nn.LSTM(4, 8, num_layers=3, dropout=0.5)
    x = lamina.randn(6, 2, 4)
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    no_drop = nn.LSTM(4, 8, num_layers=3)
    no_drop.load_state_dict(m.state_dict())
    np.testing.assert_allclose(a.numpy(), no_drop(x)[0].numpy(), rtol=1e-6, atol=1e-6)
    m.train()
    c, _ = m(x)
    d, _ = m(x)
    assert not np.allclose(c.numpy(), a.numpy())
    assert not np.allclose(c.numpy(), d.numpy())
    # one layer: nothing between layers to drop
    one = nn.GRU(4, 8, dropout=0.5)
    np.testing.assert_array_equal(one(x)[0].numpy(), one(x)[0].numpy())


def test_errors():
    m = nn.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="input_size. Expected 3, got 2"):
        m(lamina.randn(5, 2, 2))
    with pytest.raises(ValueError, match="2D or 3D"):
        m(lamina.randn(5))
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(1, 2, 4\), got \(1, 3, 4\)"):
        m(lamina.randn(5, 2, 3), (lamina.zeros(1, 3, 4), lamina.zeros(1, 2, 4)))
    with pytest.raises(RuntimeError, match="cell size"):
        m(lamina.randn(5, 2, 3), (lamina.zeros(1, 2, 4), lamina.zeros(1, 2, 5)))
    with pytest.raises(RuntimeError, match="hidden size"):
        nn.GRU(3, 4, num_layers=2)(lamina.randn(5, 2, 3), lamina.zeros(1, 2, 4))
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(RuntimeError, match="inconsistent input_size"):
        nn.GRUCell(3, 4)(lamina.randn(2, 5))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        nn.LSTMCell(3, 4)(lamina.randn(2, 3), (lamina.zeros(2, 5), lamina.zeros(2, 4)))


def test_cells_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((3, 5)).astype(np.float32)
    c = rng.standard_normal((3, 5)).astype(np.float32)
    for cls, mode in ((nn.LSTMCell, "LSTM"), (nn.GRUCell, "GRU"), (nn.RNNCell, "RNN")):
        cell = cls(4, 5)
        p = {k: v.detach().numpy().astype(np.float64) for k, v in cell.state_dict().items()}
        xg = x @ p["weight_ih"].T + p["bias_ih"]
        hg = h @ p["weight_hh"].T + p["bias_hh"]
        ref_h, ref_c = _np_cell(mode, xg, hg, h, c if mode == "LSTM" else None)
        hx = (lamina.tensor(h), lamina.tensor(c)) if mode == "LSTM" else lamina.tensor(h)
        out = cell(lamina.tensor(x), hx)
        got = out[0] if mode == "LSTM" else out
        np.testing.assert_allclose(got.numpy(), ref_h, rtol=1e-5, atol=1e-5)
        if mode == "LSTM":
            np.testing.assert_allclose(out[1].numpy(), ref_c, rtol=1e-5, atol=1e-5)
        # unbatched input, default zero state
        single = cell(lamina.tensor(x[0]))
        single = single[0] if mode == "LSTM" else single
        assert tuple(single.shape) == (5,)
    relu = nn.RNNCell(4, 5, nonlinearity="relu")
    assert float(relu(lamina.tensor(x), lamina.tensor(h)).min()) >= 0


# -- against PyTorch: outputs and gradients ---------------------------------------------------


def _copy(lmod: nn.Module, tmod) -> None:
    lmod.load_state_dict({k: lamina.tensor(v.detach().numpy())
                          for k, v in tmod.state_dict().items()})


def _check_grads(lmod, tmod, pairs, rtol=1e-4, atol=1e-5):
    for lt, tt in pairs:
        np.testing.assert_allclose(lt.grad.numpy(), tt.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tmod.named_parameters())
    for name, p in lmod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)


@needs_torch
@pytest.mark.parametrize("mode,kwargs", [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(batch_first=True, bias=False)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict()),
    ("RNN", dict(num_layers=2, nonlinearity="relu", bidirectional=True)),
    ("RNN", dict(batch_first=True)),
])
def test_against_torch(mode, kwargs):
    rng = np.random.default_rng(7)
    tmod = getattr(torch.nn, mode)(3, 5, **kwargs)
    lmod = getattr(nn, mode)(3, 5, **kwargs)
    assert list(lmod.state_dict()) == list(tmod.state_dict())
    _copy(lmod, tmod)
    dirs = 2 if kwargs.get("bidirectional") else 1
    layers = kwargs.get("num_layers", 1)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    h0 = rng.standard_normal((layers * dirs, 2 if kwargs.get("batch_first") else 4, 5)
                             ).astype(np.float32)
    tx, lx = torch.tensor(x, requires_grad=True), lamina.tensor(x, requires_grad=True)
    th, lh = torch.tensor(h0, requires_grad=True), lamina.tensor(h0, requires_grad=True)
    pairs = [(lx, tx), (lh, th)]
    if mode == "LSTM":
        tc, lc = torch.tensor(-h0, requires_grad=True), lamina.tensor(-h0, requires_grad=True)
        pairs.append((lc, tc))
        to, (thn, tcn) = tmod(tx, (th, tc))
        lo, (lhn, lcn) = lmod(lx, (lh, lc))
        np.testing.assert_allclose(lcn.numpy(), tcn.detach().numpy(), rtol=1e-5, atol=1e-6)
    else:
        to, thn = tmod(tx, th)
        lo, lhn = lmod(lx, lh)
    np.testing.assert_allclose(lo.numpy(), to.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lhn.numpy(), thn.detach().numpy(), rtol=1e-5, atol=1e-6)
    w = rng.standard_normal(tuple(to.shape)).astype(np.float32)
    wh = rng.standard_normal(tuple(thn.shape)).astype(np.float32)
    loss_t = (to * torch.tensor(w)).sum() + (thn * torch.tensor(wh)).sum()
    loss_l = (lo * lamina.tensor(w)).sum() + (lhn * lamina.tensor(wh)).sum()
    if mode == "LSTM":
        loss_t = loss_t + (tcn * tcn).sum()
        loss_l = loss_l + (lcn * lcn).sum()
    loss_t.backward()
    loss_l.backward()
    _check_grads(lmod, tmod, pairs)


@needs_torch
@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_against_torch(name):
    rng = np.random.default_rng(3)
    tmod, lmod = getattr(torch.nn, name)(4, 3), getattr(nn, name)(4, 3)
    assert list(lmod.state_dict()) == list(tmod.state_dict())
    _copy(lmod, tmod)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    h = rng.standard_normal((2, 3)).astype(np.float32)
    tx, lx = torch.tensor(x, requires_grad=True), lamina.tensor(x, requires_grad=True)
    th, lh = torch.tensor(h, requires_grad=True), lamina.tensor(h, requires_grad=True)
    if name == "LSTMCell":
        to = sum(o.sum() * (i + 1) for i, o in enumerate(tmod(tx, (th, th * 2))))
        lo = sum(o.sum() * (i + 1) for i, o in enumerate(lmod(lx, (lh, lh * 2))))
    else:
        to, lo = (tmod(tx, th) ** 2).sum(), (lmod(lx, lh) ** 2).sum()
    np.testing.assert_allclose(float(lo), float(to.detach()), rtol=1e-5)
    to.backward()
    lo.backward()
    _check_grads(lmod, tmod, [(lx, tx), (lh, th)])


@needs_torch
def test_default_state_unbatched_against_torch():
    tmod, lmod = torch.nn.LSTM(3, 4, num_layers=2), nn.LSTM(3, 4, num_layers=2)
    _copy(lmod, tmod)
    x = np.random.default_rng(5).standard_normal((6, 3)).astype(np.float32)
    to, (th, tc) = tmod(torch.tensor(x))
    lo, (lh, lc) = lmod(lamina.tensor(x))
    for a, b in ((lo, to), (lh, th), (lc, tc)):
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)
