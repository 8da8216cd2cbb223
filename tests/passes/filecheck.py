"""Test helpers for passes: IR text in -> pipeline -> text out, FileCheck-style CHECK lines,
and building small tensor-dialect funcs in Python."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from lamina.ir import Builder, Graph, Module, TensorType, Value, parse, verify
from lamina.ir.core import Return
from lamina.ir.types import Type, f32
from lamina.passes import PassManager, parse_pipeline


def run_pipeline(text: str, pipeline: str) -> str:
    """Parse ``text``, run the textual ``pipeline`` (each pass verified), print the result."""
    module = parse(textwrap.dedent(text).strip())
    verify(module)
    return str(PassManager(parse_pipeline(pipeline)).run(module))


def check_ir(text: str, pipeline: str, expected: str) -> None:
    """The pipeline turns ``text`` into exactly ``expected`` (both dedented)."""
    got = run_pipeline(text, pipeline)
    want = textwrap.dedent(expected).strip()
    assert got == want, f"--- expected ---\n{want}\n--- got ---\n{got}"


def filecheck(output: str, checks: str) -> None:
    """A small FileCheck. ``CHECK:`` finds the text on a later line, ``CHECK-NEXT:`` on the
    next line, ``CHECK-SAME:`` further on the line of the previous match, ``CHECK-NOT:``
    must not occur between the previous and the next match, and ``CHECK-COUNT-n:`` finds
    the text on n later lines (in order, not necessarily adjacent)."""
    lines = output.splitlines()
    line, col = -1, 0  # the previous match: its line and the column just after it
    pending_not: list[str] = []
    for raw in textwrap.dedent(checks).strip().splitlines():
        kind, _, pattern = raw.strip().partition(":")
        pattern = pattern.strip()
        if not kind:
            continue
        if kind == "CHECK-NOT":
            pending_not.append(pattern)
            continue
        count = int(kind.rsplit("-", 1)[1]) if kind.startswith("CHECK-COUNT-") else 1
        for _ in range(count):
            if kind == "CHECK-SAME":
                at = lines[line].find(pattern, col) if line >= 0 else -1
                if at < 0:
                    _fail(f"CHECK-SAME: {pattern!r} not further on line {line + 1}", output)
                _no_forbidden([lines[line][col:at]], pending_not, output)
                col = at + len(pattern)
            elif kind == "CHECK-NEXT":
                nxt = line + 1
                if nxt >= len(lines) or pattern not in lines[nxt]:
                    found = lines[nxt] if nxt < len(lines) else "<end of output>"
                    _fail(f"CHECK-NEXT: {pattern!r} not on the next line, found {found!r}",
                          output)
                _no_forbidden([lines[line][col:]] if line >= 0 else [], pending_not, output)
                line, col = nxt, lines[nxt].index(pattern) + len(pattern)
            elif kind in ("CHECK", "CHECK-LABEL") or kind.startswith("CHECK-COUNT-"):
                start = line + 1
                nxt = next((i for i in range(start, len(lines)) if pattern in lines[i]), -1)
                if nxt < 0:
                    _fail(f"{kind}: {pattern!r} not found after line {line + 1}", output)
                _no_forbidden(lines[start:nxt], pending_not, output)
                line, col = nxt, lines[nxt].index(pattern) + len(pattern)
            else:
                raise ValueError(f"unknown check directive {kind!r}")
            pending_not = []
    _no_forbidden(lines[line + 1:], pending_not, output)


def _fail(message: str, output: str) -> None:
    raise AssertionError(f"{message}\n--- output ---\n{output}")


def _no_forbidden(lines: list[str], patterns: list[str], output: str) -> None:
    for p in patterns:
        for line in lines:
            if p in line:
                _fail(f"CHECK-NOT: {p!r} found in {line!r}", output)


def func(build: Callable[..., Value | Sequence[Value]], *arg_types: Type,
         name: str = "f") -> Module:
    """A verified one-func module: ``build(builder, *args)`` returns its result(s)."""
    g = Graph(name, list(arg_types), [f"a{i}" for i in range(len(arg_types))])
    out = build(Builder(g.body), *g.args)
    outs = [out] if isinstance(out, Value) else list(out)
    g.body.append(Return(outs, []))
    m = Module([g])
    verify(m)
    return m


# -- random tensor programs (fusion and pipeline properties) ------------------------------
def _t(*shape: int) -> TensorType:
    return TensorType(tuple(shape), f32)


MAIN = (4, 3)
PROGRAM_OPS = ["unary", "binary", "reduce", "matmul", "softmax", "where", "relu"]


@st.composite
def program_steps(draw):
    """Steps for ``random_program``, and which extra value it returns."""
    step = st.tuples(st.sampled_from(PROGRAM_OPS), st.integers(0, 99), st.integers(0, 99),
                     st.integers(0, 3))
    return draw(st.lists(step, min_size=1, max_size=12)), draw(st.integers(0, 99))


def random_program(steps, extra_out):
    """A tensor-dialect func mixing elementwise ops, broadcasts, reductions (keepdim or not),
    matmul, softmax and where over args x, y: MAIN, w: 3x3, v: 3."""

    def build(b, x, y, w, v):
        mains = [x, y]  # values of shape MAIN
        others = [v]  # values that broadcast against MAIN
        for name, i, j, k in steps:
            a, c = mains[i % len(mains)], mains[j % len(mains)]
            if name == "unary":
                r = b(("tensor.exp", "tensor.tanh", "tensor.neg", "tensor.abs")[k],
                      b("tensor.tanh", a))
            elif name == "binary":
                other = (c, others[j % len(others)])[k % 2]
                r = b(("tensor.add", "tensor.mul", "tensor.sub", "tensor.maximum")[k], a, other)
            elif name == "reduce":
                fn = ("tensor.sum", "tensor.amax", "tensor.mean", "tensor.amin")[k]
                red = b(fn, a, dims=(k % 2,), keepdim=k < 2)
                if k == 3:  # (4,) does not broadcast against MAIN, (4, 1) does
                    red = b("tensor.reshape", red, shape=(4, 1))
                others.append(red)
                r = b("tensor.add" if k < 2 else "tensor.mul", a, red)
            elif name == "matmul":
                r = b("tensor.matmul", a, w)
            elif name == "softmax":
                r = b("tensor.softmax", a, dim=k % 2)
            elif name == "where":
                r = b("tensor.where", b("tensor.lt", a, c), a, others[k % len(others)])
            else:
                r = b("tensor.relu", b("tensor.sub", a, c))
            mains.append(r)
        pool = mains + others
        return mains[-1], pool[extra_out % len(pool)]

    return func(build, _t(*MAIN), _t(*MAIN), _t(3, 3), _t(3))
