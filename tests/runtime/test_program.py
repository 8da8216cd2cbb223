"""Running loop-stage programs: dynamic allocations, several kernels, index arithmetic,
argument checks and programs the runtime refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.runtime import ArgumentMismatch, ProgramError, cache_stats, compile_program
from lamina.runtime.buffers import ALIGNMENT

from .llvm_kernels import binary_ir, iota_ir, module, total_ir

FMA = """
func @f(%x: memref<?x?xf32>, %y: memref<?x?xf32>) -> (memref<?x?xf32>, memref<?x?xf32>) {
  %n = loop.dim %x {axis = 0} : index
  %m = loop.dim %x {axis = 1} : index
  %t = loop.alloc %n, %m : memref<?x?xf32>
  loop.call %x, %y, %t {kernel = @mul2}
  %o = loop.alloc %n, %m : memref<?x?xf32>
  loop.call %t, %x, %o {kernel = @add2}
  return %o, %y
}
"""

IOTA = """
func @g(%x: memref<?xf32>) -> (memref<?xf32>, memref<?xf32>, memref<f32>) {
  %n = loop.dim %x {axis = 0} : index
  %c2 = loop.const {value = 2} : index
  %c3 = loop.const {value = 3} : index
  %a = loop.mul %n, %c2 : index
  %b = loop.add %a, %c3 : index
  %q = loop.div %b, %c2 : index
  %r = loop.rem %b, %c2 : index
  %s = loop.sub %q, %r : index
  %k = loop.max %s, %n : index
  %len = loop.min %k, %b : index
  %o = loop.alloc %len : memref<?xf32>
  loop.call %o {kernel = @iota}
  %sum = loop.alloc : memref<f32>
  loop.call %o, %sum {kernel = @total}
  return %o, %x, %sum
}
"""

SHARED = [HealthCheck.function_scoped_fixture]


@pytest.fixture
def fma(cache_dir, hand_emit):
    return compile_program(module(binary_ir("mul2", "mul", "f32", 2),
                                  binary_ir("add2", "add", "f32", 2), FMA))


@settings(max_examples=25, deadline=None, suppress_health_check=SHARED)
@given(shape=st.tuples(st.integers(0, 9), st.integers(0, 9)), seed=st.integers(0, 2**31))
def test_two_kernels_with_dynamic_allocs(fma, shape, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((2,) + shape).astype(np.float32)
    out, y_back = fma(x, y)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, x * y + x)
    assert y_back is y  # a returned argument comes back as is
    assert out.ctypes.data % ALIGNMENT == 0


def test_program_metadata(fma):
    assert fma.kernels == ("mul2", "add2")
    assert "define void @mul2" in fma.llvm_ir and "define i64 @add2__trips" in fma.llvm_ir
    assert "@f(" in repr(fma)


def test_program_compiles_through_the_cache_once(cache_dir, hand_emit):
    text = (binary_ir("mul2", "mul", "f32", 2), binary_ir("add2", "add", "f32", 2), FMA)
    p1, p2 = compile_program(module(*text)), compile_program(module(*text))
    assert cache_stats()["compiles"] == 1 and cache_stats()["memory_hits"] == 1
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(p1(x, x)[0], p2(x, x)[0])


@pytest.mark.parametrize("n", [0, 1, 4, 11])
def test_index_arithmetic_alloc_and_zero_d_result(cache_dir, hand_emit, n):
    p = compile_program(module(iota_ir("iota"), total_ir("total"), IOTA))
    x = np.zeros(n, np.float32)
    o, x_back, total = p(x)
    b = 2 * n + 3
    q, r = b // 2, b % 2
    length = min(max(q - r, n), b)
    np.testing.assert_array_equal(o, np.arange(length, dtype=np.float32))
    assert x_back is x
    assert total.shape == () and total == np.arange(length, dtype=np.float32).sum()


def test_argument_errors_name_function_and_argument(fma):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ArgumentMismatch, match=r"func @f: expected 2 buffers .*got 1"):
        fma(x)
    with pytest.raises(TypeError, match=r"func @f: argument 1 \(%y\).*dtype float64 is not "
                                        "float32"):
        fma(x, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"func @f: argument 0 \(%x\).*rank 1 is not 2"):
        fma(x[0], x)
    with pytest.raises(ArgumentMismatch, match=r"argument 1 \(%y\).*contiguous"):
        fma(x, np.zeros((3, 2), np.float32).T)
    # The program checks y against x through the kernels' bounds before anything runs.
    with pytest.raises(ArgumentMismatch, match=r"kernel @mul2: argument 1 .* size 2 on axis 1"):
        fma(x, np.zeros((2, 2), np.float32))


def test_static_argument_sizes_are_checked(cache_dir, hand_emit):
    text = FMA.replace("%x: memref<?x?xf32>", "%x: memref<2x3xf32>")
    p = compile_program(module(binary_ir("mul2", "mul", "f32", 2),
                               binary_ir("add2", "add", "f32", 2), text))
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(p(x, x)[0], x * x + x)
    with pytest.raises(ArgumentMismatch, match="size 4 on axis 1, expected 3"):
        p(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32))


def _prog(body: str, sig: str = "%x: memref<?xf32>", results: str = "") -> str:
    return f"func @p({sig}) -> ({results}) {{\n{body}\n  return\n}}"


def test_negative_size_and_division_by_zero(cache_dir, hand_emit):
    neg = _prog("  %n = loop.dim %x {axis = 0} : index\n"
                "  %c = loop.const {value = 5} : index\n"
                "  %s = loop.sub %n, %c : index\n"
                "  %o = loop.alloc %s : memref<?xf32>\n"
                "  loop.call %o {kernel = @iota}")
    p = compile_program(module(iota_ir("iota"), neg))
    p(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"loop.alloc: negative size in \(-2,\)"):
        p(np.zeros(3, np.float32))
    div = _prog("  %n = loop.dim %x {axis = 0} : index\n"
                "  %q = loop.div %n, %n : index\n"
                "  %o = loop.alloc %q : memref<?xf32>")
    with pytest.raises(ZeroDivisionError, match="loop.div"):
        compile_program(module(div))(np.zeros(0, np.float32))


@pytest.mark.parametrize("body, match", [
    ("  %v = loop.const {value = 1.5} : f32", "program constants must be integers"),
    ("  %n = loop.dim %x {axis = 0} : index\n  %v = loop.cast %n {dtype = i64} : i64",
     "a program may hold only"),
    ("  loop.call %x {kernel = @nope}", "the module has no kernel @nope"),
    ("  loop.call %x, %x {kernel = @iota}", "@iota takes 1 buffers, got 2"),
])
def test_programs_the_runtime_refuses(cache_dir, hand_emit, body, match):
    with pytest.raises(ProgramError, match=match):
        compile_program(module(iota_ir("iota"), _prog(body)))


def test_kernel_operand_types_must_fit(cache_dir, hand_emit):
    text = _prog("  loop.call %x {kernel = @iota}", sig="%x: memref<?xf64>")
    with pytest.raises(ProgramError, match=r"operand 0 of type memref<\?xf64> does not fit"):
        compile_program(module(iota_ir("iota"), text))


def test_choosing_among_several_funcs(cache_dir, hand_emit):
    two = module(iota_ir("iota"), _prog("", results="").replace("@p", "@a"),
                 _prog("  loop.call %x {kernel = @iota}").replace("@p", "@b"))
    with pytest.raises(ProgramError, match="2 funcs"):
        compile_program(two)
    with pytest.raises(ProgramError, match="no func @c"):
        compile_program(two, "c")
    x = np.zeros(4, np.float32)
    assert compile_program(two, "b")(x) == []
    np.testing.assert_array_equal(x, np.arange(4, dtype=np.float32))
