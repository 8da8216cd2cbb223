"""Checks that a graph obeys the rules of its ops; messages point at the op."""

from __future__ import annotations

from lamina.ir.core import Block, Graph, IRError, Module, Op, Return


def _infers(op: Op) -> bool:
    return type(op).infer.__func__ is not Op.infer.__func__  # type: ignore[attr-defined]


# What an op's type rule raises when an attribute has the wrong kind (an int where a
# list belongs, ...); the verifier reports it as an IRError naming the op.
_MALFORMED = (TypeError, ValueError, IndexError, KeyError, AttributeError)


def _attrs(op: Op) -> str:
    return "{" + ", ".join(f"{k} = {op.attrs[k]!r}" for k in sorted(op.attrs)) + "}"


def verify_op(op: Op) -> None:
    """Check one op's arity, attributes and types against its declaration."""
    cls = type(op)
    if cls.num_operands is not None and len(op.operands) != cls.num_operands:
        raise op.error(f"expected {cls.num_operands} operands, got {len(op.operands)}")
    missing = [a for a in cls.attributes if a not in op.attrs]
    if missing:
        raise op.error(f"missing attribute(s) {', '.join(missing)}")
    known = set(cls.attributes) | set(cls.optional_attributes)
    unknown = sorted(set(op.attrs) - known)
    if unknown:
        raise op.error(f"unknown attribute(s) {', '.join(unknown)}")
    if len(op.regions) != cls.num_regions:
        raise op.error(f"expected {cls.num_regions} regions, got {len(op.regions)}")
    if _infers(op):
        try:
            expected = cls.infer([v.type for v in op.operands], op.attrs)
        except IRError as e:
            message = str(e)  # type rules name the op themselves; do not repeat it
            raise op.error(message.removeprefix(f"{cls.name}: ")) from None
        except _MALFORMED as e:
            raise op.error(f"malformed operands or attributes {_attrs(op)} "
                           f"({type(e).__name__}: {e})") from None
        got = [r.type for r in op.results]
        if expected != got:
            raise op.error(
                f"result types {', '.join(map(str, got)) or '()'} do not match inferred "
                f"{', '.join(map(str, expected)) or '()'}"
            )
    try:
        op.verify_extra()
    except _MALFORMED as e:
        raise op.error(f"malformed operands or attributes {_attrs(op)} "
                       f"({type(e).__name__}: {e})") from None


def _verify_block(block: Block, visible: set[int]) -> None:
    visible = set(visible) | {id(a) for a in block.args}
    for i, op in enumerate(block.ops):
        for v in op.operands:
            if id(v) not in visible:
                raise op.error(f"operand {v} is used before it is defined")
        if op.has("terminator") and i != len(block.ops) - 1:
            raise op.error("terminator must be the last op of its block")
        verify_op(op)
        for r in op.regions:
            _verify_block(r, visible)
        visible |= {id(r) for r in op.results}


def verify(graph: Graph | Module) -> None:
    """Verify a graph or every graph of a module; raises IRError naming the op."""
    if isinstance(graph, Module):
        for g in graph.graphs:
            verify(g)
        return
    ops = graph.body.ops
    if graph.kind == "func" and (not ops or not isinstance(ops[-1], Return)):
        raise IRError(f"@{graph.name}: a func must end with return")
    _verify_block(graph.body, set())
