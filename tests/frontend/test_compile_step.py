"""Whole training steps under ``lamina.compile``: forward, ``loss.backward()`` and the
optimizer step traced into one program, against the eager step (and PyTorch)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import lamina
import lamina.nn as nn
import lamina.nn.functional as F

STEPS = 5


# -- models ------------------------------------------------------------------------------------
class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # no conv bias: BatchNorm cancels it, so its gradient is rounding noise that Adam
        # would amplify into lr-sized differences between any two implementations
        self.conv = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.pool(F.relu(self.bn(self.conv(x)))).flatten(1))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class Encoder(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x).mean(1))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


MODELS = {"mlp": (_mlp, (5, 8)), "cnn": (CNN, (4, 2, 8, 8)), "lstm": (LSTMNet, (4, 5, 6)),
          "encoder": (Encoder, (4, 5, 8))}
OPTIMIZERS = {
    "sgd": lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.9),
    "nesterov": lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                            weight_decay=1e-3),
    # eps 1e-3: parameters whose exact gradient is 0 (attention's key bias) get noise that
    # Adam with a tiny eps would amplify into lr-sized, implementation-defined updates
    "adamw": lambda ps: lamina.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, eps=1e-3),
}


def _data(shape: tuple[int, ...], n: int = STEPS) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 3, shape[0]))
            for _ in range(n)]


def _train(model_name: str, opt_name: str, compiled: bool, with_scheduler: bool = False):
    make, shape = MODELS[model_name]
    lamina.manual_seed(0)
    model = make()
    opt = OPTIMIZERS[opt_name](model.parameters())
    sched = lamina.optim.lr_scheduler.StepLR(opt, 2, 0.5) if with_scheduler else None
    init = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = lamina.compile(step) if compiled else step
    losses = []
    for x, y in _data(shape):
        losses.append(float(f(lamina.from_numpy(x), lamina.from_numpy(y))))
        if sched is not None:
            sched.step()
    return losses, model, opt, f, init


def _state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _close(a, b, rtol=1e-5, atol=1e-6) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


@functools.cache
def _compiled_run(model_name: str, opt_name: str):
    """The compiled run of a pair (shared by the eager and the PyTorch comparisons)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SGD's first-step recompile
        return _train(model_name, opt_name, compiled=True)


PAIRS = [(m, o) for m in sorted(MODELS) for o in sorted(OPTIMIZERS)]


@pytest.mark.parametrize("model_name,opt_name", PAIRS)
def test_compiled_step_matches_eager(model_name, opt_name):
    le, me, oe, _, _ = _train(model_name, opt_name, compiled=False)
    lc, mc, oc, f, _ = _compiled_run(model_name, opt_name)
    _close(le, lc)
    se, sc = _state(me), _state(mc)
    assert se.keys() == sc.keys()
    for k in se:  # parameters, BatchNorm running stats and num_batches_tracked
        _close(se[k], sc[k])
    for pe, pc in zip(me.parameters(), mc.parameters()):
        _close(pe.grad.numpy(), pc.grad.numpy(), atol=1e-5)
    ste, stc = oe.state_dict(), oc.state_dict()
    assert ste["param_groups"] == stc["param_groups"]
    for i, st in ste["state"].items():
        assert st.keys() == stc["state"][i].keys()
        for key, value in st.items():
            _close(value.numpy(), stc["state"][i][key].numpy())
    assert f.compiles == 1 and f.recompiles == 0  # first steps need no program of their own
    assert f.stats()["hits"] == STEPS - 1


@pytest.mark.parametrize("model_name,opt_name", PAIRS)
def test_compiled_step_matches_pytorch(model_name, opt_name):
    torch = pytest.importorskip("torch")
    lc, mc, _, _, init = _compiled_run(model_name, opt_name)
    tmodel = _torch_model(torch, model_name)
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in init.items()})
    topt = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True,
                                                   weight_decay=1e-3),
            "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, eps=1e-3),
            }[opt_name](tmodel.parameters())
    lt = []
    for x, y in _data(MODELS[model_name][1]):
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                 torch.from_numpy(y))
        loss.backward()
        topt.step()
        lt.append(loss.item())
    _close(lt, lc, rtol=1e-4, atol=1e-5)
    st = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    for k, v in _state(mc).items():
        _close(st[k], v, rtol=1e-4, atol=1e-5)


def _torch_model(torch, name):
    tnn = torch.nn

    class TCNN(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(2, 4, 3, padding=1, bias=False)
            self.bn = tnn.BatchNorm2d(4)
            self.pool = tnn.MaxPool2d(2)
            self.fc = tnn.Linear(64, 3)

        def forward(self, x):
            return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))

    class TLSTM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = tnn.LSTM(6, 8, batch_first=True)
            self.fc = tnn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.lstm(x)[0][:, -1])

    class TEncoder(tnn.Module):
        def __init__(self):
            super().__init__()
            layer = tnn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            self.enc = tnn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.fc = tnn.Linear(8, 3)

        def forward(self, x):
            return self.fc(self.enc(x).mean(1))

    if name == "mlp":
        return tnn.Sequential(tnn.Linear(8, 16), tnn.ReLU(), tnn.Linear(16, 3))
    return {"cnn": TCNN, "lstm": TLSTM, "encoder": TEncoder}[name]()


# -- Python-visible state -------------------------------------------------------------------------
def _linear_step(set_to_none: bool):
    lamina.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=set_to_none)
        return loss

    return model, step


@pytest.mark.filterwarnings("ignore:lamina.compile")
def test_zero_grad_in_place_keeps_tensors_and_bumps_versions():
    x = lamina.from_numpy(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    me, se = _linear_step(False)
    mc, sc = _linear_step(False)
    f = lamina.compile(sc)
    weight = mc.weight
    for i in range(4):
        _close(float(se(x)), float(f(x)))
        _close(me.weight.numpy(), mc.weight.numpy())
        if i == 0:
            grad = mc.weight.grad
        assert mc.weight is weight and mc.weight.grad is grad  # written in place
        assert np.all(mc.weight.grad.numpy() == 0)
    assert weight._version > 0
    assert f.compiles == 2  # the first call had no .grad to zero in place


@pytest.mark.filterwarnings("ignore:lamina.compile")
def test_grads_are_visible_and_accumulate_like_eager():
    x = lamina.from_numpy(np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32))

    def make():
        lamina.manual_seed(0)
        model = nn.Linear(4, 2)

        def step(x):
            loss = model(x).square().mean()
            loss.backward()
            return loss

        return model, step

    me, se = make()
    mc, sc = make()
    f = lamina.compile(sc)
    for _ in range(3):
        _close(float(se(x)), float(f(x)))
        _close(me.weight.grad.numpy(), mc.weight.grad.numpy())
        _close(me.bias.grad.numpy(), mc.bias.grad.numpy())
    mc.zero_grad()
    f(x)
    me.zero_grad()
    se(x)
    _close(me.weight.grad.numpy(), mc.weight.grad.numpy())


def test_lr_scheduler_changes_lr_without_recompiling():
    for opt_name in ("sgd", "adamw"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            le, me, _, _, _ = _train("mlp", opt_name, compiled=False, with_scheduler=True)
            lc, mc, oc, f, _ = _train("mlp", opt_name, compiled=True, with_scheduler=True)
        _close(le, lc)
        for pe, pc in zip(me.parameters(), mc.parameters()):
            _close(pe.numpy(), pc.numpy())
        assert oc.param_groups[0]["lr"] != OPTIMIZERS[opt_name]  # it did change
        assert f.compiles == 1


def test_returns_trees_numbers_and_none():
    lamina.manual_seed(0)
    model = nn.Linear(3, 1)
    count = 7

    def step(x):
        out = model(x)
        loss = out.sum()
        loss.backward()
        return {"loss": loss, "pair": (out, count), "none": None}

    x = lamina.ones(2, 3)
    r = lamina.compile(step)(x)
    assert r["pair"][1] == 7 and r["none"] is None
    _close(float(r["loss"]), float(model(x).sum()))
    _close(model.weight.grad.numpy(), np.full((1, 3), 2.0))
    assert lamina.compile(lambda x: None)(x) is None


def test_retain_graph_and_create_graph_are_clear_errors():
    model = nn.Linear(3, 1)

    def step(x):
        model(x).sum().backward(retain_graph=True)

    with pytest.raises(NotImplementedError, match="retain_graph"):
        lamina.compile(step)(lamina.ones(2, 3))
    assert model.weight.grad is None  # the failed trace left nothing behind


def test_detach_and_no_grad_stop_gradients():
    lamina.manual_seed(0)
    w = nn.Parameter(lamina.ones(3))

    def step(x):
        with lamina.no_grad():
            c = w * 2.0
        loss = (w * x).sum() + (w.detach() * x).sum() + (c * x).sum()
        loss.backward()
        return loss

    x = lamina.from_numpy(np.array([1.0, 2.0, 3.0], np.float32))
    lamina.compile(step)(x)
    _close(w.grad.numpy(), x.numpy())


# -- random numbers -------------------------------------------------------------------------------
def _dropout_run(compiled: bool):
    lamina.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5))
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        out = model(x)
        out.square().mean().backward()
        opt.step()
        return out

    f = lamina.compile(step) if compiled else step
    x = lamina.ones(4, 8)
    lamina.manual_seed(1)
    outs = [f(x).numpy().copy() for _ in range(3)]
    return outs, model


def test_dropout_masks_are_fresh_per_call_and_match_eager_under_a_seed():
    oe, me = _dropout_run(False)
    oc, mc = _dropout_run(True)
    masks = [o == 0 for o in oc]
    assert masks[0].any() and not np.array_equal(masks[0], masks[1])
    for a, b in zip(oe, oc):
        _close(a, b)
    _close(me[0].weight.numpy(), mc[0].weight.numpy())
    assert lamina.rand(3).tolist() == _after_eager_draws()


def _after_eager_draws() -> list[float]:
    _dropout_run(False)
    return lamina.rand(3).tolist()


# -- guards, recompiles, fallback -----------------------------------------------------------------
def test_recompile_warning_names_the_guard_and_counts():
    model = nn.Linear(64, 2)
    opt = lamina.optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    f = lamina.compile(step)
    f(lamina.ones(64, 64))
    with pytest.warns(RuntimeWarning, match=r"lamina.compile\(step\): recompiling \(1\): arg 0 "
                      r"shape \(64, 64\) != \(32, 64\)"):
        f(lamina.ones(32, 64))
    assert f.recompiles == 1
    f(lamina.ones(64, 64))  # both entries stay cached
    assert f.recompiles == 1
    model.eval()
    with pytest.warns(RuntimeWarning, match=r"recompiling \(2\): Linear module.training "
                      r"True != False"):
        f(lamina.ones(64, 64))
    assert f.recompiles == 2 and f.compiles == 3


def test_data_dependent_control_flow_names_the_line():
    model = nn.Linear(3, 1)

    def step(x):
        loss = model(x).sum()
        if loss.item() > 0:
            loss = loss * 2
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match=r"test_compile_step.py:\d+: item\(\)"):
        lamina.compile(step)(lamina.ones(2, 3))
    assert model.weight.grad is None


def test_fallback_eager_runs_the_call_and_warns_once():
    lamina.manual_seed(0)
    model = nn.Linear(3, 1)

    def step(x):
        loss = model(x).sum()
        if bool(loss > 0):
            loss = loss * 2
        loss.backward()
        return loss

    f = lamina.compile(step, fallback="eager")
    x = lamina.ones(2, 3)
    expected = float(model(x).sum())
    expected = expected * 2 if expected > 0 else expected
    with pytest.warns(RuntimeWarning, match="running this call eagerly"):
        got = f(x)
    _close(float(got), expected)
    assert model.weight.grad is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(x)  # the same signature goes straight to eager, silently
    assert f.compiles == 0


def test_dynamic_batch_size_does_not_recompile():
    w = lamina.from_numpy(np.linspace(-1, 1, 8).astype(np.float32))
    f = lamina.compile(lambda x: (x * w + 0.5).relu(), dynamic=True)
    rng = np.random.default_rng(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (16, 16, 5):
            x = rng.standard_normal((n, 8)).astype(np.float32)
            _close(f(lamina.from_numpy(x)).numpy(), np.maximum(x * w.numpy() + 0.5, 0))
    assert f.compiles == 1 and f.recompiles == 0
    assert "tensor<?x8xf32>" in f.lower(lamina.ones(2, 8)).as_text("tensor")


def test_dynamic_step_that_needs_static_sizes_specialises_with_a_warning():
    model = nn.Linear(4, 2)

    def step(x):
        model(x).reshape(-1).mean().backward()  # merges the batch axis: no symbolic form

    f = lamina.compile(step, dynamic=True)
    with pytest.warns(RuntimeWarning, match="symbolic batch size"):
        f(lamina.ones(3, 4))
    _close(model.weight.grad.numpy(), np.full((2, 4), 0.5))


# -- introspection --------------------------------------------------------------------------------
def test_lower_shows_every_stage_and_stats():
    lamina.manual_seed(0)
    model = _mlp()
    opt = lamina.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = lamina.compile(step)
    x, y = lamina.ones(5, 8), lamina.tensor([0, 1, 2, 0, 1])
    before = model[0].weight.numpy().copy()
    low = f.lower(x, y)
    # lowering changes nothing: no parameter, no .grad, no optimizer state
    assert np.array_equal(before, model[0].weight.numpy())
    assert model[0].weight.grad is None and not any(opt.state.values())
    tensor_text = low.as_text("tensor")
    assert "tensor.matmul" in tensor_text and "prim.dot_general" in tensor_text  # + backward
    assert "prim.fusion" in low.as_text("prim")
    assert "kernel @" in low.as_text("loop")
    assert "define" in low.as_text("llvm")
    f(x, y)
    st = f.stats()
    for key in ("compiles", "recompiles", "compile_time_s", "kernels", "tensor_ops",
                "fused_ops", "planned_bytes", "naive_bytes", "hits"):
        assert key in st
    # a fusion group is one kernel, or none when the lowering computes it inside its reader
    assert st["compiles"] == 1 and 1 < st["kernels"] <= len(st["fused_ops"])
    assert sum(st["fused_ops"]) >= st["kernels"]
    assert not np.array_equal(before, model[0].weight.numpy())


def test_compiling_a_module_compiles_its_forward():
    lamina.manual_seed(0)
    model = _mlp()
    cm = lamina.compile(model)
    x = lamina.from_numpy(np.random.default_rng(4).standard_normal((2, 8)).astype(np.float32))
    _close(cm(x).numpy(), model(x).numpy())
    model.eval()
    with pytest.warns(RuntimeWarning, match="training"):
        cm(x)


def _accumulating_run(compiled: bool):
    lamina.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    opt = lamina.optim.Adam(model.parameters(), lr=0.05)

    def step(x):
        opt.zero_grad()
        for half in (x[:3], x[3:]):  # gradient accumulation over micro-batches
            (model(half).square().mean() * 0.5).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        with lamina.no_grad():  # evaluated with the updated parameters
            return model(x).square().mean()

    f = lamina.compile(step) if compiled else step
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((6, 8)).astype(np.float32) for _ in range(4)]
    return [float(f(lamina.from_numpy(x))) for x in xs], model


def test_accumulation_clipping_and_reads_after_the_update():
    le, me = _accumulating_run(False)
    lc, mc = _accumulating_run(True)
    _close(le, lc)
    for pe, pc in zip(me.parameters(), mc.parameters()):
        _close(pe.numpy(), pc.numpy())


def test_autograd_grad_and_arguments_that_require_grad():
    w = lamina.from_numpy(np.array([1.0, -2.0, 3.0], np.float32))

    def fn(x):
        y = (x * x * w).sum()
        (gx,) = lamina.autograd.grad(y, x)
        y.backward()
        return gx

    x = lamina.from_numpy(np.array([0.5, 1.0, 2.0], np.float32)).requires_grad_()
    gx = lamina.compile(fn)(x)
    _close(gx.numpy(), 2 * x.detach().numpy() * w.numpy())
    _close(x.grad.numpy(), gx.numpy())  # backward wrote the argument's .grad


def test_reading_a_tensor_the_step_wrote_is_an_error_not_a_stale_value():
    counter = lamina.tensor(0.0)

    def step(x):
        counter.add_(1)
        return x * float(counter)  # the new count exists only in the trace

    with pytest.raises(RuntimeError, match=r"test_compile_step.py:\d+: item\(\) needs the value"):
        lamina.compile(step)(lamina.ones(2))
    f = lamina.compile(step, fallback="eager")
    with pytest.warns(RuntimeWarning, match="eagerly"):
        _close(f(lamina.ones(2)).numpy(), [1.0, 1.0])
    _close(f(lamina.ones(2)).numpy(), [2.0, 2.0])
    assert float(counter) == 2.0


def test_a_failed_trace_leaves_optimizer_state_and_grads_as_they_were():
    lamina.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = lamina.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x):
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        opt.step()
        if loss.item() > 0:  # after the update: too late to trace
            return loss
        return -loss

    with pytest.raises(RuntimeError, match="item"):
        lamina.compile(step)(lamina.ones(2, 3))
    assert not any(opt.state.values()) and model.weight.grad is None


@pytest.mark.parametrize("in_place", [False, True])
def test_write_back_with_and_without_the_runtimes_out_buffers(monkeypatch, in_place):
    from lamina.frontend.step_entry import Entry

    monkeypatch.setattr(Entry, "write_in_place", in_place)
    x = lamina.from_numpy(np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32))
    me, se = _linear_step(False)
    mc, sc = _linear_step(False)
    f = lamina.compile(sc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(3):
            _close(float(se(x)), float(f(x)))
    weight = mc.weight
    _close(me.weight.numpy(), weight.numpy())
    _close(me.bias.numpy(), mc.bias.numpy())
    assert np.all(weight.grad.numpy() == 0)


@pytest.mark.parametrize("make", [
    lambda ps: lamina.optim.RMSprop(ps, lr=1e-2, momentum=0.5, centered=True, eps=1e-3),
    lambda ps: lamina.optim.Adagrad(ps, lr=0.1, lr_decay=0.01, weight_decay=1e-3),
    lambda ps: lamina.optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=1e-3, eps=1e-3),
    lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.8, dampening=0.5, maximize=True),
], ids=["rmsprop", "adagrad", "adam-amsgrad", "sgd-dampening"])
def test_other_optimizers_compile_like_eager(make):
    def run(compiled):
        lamina.manual_seed(0)
        model = _mlp()
        opt = make(model.parameters())

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        f = lamina.compile(step) if compiled else step
        losses = [float(f(lamina.from_numpy(x), lamina.from_numpy(y))) for x, y in
                  _data((5, 8))]
        return losses, model, opt, f

    le, me, oe, _ = run(False)
    lc, mc, oc, f = run(True)
    _close(le, lc)
    for pe, pc in zip(me.parameters(), mc.parameters()):
        _close(pe.numpy(), pc.numpy())
    for i, st in oe.state_dict()["state"].items():
        for key, value in st.items():
            _close(value.numpy(), oc.state_dict()["state"][i][key].numpy())
    assert f.compiles == 1


def test_lamina_grad_inside_a_compiled_step():
    w = lamina.from_numpy(np.array([1.0, -2.0, 3.0], np.float32))
    loss_grad = lamina.value_and_grad(lambda x: (x * x * w).sum())

    def fn(x):
        value, g = loss_grad(x * 2.0)
        return value, g

    x = lamina.from_numpy(np.array([0.5, 1.0, 2.0], np.float32))
    value, g = lamina.compile(fn)(x)
    _close(float(value), float(((2 * x.numpy()) ** 2 * w.numpy()).sum()))
    _close(g.numpy(), 2 * (2 * x.numpy()) * w.numpy())


SCALE = 2.0


def test_python_numbers_read_by_the_step_are_guarded():
    global SCALE
    offset = 1.0

    def fn(x):
        return x * SCALE + offset

    f = lamina.compile(fn)
    x = lamina.ones(3)
    _close(f(x).numpy(), [3.0] * 3)
    SCALE = 3.0
    try:
        with pytest.warns(RuntimeWarning, match=r"recompiling \(1\): global SCALE 2.0 != 3.0"):
            _close(f(x).numpy(), [4.0] * 3)
        offset = 0.0
        with pytest.warns(RuntimeWarning, match="closure variable offset 1.0 != 0.0"):
            _close(f(x).numpy(), [3.0] * 3)
    finally:
        SCALE = 2.0


def test_grad_mode_is_a_guard():
    model = nn.Linear(3, 1)
    f = lamina.compile(lambda x: model(x))
    x = lamina.ones(2, 3)
    assert f(x).requires_grad is False  # outputs of a compiled call are plain tensors
    with lamina.no_grad():
        with pytest.warns(RuntimeWarning, match="grad mode enabled True != False"):
            f(x)
    assert f.recompiles == 1


def test_eager_and_compiled_steps_interleave():
    def run(compiled_steps):
        lamina.manual_seed(0)
        model = _mlp()
        opt = lamina.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, dampening=0.1)

        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        f = lamina.compile(step)
        losses = [float((f if i in compiled_steps else step)(lamina.from_numpy(x),
                                                            lamina.from_numpy(y)))
                  for i, (x, y) in enumerate(_data((5, 8), 6))]
        return losses, model, opt

    le, me, oe = run(())
    lc, mc, oc = run({0, 2, 3})  # eager steps replace state tensors the program reads
    _close(le, lc)
    for pe, pc in zip(me.parameters(), mc.parameters()):
        _close(pe.numpy(), pc.numpy())
    compiled_state = oc.state_dict()["state"]
    for i, st in oe.state_dict()["state"].items():
        _close(st["momentum_buffer"].numpy(), compiled_state[i]["momentum_buffer"].numpy())
