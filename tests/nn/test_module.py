"""The Module system: registration, iteration, state_dict round trips, modes, conversion,
hooks, containers and reprs — against PyTorch's behaviour for the same model."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import lamina
import lamina.nn as nn
from tests.frontend.oracle import needs_torch, torch


def to_lamina_state(state: dict) -> OrderedDict:
    return OrderedDict((k, lamina.tensor(v.detach().numpy())) for k, v in state.items())


class Block(nn.Module):
    """Parameters, a persistent and a non-persistent buffer, children, a shared child."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.scale = nn.Parameter(lamina.ones(3))
        self.register_buffer("steps", lamina.zeros(1))
        self.register_buffer("cache", lamina.zeros(2), persistent=False)
        self.shared = self.fc

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.layers = nn.ModuleList([nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Identity()})
        self.seq = nn.Sequential(nn.Linear(2, 5), nn.GELU(), nn.Dropout(0.1))
        self.emb = nn.Embedding(7, 2, padding_idx=0)
        self.plist = nn.ParameterList([nn.Parameter(lamina.zeros(2, 2))])

    def forward(self, x):
        x = self.block(x)
        for m in self.layers:
            x = m(x)
        return self.seq(self.heads["a"](x))


def torch_net():
    tnn = torch.nn

    class TBlock(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(4, 3)
            self.act = tnn.ReLU()
            self.scale = tnn.Parameter(torch.ones(3))
            self.register_buffer("steps", torch.zeros(1))
            self.register_buffer("cache", torch.zeros(2), persistent=False)
            self.shared = self.fc

        def forward(self, x):
            return self.act(self.fc(x)) * self.scale

    class TNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.block = TBlock()
            self.layers = tnn.ModuleList([tnn.Linear(3, 3), tnn.Tanh(), tnn.Linear(3, 2)])
            self.heads = tnn.ModuleDict({"a": tnn.Linear(2, 2), "b": tnn.Identity()})
            self.seq = tnn.Sequential(tnn.Linear(2, 5), tnn.GELU(), tnn.Dropout(0.1))
            self.emb = tnn.Embedding(7, 2, padding_idx=0)
            self.plist = tnn.ParameterList([tnn.Parameter(torch.zeros(2, 2))])

        def forward(self, x):
            x = self.block(x)
            for m in self.layers:
                x = m(x)
            return self.seq(self.heads["a"](x))

    return TNet()


# -- Parameter -------------------------------------------------------------------------------


def test_parameter_is_a_tensor_sharing_storage():
    data = lamina.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert isinstance(p, nn.Parameter) and isinstance(p, lamina.Tensor)
    assert p.requires_grad and p.is_leaf
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    data.add_(1.0)
    assert p.tolist() == [2.0, 3.0]
    assert type(p * 2) is lamina.Tensor
    assert repr(p).startswith("Parameter containing:\ntensor([2., 3.]")
    assert nn.Parameter().shape == (0,)
    with pytest.raises(TypeError):
        nn.Parameter([1.0])


def test_parameter_deepcopy_is_independent():
    p = nn.Parameter(lamina.tensor([1.0, 2.0]))
    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and q.requires_grad
    with lamina.no_grad():
        p.mul_(3)
    assert q.tolist() == [1.0, 2.0]


# -- registration and iteration ------------------------------------------------------------


def test_registration_through_setattr():
    m = Block()
    assert list(m._parameters) == ["scale"]
    assert set(m._buffers) == {"steps", "cache"}
    assert list(m._modules) == ["fc", "act", "shared"]
    assert m.shared is m.fc
    # a tensor assigned to a buffer name stays a buffer; None clears a parameter slot
    m.steps = lamina.ones(1)
    assert "steps" in m._buffers and m.steps.tolist() == [1.0]
    m.scale = None
    assert m._parameters["scale"] is None and m.scale is None
    with pytest.raises(TypeError, match="cannot assign"):
        m.fc = lamina.zeros(1)
    m.fc = None
    assert m.fc is None
    del m.act
    assert "act" not in m._modules
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'act'"):
        _ = m.act


def test_registration_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(lamina.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()
    m = nn.Module()
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", lamina.zeros(1))
    with pytest.raises(KeyError, match="already exists"):
        m.register_parameter("training", None)
    with pytest.raises(TypeError, match="parameter"):
        m.register_parameter("w", lamina.zeros(1))
    with pytest.raises(TypeError, match="is not a Module subclass"):
        m.add_module("x", 3)
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        m(1)


@needs_torch
def test_named_members_match_torch():
    ln, tn = Net(), torch_net()
    assert [n for n, _ in ln.named_parameters()] == [n for n, _ in tn.named_parameters()]
    assert ([(n, tuple(p.shape)) for n, p in ln.named_parameters()]
            == [(n, tuple(p.shape)) for n, p in tn.named_parameters()])
    assert [n for n, _ in ln.named_buffers()] == [n for n, _ in tn.named_buffers()]
    assert [n for n, _ in ln.named_modules()] == [n for n, _ in tn.named_modules()]
    assert ([n for n, _ in ln.named_modules(remove_duplicate=False)]
            == [n for n, _ in tn.named_modules(remove_duplicate=False)])
    assert ([n for n, _ in ln.named_parameters(remove_duplicate=False)]
            == [n for n, _ in tn.named_parameters(remove_duplicate=False)])
    assert [n for n, _ in ln.named_children()] == [n for n, _ in tn.named_children()]
    assert ([n for n, _ in ln.block.named_parameters(prefix="x", recurse=False)]
            == [n for n, _ in tn.block.named_parameters(prefix="x", recurse=False)])
    assert len(list(ln.parameters())) == len(list(tn.parameters()))
    assert len(list(ln.modules())) == len(list(tn.modules()))


@needs_torch
def test_state_dict_keys_shapes_and_metadata_match_torch():
    ls, ts = Net().state_dict(), torch_net().state_dict()
    assert [(k, tuple(v.shape)) for k, v in ls.items()] == [
        (k, tuple(v.shape)) for k, v in ts.items()]
    assert dict(ls._metadata) == dict(ts._metadata)
    assert not any(isinstance(v, nn.Parameter) for v in ls.values())
    assert all(not v.requires_grad for v in ls.values())
    kept = Net().state_dict(keep_vars=True)
    assert isinstance(kept["block.fc.weight"], nn.Parameter)


@needs_torch
def test_load_torch_weights_gives_torch_outputs():
    tn = torch_net().eval()
    ln = Net().eval()
    assert repr(ln.load_state_dict(to_lamina_state(tn.state_dict()))) == (
        "<All keys matched successfully>")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(ln(lamina.tensor(x)).numpy(),
                               tn(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    # the copy went into the existing parameter objects
    assert ln.block.fc.weight is ln.get_parameter("block.fc.weight")


@needs_torch
def test_load_state_dict_errors_match_torch():
    tn, ln = torch_net(), Net()
    tstate = tn.state_dict()
    del tstate["seq.0.bias"]
    tstate["extra.weight"] = torch.zeros(1)
    lstate = to_lamina_state(tstate)
    with pytest.raises(RuntimeError) as te:
        tn.load_state_dict(tstate)
    with pytest.raises(RuntimeError) as le:
        ln.load_state_dict(lstate)
    assert str(le.value) == str(te.value).replace("TNet", "Net")
    tkeys = tn.load_state_dict(tstate, strict=False)
    lkeys = ln.load_state_dict(lstate, strict=False)
    assert lkeys.missing_keys == tkeys.missing_keys
    assert lkeys.unexpected_keys == tkeys.unexpected_keys
    tstate = tn.state_dict()
    tstate["emb.weight"] = torch.zeros(3, 2)
    with pytest.raises(RuntimeError) as te:
        tn.load_state_dict(tstate, strict=False)
    with pytest.raises(RuntimeError) as le:
        ln.load_state_dict(to_lamina_state(tstate), strict=False)
    assert str(le.value) == str(te.value).replace("TNet", "Net").replace("torch.", "lamina.")


def test_load_state_dict_assign_and_non_tensor():
    m = nn.Linear(2, 2)
    w = lamina.ones(2, 2)
    m.load_state_dict({"weight": w, "bias": lamina.zeros(2)}, assign=True)
    assert isinstance(m.weight, nn.Parameter) and m.weight.requires_grad
    assert m.weight.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(RuntimeError, match="expected torch.Tensor or Tensor-like"):
        m.load_state_dict({"weight": [[1.0, 1.0]], "bias": lamina.zeros(2)})
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        m.load_state_dict([1, 2])


def test_state_dict_round_trip_between_lamina_models():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())


# -- modes, conversion, grads ----------------------------------------------------------------


def test_train_eval_propagate():
    m = Net()
    assert m.training and m.seq[2].training
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        m.train("yes")
    x = lamina.ones(4, 5)
    d = nn.Dropout(0.5).eval()
    assert d(x) is x


def test_to_and_dtype_conversions():
    m = Net()
    m.block.register_buffer("count", lamina.zeros(1, dtype=lamina.int64))
    m.block.fc.weight.grad = lamina.ones(3, 4)
    weight = m.block.fc.weight
    m.double()
    assert m.block.fc.weight is weight  # identity kept: optimizers still hold it
    assert all(p.dtype == lamina.float64 for p in m.parameters())
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in m.parameters())
    assert m.block.count.dtype == lamina.int64 and m.block.steps.dtype == lamina.float64
    assert m.block.fc.weight.grad.dtype == lamina.float64
    m.to(lamina.float32)
    assert m.block.fc.weight.dtype == lamina.float32
    m.half()
    assert m.layers[0].weight.dtype == lamina.float16
    m.float()
    m.to("cpu")
    m.to(lamina.zeros(1, dtype=lamina.float64))
    assert m.seq[0].bias.dtype == lamina.float64
    with pytest.raises(TypeError, match="only accepts floating point"):
        m.to(lamina.int32)
    with pytest.raises(RuntimeError, match="cuda"):
        m.cuda()


def test_zero_grad_and_requires_grad():
    m = nn.Linear(3, 2)
    out = m(lamina.ones(4, 3)).sum()
    out.backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert m.weight.grad.tolist() == [[0.0] * 3] * 2
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(lamina.ones(1, 3)).requires_grad


def test_gradients_reach_every_parameter():
    m = Net()
    m(lamina.ones(2, 4)).sum().backward()
    used = {n for n, p in m.named_parameters() if p.grad is not None}
    assert "block.fc.weight" in used and "seq.0.bias" in used and "block.scale" in used
    assert "emb.weight" not in used


def test_apply_and_lookup():
    m = Net()
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen[-1] == "Net" and seen.count("Linear") == 5
    assert m.get_submodule("layers.2") is m.layers[2]
    assert m.get_parameter("heads.a.bias") is m.heads["a"].bias
    assert m.get_buffer("block.steps") is m.block.steps
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        m.get_submodule("block.nope")


def test_deepcopy_module():
    m = Net()
    c = copy.deepcopy(m)
    assert c.block.shared is c.block.fc
    with lamina.no_grad():
        m.block.fc.weight.fill_(5.0)
    assert c.block.fc.weight.numpy().max() < 5.0
    assert isinstance(c.block.fc.weight, nn.Parameter)


# -- hooks -------------------------------------------------------------------------------------


def test_forward_hooks_modify_and_remove():
    m = nn.Identity()
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    h2 = m.register_forward_hook(lambda mod, args, out: out + 1)
    h3 = m.register_forward_hook(lambda mod, args, out: calls.append("first"), prepend=True)
    x = lamina.tensor([1.0])
    assert m(x).tolist() == [3.0]
    assert calls == ["first"]
    h1.remove()
    assert m(x).tolist() == [2.0]
    h2.remove()
    h3.remove()
    assert m(x) is x
    with m.register_forward_pre_hook(lambda mod, args: args[0] + 10):
        assert m(x).tolist() == [11.0]
    assert m(x) is x


def test_forward_hooks_with_kwargs_and_always_call():
    class Scale(nn.Module):
        def forward(self, x, factor=1.0):
            if factor < 0:
                raise ValueError("negative")
            return x * factor

    m = Scale()
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"factor": 3.0}),
                                with_kwargs=True)
    seen = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs["factor"]),
                            with_kwargs=True)
    assert m(lamina.tensor([2.0])).tolist() == [6.0]
    assert seen == [3.0]
    n = Scale()
    called = []
    n.register_forward_hook(lambda mod, args, out: called.append(out), always_call=True)
    with pytest.raises(ValueError, match="negative"):
        n(lamina.tensor([1.0]), factor=-1.0)
    assert called == [None]


def test_state_dict_hooks():
    m = nn.Linear(2, 2)
    m.register_state_dict_post_hook(lambda mod, sd, prefix, meta: sd.pop(prefix + "bias"))
    assert list(m.state_dict()) == ["weight"]
    m2 = nn.Linear(2, 2)
    m2.register_load_state_dict_post_hook(lambda mod, keys: keys.missing_keys.clear())
    m2.load_state_dict({"weight": lamina.zeros(2, 2)})


# -- containers ------------------------------------------------------------------------------


def test_sequential_indexing_and_editing():
    a, b, c = nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    assert list(sub._modules) == ["1", "2"]
    s.append(nn.Tanh())
    assert len(s) == 4 and list(s._modules) == ["0", "1", "2", "3"]
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and s[1] is c
    s.insert(0, nn.Identity())
    assert isinstance(s[0], nn.Identity) and s[1] is a
    assert s.pop(0).__class__ is nn.Identity
    s[2] = nn.Sigmoid()
    assert isinstance(s[2], nn.Sigmoid)
    with pytest.raises(IndexError):
        s[10]
    named = nn.Sequential(OrderedDict([("first", a), ("second", b)]))
    assert named.first is a and list(named.state_dict()) == ["first.weight", "first.bias"]
    assert len(s + named) == len(s) + 2
    x = lamina.ones(3, 2)
    np.testing.assert_allclose(nn.Sequential(a, b)(x).numpy(), b(a(x)).numpy())


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    ml.append(nn.Sigmoid())
    ml.extend([nn.Identity()])
    ml.insert(1, nn.GELU())
    assert [type(m).__name__ for m in ml] == ["ReLU", "GELU", "Tanh", "Sigmoid", "Identity"]
    assert isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    del ml[0]
    assert list(ml._modules) == ["0", "1", "2", "3"]
    ml += [nn.ReLU()]
    assert len(ml) == 5 and isinstance(ml[-1], nn.ReLU)
    with pytest.raises(TypeError, match="iterable"):
        ml.extend(nn.ReLU())
    md = nn.ModuleDict([("x", nn.ReLU()), ("y", nn.Tanh())])
    md["z"] = nn.Identity()
    assert list(md.keys()) == ["x", "y", "z"] and "y" in md and len(md) == 3
    assert isinstance(md.pop("x"), nn.ReLU) and list(md) == ["y", "z"]
    md.update({"w": nn.GELU()})
    assert [type(v).__name__ for v in md.values()] == ["Tanh", "Identity", "GELU"]
    md.clear()
    assert len(md) == 0


def test_parameter_list_and_dict():
    pl = nn.ParameterList([lamina.zeros(2), nn.Parameter(lamina.ones(3))])
    assert all(isinstance(p, nn.Parameter) for p in pl)
    pl.append(lamina.zeros(1))
    assert len(pl) == 3 and [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    pd = nn.ParameterDict({"a": lamina.zeros(2)})
    pd["b"] = nn.Parameter(lamina.ones(1))
    assert list(pd.keys()) == ["a", "b"] and "a" in pd
    assert isinstance(pd["a"], nn.Parameter)
    assert [n for n, _ in pd.named_parameters()] == ["a", "b"]
    del pd["a"]
    assert list(pd) == ["b"]
    with pytest.raises(RuntimeError, match="should not be called"):
        pl(1)


@needs_torch
def test_repr_matches_torch():
    tnn = torch.nn
    lm = nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(inplace=True), nn.ModuleList([nn.Linear(2, 2)] * 3),
        nn.ModuleDict({"a": nn.Tanh()}), nn.Dropout(0.2), nn.Embedding(10, 3, padding_idx=0),
        nn.Flatten(), nn.Unflatten(1, (2, 2)), nn.Bilinear(2, 3, 4), nn.GELU("tanh"),
        nn.Softplus(), nn.LeakyReLU(0.2, True), nn.ELU(), nn.Hardtanh(-2, 3), nn.ReLU6(),
        nn.Softmax(dim=1), nn.LogSoftmax(1), nn.CrossEntropyLoss(), nn.Identity(),
        nn.Linear(2, 3, bias=False), nn.Dropout2d(), nn.Embedding(5, 2, max_norm=1.0),
        nn.ParameterList([nn.Parameter(lamina.ones(2, 3))]),
        nn.ParameterDict({"p": nn.Parameter(lamina.ones(2))}), nn.PReLU(), nn.Hardshrink(),
        nn.Threshold(0.1, 20), nn.SiLU(), nn.Mish(), nn.Sigmoid(), nn.GLU(),
    )
    tm = tnn.Sequential(
        tnn.Linear(3, 4), tnn.ReLU(inplace=True), tnn.ModuleList([tnn.Linear(2, 2)] * 3),
        tnn.ModuleDict({"a": tnn.Tanh()}), tnn.Dropout(0.2),
        tnn.Embedding(10, 3, padding_idx=0), tnn.Flatten(), tnn.Unflatten(1, (2, 2)),
        tnn.Bilinear(2, 3, 4), tnn.GELU("tanh"), tnn.Softplus(), tnn.LeakyReLU(0.2, True),
        tnn.ELU(), tnn.Hardtanh(-2, 3), tnn.ReLU6(), tnn.Softmax(dim=1), tnn.LogSoftmax(1),
        tnn.CrossEntropyLoss(), tnn.Identity(), tnn.Linear(2, 3, bias=False), tnn.Dropout2d(),
        tnn.Embedding(5, 2, max_norm=1.0),
        tnn.ParameterList([tnn.Parameter(torch.ones(2, 3))]),
        tnn.ParameterDict({"p": tnn.Parameter(torch.ones(2))}), tnn.PReLU(), tnn.Hardshrink(),
        tnn.Threshold(0.1, 20), tnn.SiLU(), tnn.Mish(), tnn.Sigmoid(), tnn.GLU(),
    )
    assert repr(lm) == repr(tm).replace("torch.", "lamina.")
    assert repr(Net()) == repr(torch_net()).replace("TNet", "Net").replace(
        "TBlock", "Block").replace("torch.", "lamina.")
