"""Reads the textual IR written by ``printer.py`` back into graphs."""

from __future__ import annotations

import json
import re
from typing import Any

from lamina.ir.core import OPS, Block, Graph, IRError, Loc, Module, Op, SymbolRef, Value
from lamina.ir.types import SCALARS, MemRefType, TensorType, Type, VectorType

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<type>(?:tensor|memref|vector)<(?:[^<>]|<[^<>]*>)*>)
  | (?P<value>%[A-Za-z0-9_.$-]+)
  | (?P<symbol>@[A-Za-z0-9_.$-]+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)|-inf)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<arrow>->)
  | (?P<punct>[(){}\[\],:=?])
    """,
    re.VERBOSE,
)


class Lexer:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, str, int]] = []
        pos, line = 0, 1
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise IRError(f"line {line}: unexpected character {text[pos]!r}")
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), line))
            line += m.group().count("\n")
            pos = m.end()
        self.tokens.append(("eof", "", line))


_DIMS = re.compile(r"((?:(?:\d+|\?)x)*)(\w+)")


def _parse_dims(body: str) -> tuple[tuple[int | None, ...], str]:
    # The element type may itself contain an "x" (index), so split sizes off the front.
    m = _DIMS.fullmatch(body.strip())
    if not m:
        raise IRError(f"bad shape {body.strip()!r}")
    dims = tuple(None if p == "?" else int(p) for p in m.group(1).split("x")[:-1])
    return dims, m.group(2)


def _scalar(name: str):
    try:
        return SCALARS[name]
    except KeyError:
        raise IRError(f"unknown element type {name!r}") from None


def parse_shaped_type(text: str) -> Type:
    kind, body = text.split("<", 1)
    body = body[:-1]
    if kind == "vector":
        dims, dtype = _parse_dims(body)
        if len(dims) != 1 or dims[0] is None:
            raise IRError(f"a vector needs one static width, got {text!r}")
        return VectorType(dims[0], _scalar(dtype))
    strides = None
    if "," in body:
        body, layout = body.split(",", 1)
        m = re.fullmatch(r"\s*strided<\[(.*)\]>\s*", layout)
        if not m:
            raise IRError(f"bad memref layout {layout.strip()!r}")
        items = [s.strip() for s in m.group(1).split(",") if s.strip()]
        if not all(re.fullmatch(r"\?|-?\d+", s) for s in items):
            raise IRError(f"bad memref layout {layout.strip()!r}")
        strides = tuple(None if s == "?" else int(s) for s in items)
    dims, dtype = _parse_dims(body)
    if kind == "tensor":
        return TensorType(dims, _scalar(dtype))
    if strides is not None and len(strides) != len(dims):
        raise IRError(f"memref layout has {len(strides)} strides for rank {len(dims)}")
    return MemRefType(dims, _scalar(dtype), strides)


class Parser:
    def __init__(self, lexer: Lexer):
        self.toks = lexer.tokens
        self.pos = 0
        self.scope: dict[str, Value] = {}

    # -- token helpers -----------------------------------------------------
    def peek(self, offset: int = 0) -> tuple[str, str, int]:
        return self.toks[min(self.pos + offset, len(self.toks) - 1)]

    def next(self) -> tuple[str, str, int]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def fail(self, msg: str) -> IRError:
        kind, text, line = self.peek()
        return IRError(f"line {line}: {msg} (found {text or kind!r})")

    def expect(self, text: str) -> None:
        if self.peek()[1] != text:
            raise self.fail(f"expected {text!r}")
        self.pos += 1

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] != "string":
            self.pos += 1
            return True
        return False

    def expect_kind(self, kind: str) -> str:
        if self.peek()[0] != kind:
            raise self.fail(f"expected a {kind}")
        return self.next()[1]

    def expect_end(self) -> None:
        if self.peek()[0] != "eof":
            raise self.fail("expected end of input")

    # -- types and attributes ----------------------------------------------
    def parse_type(self) -> Type:
        kind, text, _ = self.peek()
        if kind == "type":
            self.pos += 1
            return parse_shaped_type(text)
        if kind == "ident" and text in SCALARS:
            self.pos += 1
            return SCALARS[text]
        raise self.fail("expected a type")

    def parse_attr(self) -> Any:
        kind, text, _ = self.peek()
        if text == "[" and kind == "punct":
            self.pos += 1
            items: list[Any] = []
            while not self.accept("]"):
                items.append(self.parse_attr())
                if not self.accept(","):
                    self.expect("]")
                    break
            return tuple(items)
        if text == "?" and kind == "punct":
            self.pos += 1
            return None
        if kind == "number":
            self.pos += 1
            if text == "-inf":
                return float("-inf")
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            self.pos += 1
            return json.loads(text)
        if kind == "symbol":
            self.pos += 1
            return SymbolRef(text[1:])
        if kind == "ident":
            consts = {"true": True, "false": False, "inf": float("inf"), "nan": float("nan")}
            if text in consts:
                self.pos += 1
                return consts[text]
        return self.parse_type()

    # -- values ------------------------------------------------------------
    def use(self) -> Value:
        name = self.expect_kind("value")[1:]
        try:
            return self.scope[name]
        except KeyError:
            raise self.fail(f"use of undefined value %{name}") from None

    def define(self, name: str, value: Value, line: int | None = None) -> None:
        if name in self.scope:
            if line is not None:  # results are defined once their op is read: name its line
                raise IRError(f"line {line}: value %{name} defined twice")
            raise self.fail(f"value %{name} defined twice")
        self.scope[name] = value

    # -- structure ---------------------------------------------------------
    def parse_module(self) -> Module:
        m = Module()
        while self.peek()[0] != "eof":
            m.add(self.parse_graph())
        return m

    def parse_graph(self) -> Graph:
        kind = self.expect_kind("ident")
        if kind not in ("func", "kernel"):
            raise IRError(f"line {self.peek()[2]}: expected 'func' or 'kernel', found {kind!r}")
        name = self.expect_kind("symbol")[1:]
        self.scope = {}
        names, types = self.parse_arg_list()
        g = Graph(name, types, names, kind)
        for n, a in zip(names, g.args):
            self.define(n, a)
        declared: list[Type] | None = None
        if self.accept("->"):
            self.expect("(")
            declared = []
            while not self.accept(")"):
                declared.append(self.parse_type())
                if not self.accept(","):
                    self.expect(")")
                    break
        self.expect("{")
        self.parse_ops(g.body)
        if declared is not None and declared != g.result_types:
            raise IRError(f"@{name}: declared result types {[str(t) for t in declared]} do not "
                          f"match returned {[str(t) for t in g.result_types]}")
        return g

    def parse_arg_list(self) -> tuple[list[str], list[Type]]:
        self.expect("(")
        names: list[str] = []
        types: list[Type] = []
        while not self.accept(")"):
            names.append(self.expect_kind("value")[1:])
            self.expect(":")
            types.append(self.parse_type())
            if not self.accept(","):
                self.expect(")")
                break
        return names, types

    def parse_ops(self, block: Block) -> None:
        while not self.accept("}"):
            block.append(self.parse_op())

    def at_results(self) -> bool:
        """Whether the tokens ahead are the results of the next op (``%a, %b =``).

        Lets an op without operands or results (``return``) be followed by another op.
        """
        i = 0
        while self.peek(i)[0] == "value":
            follow = self.peek(i + 1)[1]
            if follow == "=":
                return True
            if follow != ",":
                return False
            i += 2
        return False

    def parse_op(self) -> Op:
        line = self.peek()[2]
        result_names: list[str] = []
        if self.peek()[0] == "value":
            while True:
                result_names.append(self.expect_kind("value")[1:])
                if not self.accept(","):
                    break
            self.expect("=")
        opname = self.expect_kind("ident")
        cls = OPS.get(opname)
        if cls is None:
            raise IRError(f"line {line}: unknown op {opname!r}")
        operands: list[Value] = []
        if self.peek()[0] == "value" and not self.at_results():
            while True:
                operands.append(self.use())
                if not self.accept(","):
                    break
        attrs: dict[str, Any] = {}
        if self.accept("{"):
            while not self.accept("}"):
                key = self.expect_kind("ident")
                self.expect("=")
                attrs[key] = self.parse_attr()
                if not self.accept(","):
                    self.expect("}")
                    break
        types: list[Type] = []
        if self.accept(":"):
            while True:
                types.append(self.parse_type())
                if not self.accept(","):
                    break
        if len(types) != len(result_names):
            raise IRError(f"line {line}: {opname} names {len(result_names)} results "
                          f"but gives {len(types)} types")
        regions: list[Block] = []
        while self.peek()[1] == "(" and self.peek()[0] == "punct":
            names, arg_types = self.parse_arg_list()
            region = Block(arg_types, names)
            for n, a in zip(names, region.args):
                self.define(n, a)
            self.expect("{")
            self.parse_ops(region)
            regions.append(region)
        loc = None
        if self.peek()[1] == "loc" and self.peek(1)[1] == "(":
            self.pos += 2
            file = json.loads(self.expect_kind("string"))
            self.expect(":")
            loc = Loc(file, int(self.expect_kind("number")))
            self.expect(")")
        op = cls(operands, types, attrs, regions, loc=loc)
        for n, r in zip(result_names, op.results):
            self.define(n, r, line)
        return op


def parse(text: str) -> Module:
    """Parse IR text (one or more graphs) into a module."""
    return Parser(Lexer(text)).parse_module()


def parse_graph(text: str) -> Graph:
    """Parse IR text holding exactly one graph."""
    m = parse(text)
    if len(m.graphs) != 1:
        raise IRError(f"expected one graph, found {len(m.graphs)}")
    return m.graphs[0]
