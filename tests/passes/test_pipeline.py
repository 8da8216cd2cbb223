"""pipeline.lower: the stages, their text, and numbers through all of them; the test helpers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.backends.interp import run, run_program
from lamina.ir import IRError, Loc, TensorType
from lamina.ir.dialects.prim import Fusion
from lamina.ir.types import f32, i64
from lamina.passes import PASSES, parse_pipeline
from lamina.passes.pipeline import Stages, lower, to_prim
from tests.passes.filecheck import MAIN, check_ir, filecheck, func, program_steps, random_program

DYN2 = TensorType((None, None), f32)


def T(*shape, dtype=f32):
    return TensorType(tuple(shape), dtype)


def test_every_pass_of_the_pipeline_is_registered():
    assert [p.name for p in parse_pipeline("decompose,simplify,fuse,lower-loops,prepare-loops")] \
        == ["decompose", "simplify", "fuse", "lower-loops", "prepare-loops"]
    with pytest.raises(ValueError, match="unknown pass 'fusee'"):
        parse_pipeline("fusee")
    assert {"dce", "cse", "fold"} <= set(PASSES)


def test_lower_keeps_every_stage_and_leaves_its_input_alone():
    m = func(lambda b, x, w: b("tensor.relu", b("tensor.matmul", x, w)), T(4, 3), T(3, 2))
    text = str(m)
    stages = lower(m)
    assert isinstance(stages, Stages)
    assert str(m) == text and stages.tensor is m
    assert all(isinstance(op, Fusion) for op in stages.prim.graphs[0].ops[:-1])
    kernels = [g.name for g in stages.loop.graphs if g.kind == "kernel"]
    assert kernels == ["k0"]
    assert stages.as_text("tensor") == text
    filecheck(stages.as_text("prim"), """
        CHECK: prim.fusion %a0, %a1 {name = "k0"}
        CHECK: prim.dot_general
        CHECK: prim.where
    """)
    filecheck(stages.as_text("loop"), """
        CHECK: kernel @k0(
        CHECK: func @f(
        CHECK: loop.call
        CHECK-SAME: {kernel = @k0}
    """)
    with pytest.raises(ValueError, match="unknown stage 'llvm'"):
        stages.as_text("llvm")


def test_stage_text_can_show_locations_and_names_carry_them():
    m = func(lambda b, x: b("tensor.exp", x), T(3))
    for op in m.graphs[0].ops:
        op.loc = Loc("/work/model.py", 12)
    stages = lower(m)
    assert 'name = "k0_model_py_12"' in stages.as_text("prim")
    assert 'loc("/work/model.py":12)' in stages.as_text("prim", locs=True)
    assert "kernel @k0_model_py_12(" in stages.as_text("loop")


def test_print_after_prints_the_named_passes(capsys):
    m = func(lambda b, x: b("tensor.neg", x), T(2))
    lower(m, print_after=["decompose", "lower-loops"])
    err = capsys.readouterr().err
    assert "IR after decompose" in err and "IR after lower-loops" in err
    assert "IR after fuse" not in err
    lower(m, print_after="all")
    err = capsys.readouterr().err
    for name in ("decompose", "simplify", "fuse", "lower-loops", "prepare-loops"):
        assert f"IR after {name} //" in err


def test_to_prim_verifies_its_input():
    m = func(lambda b, x: b("tensor.neg", x), T(2))
    m.graphs[0].ops[0].attrs["bogus"] = 1
    with pytest.raises(IRError, match="unknown attribute"):
        to_prim(m)


# -- numbers through every stage --------------------------------------------------------------
def _softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


CASES = {
    "relu": (lambda b, x: b("tensor.relu", x), [DYN2], lambda x: np.maximum(x, 0)),
    "softmax": (lambda b, x: b("tensor.softmax", x, dim=1), [T(5, 7)], _softmax),
    "linear": (lambda b, x, w, c: b("tensor.add", b("tensor.matmul", x, w), c),
               [T(4, 3), T(3, 6), T(6)], lambda x, w, c: x @ w + c),
    "mean_keepdim": (lambda b, x: b("tensor.mean", x, dims=(0,), keepdim=True), [T(6, 2)],
                     lambda x: x.mean(axis=0, keepdims=True)),
    "argmax": (lambda b, x: b("tensor.argmax", x, dim=1, keepdim=False), [T(3, 4)],
               lambda x: x.argmax(axis=1)),
    "copy_and_cat": (lambda b, x, y: [b("tensor.copy", x), b("tensor.cat", x, y, dim=0)],
                     [T(2, 3), T(1, 3)], lambda x, y: [x, np.concatenate([x, y])]),
    "int_sum": (lambda b, x: b("tensor.sum", x, dims=(), keepdim=False), [T(4, 5, dtype=i64)],
                lambda x: x.sum()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_numbers_agree_at_every_stage(name):
    build, types, ref = CASES[name]
    rng = np.random.default_rng(0)
    args = [rng.integers(-9, 9, t.shape).astype(np.int64) if t.dtype == i64 else
            rng.normal(size=tuple(3 if d is None else d for d in t.shape)).astype(np.float32)
            for t in types]
    stages = lower(func(build, *types))
    want = ref(*args)
    want = want if isinstance(want, list) else [want]
    prim_out = run(stages.prim, *args)
    loop_out = run_program(stages.loop, None, *args)
    for w, p, lo in zip(want, prim_out, loop_out):
        np.testing.assert_allclose(p, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(lo, p, rtol=1e-6, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(program_steps(), st.integers(0, 2**32 - 1))
def test_every_group_fuse_forms_lowers_and_computes_the_same(program, seed):
    steps, extra = program
    stages = lower(random_program(steps, extra))
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=s).astype(np.float32) for s in (MAIN, MAIN, (3, 3), (3,))]
    for p, lo in zip(run(stages.prim, *args), run_program(stages.loop, None, *args)):
        np.testing.assert_allclose(lo, p, rtol=1e-5, atol=1e-6)


def test_arg_layouts_reach_the_program():
    stages = lower(func(lambda b, x, y: b("tensor.add", x, y), DYN2, DYN2),
                   arg_layouts=[(0, 1), (None, None)])
    filecheck(stages.as_text("loop"), """
        CHECK: func @f(%a0: memref<?x?xf32, strided<[0, 1]>>, %a1: memref<?x?xf32, strided<[?, ?]>>)
    """)  # noqa: E501
    x = np.broadcast_to(np.arange(3, dtype=np.float32), (4, 3))
    y = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]  # strides (6, 2)
    np.testing.assert_array_equal(run_program(stages.loop, None, x, y)[0], x + y)


# -- the test helpers themselves -------------------------------------------------------------------
OUT = """func @f() {
  %0 = a.one
  %1 = a.two %0
  %2 = a.three %1, %0
  return
}"""


@pytest.mark.parametrize("checks", [
    "CHECK: a.one\nCHECK-NEXT: a.two\nCHECK-NEXT: a.three",
    "CHECK: a.two\nCHECK-SAME: %0\nCHECK-NOT: a.one\nCHECK: return",
    "CHECK-COUNT-3: = a.\nCHECK-NEXT: return",
    "CHECK: a.three %1\nCHECK-SAME: , %0",
    "CHECK: a.three\nCHECK-NOT: a.one",  # a.one only occurs before the match
])
def test_filecheck_accepts(checks):
    filecheck(OUT, checks)


@pytest.mark.parametrize("checks,msg", [
    ("CHECK: a.four", "not found"),
    ("CHECK: a.one\nCHECK-NEXT: a.three", "not on the next line"),
    ("CHECK: a.one\nCHECK-NOT: a.two\nCHECK: a.three", "CHECK-NOT: 'a.two'"),
    ("CHECK: a.two\nCHECK-NOT: return", "CHECK-NOT: 'return'"),
    ("CHECK: a.three %1\nCHECK-SAME: %1", "not further on line"),
    ("CHECK: a.three\nCHECK: a.one", "not found after line 4"),
    ("CHECK-COUNT-4: = a.", "not found"),
    ("CHECK-LATER: x", "unknown check directive"),
])
def test_filecheck_rejects(checks, msg):
    with pytest.raises((AssertionError, ValueError), match=msg):
        filecheck(OUT, checks)


def test_check_ir_compares_whole_texts():
    text = """
        func @f(%x: tensor<2xf32>) -> (tensor<2xf32>) {
          %0 = tensor.neg %x : tensor<2xf32>
          return %0
        }"""
    check_ir(text, "decompose", text.replace("tensor.neg", "prim.neg"))
    with pytest.raises(AssertionError, match="--- expected ---"):
        check_ir(text, "decompose", text)
