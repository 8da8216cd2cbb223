"""Small utilities shared by the passes: what kind of primitive an op is, and cloning.

Values keep no use lists (see ``lamina.ir.core``): passes either build new
graphs (cloning what they keep) or rewrite in place by forward substitution
(``simplify``), both in one walk since definitions precede uses.
"""

from __future__ import annotations

from lamina.ir import Block, Builder, Graph, Module, Op, Value
from lamina.ir.core import Return
from lamina.ir.dialects.prim import Fusion, FusionYield

# primitives whose result at an index is computed from operands at other indices
MOVEMENT = frozenset({"prim.broadcast", "prim.permute", "prim.reshape", "prim.slice", "prim.pad",
                      "prim.concat"})
SOURCES = frozenset({"prim.const", "prim.iota"})


def is_elementwise(op: Op) -> bool:
    """An elementwise function of equal-shaped operands (unary, binary, compare, where, cast)."""
    return op.has("elementwise")


def is_elementwise_like(op: Op) -> bool:
    """What an elementwise fusion group may hold: functions, sources and movement (any prim
    with the ``movement`` trait: its lowering computes it at an index, e.g. ``gather``)."""
    return (op.has("elementwise") or op.has("movement") or op.name in MOVEMENT
            or op.name in SOURCES)


def is_opaque(op: Op) -> bool:
    """A prim with a kernel of its own (a scan, sort, scatter): a group of its own."""
    return op.has("opaque")


def is_core(op: Op) -> bool:
    """A reduction or contraction: the one loop-carrying op a fusion group may hold."""
    return op.has("reduction") or op.has("contraction")


def is_removable(op: Op) -> bool:
    """Pure, not a terminator, and nothing inside it has effects: safe to drop when unused."""
    if not op.has("pure") or op.has("terminator"):
        return False
    return all(o.has("pure") or o.has("terminator") for r in op.regions for o in r.walk())


def clone_op(op: Op, vmap: dict[Value, Value], block: Block) -> Op:
    """Append a copy of ``op`` (regions included) to ``block``, mapping operands via ``vmap``.

    ``vmap`` gains the mapping of the copy's results and nested block arguments.
    """
    regions = []
    for r in op.regions:
        nb = Block([a.type for a in r.args], [a.hint for a in r.args])
        for old, new in zip(r.args, nb.args):
            vmap[old] = new
        for inner in r.ops:
            clone_op(inner, vmap, nb)
        regions.append(nb)
    new = type(op)([vmap.get(v, v) for v in op.operands], [r.type for r in op.results],
                   dict(op.attrs), regions, loc=op.loc)
    for old, res in zip(op.results, new.results):
        vmap[old] = res
    return block.append(new)


def new_graph_like(g: Graph) -> tuple[Graph, dict[Value, Value]]:
    """An empty graph with ``g``'s name, kind, arguments and attributes, and the arg mapping."""
    ng = Graph(g.name, [a.type for a in g.args], [a.hint for a in g.args], g.kind)
    ng.attrs = dict(g.attrs)
    return ng, dict(zip(g.args, ng.args))


def clone_graph(g: Graph) -> Graph:
    ng, vmap = new_graph_like(g)
    for op in g.ops:
        clone_op(op, vmap, ng.body)
    return ng


def clone_module(m: Module) -> Module:
    """A deep copy: passes may then edit it in place without touching ``m``."""
    return Module([clone_graph(g) for g in m.graphs])


def returned(g: Graph) -> Return | None:
    ops = g.ops
    return ops[-1] if ops and isinstance(ops[-1], Return) else None


def copy_group(b: Builder, v: Value) -> Value:
    """A fusion group yielding its own argument: a copy kernel into a fresh buffer."""
    body = Block([v.type], ["x"])
    body.append(FusionYield([body.args[0]], []))
    return b.raw(Fusion, [v], [v.type], [body], name="copy").result
