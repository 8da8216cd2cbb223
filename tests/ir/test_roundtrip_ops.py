"""Every registered op prints and parses back to the identical text, and verifies."""

from __future__ import annotations

import pytest

from lamina.ir import OPS, Loc, parse, print_module, verify
from tests.ir.op_examples import EXAMPLES


def test_every_registered_op_has_an_example():
    assert sorted(set(OPS) - set(EXAMPLES)) == [], "add an example to tests/ir/op_examples.py"
    assert sorted(set(EXAMPLES) - set(OPS)) == [], "example for an op that is not registered"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_op_round_trips(name: str):
    text = EXAMPLES[name]
    m = parse(text)
    verify(m)
    assert str(m) == text
    assert str(parse(str(m))) == text
    ops = [op for g in m.graphs for op in g.walk() if op.name == name]
    assert ops, f"example for {name} does not contain it"
    assert all(type(op) is OPS[name] for op in ops)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_op_round_trips_with_locations(name: str):
    m = parse(EXAMPLES[name])
    for n, op in enumerate(op for g in m.graphs for op in g.walk()):
        op.loc = Loc(f"dir/model {n}.py", 10 + n)
    text = print_module(m, locs=True)
    assert 'loc("dir/model 0.py":10)' in text
    back = parse(text)
    assert print_module(back, locs=True) == text
    assert str(back) == EXAMPLES[name]
    got = [op.loc for g in back.graphs for op in g.walk()]
    assert got == [op.loc for g in m.graphs for op in g.walk()]
