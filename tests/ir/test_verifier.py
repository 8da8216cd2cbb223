"""The verifier rejects broken IR with an IRError naming the op and what is wrong."""

from __future__ import annotations

import re

import pytest

from lamina.ir import Builder, Graph, IRError, Loc, Module, TensorType, parse, verify
from lamina.ir.core import Block, Return
from lamina.ir.dialects import loop, prim
from lamina.ir.types import f32, index


def _func(body: str, args: str = "%x: tensor<4xf32>, %y: tensor<4xf32>") -> str:
    lines = "\n".join("  " + line for line in body.strip().splitlines())
    return f"func @f({args}) -> () {{\n{lines}\n  return\n}}"


def _fails(text: str, message: str) -> None:
    m = parse(text)
    with pytest.raises(IRError, match=message):
        verify(m)


@pytest.mark.parametrize("body,message", [
    # arity, attributes, regions
    ("%0 = prim.add %x : tensor<4xf32>", r"^prim\.add: expected 2 operands, got 1$"),
    ("%0 = prim.neg %x, %y : tensor<4xf32>", r"^prim\.neg: expected 1 operands, got 2$"),
    ("%0 = prim.reduce_sum %x : tensor<f32>", r"^prim\.reduce_sum: missing attribute\(s\) axes$"),
    ("%0 = prim.slice %x {start = [0]} : tensor<4xf32>",
     r"^prim\.slice: missing attribute\(s\) stop, step$"),
    ("%0 = prim.add %x, %y {fast = true, zeta = 1} : tensor<4xf32>",
     r"^prim\.add: unknown attribute\(s\) fast, zeta$"),
    ('%0 = prim.fusion %x {name = "k"} : tensor<4xf32>',
     r"^prim\.fusion: expected 1 regions, got 0$"),
    # result types against the type rule
    ("%0 = prim.add %x, %y : tensor<4xf64>",
     r"^prim\.add: result types tensor<4xf64> do not match inferred tensor<4xf32>$"),
    ("%0 = prim.add %x, %y : tensor<?xf32>",
     r"result types tensor<\?xf32> do not match inferred tensor<4xf32>"),
    ("%0 = prim.eq %x, %y : tensor<4xf32>", r"do not match inferred tensor<4xi1>"),
    ("%0, %1 = prim.neg %x : tensor<4xf32>, tensor<4xf32>",
     r"result types tensor<4xf32>, tensor<4xf32> do not match inferred tensor<4xf32>$"),
    ("prim.neg %x", r"result types \(\) do not match inferred tensor<4xf32>"),
    # attributes of the wrong kind
    ("%0 = prim.slice %x {start = 0, step = 1, stop = 2} : tensor<2xf32>",
     r"^prim\.slice: malformed operands or attributes \{start = 0, step = 1, stop = 2\}"),
    ("%0 = prim.reduce_sum %x {axes = 0} : tensor<f32>",
     r"prim\.reduce_sum: axes must be a list of ints, got 0"),
    ("%0 = prim.cast %x {dtype = \"f32\"} : tensor<4xf32>",
     r"prim\.cast: dtype must be an element type, got 'f32'"),
    ("%0 = prim.cast %x {dtype = index} : tensor<4xindex>",
     r"prim\.cast: dtype must be an element type"),
    ("%0 = prim.const {dtype = f32, shape = [2], value = \"one\"} : tensor<2xf32>",
     r"prim\.const: value must be a number, got 'one'"),
    ("%0 = prim.const {dtype = f32, shape = [-1], value = 1} : tensor<2xf32>",
     r"prim\.const: shape must be a list of sizes >= 0, got \(-1,\)"),
])
def test_op_level_errors(body: str, message: str):
    _fails(_func(body), message)


@pytest.mark.parametrize("body,message", [
    ("%0 = prim.add %x, %z : tensor<4xf32>",
     r"prim\.add: operand shapes differ: \[\[4\], \[5\]\]"),
    ("%0 = prim.where %c, %x, %z : tensor<4xf32>", r"prim\.where: operand shapes differ"),
    ("%0 = prim.add %x, %m : tensor<4xf32>",
     r"prim\.add: operand ranks differ: \[\[4\], \[2, 3\]\]"),
    ("%0 = prim.add %x, %i : tensor<4xf32>", r"prim\.add: operand dtypes differ: f32 and i32"),
    ("%0 = prim.reshape %m {shape = [4]} : tensor<4xf32>",
     r"prim\.reshape: cannot reshape \[2, 3\] \(6 elements\) to \[4\] \(4 elements\)"),
    ("%0 = prim.dot_general %m, %m {lhs_batch = [], lhs_contract = [1], rhs_batch = [], "
     "rhs_contract = [0]} : tensor<2x3xf32>",
     r"prim\.dot_general of \[2, 3\] and \[2, 3\]: operand shapes differ"),
    ("%0 = prim.concat %m, %z {axis = 0} : tensor<7xf32>",
     r"prim\.concat: operand ranks differ"),
    ("%0 = prim.slice %m {start = [0, 0], step = [1, 1], stop = [2, 4]} : tensor<2x4xf32>",
     r"prim\.slice: bad slice 0:4:1 of size 3"),
    ("%0 = prim.broadcast %m {dims = [0, 1], shape = [2, 4]} : tensor<2x4xf32>",
     r"prim\.broadcast: cannot broadcast \[2, 3\] to \[2, 4\]"),
    ("%0 = prim.permute %m {perm = [0, 0]} : tensor<2x2xf32>",
     r"prim\.permute: repeated axes \[0, 0\]"),
])
def test_shape_mismatches_name_the_op_and_the_shapes(body: str, message: str):
    args = ("%x: tensor<4xf32>, %z: tensor<5xf32>, %m: tensor<2x3xf32>, %c: tensor<4xi1>, "
            "%i: tensor<4xi32>")
    _fails(_func(body, args), message)


def test_errors_carry_the_location():
    text = _func('%0 = prim.add %x, %y : tensor<4xf64> loc("model.py":12)')
    _fails(text, r"^prim\.add at model\.py:12: result types")


def test_use_before_definition():
    t = TensorType((4,), f32)
    g = Graph("f", [t], ["x"])
    later = prim.UNARY_OPS["exp"].build(g.args[0])
    g.body.append(prim.UNARY_OPS["neg"].build(later.result))
    g.body.append(later)
    g.body.append(Return([g.ops[0].result], []))
    with pytest.raises(IRError, match=r"prim\.neg: operand Value\(\?: tensor<4xf32>\) is used "
                                      r"before it is defined"):
        verify(g)


def test_use_of_an_undefined_value_is_a_parse_error():
    with pytest.raises(IRError, match=r"line 2: use of undefined value %w"):
        parse(_func("%0 = prim.add %x, %w : tensor<4xf32>"))


def test_value_defined_in_a_region_is_not_visible_after_it():
    text = "\n".join([
        "kernel @k(%n: index) {",
        "  loop.parallel %n, %n, %n (%i: index) {",
        "    %0 = loop.add %i, %i : index",
        "  }",
        "  %1 = loop.add %0, %n : index",
        "}",
    ])
    _fails(text, r"^loop\.add: operand .* is used before it is defined")


def test_value_of_an_outer_block_is_visible_inside_a_region():
    verify(parse("\n".join([
        "kernel @k(%n: index) {",
        "  loop.parallel %n, %n, %n (%i: index) {",
        "    %0 = loop.add %i, %n : index",
        "  }",
        "}",
    ])))


def test_terminator_must_be_last():
    _fails("func @f(%x: tensor<4xf32>) -> () {\n  return\n  %0 = prim.neg %x : tensor<4xf32>\n"
           "  return\n}", r"^return: terminator must be the last op of its block$")
    text = "\n".join([
        "kernel @k(%n: index, %m: memref<?xindex>) {",
        "  loop.parallel %n, %n, %n (%i: index) {",
        "    loop.yield",
        "    loop.store %i, %m, %i",
        "  }",
        "}",
    ])
    _fails(text, r"^loop\.yield: terminator must be the last op")


def test_func_without_return():
    _fails("func @f(%x: tensor<4xf32>) -> () {\n  %0 = prim.neg %x : tensor<4xf32>\n}",
           r"^@f: a func must end with return$")
    _fails("func @empty() -> () {\n}", r"^@empty: a func must end with return$")


def test_kernel_needs_no_return():
    verify(parse("kernel @k(%m: memref<4xf32>) {\n}"))


def test_verify_module_checks_every_graph():
    good = "kernel @a(%m: memref<4xf32>) {\n}"
    bad = _func("%0 = prim.add %x : tensor<4xf32>").replace("@f", "@b")
    with pytest.raises(IRError, match=r"prim\.add: expected 2 operands"):
        verify(parse(good + "\n\n" + bad))
    verify(Module([parse(good).graphs[0]]))


# -- region ops ---------------------------------------------------------------------------
def _fusion(region_args: str, body: str, result: str = "tensor<4xf32>") -> str:
    inner = "\n".join("    " + line for line in body.strip().splitlines())
    return (f"func @f(%x: tensor<4xf32>) -> () {{\n"
            f'  %0 = prim.fusion %x {{name = "k"}} : {result} ({region_args}) {{\n{inner}\n  }}\n'
            f"  return\n}}")


@pytest.mark.parametrize("text,message", [
    (_fusion("%a: tensor<4xf64>", "prim.yield %a", "tensor<4xf64>"),
     r"^prim\.fusion: region arguments must have the operand types$"),
    (_fusion("%a: tensor<4xf32>", "%1 = prim.neg %a : tensor<4xf32>"),
     r"^prim\.fusion: region must end with prim\.yield$"),
    (_fusion("%a: tensor<4xf32>", "prim.yield %a", "tensor<4xf32>, tensor<4xf32>")
     .replace("%0 =", "%0, %9 ="),
     r"^prim\.fusion: prim\.yield types must match the results$"),
])
def test_fusion_rules(text: str, message: str):
    _fails(text, message)


def _kernel(body: str, args: str = "%n: index, %f: f32") -> str:
    return f"kernel @k({args}) {{\n" + "\n".join(
        "  " + line for line in body.strip().splitlines()) + "\n}"


@pytest.mark.parametrize("body,message", [
    ("loop.for %n, %f, %n (%i: index) {\n}", r"^loop\.for: bounds and step must be of type index$"),
    ("loop.for %n, %n, %n (%i: f32) {\n}", r"^loop\.for: body arguments must be \(index, carried"),
    ("%0 = loop.for %n, %n, %n, %f : f32 (%i: index, %a: f32) {\n}",
     r"^loop\.for: a loop carrying values must end with loop\.yield$"),
    ("%0 = loop.for %n, %n, %n, %f : f32 (%i: index, %a: f32) {\n  loop.yield %i\n}",
     r"^loop\.for: loop\.yield types must match the carried values$"),
    ("%0 = loop.for %n, %n, %n, %f : index (%i: index, %a: f32) {\n  loop.yield %a\n}",
     r"^loop\.for: results must match the carried values$"),
    ("%0 = loop.parallel %n, %n, %n, %f : f32 (%i: index, %a: f32) {\n  loop.yield %a\n}",
     r"^loop\.parallel: a parallel loop carries no values$"),
    ("loop.for %n, %n (%i: index) {\n}", r"^loop\.for: malformed operands or attributes"),
    ("%0 = loop.const {value = 1} : memref<4xf32>", r"^loop\.const: needs one scalar result type$"),
    ('%0 = loop.const {value = "1"} : f32', r"^loop\.const: value must be a number"),
    ("%0 = loop.alloc : memref<?xf32>",
     r"^loop\.alloc: needs 1 index operands for the \? sizes of memref<\?xf32>$"),
    ("%0 = loop.alloc %n : memref<4xf32, strided<[1]>>",
     r"^loop\.alloc: allocates contiguous buffers only$"),
    ("%0 = loop.add %n, %f : index", r"^loop\.add: operand types differ: index and f32$"),
    ("%0 = loop.exp %n : index", r"^loop\.exp: unsupported type index$"),
    ("%0 = loop.dim %n {axis = 0} : index", r"^loop\.dim: expected a memref, got index$"),
])
def test_loop_rules(body: str, message: str):
    _fails(_kernel(body), message)


@pytest.mark.parametrize("body,message", [
    ("%0 = loop.load %m, %n : f32", r"^loop\.load: 2-d memref needs 2 indices, got 1$"),
    ("%0 = loop.load %m, %n, %f : f32", r"^loop\.load: indices must be of type index$"),
    ("loop.store %n, %m, %n, %n", r"^loop\.store: value of type index stored into memref"),
    ("%0 = loop.vload %m, %n, %n {width = 8} : vector<8xf32>",
     r"^loop\.vload: needs a memref whose last axis has static stride 1"),
    ("%0 = loop.select %f, %f, %f : f32", r"^loop\.select: expected \(i1, T, T\)"),
])
def test_memory_access_rules(body: str, message: str):
    _fails(_kernel(body, "%n: index, %f: f32, %m: memref<?x?xf32, strided<[?, ?]>>"), message)


def test_builder_and_parser_build_the_same_op():
    t = TensorType((2, None), f32)
    g = Graph("f", [t, t], ["x", "y"])
    b = Builder(g.body, Loc("m.py", 1))
    s = b("prim.add", g.args[0], g.args[1])
    g.body.append(Return([b("prim.reduce_sum", s, axes=(1,))], []))
    verify(g)
    assert re.search(r"%1 = prim\.reduce_sum %0 \{axes = \[1\]\} : tensor<2xf32>", str(g))
    assert str(parse(str(g))) == str(g)


def test_loop_body_block_built_by_hand_verifies():
    g = Graph("k", [index], ["n"], kind="kernel")
    body = Block([index], ["i"])
    Builder(g.body).raw(loop.Parallel, [g.args[0]] * 3, [], [body])
    Builder(body)("loop.mul", body.args[0], g.args[0])
    verify(g)
