"""Multi-output (horizontal) fusion: which groups merge, the kernels they become, and the
numbers of functions and training steps compiled with it (vs numpy and the eager step)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lamina
import lamina.nn as nn
import lamina.nn.functional as F
from lamina.backends.interp import run
from lamina.ir import IRError, Module, TensorType, parse, verify
from lamina.ir.dialects.prim import Fusion
from lamina.ir.types import f32
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.fusion import MAX_RESULTS, Fuse, group_kind
from lamina.runtime.outputs import pointwise
from tests.passes.filecheck import filecheck, func, run_pipeline

SWITCH = "LAMINA_MULTI_OUTPUT_FUSION"


def T(*shape):
    return TensorType(tuple(shape), f32)


def prim(m: Module) -> Module:
    return PassManager(parse_pipeline("decompose,simplify")).run(m)


def fused(m: Module) -> Module:
    out = Fuse().run(m)
    verify(out)
    for op in out.graphs[0].ops[:-1]:
        assert isinstance(op, Fusion)
        group_kind(op)
    return out


def groups(m: Module) -> list[Fusion]:
    return [op for op in m.graphs[0].ops if isinstance(op, Fusion)]


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def same_results(before: Module, after: Module, *args) -> None:
    want, got = run(before, *args), run(after, *args)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8))


SIBLINGS = """
    func @f(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
      %0 = tensor.mul %x, %y : tensor<4x8xf32>
      %1 = tensor.add %0, %x : tensor<4x8xf32>
      %2 = tensor.sub %x, %y : tensor<4x8xf32>
      %3 = tensor.exp %0 : tensor<4x8xf32>
      %4 = tensor.add %3, %2 : tensor<4x8xf32>
      return %1, %4
    }"""


# -- which groups merge ----------------------------------------------------------------------
def test_siblings_sharing_inputs_are_one_group_computing_shared_values_once():
    out = run_pipeline(SIBLINGS, "decompose,simplify,fuse")
    filecheck(out, """
        CHECK: %0, %1 = prim.fusion %x, %y {name = "k1"} : tensor<4x8xf32>, tensor<4x8xf32>
        CHECK-NEXT: prim.mul
        CHECK-NEXT: prim.add
        CHECK-NEXT: prim.sub
        CHECK-NEXT: prim.exp
        CHECK-NEXT: prim.add
        CHECK-NEXT: prim.yield %3, %6
        CHECK-NEXT: }
        CHECK-NEXT: return %0, %1
    """)
    assert out.count("prim.fusion") == 1 and out.count("prim.mul") == 1
    assert parse(out) and str(parse(out)) == out  # the text round-trips
    before = prim(parse(SIBLINGS))
    same_results(before, fused(prim(parse(SIBLINGS))), rand(4, 8), rand(4, 8, seed=1))


def test_kill_switch_restores_one_result_groups(monkeypatch):
    monkeypatch.setenv(SWITCH, "0")
    out = run_pipeline(SIBLINGS, "decompose,simplify,fuse")
    assert out.count("prim.fusion") == 2 and "%0, %1 = prim.fusion" not in out
    monkeypatch.setenv(SWITCH, "1")
    assert run_pipeline(SIBLINGS, "decompose,simplify,fuse").count("prim.fusion") == 1


def test_the_one_multi_output_kernel_writes_both_outputs_in_one_nest():
    out = run_pipeline(SIBLINGS, "decompose,simplify,fuse,lower-loops,prepare-loops")
    assert out.count("kernel @") == 1
    assert "%out0: memref<4x8xf32>, %out1: memref<4x8xf32>" in out
    assert out.count("loop.parallel") == 1 and out.count("loop.mul") == 1
    assert "loop.call %x, %y, %0, %1 {kernel = @k1}" in out
    body = out.split("kernel @k1")[1].split("\n}\n")[0].splitlines()
    stores = [k for k, line in enumerate(body) if "loop.store" in line]
    loads = [k for k, line in enumerate(body) if "loop.load" in line]
    assert len(stores) == 2 and max(loads) < min(stores)  # every value read before a store


@pytest.mark.parametrize("shapes", [((4, 8), (8, 4)), ((4, 8), (4, 1))])
def test_results_of_different_shapes_stay_apart(shapes):
    def build(b, x):
        a = b("tensor.exp", x)
        other = (b("tensor.permute", x, perm=(1, 0)) if shapes[1] == (8, 4)
                 else b("tensor.sum", x, dims=(1,), keepdim=True))
        return a, b("tensor.neg", other)

    after = fused(prim(func(build, T(*shapes[0]))))
    assert len(groups(after)) >= 2 and all(len(g.results) == 1 for g in groups(after))


def test_no_merge_when_a_third_group_lies_between_them():
    # a -> column sum s -> b, and a -> b: merging a and b would be a cycle through s
    def build(b, x):
        a = b("tensor.exp", x)
        s = b("tensor.sum", a, dims=(0,), keepdim=True)
        return a, b("tensor.add", b("tensor.mul", a, s), x)

    m = prim(func(build, T(4, 8)))
    after = fused(prim(func(build, T(4, 8))))
    assert [group_kind(g) for g in groups(after)] == ["elementwise", "reduction",
                                                      "elementwise"]
    assert all(len(g.results) == 1 for g in groups(after))
    same_results(m, after, rand(4, 8))


def test_reduction_groups_do_not_merge_with_elementwise_ones():
    def build(b, x, y):
        r = b("tensor.add", b("tensor.sum", x, dims=(1,), keepdim=False), y)
        return r, b("tensor.mul", y, y)

    after = fused(prim(func(build, T(4, 8), T(4))))
    assert sorted(group_kind(g) for g in groups(after)) == ["elementwise", "reduction"]
    assert all(len(g.results) == 1 for g in groups(after))


def test_readers_of_a_row_reduction_keep_their_own_kernels():
    # lower-loops computes a row sum inside its single-result reader (one sweep)
    def build(b, x):
        s = b("tensor.sum", x, dims=(1,), keepdim=True)
        return b("tensor.div", x, s), b("tensor.exp", x)

    after = fused(prim(func(build, T(4, 8))))
    assert all(len(g.results) == 1 for g in groups(after))


def test_producer_and_consumer_merge_and_an_inner_value_gets_no_buffer():
    # c costs more than RECOMPUTE_LIMIT and feeds two groups: it is materialized, then all
    # three merge and c, read only inside the merged group, is no longer a result
    def build(b, x):
        c = x
        for _ in range(10):
            c = b("tensor.sin", c)
        return b("tensor.neg", c), b("tensor.abs", c)

    m = prim(func(build, T(3, 5)))
    after = fused(prim(func(build, T(3, 5))))
    (g,) = groups(after)
    assert len(g.results) == 2 and str(after).count("prim.sin") == 10
    same_results(m, after, rand(3, 5))


def test_a_group_has_at_most_max_results():
    def build(b, x):
        return tuple(b("tensor.mul", x, b("tensor.full", value=float(k), shape=(), dtype=f32))
                     for k in range(MAX_RESULTS + 3))

    after = fused(prim(func(build, T(5))))
    sizes = sorted(len(g.results) for g in groups(after))
    assert sum(sizes) == MAX_RESULTS + 3 and max(sizes) == MAX_RESULTS


def test_dynamic_sizes_are_never_merged():
    def build(b, x, y):
        return b("tensor.add", x, y), b("tensor.sub", x, y)

    after = fused(prim(func(build, TensorType((None, 4), f32), TensorType((None, 4), f32))))
    assert len(groups(after)) == 2


def test_fuse_is_idempotent_on_merged_groups():
    twice = fused(fused(prim(parse(SIBLINGS))))
    (g,) = groups(twice)
    assert len(g.results) == 2
    same_results(prim(parse(SIBLINGS)), twice, rand(4, 8), rand(4, 8, seed=1))


def test_group_kind_rejects_bad_multi_output_groups():
    text = """
    func @f(%x: tensor<4xf32>, %y: tensor<3xf32>) -> (tensor<4xf32>, tensor<3xf32>) {
      %0, %1 = prim.fusion %x, %y {name = "k0"} : tensor<4xf32>, tensor<3xf32> \
(%a: tensor<4xf32>, %b: tensor<3xf32>) {
        %2 = prim.neg %a : tensor<4xf32>
        %3 = prim.neg %b : tensor<3xf32>
        prim.yield %2, %3
      }
      return %0, %1
    }"""
    (g,) = groups(parse(text.replace("\\\n", "")))
    with pytest.raises(IRError, match="one static shape"):
        group_kind(g)


# -- numbers through lamina.compile ------------------------------------------------------------
def _close(got, want, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=rtol, atol=atol)


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=0, max_size=3), seed=st.integers(0, 99))
def test_compiled_function_with_several_outputs_matches_numpy(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = (np.asarray(rng.standard_normal(shape), np.float32) for _ in range(2))

    def fn(x, y):
        p = x * y
        return p + x, (p.exp() + (x - y)), x > y, (x - y).abs().to(lamina.float64)

    f = lamina.compile(fn)
    x, y = lamina.from_numpy(a), lamina.from_numpy(b)
    got = f(x, y)
    assert f.lower(x, y).as_text("loop").count("kernel @") == 1
    p = a * b
    want = [p + a, np.exp(p) + (a - b), a > b, np.abs(a - b).astype(np.float64)]
    for g, w in zip(got, want):
        assert g.numpy().dtype == w.dtype and g.numpy().shape == w.shape
        _close(g.numpy(), w)


def test_compiled_function_with_broadcast_inputs_matches_numpy():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 7)).astype(np.float32)
    b = rng.standard_normal((7,)).astype(np.float32)
    f = lamina.compile(lambda x, y: (x * y, x - y, (x + y).relu()))
    got = f(lamina.from_numpy(a), lamina.from_numpy(b))
    for g, w in zip(got, [a * b, a - b, np.maximum(a + b, 0)]):
        _close(g.numpy(), w)


# -- training steps ------------------------------------------------------------------------------
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


OPTIMIZERS = {
    "adamw": (lambda ps: lamina.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, eps=1e-3), 2),
    "sgd": (lambda ps: lamina.optim.SGD(ps, lr=0.1, momentum=0.9), 1),
}


def _train(opt_name: str, compiled: bool, steps: int = 4):
    lamina.manual_seed(0)
    model = _mlp()
    opt = OPTIMIZERS[opt_name][0](model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = lamina.compile(step) if compiled else step
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        x = lamina.from_numpy(rng.standard_normal((5, 8)).astype(np.float32))
        y = lamina.from_numpy(rng.integers(0, 3, 5))
        losses.append(float(f(x, y)))
    return losses, model, opt, f, (x, y)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_compiled_step_equals_eager_and_updates_each_parameter_in_one_kernel(
        opt_name, monkeypatch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # SGD's first-step recompile
        lc, mc, oc, f, xy = _train(opt_name, compiled=True)
    le, me, oe, _, _ = _train(opt_name, compiled=False)
    _close(lc, le)
    for pc, pe in zip(mc.parameters(), me.parameters()):
        _close(pc.numpy(), pe.numpy())
    for i, st_e in oe.state_dict()["state"].items():
        for key, value in st_e.items():
            _close(oc.state_dict()["state"][i][key].numpy(), value.numpy())

    low = f.lower(*xy)
    kernels = [g for g in low.stages.loop.graphs if g.kind == "kernel"]
    per_param = 1 + OPTIMIZERS[opt_name][1]  # the new state(s) and the new parameter
    params = list(mc.parameters())
    for p in params:  # the whole update of each parameter is one kernel (with .grad for some)
        t = f"memref<{'x'.join(map(str, p.shape))}xf32>"
        outs = [[str(a.type) for a in k.args if a.hint.startswith("out")] for k in kernels]
        updates = [o for o in outs if len(o) >= per_param and set(o) == {t}]
        assert len(updates) == 1 and len(updates[0]) <= per_param + 1, (t, outs)
    assert len(f.stats()["fused_ops"]) == len(groups(low.stages.prim))
    assert f.stats()["kernels"] == len(kernels)
    nparams = len(params)

    monkeypatch.setenv(SWITCH, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, _, _, f0, xy0 = _train(opt_name, compiled=True, steps=2)
    before = sum(g.kind == "kernel" for g in f0.lower(*xy0).stages.loop.graphs)
    assert before - len(kernels) >= OPTIMIZERS[opt_name][1] * nparams


def test_merged_optimizer_kernel_may_update_its_inputs_in_place():
    _, _, _, f, xy = _train("adamw", compiled=True, steps=1)
    for k in f.lower(*xy).stages.loop.graphs:
        outs = [i for i, a in enumerate(k.args) if a.hint.startswith("out")]
        if k.kind != "kernel" or len(outs) != 3:
            continue
        ins = [i for i, a in enumerate(k.args) if not a.hint.startswith("out")
               and a.type == k.args[outs[0]].type]
        assert ins and all(pointwise(k, s, d) for s in ins for d in outs)
        return
    raise AssertionError("no AdamW update kernel with three outputs")


# -- the CUDA path (the real GPU, else the host stand-in) --------------------------------------
@pytest.fixture()
def cuda_device():
    from lamina.runtime.cuda import driver, fake

    if driver.available() and not fake.installed():
        yield "cuda"
        return
    fake.install()
    try:
        yield "cuda"
    finally:
        fake.uninstall()


def test_multi_output_kernel_on_cuda_matches_numpy(cuda_device):
    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal((37, 70)).astype(np.float32) for _ in range(2))

    def fn(x, y):
        p = x * y
        return p + x, p.exp() + (x - y)

    f = lamina.compile(fn)
    x, y = lamina.tensor(a).to(cuda_device), lamina.tensor(b).to(cuda_device)
    got = f(x, y)
    loop = f.lower(x, y).as_text("loop")
    assert loop.count("kernel @") == 1 and "%out1: memref<37x70xf32>" in loop
    ptx = f.lower(x, y, target="cuda").as_text("ptx")
    assert ptx.count(".entry") == 1 and ptx.count("st.global") >= 2
    p = a * b
    for g, w in zip(got, [p + a, np.exp(p) + (a - b)]):
        assert g.device.type == "cuda"
        _close(g.cpu().numpy(), w, rtol=1e-5, atol=1e-5)


def test_out_into_an_input_of_a_merged_kernel_is_written_in_place():
    from lamina.runtime import compile_program

    x = np.random.default_rng(3).standard_normal(64).astype(np.float32)
    f = lamina.compile(lambda x: (x * 2.0, lamina.exp(x) + x))
    loop = f.lower(lamina.tensor(x)).stages.loop
    prog = compile_program(loop)
    assert prog.calls == 1
    want = compile_program(loop, plan=False)(x)
    _close(want[1], np.exp(x) + x)
    for k in (0, 1):
        for _ in range(2):  # Python path, then native
            xx = x.copy()
            outs = [None, None]
            outs[k] = xx
            got = prog(xx, out=outs)
            assert got[k] is xx
            np.testing.assert_array_equal(got[k], want[k])
            np.testing.assert_array_equal(got[1 - k], want[1 - k])
    assert not prog._scratches  # each element of x is read before any output overwrites it
