"""Whole graphs round-trip: nested regions, argument names, locations, attributes, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.ir import (
    Builder,
    Graph,
    IRError,
    Loc,
    MemRefType,
    Module,
    SymbolRef,
    TensorType,
    VectorType,
    parse,
    parse_graph,
    print_graph,
    verify,
)
from lamina.ir.core import Block, Return
from lamina.ir.dialects import loop
from lamina.ir.dialects.prim import Fusion, FusionYield
from lamina.ir.parser import Lexer, Parser
from lamina.ir.printer import format_attr
from lamina.ir.types import SCALARS, f32, i1, index


def _round_trip(g: Graph, locs: bool = False) -> Graph:
    text = print_graph(g, locs=locs)
    back = parse_graph(text)
    assert print_graph(back, locs=locs) == text
    return back


# -- nested regions ---------------------------------------------------------------
def _row_sums() -> Graph:
    """out[i] = sum_j m[i, j]: a loop.for carrying a sum inside a loop.parallel."""
    g = Graph("row_sums", [MemRefType((None, None), f32), MemRefType((None,), f32)],
              ["m", "m"], kind="kernel")
    b = Builder(g.body)
    zero = b.raw(loop.SConst, [], [index], value=0).result
    one = b.raw(loop.SConst, [], [index], value=1).result
    rows = b("loop.dim", g.args[0], axis=0)
    cols = b("loop.dim", g.args[0], axis=1)
    outer = Block([index], ["i"])
    b.raw(loop.Parallel, [zero, rows, one], [], [outer])
    ob = Builder(outer, Loc("model.py", 3))
    init = ob.raw(loop.SConst, [], [f32], value=0.0).result
    inner = Block([index, f32], ["i", None])  # the outer index's hint again, and none
    acc_loop = ob.raw(loop.For, [zero, cols, one, init], [f32], [inner])
    ib = Builder(inner)
    x = ib.op(loop.Load, g.args[0], outer.args[0], inner.args[0]).result
    ib.raw(loop.Yield, [ib("loop.add", inner.args[1], x)], [])
    ob.op(loop.Store, acc_loop.results[0], g.args[1], outer.args[0])
    return g


def test_for_with_carried_values_inside_parallel_round_trips():
    g = _row_sums()
    verify(g)
    back = _round_trip(g)
    verify(back)
    par = next(op for op in back.walk() if op.name == "loop.parallel")
    fo = next(op for op in back.walk() if op.name == "loop.for")
    load = next(op for op in back.walk() if op.name == "loop.load")
    store = next(op for op in back.walk() if op.name == "loop.store")
    # the load reads row i of the outer loop and column j of the inner one
    assert load.operands[0] is back.args[0]
    assert load.operands[1] is par.regions[0].args[0]
    assert load.operands[2] is fo.regions[0].args[0]
    assert store.operands[0] is fo.results[0] and store.operands[1] is back.args[1]
    assert fo.parent is par.regions[0]


def test_nested_region_text_is_indented_and_names_are_unique():
    text = print_graph(_row_sums())
    assert text.splitlines()[0] == "kernel @row_sums(%m: memref<?x?xf32>, %m_1: memref<?xf32>) {"
    assert "  loop.parallel %0, %2, %1 (%i: index) {" in text
    assert "    %5 = loop.for %0, %3, %1, %4 : f32 (%i_1: index, %i2: f32) {" in text
    assert "      %6 = loop.load %m, %i, %i_1 : f32" in text
    assert "      loop.yield %7" in text
    assert "    loop.store %5, %m_1, %i" in text


def test_fusion_region_round_trips_and_verifies():
    t = TensorType((None, 4), f32)
    g = Graph("f", [t, t], ["x", "y"])
    body = Block([t, t], ["x", "y"])  # region args may reuse the outer hints
    bb = Builder(body)
    s = bb("prim.add", body.args[0], body.args[1])
    bb.raw(FusionYield, [bb("prim.exp", s)], [])
    fus = Builder(g.body).raw(Fusion, list(g.args), [t], [body], name="f_add_exp")
    g.body.append(Return([fus.results[0]], []))
    verify(g)
    back = _round_trip(g)
    verify(back)
    assert "(%x_1: tensor<?x4xf32>, %y_1: tensor<?x4xf32>) {" in print_graph(back)
    inner = back.ops[0].regions[0]
    assert inner.ops[0].operands == inner.args


# -- argument names ---------------------------------------------------------------
def test_argument_hints_are_deduplicated_and_sanitised():
    t = TensorType((2,), f32)
    hints = ["x", "x", "x_1", None, "arg3", "7", "", "a b", "x"]
    g = Graph("f", [t] * len(hints), hints)
    g.body.append(Return(list(g.args), []))
    head = print_graph(g).splitlines()[0]
    names = [part.split(":")[0].strip() for part in head[head.index("(") + 1:
                                                         head.index(")")].split(",")]
    assert names == ["%x", "%x_1", "%x_1_1", "%arg3", "%arg3_1", "%arg5", "%arg6", "%a_b",
                     "%x_2"]
    back = _round_trip(g)
    assert back.returned == back.args


def test_region_argument_without_hint_never_clashes_with_a_graph_argument():
    g = Graph("k", [index, index], ["i1", "i1"], kind="kernel")
    body = Block([index], [None])
    Builder(g.body).raw(loop.For, list(g.args) + [g.args[0]], [], [body])
    Builder(body)("loop.add", body.args[0], g.args[0])
    verify(g)
    text = print_graph(g)
    assert "(%i1_2: index)" in text
    back = _round_trip(g)
    add = back.ops[0].regions[0].ops[0]
    assert add.operands == [back.ops[0].regions[0].args[0], back.args[0]]


# -- locations ----------------------------------------------------------------------
@pytest.mark.parametrize("file", ["model.py", "/home/u/my model.py", 'we"ird\\path.py',
                                  "ünïcode.py", "C:\\x\\y.py"])
def test_locations_print_and_parse(file: str):
    g = _row_sums()
    for n, op in enumerate(g.walk()):
        op.loc = Loc(file, n + 1)
    text = print_graph(g, locs=True)
    assert text.count(" loc(") == sum(1 for _ in g.walk())
    back = _round_trip(g, locs=True)
    assert [op.loc for op in back.walk()] == [op.loc for op in g.walk()]
    assert print_graph(back) == print_graph(g)  # locations are optional in the text
    assert " loc(" not in print_graph(back)


def test_location_after_a_region_belongs_to_the_region_op():
    text = "\n".join([
        "kernel @k(%n: index) {",
        '  loop.parallel %n, %n, %n (%i: index) {',
        '    %0 = loop.add %i, %i : index loc("a.py":2)',
        '  } loc("a.py":1)',
        "}",
    ])
    g = parse_graph(text)
    par = g.ops[0]
    assert par.loc == Loc("a.py", 1)
    assert par.regions[0].ops[0].loc == Loc("a.py", 2)
    assert print_graph(g, locs=True) == text


def test_errors_name_the_location():
    text = ('func @f(%x: tensor<4xf32>) -> () {\n'
            '  %0 = prim.add %x, %x : tensor<4xi32> loc("net.py":42)\n  return\n}')
    with pytest.raises(IRError, match=r"prim\.add at net\.py:42: result types"):
        verify(parse(text))


# -- attributes ----------------------------------------------------------------------
ATTRS: list[tuple[Any, str]] = [
    (0, "0"), (7, "7"), (-3, "-3"), (2**70, str(2**70)), (-(2**63), str(-(2**63))),
    (1.5, "1.5"), (-0.25, "-0.25"), (0.0, "0.0"), (-0.0, "-0.0"), (1e-30, "1e-30"),
    (-1e-30, "-1e-30"), (1e300, "1e+300"), (5e-324, "5e-324"), (2.0, "2.0"),
    (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"),
    (True, "true"), (False, "false"),
    ("", '""'), ("plain", '"plain"'), ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("line\nbreak\ttab", r'"line\nbreak\ttab"'), ("ünï", r'"\u00fcn\u00ef"'),
    ("} ] , = : // not a comment", '"} ] , = : // not a comment"'),
    ((), "[]"), ((1, 2, 3), "[1, 2, 3]"), ((1, (2, (3, ())), "s"), '[1, [2, [3, []]], "s"]'),
    ((None, 4), "[?, 4]"), ((1.5, -math.inf, True), "[1.5, -inf, true]"),
    (f32, "f32"), (SCALARS["index"], "index"), (TensorType((None, 3), f32), "tensor<?x3xf32>"),
    (MemRefType((4, None), i1, (None, 1)), "memref<4x?xi1, strided<[?, 1]>>"),
    (VectorType(16, SCALARS["bf16"]), "vector<16xbf16>"),
    (SymbolRef("k0"), "@k0"), ((SymbolRef("a.b"), f32), "[@a.b, f32]"),
]


def _parse_attr(text: str) -> Any:
    p = Parser(Lexer(text))
    v = p.parse_attr()
    p.expect_end()
    return v


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same Python type, NaN equal to NaN and -0.0 distinct from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                     math.copysign(1, b))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("value,text", ATTRS, ids=[t for _, t in ATTRS])
def test_attribute_prints_and_parses(value: Any, text: str):
    assert format_attr(value) == text
    assert _same(_parse_attr(text), value)


def test_every_attribute_kind_on_one_op_round_trips():
    attrs = {f"a{i:02d}": v for i, (v, _) in enumerate(ATTRS)}
    t = TensorType((), f32)
    g = Graph("f", [t], ["x"])
    g.body.append(Return([g.args[0]], [], attrs))
    back = _round_trip(g)
    got = back.ops[0].attrs
    assert sorted(got) == sorted(attrs)
    assert all(_same(got[k], attrs[k]) for k in attrs)


def test_lists_print_with_lists_and_tuples_alike():
    assert format_attr([1, [2, 3]]) == "[1, [2, 3]]"
    assert _parse_attr("[1, [2, 3]]") == (1, (2, 3))


def test_unprintable_attribute_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot print attribute value"):
        format_attr({"a": 1})


_scalar_types = st.sampled_from(sorted(SCALARS.values(), key=str))
_leaves = st.one_of(
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(),
    st.none(), _scalar_types,
    st.builds(TensorType, st.tuples(st.none() | st.integers(0, 9)), _scalar_types),
    st.from_regex(r"[A-Za-z0-9_.$-]+", fullmatch=True).map(SymbolRef),
)
_attr_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4).map(tuple),
                            max_leaves=12)


@given(_attr_values)
def test_random_attributes_round_trip(value: Any):
    text = format_attr(value)
    assert _same(_parse_attr(text), value)
    assert format_attr(_parse_attr(text)) == text


# -- modules and parse errors ----------------------------------------------------------
def test_module_of_several_graphs_round_trips_and_rejects_duplicates():
    text = ("kernel @k(%a: memref<4xf32>) {\n}\n\n"
            "func @f(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {\n  return %x, %x\n}")
    m = parse(text)
    assert [g.name for g in m.graphs] == ["k", "f"] and [g.kind for g in m.graphs] == [
        "kernel", "func"]
    assert str(m) == text
    with pytest.raises(IRError, match="already has a graph named @k"):
        parse(text + "\n\n" + text)
    with pytest.raises(IRError, match="expected one graph, found 2"):
        parse_graph(text)
    with pytest.raises(IRError, match="already has a graph named @k"):
        Module([m.graphs[0]]).add(m.graphs[0])


def test_comments_are_ignored():
    text = ("// a kernel\nfunc @f(%x: tensor<4xf32>) -> (tensor<4xf32>) { // head\n"
            "  %0 = prim.neg %x : tensor<4xf32> // negate\n  return %0\n}\n")
    assert str(parse(text)) == ("func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n"
                                "  %0 = prim.neg %x : tensor<4xf32>\n  return %0\n}")


@pytest.mark.parametrize("body,message", [
    ("%0 = prim.nope %x : tensor<4xf32>", r"line 2: unknown op 'prim\.nope'"),
    ("%0 = prim.neg %y : tensor<4xf32>", r"line 2: use of undefined value %y"),
    ("%x = prim.neg %x : tensor<4xf32>", r"line 2: value %x defined twice"),
    ("%0, %1 = prim.neg %x : tensor<4xf32>", r"line 2: prim\.neg names 2 results but gives 1"),
    ("%0 = prim.neg %x : tensor<4xf33>", r"unknown element type 'f33'"),
    ("%0 = prim.neg %x # tensor<4xf32>", r"line 2: unexpected character '#'"),
    ("%0 = prim.neg %x {a = } : tensor<4xf32>", r"line 2: expected a type"),
])
def test_parse_errors_name_the_line(body: str, message: str):
    text = f"func @f(%x: tensor<4xf32>) -> () {{\n  {body}\n  return\n}}"
    with pytest.raises(IRError, match=message):
        parse(text)


def test_declared_result_types_must_match_the_return():
    with pytest.raises(IRError, match=r"@f: declared result types \['tensor<4xf64>'\]"):
        parse("func @f(%x: tensor<4xf32>) -> (tensor<4xf64>) {\n  return %x\n}")


def test_graph_kind_must_be_func_or_kernel():
    with pytest.raises(IRError, match="expected 'func' or 'kernel', found 'proc'"):
        parse("proc @f() {\n}")
    with pytest.raises(IRError, match="unknown graph kind"):
        Graph("f", [], kind="proc")


def test_terminator_without_operands_may_be_followed_by_an_op():
    text = ("func @f(%x: tensor<4xf32>) -> () {\n  return\n"
            "  %0 = prim.neg %x : tensor<4xf32>\n}")
    g = parse_graph(text)
    assert [op.name for op in g.ops] == ["return", "prim.neg"]
    assert g.ops[0].operands == []
    assert print_graph(g) == text
