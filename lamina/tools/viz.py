"""``lamina viz``: draw a program as a graphviz graph (DOT, or SVG/PNG through ``dot``).

Ops are nodes, values are edges labelled with their shape and dtype; at the prim
stage each fusion group is a cluster holding its prims, at the loop stage each
kernel call is a node and the buffers between calls are the edges. The DOT text
is written by hand (no Python dependency); images need graphviz's ``dot``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lamina.ir.core import Graph, Op, Value
from lamina.tools.loader import UsageError

FORMATS = ("dot", "svg", "png")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("viz", help="draw FILE.py:NAME as a graph (dot/svg/png)",
                       description="Draw the program of FILE.py:NAME: ops as nodes, shapes "
                       "and dtypes on edges, fusion groups or kernels as clusters.")
    p.add_argument("target", metavar="FILE.py:NAME")
    p.add_argument("-o", "--output", required=True, help="graph.svg, graph.png or graph.dot")
    p.add_argument("--stage", choices=("tensor", "prim", "loop"), default="prim")
    p.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="an input like 64x784xf32 (repeat per argument)")
    p.set_defaults(run=run)


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _short(t: Any) -> str:
    """``tensor<2x64xf32>`` -> ``2x64xf32`` (the edge label)."""
    s = str(t)
    return s[s.index("<") + 1:-1] if "<" in s and s.endswith(">") else s


class _Dot:
    """Collects nodes and edges; values map to the node that produces them."""

    def __init__(self, graph: Graph, stage: str):
        self.graph, self.stage = graph, stage
        self.lines: list[str] = []
        self.producer: dict[int, str] = {}
        self.n = 0

    def node(self, label: str, indent: str = "  ", **attrs: str) -> str:
        name = f"n{self.n}"
        self.n += 1
        extra = "".join(f", {k}={_q(v)}" for k, v in attrs.items())
        self.lines.append(f"{indent}{name} [label={_q(label)}{extra}];")
        return name

    def edge(self, v: Value, dst: str) -> None:
        src = self.producer.get(id(v))
        if src is not None:
            self.lines.append(f"  {src} -> {dst} [label={_q(_short(v.type))}];")

    def args(self) -> None:
        for i, a in enumerate(self.graph.args):
            self.producer[id(a)] = self.node(f"%{a.hint or i}", shape="ellipse",
                                             style="filled", fillcolor="lightblue")

    def plain(self, op: Op) -> None:
        dst = self.node(op.name + _attrs(op))
        for v in op.operands:
            self.edge(v, dst)
        for r in op.results:
            self.producer[id(r)] = dst

    def fusion(self, op: Op, k: int) -> None:
        region = op.regions[0]
        self.lines.append(f"  subgraph cluster_{k} {{\n    label={_q(f'fusion {k}')};"
                          "\n    style=rounded; color=gray40;")
        inner: list[tuple[Op, str]] = []
        for inner_op in region.ops:
            if inner_op.name == "prim.yield":
                continue
            inner.append((inner_op, self.node(inner_op.name + _attrs(inner_op), "    ")))
        self.lines.append("  }")
        for a, outer in zip(region.args, op.operands):  # group args: outer value flows in
            self.producer[id(a)] = self.producer.get(id(outer), "")
        for inner_op, name in inner:
            for v in inner_op.operands:
                self.edge(v, name)
            for r in inner_op.results:
                self.producer[id(r)] = name
        yielded = region.ops[-1].operands if region.ops else []
        for r, y in zip(op.results, yielded):
            self.producer[id(r)] = self.producer.get(id(y), "")

    def call(self, op: Op, kernels: dict[str, Graph]) -> None:
        from lamina.runtime.bounds import written_args

        ref = op.attrs["kernel"]
        name = getattr(ref, "name", str(ref))
        g = kernels.get(name)
        writes = set(written_args(g)) if g is not None else set()
        dst = self.node(f"kernel @{name}", style="filled", fillcolor="khaki")
        for i, v in enumerate(op.operands):
            if i in writes:
                self.producer[id(v)] = dst
            else:
                self.edge(v, dst)

    def finish(self) -> str:
        out = self.node("return", shape="ellipse")
        for v in self.graph.returned:
            self.edge(v, out)
        head = [f"digraph {_q(self.graph.name)} {{", "  rankdir=TB;",
                f"  label={_q(f'@{self.graph.name} ({self.stage} stage)')};",
                '  node [shape=box, fontname="monospace"];',
                '  edge [fontname="monospace", fontsize=10];']
        return "\n".join(head + self.lines + ["}"]) + "\n"


def _attrs(op: Op) -> str:
    shown = [f"{k}={v}" for k, v in op.attrs.items() if k not in ("kernel",)]
    text = ", ".join(shown)
    return f"\n{{{text[:60]}}}" if text else ""


def to_dot(module: Any, stage: str) -> str:
    """DOT text for the (single) func of ``module`` at ``stage``."""
    funcs = [g for g in module.graphs if g.kind == "func"]
    kernels = {g.name: g for g in module.graphs if g.kind == "kernel"}
    d = _Dot(funcs[0], stage)
    d.args()
    k = 0
    for op in funcs[0].ops:
        if op.name == "return":
            continue
        if op.name == "prim.fusion":
            d.fusion(op, k)
            k += 1
        elif op.name == "loop.call":
            d.call(op, kernels)
        elif stage == "loop" and op.name != "loop.alloc":
            continue  # size arithmetic: not data flow
        elif op.name != "loop.alloc":
            d.plain(op)
    return d.finish()


def run(args: argparse.Namespace) -> int:
    from lamina.tools.ir import lower_target

    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"cannot write {out.name}: the output must end in .dot, .svg or .png")
    _, lowered, _ = lower_target(args.target, args.input)
    text = to_dot(getattr(lowered.stages, args.stage), args.stage)
    if fmt == "dot":
        out.write_text(text)
        print(f"wrote {out}")
        return 0
    dot = shutil.which("dot")
    if dot is None:
        alt = out.with_suffix(".dot")
        alt.write_text(text)
        print(f"wrote {alt}: graphviz's `dot` is not installed, so no {fmt.upper()} was drawn. "
              f"Install it (apt-get install graphviz) and run: dot -T{fmt} {alt} -o {out}",
              file=sys.stderr)
        return 0
    res = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=text.encode(),
                         capture_output=True)
    if res.returncode != 0:
        raise UsageError(f"dot failed: {res.stderr.decode(errors='replace').strip()[:200]}")
    print(f"wrote {out}")
    return 0
