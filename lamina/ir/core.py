"""The IR core shared by every dialect: values, ops, blocks, graphs and modules.

An op class declares its name, operand count, attributes, regions and traits
as class attributes and its shape/dtype rule as ``infer``; the registry maps
op names to classes so the parser and the verifier find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

from lamina.ir.types import Type


class IRError(Exception):
    """An IR that breaks a rule: bad types, bad attributes, unknown ops."""


@dataclass(frozen=True)
class Loc:
    """The user's source line that created an op."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class SymbolRef:
    """A reference to a graph by name, printed ``@name``."""

    name: str

    def __str__(self) -> str:
        return f"@{self.name}"


class Value:
    """An SSA value: an op result or a block argument."""

    __slots__ = ("type", "hint", "owner", "index")

    def __init__(self, type: Type, hint: str | None = None, owner: Any = None, index: int = 0):
        self.type = type
        self.hint = hint
        self.owner = owner
        self.index = index

    def __repr__(self) -> str:
        return f"Value({self.hint or '?'}: {self.type})"


OPS: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op class known to the parser and verifier."""
    if cls.name in OPS:
        raise IRError(f"op {cls.name} registered twice")
    OPS[cls.name] = cls
    return cls


class Op:
    """One operation. Subclasses declare what the op is; instances are uses of it."""

    name: ClassVar[str] = ""
    num_operands: ClassVar[int | None] = None  # None: variadic
    attributes: ClassVar[tuple[str, ...]] = ()  # required attribute names
    optional_attributes: ClassVar[tuple[str, ...]] = ()
    num_regions: ClassVar[int] = 0
    traits: ClassVar[frozenset[str]] = frozenset()

    __slots__ = ("operands", "results", "attrs", "regions", "loc", "parent")

    def __init__(
        self,
        operands: Sequence[Value],
        result_types: Sequence[Type],
        attrs: dict[str, Any] | None = None,
        regions: Sequence[Block] = (),
        loc: Loc | None = None,
    ):
        self.operands = list(operands)
        self.results = [Value(t, None, self, i) for i, t in enumerate(result_types)]
        self.attrs = dict(attrs or {})
        self.regions = list(regions)
        for r in self.regions:
            r.parent = self
        self.loc = loc
        self.parent: Block | None = None

    # -- declared behaviour -------------------------------------------------
    @classmethod
    def infer(cls, operand_types: list[Type], attrs: dict[str, Any]) -> list[Type]:
        """The result types for these operands and attributes (the shape/dtype rule)."""
        raise IRError(f"{cls.name}: result types must be given explicitly")

    def verify_extra(self) -> None:
        """Op-specific checks beyond arity, attributes and inferred types."""

    @classmethod
    def build(cls, *operands: Value, loc: Loc | None = None, **attrs: Any) -> Op:
        """Create the op, inferring result types from the operands."""
        types = cls.infer([v.type for v in operands], attrs)
        return cls(operands, types, attrs, loc=loc)

    # -- conveniences --------------------------------------------------------
    @property
    def result(self) -> Value:
        if len(self.results) != 1:
            raise IRError(f"{self.name} has {len(self.results)} results, not 1")
        return self.results[0]

    def has(self, trait: str) -> bool:
        return trait in self.traits

    def where(self) -> str:
        return f"{self.name}" + (f" at {self.loc}" if self.loc else "")

    def error(self, message: str) -> IRError:
        return IRError(f"{self.where()}: {message}")

    def walk(self) -> Iterator[Op]:
        """This op and every op nested in its regions, in order."""
        yield self
        for r in self.regions:
            yield from r.walk()

    def __repr__(self) -> str:
        return f"<{self.name}>"


class Block:
    """A list of ops with arguments: a function body or the body of a loop."""

    __slots__ = ("args", "ops", "parent")

    def __init__(self, arg_types: Sequence[Type] = (), hints: Sequence[str | None] = ()):
        hints = list(hints) + [None] * (len(arg_types) - len(hints))
        self.args = [Value(t, h, self, i) for i, (t, h) in enumerate(zip(arg_types, hints))]
        self.ops: list[Op] = []
        self.parent: Op | Graph | None = None

    def append(self, op: Op) -> Op:
        op.parent = self
        self.ops.append(op)
        return op

    def walk(self) -> Iterator[Op]:
        for op in self.ops:
            yield from op.walk()


@register
class Return(Op):
    """Ends a graph and names its results."""

    name = "return"
    traits = frozenset({"terminator"})

    @classmethod
    def infer(cls, operand_types, attrs):
        return []


class Graph:
    """A function: ``func`` (tensor/prim/program level) or ``kernel`` (loop level)."""

    def __init__(self, name: str, arg_types: Sequence[Type], hints: Sequence[str | None] = (),
                 kind: str = "func"):
        if kind not in ("func", "kernel"):
            raise IRError(f"unknown graph kind {kind!r}")
        self.name = name
        self.kind = kind
        self.body = Block(arg_types, hints)
        self.body.parent = self
        self.attrs: dict[str, Any] = {}

    @property
    def args(self) -> list[Value]:
        return self.body.args

    @property
    def ops(self) -> list[Op]:
        return self.body.ops

    @property
    def returned(self) -> list[Value]:
        ops = self.body.ops
        return list(ops[-1].operands) if ops and isinstance(ops[-1], Return) else []

    @property
    def result_types(self) -> list[Type]:
        return [v.type for v in self.returned]

    def walk(self) -> Iterator[Op]:
        return self.body.walk()

    def __str__(self) -> str:
        from lamina.ir.printer import print_graph

        return print_graph(self)


class Module:
    """An ordered collection of graphs (a program and its kernels)."""

    def __init__(self, graphs: Sequence[Graph] = ()):
        self.graphs: list[Graph] = list(graphs)

    def get(self, name: str) -> Graph:
        for g in self.graphs:
            if g.name == name:
                return g
        raise KeyError(name)

    def add(self, graph: Graph) -> Graph:
        if any(g.name == graph.name for g in self.graphs):
            raise IRError(f"module already has a graph named @{graph.name}")
        self.graphs.append(graph)
        return graph

    def __str__(self) -> str:
        from lamina.ir.printer import print_module

        return print_module(self)


class Builder:
    """Appends ops to a block; the frontend, passes and lowerings build IR with it."""

    def __init__(self, block: Block, loc: Loc | None = None):
        self.block = block
        self.loc = loc

    def op(self, cls: type[Op], *operands: Value, **attrs: Any) -> Op:
        op = cls.build(*operands, loc=self.loc, **attrs)
        return self.block.append(op)

    def __call__(self, name: str, *operands: Value, **attrs: Any) -> Value:
        """Build op ``name`` and return its single result."""
        return self.op(OPS[name], *operands, **attrs).result

    def raw(self, cls: type[Op], operands: Sequence[Value], result_types: Sequence[Type],
            regions: Sequence[Block] = (), **attrs: Any) -> Op:
        """Append an op with explicit result types (ops without a type rule)."""
        return self.block.append(cls(operands, result_types, attrs, regions, loc=self.loc))
