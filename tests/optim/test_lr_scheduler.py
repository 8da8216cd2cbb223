"""Learning-rate schedules: every value equal to torch.optim.lr_scheduler's (when PyTorch
is installed) and to closed forms computed here (always)."""

from __future__ import annotations

import math
import warnings

import pytest

import lamina
from lamina import optim
from lamina.optim import lr_scheduler as ls

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _lamina_opt(kind="SGD", lrs=(0.1, 0.05)):
    groups = [{"params": [lamina.zeros(2).requires_grad_(True)], "lr": lr} for lr in lrs]
    if kind == "Adam":
        return optim.Adam(groups)
    return optim.SGD(groups, lr=lrs[0], momentum=0.9)


def _torch_opt(kind="SGD", lrs=(0.1, 0.05)):
    groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    if kind == "Adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def _factor(x):
    return 0.9 ** x


# name -> (build(mod, opt), optimizer kind, number of steps)
SCHEDULES = {
    "StepLR": (lambda m, o: m.StepLR(o, step_size=3, gamma=0.5), "SGD", 12),
    "MultiStepLR": (lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3), "SGD",
                    12),
    "ExponentialLR": (lambda m, o: m.ExponentialLR(o, gamma=0.8), "SGD", 10),
    "CosineAnnealingLR": (lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001), "SGD",
                          25),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 1 / (e + 1)), "SGD", 8),
    "LambdaLR-list": (lambda m, o: m.LambdaLR(o, lr_lambda=[_factor, lambda e: e * 0.5]),
                      "SGD", 6),
    "MultiplicativeLR": (lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.95), "SGD",
                         6),
    "LinearLR": (lambda m, o: m.LinearLR(o, start_factor=0.25, total_iters=6), "SGD", 10),
    "ConstantLR": (lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=4), "SGD", 8),
    "PolynomialLR": (lambda m, o: m.PolynomialLR(o, total_iters=6, power=2.0), "SGD", 9),
    "OneCycleLR": (lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=20), "SGD",
                   19),
    "OneCycleLR-linear-3phase-adam": (
        lambda m, o: m.OneCycleLR(o, max_lr=0.3, epochs=3, steps_per_epoch=5, pct_start=0.4,
                                  anneal_strategy="linear", three_phase=True), "Adam", 14),
    "CosineAnnealingWarmRestarts": (
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.01), "SGD",
        20),
    "SequentialLR": (lambda m, o: m.SequentialLR(o, [m.LinearLR(o, 0.1, total_iters=3),
                                                     m.ExponentialLR(o, 0.7)], [4]), "SGD", 10),
    "SequentialLR-3": (lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, 0.5, total_iters=2), m.CosineAnnealingLR(o, T_max=4),
            m.StepLR(o, 2)], [3, 6]), "SGD", 12),
    "ChainedScheduler": (lambda m, o: m.ChainedScheduler([m.ConstantLR(o, 0.5, 3),
                                                          m.ExponentialLR(o, 0.9)]), "SGD", 7),
}


@needs_torch
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_values_equal_torch(name):
    build, kind, steps = SCHEDULES[name]
    lopt, topt = _lamina_opt(kind), _torch_opt(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that optimizer.step() was not called
        lsch, tsch = build(ls, lopt), build(torch.optim.lr_scheduler, topt)
        assert lsch.get_last_lr() == tsch.get_last_lr()
        for _ in range(steps):
            topt.step()
            lopt.step()
            lsch.step()
            tsch.step()
            assert lsch.get_last_lr() == tsch.get_last_lr()
            assert [g["lr"] for g in lopt.param_groups] == [g["lr"] for g in topt.param_groups]
            for lg, tg in zip(lopt.param_groups, topt.param_groups):
                for key in ("momentum", "betas"):
                    if key in tg:
                        assert lg[key] == tg[key]


@needs_torch
def test_reduce_on_plateau_equals_torch():
    metrics = [5, 4, 4, 4, 4, 4.5, 3, 3, 3, 3, 3, 3, 2.9999, 1, 1, 1, 1]
    for kw in (dict(patience=2), dict(mode="max", factor=0.5, patience=1, cooldown=2),
               dict(threshold_mode="abs", threshold=0.1, patience=0, min_lr=[0.02, 0.01]),
               dict(patience=0, factor=0.5, min_lr=0.03)):
        lopt, topt = _lamina_opt(), _torch_opt()
        lsch = ls.ReduceLROnPlateau(lopt, **kw)
        tsch = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
        for m in metrics:
            lsch.step(m)
            tsch.step(m)
            assert lsch.get_last_lr() == tsch.get_last_lr(), kw
            assert lsch.num_bad_epochs == tsch.num_bad_epochs


def test_closed_forms():
    opt = _lamina_opt(lrs=(1.0,))
    s = ls.StepLR(opt, step_size=2, gamma=0.5)
    seen = [s.get_last_lr()[0]]
    for _ in range(6):
        s.step()
        seen.append(s.get_last_lr()[0])
    assert seen == [0.5 ** (e // 2) for e in range(7)]

    opt = _lamina_opt(lrs=(1.0,))
    s = ls.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    for e in range(1, 11):
        s.step()
        expected = 0.1 + 0.9 * (1 + math.cos(math.pi * e / 10)) / 2
        assert s.get_last_lr()[0] == pytest.approx(expected, rel=1e-12, abs=1e-12)

    opt = _lamina_opt(lrs=(1.0,))
    s = ls.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    for _ in range(5):
        s.step()
    assert s.get_last_lr()[0] == pytest.approx(0.01)

    opt = _lamina_opt(lrs=(1.0,))
    s = ls.LinearLR(opt, start_factor=0.5, total_iters=4)
    lrs = [s.get_last_lr()[0]]
    for _ in range(6):
        s.step()
        lrs.append(s.get_last_lr()[0])
    assert lrs == pytest.approx([0.5, 0.625, 0.75, 0.875, 1.0, 1.0, 1.0])


def test_one_cycle_shape_and_momentum():
    opt = _lamina_opt(lrs=(0.1,))
    s = ls.OneCycleLR(opt, max_lr=1.0, total_steps=10, div_factor=10.0, final_div_factor=100.0)
    lrs, moms = [s.get_last_lr()[0]], [opt.param_groups[0]["momentum"]]
    for _ in range(9):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
        moms.append(opt.param_groups[0]["momentum"])
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1 / 100.0)
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85)
    assert lrs.index(max(lrs)) == moms.index(min(moms)) == 2
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        s.step()
        s.step()


def test_lr_reaches_the_optimizer_update():
    p = lamina.tensor([0.0]).requires_grad_(True)
    opt = optim.SGD([p], lr=1.0)
    sched = ls.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = lamina.tensor([1.0])
        opt.step()
        sched.step()
    assert p.tolist() == pytest.approx([-(1.0 + 0.5 + 0.25)])


def test_state_dict_round_trip_and_resume():
    opt = _lamina_opt()
    s = ls.LambdaLR(opt, lr_lambda=_factor)
    for _ in range(3):
        s.step()
    sd = s.state_dict()
    assert "optimizer" not in sd and sd["lr_lambdas"] == [None, None] and sd["last_epoch"] == 3
    opt2 = _lamina_opt()
    s2 = ls.LambdaLR(opt2, lr_lambda=_factor)
    s2.load_state_dict(sd)
    s.step()
    s2.step()
    assert s2.get_last_lr() == s.get_last_lr()

    seq = ls.SequentialLR(opt, [ls.ConstantLR(opt, 0.5, 2), ls.ExponentialLR(opt, 0.5)], [2])
    sd = seq.state_dict()
    assert len(sd["_schedulers"]) == 2 and "optimizer" not in sd["_schedulers"][0]

    with pytest.raises(KeyError, match="initial_lr"):
        ls.StepLR(_lamina_opt(), step_size=1, last_epoch=3)


def test_errors():
    opt = _lamina_opt()
    with pytest.raises(TypeError, match="is not an Optimizer"):
        ls.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        ls.LambdaLR(opt, [_factor])
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        ls.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode what is unknown"):
        ls.ReduceLROnPlateau(opt, mode="what")
    with pytest.raises(ValueError, match="total_steps OR"):
        ls.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="number of milestone points"):
        ls.SequentialLR(opt, [ls.StepLR(opt, 1)], [1])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        ls.SequentialLR(opt, [ls.StepLR(opt, 1), ls.ReduceLROnPlateau(opt)], [1])
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        ls.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="positive integer T_0"):
        ls.CosineAnnealingWarmRestarts(opt, T_0=0)
