"""The textual form of the IR; ``parser.py`` reads it back to an identical print.

Every op prints in one generic form::

    %0, %1 = dialect.op %a, %b {key = value} : type0, type1 (%i: index) { ... }

Results are numbered in order; arguments keep their hints (deduplicated), so
parse(print(g)) prints exactly print(g).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lamina.ir.core import Block, Graph, Module, Op, SymbolRef, Value
from lamina.ir.types import MemRefType, ScalarType, TensorType, VectorType


def format_attr(v: Any) -> str:
    """One attribute value as text."""
    if v is None:
        return "?"  # a size known only at run time, as in types
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, (ScalarType, TensorType, MemRefType, VectorType, SymbolRef)):
        return str(v)
    raise TypeError(f"cannot print attribute value {v!r} of type {type(v).__name__}")


class _Namer:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def arg(self, v: Value, fallback: str) -> str:
        # Only characters the parser accepts in a value name; all digits would clash with results.
        hint = re.sub(r"[^A-Za-z0-9_.$-]", "_", v.hint or "")
        base = hint if hint and not hint.isdigit() else fallback
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        self.names[id(v)] = name
        return "%" + name

    def result(self, v: Value) -> str:
        name = str(self.counter)
        self.counter += 1
        self.names[id(v)] = name
        return "%" + name

    def __getitem__(self, v: Value) -> str:
        try:
            return "%" + self.names[id(v)]
        except KeyError:
            return f"%<undefined {v.type}>"


class Printer:
    def __init__(self, locs: bool = False):
        self.locs = locs
        self.namer = _Namer()
        self.lines: list[str] = []

    def graph(self, g: Graph) -> None:
        args = ", ".join(
            f"{self.namer.arg(a, f'arg{i}')}: {a.type}" for i, a in enumerate(g.args)
        )
        head = f"{g.kind} @{g.name}({args})"
        if g.kind == "func":
            head += " -> (" + ", ".join(str(t) for t in g.result_types) + ")"
        self.lines.append(head + " {")
        self.block_ops(g.body, 1)
        self.lines.append("}")

    def block_ops(self, block: Block, depth: int) -> None:
        for op in block.ops:
            self.op(op, depth)

    def op(self, op: Op, depth: int) -> None:
        pad = "  " * depth
        text = ""
        if op.results:
            text = ", ".join(self.namer.result(r) for r in op.results) + " = "
        text += op.name
        if op.operands:
            text += " " + ", ".join(self.namer[v] for v in op.operands)
        if op.attrs:
            items = ", ".join(f"{k} = {format_attr(op.attrs[k])}" for k in sorted(op.attrs))
            text += " {" + items + "}"
        if op.results:
            text += " : " + ", ".join(str(r.type) for r in op.results)
        loc = f" loc({json.dumps(op.loc.file)}:{op.loc.line})" if self.locs and op.loc else ""
        if not op.regions:
            self.lines.append(pad + text + loc)
            return
        for i, region in enumerate(op.regions):
            args = ", ".join(
                f"{self.namer.arg(a, f'i{depth}')}: {a.type}" for a in region.args
            )
            prefix = pad + text if i == 0 else pad + "}"
            self.lines.append(f"{prefix} ({args}) {{")
            self.block_ops(region, depth + 1)
        self.lines.append(pad + "}" + loc)


def print_graph(g: Graph, locs: bool = False) -> str:
    p = Printer(locs)
    p.graph(g)
    return "\n".join(p.lines)


def print_module(m: Module, locs: bool = False) -> str:
    return "\n\n".join(print_graph(g, locs) for g in m.graphs)
