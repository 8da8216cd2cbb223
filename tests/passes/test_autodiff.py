"""autodiff: IR text in/out, the pass's contract (seeds, zeros, fresh results, errors), and
random tensor programs differentiated through decompose + autodiff against finite
differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run
from lamina.ir import Builder, IRError, Loc, Module, TensorType, parse, verify
from lamina.ir.types import f32, f64, i32
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.autodiff import Autodiff
from lamina.passes.decompose import Decompose
from lamina.passes.pipeline import lower, to_prim
from lamina.passes.vjp_rules import VJP, IREmitter
from tests.passes.filecheck import (
    check_ir,
    filecheck,
    func,
    program_steps,
    random_program,
    run_pipeline,
)
from tests.passes.test_vjp_rules import fd_check

TANH_DOT = """
func @f(%x: tensor<3xf32>, %w: tensor<3xf32>) -> (tensor<f32>) {
  %0 = prim.mul %x, %w : tensor<3xf32>
  %1 = prim.tanh %0 : tensor<3xf32>
  %2 = prim.reduce_sum %1 {axes = [0]} : tensor<f32>
  return %2
}"""


def T(*shape, dtype=f64):
    return TensorType(tuple(shape), dtype)


def test_text_in_text_out():
    check_ir(TANH_DOT, "autodiff", """
        func @f(%x: tensor<3xf32>, %w: tensor<3xf32>) -> (tensor<f32>, tensor<3xf32>) {
          %0 = prim.mul %x, %w : tensor<3xf32>
          %1 = prim.tanh %0 : tensor<3xf32>
          %2 = prim.reduce_sum %1 {axes = [0]} : tensor<f32>
          %3 = prim.const {dtype = f32, shape = [], value = 1.0} : tensor<f32>
          %4 = prim.broadcast %3 {dims = [], shape = [3]} : tensor<3xf32>
          %5 = prim.const {dtype = f32, shape = [3], value = 1.0} : tensor<3xf32>
          %6 = prim.mul %1, %1 : tensor<3xf32>
          %7 = prim.sub %5, %6 : tensor<3xf32>
          %8 = prim.mul %4, %7 : tensor<3xf32>
          %9 = prim.mul %8, %w : tensor<3xf32>
          return %2, %9
        }""")
    # simplify drops the multiplication by the broadcast 1
    check_ir(TANH_DOT, "autodiff,simplify", """
        func @f(%x: tensor<3xf32>, %w: tensor<3xf32>) -> (tensor<f32>, tensor<3xf32>) {
          %0 = prim.mul %x, %w : tensor<3xf32>
          %1 = prim.tanh %0 : tensor<3xf32>
          %2 = prim.reduce_sum %1 {axes = [0]} : tensor<f32>
          %3 = prim.const {dtype = f32, shape = [3], value = 1.0} : tensor<3xf32>
          %4 = prim.mul %1, %1 : tensor<3xf32>
          %5 = prim.sub %3, %4 : tensor<3xf32>
          %6 = prim.mul %5, %w : tensor<3xf32>
          return %2, %6
        }""")


def test_options_wrt_keep_outputs_and_seed_arg():
    m = parse(TANH_DOT.strip())
    out = str(Autodiff(wrt=(1, 0), keep_outputs=False, seed_arg=True).run(m))
    filecheck(out, """
        CHECK: func @f(%x: tensor<3xf32>, %w: tensor<3xf32>, %seed: tensor<f32>)
        CHECK-SAME: -> (tensor<3xf32>, tensor<3xf32>)
        CHECK: prim.broadcast %seed
        CHECK-NOT: prim.reduce_sum
        CHECK: return
        """)
    d = Autodiff(wrt=(1, 0), keep_outputs=False, seed_arg=True).run(m)
    x, w = np.array([0.1, 0.2, 0.3], np.float32), np.array([1.0, -2.0, 0.5], np.float32)
    gw, gx = run(d, x, w, np.array(3.0, np.float32))
    dt = 1 - np.tanh(x * w) ** 2
    np.testing.assert_allclose(gx, 3 * dt * w, rtol=1e-6)
    np.testing.assert_allclose(gw, 3 * dt * x, rtol=1e-6)


def test_a_textual_pipeline_runs_autodiff_and_pipeline_lower_takes_it():
    text = """
    func @f(%x: tensor<4x3xf32>) -> (tensor<f32>) {
      %0 = tensor.exp %x : tensor<4x3xf32>
      %1 = tensor.sum %0 {dims = [], keepdim = false} : tensor<f32>
      return %1
    }"""
    out = run_pipeline(text, "decompose,autodiff,simplify,fuse")
    # the gradient of sum(exp(x)) is exp(x), computed once for both sweeps
    filecheck(out, """
        CHECK: -> (tensor<f32>, tensor<4x3xf32>)
        CHECK: %0 = prim.fusion
        CHECK-NEXT: prim.exp
        CHECK: prim.fusion %0
        CHECK-NEXT: prim.reduce_sum
        CHECK: return %2, %0
        """)
    stages = lower(parse(text.strip()), autodiff=Autodiff())
    assert "kernel @" in stages.as_text("loop")
    assert stages.prim.graphs[0].result_types[1] == TensorType((4, 3), f32)
    assert "autodiff" not in str(to_prim(parse(text.strip())))  # off by default


def test_fan_out_contributions_add_up():
    # x used three times: d/dx sum(x * x + exp(x)) = 2x + exp(x)
    m = func(lambda b, x: b("prim.reduce_sum", b("prim.add", b("prim.mul", x, x),
                                                  b("prim.exp", x)), axes=(0,)), T(3))
    d = Autodiff().run(m)
    assert sum(op.name == "prim.add" for op in d.graphs[0].ops) == 3  # 1 forward + 2 sums
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(run(d, x)[1], 2 * x + np.exp(x), rtol=1e-12)


def test_unused_and_inactive_arguments():
    # y does not reach the loss: zeros; n is an integer arg used only forward
    m = func(lambda b, x, y, n: b("prim.reduce_sum", b("prim.mul", x, b("prim.cast", n,
                                                                       dtype=f64)), axes=(0,)),
             T(2), T(2, 2), T(2, dtype=i32))
    d = Autodiff(wrt=(0, 1)).run(m)
    verify(d)
    _, gx, gy = run(d, np.ones(2), np.ones((2, 2)), np.array([3, 4], np.int32))
    np.testing.assert_array_equal(gx, [3.0, 4.0])
    np.testing.assert_array_equal(gy, np.zeros((2, 2)))


def test_loss_independent_of_the_arguments():
    m = func(lambda b, x: b("prim.const", value=2.0, shape=(), dtype=f64), T(3))
    _, g = run(Autodiff().run(m), np.ones(3))
    np.testing.assert_array_equal(g, np.zeros(3))


def test_zero_derivatives_are_symbolic_zeros():
    m = func(lambda b, x: b("prim.reduce_sum", b("prim.floor", b("prim.exp", x)), axes=(0,)),
             T(3))
    text = str(Autodiff().run(m))
    assert text.count("prim.exp") == 1, text  # nothing flows back through floor
    assert "prim.add" not in text


def test_gradients_are_fresh_results():
    # d/dx sum(x * y) = y (an argument) and d/dy = x: both returned through copy groups;
    # d/dx sum(x + y) and d/dy are the same value: the second is a copy
    m = func(lambda b, x, y: b("prim.reduce_sum", b("prim.mul", x, y), axes=(0,)), T(3), T(3))
    d = Autodiff(wrt=(0, 1)).run(m)
    text = str(d)
    assert text.count("prim.fusion") == 0  # mul(broadcast(1), y) is a fresh value
    m = func(lambda b, x, y: b("prim.reduce_sum", b("prim.add", x, y), axes=(0,)), T(3), T(3))
    d = Autodiff(wrt=(0, 1)).run(m)
    rets = d.graphs[0].returned
    assert rets[1] is not rets[2]
    assert rets[2].owner.name == "prim.fusion"
    # the cotangent of x + 1 is the seed argument itself: copied
    m = func(lambda b, x: b("prim.add", x, b("prim.const", value=1.0, shape=(3,), dtype=f64)),
             T(3))
    d = Autodiff(seed_arg=True).run(m)
    out, grad = d.graphs[0].returned
    assert grad.owner.name == "prim.fusion" and grad.owner.operands == [d.graphs[0].args[1]]


def test_backward_ops_carry_the_forward_locations():
    m = func(lambda b, x: b("prim.reduce_sum", b("prim.exp", x), axes=(0,)), T(3))
    g = m.graphs[0]
    here = Loc("model.py", 7)
    g.ops[0].loc = here
    d = Autodiff().run(m)
    backward = d.graphs[0].ops[2:-1]
    assert any(op.loc == here and op.name == "prim.mul" for op in backward)


def test_rules_get_only_the_wanted_cotangents():
    m = func(lambda b, x, y: b("prim.mul", x, y), T(3), T(3))
    g = m.graphs[0]
    op = g.ops[0]
    e = IREmitter(Builder(g.body))
    n = len(g.body.ops)
    gx, gy = VJP["prim.mul"](e, op.attrs, op.operands, op.results, [op.result],
                             wanted=[True, False])
    assert gx is not None and gy is None
    assert len(g.body.ops) == n + 1  # only g * y was built


@pytest.mark.parametrize("text,message", [
    ("""func @f(%x: tensor<3xf32>) -> (tensor<3xf32>) {
          %0 = prim.exp %x : tensor<3xf32>
          return %0
        }""", "must be a scalar.*seed"),
    ("""func @f(%x: tensor<3xi32>) -> (tensor<i32>) {
          %0 = prim.reduce_sum %x {axes = [0]} : tensor<i32>
          return %0
        }""", "must be a floating tensor"),
    ("""func @f(%x: tensor<3xf32>) -> (tensor<f32>) {
          %0 = tensor.sum %x {dims = [], keepdim = false} : tensor<f32>
          return %0
        }""", "not a primitive; run decompose first"),
])
def test_errors(text, message):
    with pytest.raises(IRError, match=message):
        Autodiff().run(parse(text))


def test_errors_after_fuse_and_bad_indices():
    fused = PassManager(parse_pipeline("fuse")).run(parse(TANH_DOT.strip()))
    with pytest.raises(IRError, match="run autodiff before fuse"):
        Autodiff().run(fused)
    with pytest.raises(IRError, match="argument index 2 out of range"):
        Autodiff(wrt=(2,)).run(parse(TANH_DOT.strip()))
    with pytest.raises(IRError, match="repeated"):
        Autodiff(wrt=(0, 0)).run(parse(TANH_DOT.strip()))


def test_a_prim_without_a_rule_is_a_clear_error():
    exp_rule = VJP.pop("prim.exp")
    try:
        m = func(lambda b, x: b("prim.reduce_sum", b("prim.exp", x), axes=(0,)), T(3))
        with pytest.raises(IRError, match="no VJP rule for prim.exp"):
            Autodiff().run(m)
    finally:
        VJP["prim.exp"] = exp_rule


# -- random tensor programs ----------------------------------------------------------------
def _smooth(steps):
    """The steps without amax/amin reductions (ties there make differences one-sided)."""
    return [(n, i, j, k - 1 if n == "reduce" and k % 2 else k) for n, i, j, k in steps]


def _f64(m: Module) -> Module:
    return parse(str(m).replace("f32", "f64"))


@settings(max_examples=25)
@given(prog=program_steps(), seed=st.integers(0, 2**32 - 1))
def test_random_programs_against_finite_differences(prog, seed):
    steps, extra = prog
    m = Decompose().run(_f64(random_program(_smooth(steps), extra)))
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(a.type.shape) for a in m.graphs[0].args]
    fd_check(m, args, rng, fused=seed % 2 == 0, rtol=1e-5, atol=1e-6)
