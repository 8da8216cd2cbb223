"""A small training loop end to end — nn model, DataLoader, optimizer, scheduler, checkpoint —
against the same loop in PyTorch, and resumed from a lamina.save checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina import optim

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _data(n=96, d=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = (x[:, :classes].argmax(1) + (x[:, -1] > 1)).astype(np.int64) % classes
    return x, y


def _model(lib):
    return lib.nn.Sequential(lib.nn.Linear(8, 16), lib.nn.ReLU(), lib.nn.Linear(16, 4))


def _train(lib, model, opt, sched, x, y, epochs, losses):
    loader = lib.utils.data.DataLoader(lib.utils.data.TensorDataset(lib.tensor(x),
                                                                    lib.tensor(y)),
                                       batch_size=32)
    loss_fn = lib.nn.CrossEntropyLoss()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sched.step()


@needs_torch
@pytest.mark.parametrize("kind", ["SGD", "AdamW"])
def test_training_matches_torch(kind):
    x, y = _data()
    tmodel = _model(torch)
    lmodel = _model(lamina)
    lmodel.load_state_dict({k: lamina.tensor(v.numpy()) for k, v in tmodel.state_dict().items()})

    def make(lib, model):
        if kind == "SGD":
            opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        else:
            opt = lib.optim.AdamW(model.parameters(), lr=0.01)
        return opt, lib.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    tl, ll = [], []
    _train(torch, tmodel, *make(torch, tmodel), x, y, 4, tl)
    _train(lamina, lmodel, *make(lamina, lmodel), x, y, 4, ll)
    np.testing.assert_allclose(ll, tl, rtol=1e-4, atol=1e-6)
    assert ll[-1] < ll[0]
    for k, v in tmodel.state_dict().items():
        np.testing.assert_allclose(lmodel.state_dict()[k].numpy(), v.numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_checkpoint_resume_is_exact(tmp_path):
    x, y = _data(seed=1)
    lamina.manual_seed(0)
    model = _model(lamina)
    init = {k: v.clone() for k, v in model.state_dict().items()}

    def make(m):
        opt = optim.Adam(m.parameters(), lr=0.01, amsgrad=True)
        return opt, optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)

    opt, sched = make(model)
    straight: list[float] = []
    _train(lamina, model, opt, sched, x, y, 4, straight)

    model2 = _model(lamina)
    model2.load_state_dict(init)
    opt2, sched2 = make(model2)
    resumed: list[float] = []
    _train(lamina, model2, opt2, sched2, x, y, 2, resumed)
    lamina.save({"model": model2.state_dict(), "opt": opt2.state_dict(),
                 "sched": sched2.state_dict(), "losses": resumed}, tmp_path / "ckpt.lam")

    ckpt = lamina.load(tmp_path / "ckpt.lam")
    model3 = _model(lamina)
    model3.load_state_dict(ckpt["model"])
    opt3, sched3 = make(model3)
    opt3.load_state_dict(ckpt["opt"])
    sched3.load_state_dict(ckpt["sched"])
    losses = list(ckpt["losses"])
    _train(lamina, model3, opt3, sched3, x, y, 2, losses)
    assert losses == straight
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(model3.state_dict()[k].numpy(), v.numpy())
