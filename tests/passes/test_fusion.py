"""fuse: which groups form, their names and kinds, and interp(fuse(g)) == interp(g)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run
from lamina.ir import IRError, Loc, Module, TensorType, parse, verify
from lamina.ir.dialects.prim import Fusion
from lamina.ir.types import f32
from lamina.passes import PassManager, parse_pipeline
from lamina.passes.fusion import RECOMPUTE_LIMIT, Fuse, group_kind, kernel_name
from tests.passes.filecheck import (
    MAIN,
    filecheck,
    func,
    program_steps,
    random_program,
    run_pipeline,
)


def T(*shape):
    return TensorType(tuple(shape), f32)


def prim(m: Module) -> Module:
    return PassManager(parse_pipeline("decompose,simplify")).run(m)


def fused(m: Module) -> Module:
    out = Fuse().run(m)
    verify(out)
    for g in out.graphs:
        for op in g.ops[:-1]:
            assert isinstance(op, Fusion), f"{op.name} left outside a group"
            group_kind(op)
    return out


def groups(m: Module) -> list[Fusion]:
    return [op for op in m.graphs[0].ops if isinstance(op, Fusion)]


def kinds(m: Module) -> list[str]:
    return [group_kind(f) for f in groups(m)]


def same_results(before: Module, after: Module, *args) -> None:
    want, got = run(before, *args), run(after, *args)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.shape == g.shape
        np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8))


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# -- the groups that form -------------------------------------------------------------------
def test_acceptance_elementwise_into_reduction_is_one_group():
    text = """
        func @f(%x: tensor<8x16xf32>, %y: tensor<8x16xf32>) -> (tensor<8xf32>) {
          %c = tensor.full {dtype = f32, shape = [], value = 1.0} : tensor<f32>
          %0 = tensor.mul %x, %y : tensor<8x16xf32>
          %1 = tensor.add %0, %c : tensor<8x16xf32>
          %2 = tensor.exp %1 : tensor<8x16xf32>
          %3 = tensor.sum %2 {dims = [1], keepdim = false} : tensor<8xf32>
          return %3
        }"""
    out = run_pipeline(text, "decompose,simplify,fuse")
    filecheck(out, """
        CHECK: %0 = prim.fusion %x, %y {name = "k0"} : tensor<8xf32>
        CHECK-NEXT: prim.mul
        CHECK-NEXT: prim.const
        CHECK-NEXT: prim.add
        CHECK-NEXT: prim.exp
        CHECK-NEXT: prim.reduce_sum
        CHECK-NEXT: prim.yield
        CHECK-NEXT: }
        CHECK-NEXT: return %0
    """)
    assert out.count("prim.fusion") == 1
    m = parse(text)
    before = prim(parse(text))
    after = fused(prim(m))
    same_results(before, after, rand(8, 16), rand(8, 16, seed=1))


def test_softmax_is_two_reductions_and_an_elementwise_group():
    m = prim(func(lambda b, x: b("tensor.softmax", x, dim=1), T(4, 8)))
    after = fused(prim(func(lambda b, x: b("tensor.softmax", x, dim=1), T(4, 8))))
    assert kinds(after) == ["reduction", "reduction", "elementwise"]
    same_results(m, after, rand(4, 8))


def test_linear_bias_relu_is_one_contraction_group():
    def build(b, x, w, bias):
        return b("tensor.relu", b("tensor.add", b("tensor.matmul", x, b("tensor.permute", w,
                                                                          perm=(1, 0))), bias))

    types = (T(5, 7), T(3, 7), T(3))
    after = fused(prim(func(build, *types)))
    assert kinds(after) == ["contraction"]
    (g,) = groups(after)
    assert [o.name for o in g.regions[0].ops] == [
        "prim.permute", "prim.dot_general", "prim.broadcast", "prim.add", "prim.const",
        "prim.le", "prim.where", "prim.yield"]
    same_results(prim(func(build, *types)), after, rand(5, 7), rand(3, 7, seed=1),
                 rand(3, seed=2))


def test_mean_keeps_its_division_in_the_reduction_group():
    after = fused(prim(func(lambda b, x: b("tensor.mean", x, dims=(0,), keepdim=False),
                            T(6, 2))))
    assert kinds(after) == ["reduction"]
    assert "prim.div" in str(after)


def test_computed_dot_operands_are_materialized():
    def build(b, x, w):
        return b("tensor.matmul", b("tensor.relu", x), w)

    after = fused(prim(func(build, T(4, 3), T(3, 2))))
    assert kinds(after) == ["elementwise", "contraction"]
    same_results(prim(func(build, T(4, 3), T(3, 2))), after, rand(4, 3), rand(3, 2, seed=1))


def test_a_reduction_is_never_recomputed():
    # sum(a) * 2 + sum(b) * 3: one chain claims the add, the other ends materialized
    def build(b, x, y):
        two = b("tensor.full", value=2.0, shape=(), dtype=f32)
        three = b("tensor.full", value=3.0, shape=(), dtype=f32)
        s = b("tensor.mul", b("tensor.sum", x, dims=(1,), keepdim=False), two)
        t = b("tensor.mul", b("tensor.sum", y, dims=(1,), keepdim=False), three)
        return b("tensor.add", s, t)

    after = fused(prim(func(build, T(3, 4), T(3, 4))))
    assert kinds(after) == ["reduction", "reduction"]
    assert str(after).count("prim.reduce_sum") == 2
    same_results(prim(func(build, T(3, 4), T(3, 4))), after, rand(3, 4), rand(3, 4, seed=1))


def test_a_reduction_epilogue_ends_where_its_value_fans_out(monkeypatch):
    monkeypatch.setenv("LAMINA_MULTI_OUTPUT_FUSION", "0")  # one-result groups
    def build(b, x):
        s = b("tensor.exp", b("tensor.sum", x, dims=(0,), keepdim=False))
        return b("tensor.neg", s), b("tensor.abs", s)

    after = fused(prim(func(build, T(3, 4))))
    assert kinds(after) == ["reduction", "elementwise", "elementwise"]
    filecheck(str(after), """
        CHECK: prim.reduce_sum
        CHECK-NEXT: prim.exp
        CHECK-NEXT: prim.yield
        CHECK-NOT: prim.exp
        CHECK: prim.neg
        CHECK: prim.abs
    """)


def test_cheap_shared_values_are_recomputed_expensive_ones_materialized(monkeypatch):
    monkeypatch.setenv("LAMINA_MULTI_OUTPUT_FUSION", "0")  # one-result groups
    def chain(b, x, n):
        for _ in range(n):
            x = b("tensor.sin", x)
        return x

    def build_cheap(b, x):
        y = chain(b, x, 2)
        return b("tensor.sum", y, dims=(0,), keepdim=False), b("tensor.neg", y)

    def build_costly(b, x):
        y = chain(b, x, RECOMPUTE_LIMIT + 1)
        return b("tensor.sum", y, dims=(0,), keepdim=False), b("tensor.neg", y)

    cheap = fused(prim(func(build_cheap, T(3, 4))))
    assert kinds(cheap) == ["reduction", "elementwise"]
    assert str(cheap).count("prim.sin") == 4
    costly = fused(prim(func(build_costly, T(3, 4))))
    assert kinds(costly) == ["elementwise", "reduction", "elementwise"]
    assert str(costly).count("prim.sin") == RECOMPUTE_LIMIT + 1
    same_results(prim(func(build_costly, T(3, 4))), costly, rand(3, 4))


def test_keepdim_reshape_is_fused_into_its_consumer():
    def build(b, x):
        return b("tensor.sub", x, b("tensor.amax", x, dims=(1,), keepdim=True))

    after = fused(prim(func(build, T(3, 5))))
    assert kinds(after) == ["reduction", "elementwise"]
    same_results(prim(func(build, T(3, 5))), after, rand(3, 5))


def test_returned_args_stay_copies_stay_and_everything_else_is_grouped():
    text = """
        func @f(%x: tensor<?x4xf32>) -> (tensor<?x4xf32>, tensor<?x4xf32>, tensor<?x4xf32>) {
          %0 = tensor.copy %x : tensor<?x4xf32>
          %1 = tensor.relu %x : tensor<?x4xf32>
          return %x, %0, %1
        }"""
    out = run_pipeline(text, "decompose,simplify,fuse")
    filecheck(out, """
        CHECK: %0 = prim.fusion %x {name = "k0"}
        CHECK: prim.where
        CHECK: %5 = prim.fusion %x {name = "k1"}
        CHECK-NEXT: prim.yield %x_2
        CHECK: return %x, %5, %0
    """)
    after = parse(out)
    assert kinds(after) == ["elementwise", "copy"]
    x = rand(3, 4)
    got = run(after, x)
    np.testing.assert_array_equal(got[1], x)
    np.testing.assert_array_equal(got[2], np.maximum(x, 0))


def test_fuse_is_idempotent():
    m = fused(prim(func(lambda b, x: b("tensor.log_softmax", x, dim=0), T(4, 3))))
    once = str(m)
    assert str(fused(parse(once))) == once


def test_fuse_rejects_tensor_ops():
    with pytest.raises(IRError, match=r"fuse: tensor.exp .*run decompose first"):
        Fuse().run(func(lambda b, x: b("tensor.exp", x), T(2)))


# -- names ------------------------------------------------------------------------------------
def test_kernel_names_carry_the_root_location_and_are_c_identifiers():
    assert kernel_name(3, Loc("/home/u/model.py", 12)) == "k3_model_py_12"
    assert kernel_name(0, None) == "k0"
    assert kernel_name(1, Loc("<stdin>", 2)) == "k1_stdin_2"
    assert kernel_name(2, Loc("ünï-cødé.py", 5)) == "k2_n_c_d_py_5"

    def build(b, x):
        y = b("tensor.exp", x)
        return b("tensor.sum", y, dims=(), keepdim=False), b("tensor.neg", y)

    m = prim(func(build, T(3)))
    for op in m.graphs[0].walk():
        op.loc = Loc("/src/train.py", 40 if op.name == "prim.reduce_sum" else 41)
    m2 = prim(func(build, T(3), name="g"))
    m.graphs.append(m2.graphs[0])
    names = [f.attrs["name"] for g in fused(m).graphs for f in g.ops[:-1]]
    assert names == ["k0_train_py_40", "k1_train_py_41", "k2", "k3"]


# -- group_kind rejects what the lowering cannot do ----------------------------------------------
@pytest.mark.parametrize("body,msg", [
    ("""%1 = prim.reduce_sum %a {axes = [0]} : tensor<4xf32>
        %2 = prim.reduce_max %1 {axes = [0]} : tensor<f32>
        prim.yield %2""", "several cores"),
    ("""%1 = prim.reduce_sum %a {axes = [0]} : tensor<4xf32>
        %2 = prim.reshape %1 {shape = [2, 2]} : tensor<2x2xf32>
        prim.yield %2""", "not an elementwise epilogue"),
    ("""%1 = prim.exp %a : tensor<4x4xf32>
        %2 = prim.dot_general %1, %a {lhs_batch = [], lhs_contract = [1], rhs_batch = [],
             rhs_contract = [0]} : tensor<4x4xf32>
        prim.yield %2""", "group args through permute/broadcast"),
    ("""%1 = prim.reduce_sum %a {axes = [0]} : tensor<4xf32>
        %2 = prim.exp %a : tensor<4x4xf32>
        prim.yield %2""", "does not yield"),
])
def test_group_kind_rejects_unsupported_groups(body, msg):
    out = "tensor<2x2xf32>" if "reshape" in body else "tensor<f32>" if "reduce_max" in body \
        else "tensor<4x4xf32>"
    m = parse(f"""
        func @f(%x: tensor<4x4xf32>) -> ({out}) {{
          %0 = prim.fusion %x {{name = "k0"}} : {out} (%a: tensor<4x4xf32>) {{
            {body}
          }}
          return %0
        }}""")
    with pytest.raises(IRError, match=msg):
        group_kind(m.graphs[0].ops[0])


# -- fusing never changes a result ----------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(program_steps(), st.integers(0, 2**32 - 1))
def test_fuse_never_changes_a_result(program, seed):
    steps, extra = program
    before = prim(random_program(steps, extra))
    after = fused(prim(random_program(steps, extra)))
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=s).astype(np.float32) for s in (MAIN, MAIN, (3, 3), (3,))]
    same_results(before, after, *args)


def test_fusion_on_dynamic_shapes():
    def build(b, x, y):
        s = b("tensor.softmax", b("tensor.relu", b("tensor.add", x, y)), dim=1)
        return b("tensor.sum", s, dims=(1,), keepdim=False), s

    types = (TensorType((None, None), f32), TensorType((None,), f32))
    after = fused(prim(func(build, *types)))
    assert set(kinds(after)) == {"reduction", "elementwise"}
    same_results(prim(func(build, *types)), after, rand(5, 3), rand(3, seed=1))
