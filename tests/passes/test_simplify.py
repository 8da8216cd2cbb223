"""dce, cse, fold and simplify: IR text in/out, and exactness on random programs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run
from lamina.ir import TensorType, parse, verify
from lamina.ir.types import f32, i32
from lamina.passes import PASSES
from lamina.passes.simplify import Simplify
from tests.passes.filecheck import check_ir, filecheck, func, run_pipeline


def test_passes_are_registered_by_name():
    assert {"dce", "cse", "fold", "simplify"} <= set(PASSES)


# -- dce -------------------------------------------------------------------------------------
def test_dce_drops_unused_pure_ops_also_inside_groups():
    check_ir("""
        func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {
          %0 = prim.exp %x : tensor<4xf32>
          %1 = prim.neg %0 : tensor<4xf32>
          %2 = prim.fusion %x {name = "k0"} : tensor<4xf32> (%a: tensor<4xf32>) {
            %3 = prim.sin %a : tensor<4xf32>
            %4 = prim.cos %a : tensor<4xf32>
            prim.yield %4
          }
          %5 = prim.fusion %x {name = "k1"} : tensor<4xf32> (%b: tensor<4xf32>) {
            prim.yield %b
          }
          return %2
        }""", "dce", """
        func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {
          %0 = prim.fusion %x {name = "k0"} : tensor<4xf32> (%a: tensor<4xf32>) {
            %1 = prim.cos %a : tensor<4xf32>
            prim.yield %1
          }
          return %0
        }""")


def test_dce_keeps_ops_with_effects():
    text = """
        kernel @k(%out: memref<4xf32>) {
          %0 = loop.const {value = 0} : index
          %1 = loop.const {value = 1.0} : f32
          %2 = loop.const {value = 2.0} : f32
          loop.store %1, %out, %0
        }"""
    out = run_pipeline(text, "dce")
    filecheck(out, """
        CHECK: loop.const {value = 0}
        CHECK-NEXT: loop.const {value = 1.0}
        CHECK-NOT: value = 2.0
        CHECK: loop.store
    """)


# -- cse -------------------------------------------------------------------------------------
def test_cse_merges_equal_ops_and_commuted_operands():
    check_ir("""
        func @f(%x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xf32>) {
          %0 = prim.add %x, %y : tensor<4xf32>
          %1 = prim.add %y, %x : tensor<4xf32>
          %2 = prim.sub %x, %y : tensor<4xf32>
          %3 = prim.sub %y, %x : tensor<4xf32>
          %4 = prim.mul %0, %1 : tensor<4xf32>
          %5 = prim.mul %2, %3 : tensor<4xf32>
          %6 = prim.add %4, %5 : tensor<4xf32>
          return %6
        }""", "cse", """
        func @f(%x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xf32>) {
          %0 = prim.add %x, %y : tensor<4xf32>
          %1 = prim.sub %x, %y : tensor<4xf32>
          %2 = prim.sub %y, %x : tensor<4xf32>
          %3 = prim.mul %0, %0 : tensor<4xf32>
          %4 = prim.mul %1, %2 : tensor<4xf32>
          %5 = prim.add %3, %4 : tensor<4xf32>
          return %5
        }""")


def test_cse_tells_zero_from_minus_zero_and_int_from_float():
    out = run_pipeline("""
        func @f() -> (tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>) {
          %0 = prim.const {dtype = f32, shape = [2], value = 0.0} : tensor<2xf32>
          %1 = prim.const {dtype = f32, shape = [2], value = -0.0} : tensor<2xf32>
          %2 = prim.const {dtype = f32, shape = [2], value = 0.0} : tensor<2xf32>
          %3 = prim.const {dtype = f32, shape = [2], value = 0} : tensor<2xf32>
          return %0, %1, %2, %3
        }""", "cse")
    filecheck(out, """
        CHECK: %0 = prim.const {dtype = f32, shape = [2], value = 0.0}
        CHECK-NEXT: %1 = prim.const {dtype = f32, shape = [2], value = -0.0}
        CHECK-NEXT: %2 = prim.const {dtype = f32, shape = [2], value = 0}
        CHECK-NEXT: return %0, %1, %0, %2
    """)


def test_cse_sees_outer_values_in_regions_but_not_inner_ones_outside():
    check_ir("""
        func @f(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
          %0 = prim.exp %x : tensor<4xf32>
          %1 = prim.fusion %x {name = "k0"} : tensor<4xf32> (%a: tensor<4xf32>) {
            %2 = prim.exp %x : tensor<4xf32>
            %3 = prim.sin %a : tensor<4xf32>
            %4 = prim.add %2, %3 : tensor<4xf32>
            prim.yield %4
          }
          %5 = prim.sin %x : tensor<4xf32>
          %6 = prim.add %0, %5 : tensor<4xf32>
          return %1, %6
        }""", "cse", """
        func @f(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
          %0 = prim.exp %x : tensor<4xf32>
          %1 = prim.fusion %x {name = "k0"} : tensor<4xf32> (%a: tensor<4xf32>) {
            %2 = prim.sin %a : tensor<4xf32>
            %3 = prim.add %0, %2 : tensor<4xf32>
            prim.yield %3
          }
          %4 = prim.sin %x : tensor<4xf32>
          %5 = prim.add %0, %4 : tensor<4xf32>
          return %1, %5
        }""")


# -- fold ------------------------------------------------------------------------------------
def test_fold_constants_and_moved_constants():
    check_ir("""
        func @f() -> (tensor<2x3xf32>, tensor<3x2xi1>) {
          %0 = prim.const {dtype = f32, shape = [], value = 1.5} : tensor<f32>
          %1 = prim.broadcast %0 {dims = [], shape = [2, 3]} : tensor<2x3xf32>
          %2 = prim.const {dtype = f32, shape = [2, 3], value = 2.0} : tensor<2x3xf32>
          %3 = prim.mul %1, %2 : tensor<2x3xf32>
          %4 = prim.neg %3 : tensor<2x3xf32>
          %5 = prim.permute %4 {perm = [1, 0]} : tensor<3x2xf32>
          %6 = prim.const {dtype = f32, shape = [3, 2], value = 0.0} : tensor<3x2xf32>
          %7 = prim.lt %5, %6 : tensor<3x2xi1>
          return %4, %7
        }""", "simplify", """
        func @f() -> (tensor<2x3xf32>, tensor<3x2xi1>) {
          %0 = prim.const {dtype = f32, shape = [2, 3], value = -3.0} : tensor<2x3xf32>
          %1 = prim.const {dtype = i1, shape = [3, 2], value = true} : tensor<3x2xi1>
          return %0, %1
        }""")


def test_fold_exact_identities_only():
    out = run_pipeline("""
        func @f(%x: tensor<4xf32>, %n: tensor<4xi32>)
            -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
                tensor<4xi32>, tensor<4xf32>) {
          %one = prim.const {dtype = f32, shape = [4], value = 1.0} : tensor<4xf32>
          %z = prim.const {dtype = f32, shape = [4], value = 0.0} : tensor<4xf32>
          %nz = prim.const {dtype = f32, shape = [4], value = -0.0} : tensor<4xf32>
          %iz = prim.const {dtype = i32, shape = [4], value = 0} : tensor<4xi32>
          %0 = prim.mul %one, %x : tensor<4xf32>
          %1 = prim.add %x, %nz : tensor<4xf32>
          %2 = prim.add %x, %z : tensor<4xf32>
          %3 = prim.sub %x, %z : tensor<4xf32>
          %4 = prim.div %x, %one : tensor<4xf32>
          %5 = prim.add %iz, %n : tensor<4xi32>
          %6 = prim.sub %x, %nz : tensor<4xf32>
          return %0, %1, %2, %3, %4, %5, %6
        }""", "simplify")
    # x + 0.0 is -0.0 + 0.0 = +0.0 for x = -0.0, and x - (-0.0) likewise: both stay; the
    # others are x, and as func results they become copies of x (results are fresh buffers)
    filecheck(out, """
        CHECK: %0 = prim.const {dtype = f32, shape = [4], value = 0.0}
        CHECK-NEXT: %1 = prim.const {dtype = f32, shape = [4], value = -0.0}
        CHECK-NEXT: %2 = prim.add %x, %0
        CHECK-NEXT: %3 = prim.sub %x, %1
        CHECK-COUNT-4: prim.fusion %x {name = "copy"}
        CHECK: %8 = prim.fusion %n {name = "copy"}
        CHECK-NOT: prim.mul
        CHECK-NOT: prim.div
        CHECK: return %4, %5, %2, %6, %7, %8, %3
    """)


def test_fold_leaves_inexact_or_undefined_functions_alone():
    out = run_pipeline("""
        func @f() -> (tensor<2xf32>, tensor<2xi32>, tensor<2xf32>, tensor<2xi32>,
                      tensor<2xf32>) {
          %0 = prim.const {dtype = f32, shape = [2], value = 1.0} : tensor<2xf32>
          %1 = prim.exp %0 : tensor<2xf32>
          %2 = prim.const {dtype = i32, shape = [2], value = 7} : tensor<2xi32>
          %3 = prim.const {dtype = i32, shape = [2], value = -2} : tensor<2xi32>
          %4 = prim.div %2, %3 : tensor<2xi32>
          %5 = prim.const {dtype = f32, shape = [2], value = nan} : tensor<2xf32>
          %6 = prim.max %5, %0 : tensor<2xf32>
          %7 = prim.cast %5 {dtype = i32} : tensor<2xi32>
          %8 = prim.const {dtype = f32, shape = [2], value = -0.0} : tensor<2xf32>
          %9 = prim.const {dtype = f32, shape = [2], value = 0.0} : tensor<2xf32>
          %10 = prim.min %8, %9 : tensor<2xf32>
          return %1, %4, %6, %7, %10
        }""", "simplify")
    filecheck(out, """
        CHECK: prim.exp
        CHECK: prim.div
        CHECK: prim.max
        CHECK: prim.cast
        CHECK: prim.min
    """)


def test_fold_composes_and_removes_movements():
    check_ir("""
        func @f(%x: tensor<2x3x4xf32>, %v: tensor<5xf32>, %d: tensor<?x3xf32>)
            -> (tensor<4x2x3xf32>, tensor<2x3x4xf32>, tensor<6x5x7xf32>, tensor<?x3xf32>) {
          %0 = prim.permute %x {perm = [1, 2, 0]} : tensor<3x4x2xf32>
          %1 = prim.permute %0 {perm = [1, 2, 0]} : tensor<4x2x3xf32>
          %2 = prim.permute %1 {perm = [1, 2, 0]} : tensor<2x3x4xf32>
          %3 = prim.reshape %v {shape = [5, 1]} : tensor<5x1xf32>
          %4 = prim.broadcast %3 {dims = [1, 2], shape = [6, 5, 7]} : tensor<6x5x7xf32>
          %5 = prim.cast %d {dtype = f32} : tensor<?x3xf32>
          %6 = prim.reshape %5 {shape = [6]} : tensor<6xf32>
          %7 = prim.sin %2 : tensor<2x3x4xf32>
          %8 = prim.sin %5 : tensor<?x3xf32>
          return %1, %7, %4, %8
        }""", "simplify", """
        func @f(%x: tensor<2x3x4xf32>, %v: tensor<5xf32>, %d: tensor<?x3xf32>) -> (tensor<4x2x3xf32>, tensor<2x3x4xf32>, tensor<6x5x7xf32>, tensor<?x3xf32>) {
          %0 = prim.permute %x {perm = [2, 0, 1]} : tensor<4x2x3xf32>
          %1 = prim.broadcast %v {dims = [1], shape = [6, 5, 7]} : tensor<6x5x7xf32>
          %2 = prim.sin %x : tensor<2x3x4xf32>
          %3 = prim.sin %d : tensor<?x3xf32>
          return %0, %2, %1, %3
        }""")  # noqa: E501


def test_fold_keeps_broadcasts_of_constants_to_dynamic_shapes():
    text = """
        func @f(%x: tensor<?xf32>) -> (tensor<?xf32>) {
          %0 = prim.const {dtype = f32, shape = [], value = 2.0} : tensor<f32>
          %1 = prim.broadcast %0 {dims = [], shape = [?]} : tensor<?xf32>
          %2 = prim.mul %x, %1 : tensor<?xf32>
          return %2
        }"""
    import textwrap

    assert run_pipeline(text, "simplify") == textwrap.dedent(text).strip()


def test_fold_through_dynamic_broadcast_of_one_and_results_stay_fresh():
    check_ir("""
        func @f(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
          %0 = prim.const {dtype = f32, shape = [], value = 1.0} : tensor<f32>
          %1 = prim.broadcast %0 {dims = [], shape = [?]} : tensor<?xf32>
          %2 = prim.mul %x, %1 : tensor<?xf32>
          return %2, %x
        }""", "simplify", """
        func @f(%x: tensor<?xf32>) -> (tensor<?xf32>, tensor<?xf32>) {
          %0 = prim.fusion %x {name = "copy"} : tensor<?xf32> (%x_1: tensor<?xf32>) {
            prim.yield %x_1
          }
          return %0, %x
        }""")


def test_each_pass_alone_does_only_its_part():
    text = """
        func @f(%x: tensor<3xf32>) -> (tensor<3xf32>) {
          %0 = prim.const {dtype = f32, shape = [3], value = 1.0} : tensor<3xf32>
          %1 = prim.mul %x, %0 : tensor<3xf32>
          %2 = prim.exp %x : tensor<3xf32>
          %3 = prim.exp %x : tensor<3xf32>
          %4 = prim.add %2, %3 : tensor<3xf32>
          %5 = prim.add %4, %1 : tensor<3xf32>
          return %5
        }"""
    folded = run_pipeline(text, "fold")
    filecheck(folded, """
        CHECK: prim.const
        CHECK-NOT: prim.mul
        CHECK-COUNT-2: prim.exp %x
        CHECK: prim.add %3, %x
    """)
    filecheck(run_pipeline(text, "cse"), """
        CHECK-COUNT-1: prim.exp
        CHECK-NOT: prim.exp
        CHECK: prim.add %2, %2
    """)
    assert run_pipeline(text, "dce") == run_pipeline(text, "")
    filecheck(run_pipeline(text, "simplify"), """
        CHECK: %0 = prim.exp %x
        CHECK-NEXT: %1 = prim.add %0, %0
        CHECK-NEXT: %2 = prim.add %1, %x
        CHECK-NEXT: return %2
    """)


# -- exactness on random programs ----------------------------------------------------------------
F_SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, 1e-40, 3e38, float("inf"), float("-inf"), float("nan")]
I_SPECIAL = [0, 1, -1, 7, 2**31 - 1, -(2**31)]
F_OPS = ["add", "sub", "mul", "div", "max", "min", "neg", "abs", "sqrt", "floor", "exp",
         "where", "cast", "permute2", "bcast"]
I_OPS = ["add", "sub", "mul", "div", "max", "min", "neg", "abs", "and", "xor", "where", "cast"]


@st.composite
def programs(draw):
    """(dtype, [(op, operand picks, const value)]) over a pool of args and constants."""
    is_float = draw(st.booleans())
    specials, ops = (F_SPECIAL, F_OPS) if is_float else (I_SPECIAL, I_OPS)
    # j == -1: the second operand is the step's fresh constant (where identities fold)
    steps = draw(st.lists(st.tuples(st.sampled_from(ops), st.integers(0, 99),
                                    st.one_of(st.just(-1), st.integers(0, 99)),
                                    st.sampled_from(specials), st.booleans()),
                          min_size=1, max_size=14))
    return (f32 if is_float else i32), steps


def _build(dtype, steps):
    shape = (2, 3)
    t = TensorType(shape, dtype)

    def build(b, x, y):
        pool = [x, y]
        for name, i, j, value, scalar in steps:
            if scalar:
                c = b("prim.const", value=value, shape=(), dtype=dtype)
                pool.append(b("prim.broadcast", c, shape=shape, dims=()))
            else:
                pool.append(b("prim.const", value=value, shape=shape, dtype=dtype))
            a, c = pool[i % (len(pool) - 1)], pool[j % len(pool)]
            if name in ("neg", "abs", "sqrt", "floor", "exp"):
                r = b(f"prim.{name}", a)
            elif name == "where":
                r = b("prim.where", b("prim.lt", a, c), a, pool[-1])
            elif name == "cast":
                other = i32 if dtype == f32 else f32
                r = b("prim.cast", b("prim.cast", a, dtype=other), dtype=dtype)
            elif name == "permute2":
                r = b("prim.permute", b("prim.permute", a, perm=(1, 0)), perm=(1, 0))
            elif name == "bcast":
                r = b("prim.broadcast", b("prim.reshape", b("prim.reduce_sum", a, axes=(0,)),
                                          shape=(1, 3)), shape=shape, dims=(0, 1))
            else:
                r = b(f"prim.{name}", a, c)
            pool.append(r)
        return pool[-1], pool[len(pool) // 2]

    return func(build, t, t)


def _bits(a):
    return a.view(np.uint32) if a.dtype == np.float32 else a


@settings(max_examples=50, deadline=None)
@given(programs(), st.integers(0, 2**32 - 1))
def test_simplify_never_changes_a_result_bit(program, seed):
    dtype, steps = program
    m = _build(dtype, steps)
    rng = np.random.default_rng(seed)
    if dtype == f32:
        args = [rng.choice(np.array(F_SPECIAL + [0.5, -3.25], np.float32), (2, 3))
                for _ in range(2)]
    else:
        args = [rng.choice(np.array(I_SPECIAL, np.int32), (2, 3)) for _ in range(2)]
    before = run(m, *args)
    simplified = Simplify().run(m)
    verify(simplified)
    after = run(simplified, *args)
    for x, y in zip(before, after):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(_bits(x), _bits(y))


def test_simplify_reaches_a_fixed_point():
    m = parse("""
        func @f(%x: tensor<3xf32>) -> (tensor<3xf32>) {
          %0 = prim.const {dtype = f32, shape = [3], value = 1.0} : tensor<3xf32>
          %1 = prim.const {dtype = f32, shape = [3], value = 1.0} : tensor<3xf32>
          %2 = prim.mul %0, %1 : tensor<3xf32>
          %3 = prim.mul %x, %2 : tensor<3xf32>
          %4 = prim.exp %3 : tensor<3xf32>
          %5 = prim.exp %x : tensor<3xf32>
          %6 = prim.sub %4, %5 : tensor<3xf32>
          return %6
        }""")
    once = str(Simplify().run(m))
    assert str(Simplify().run(parse(once))) == once
    filecheck(once, """
        CHECK: %0 = prim.exp %x
        CHECK-NEXT: %1 = prim.sub %0, %0
        CHECK-NEXT: return %1
    """)


@pytest.mark.parametrize("pipeline", ["fold", "cse", "dce", "simplify"])
def test_passes_keep_the_ir_valid_on_decomposed_graphs(pipeline):
    from lamina.passes.decompose import Decompose

    m = func(lambda b, x, w: b("tensor.softmax", b("tensor.relu", b("tensor.matmul", x, w)),
                               dim=1), TensorType((4, 3), f32), TensorType((3, 5), f32))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    d = Decompose().run(m)
    want = run(d, x, w)
    out = run_pipeline(str(d), pipeline)
    got = run(parse(out), x, w)
    np.testing.assert_array_equal(got[0], want[0])
