"""The IR core: types, values, ops, graphs, printer, parser, verifier and dialects.

``lamina.ir`` imports nothing else of Lamina.
"""

from lamina.ir import dialects
from lamina.ir.core import OPS, Block, Builder, Graph, IRError, Loc, Module, Op, SymbolRef, Value
from lamina.ir.parser import parse, parse_graph
from lamina.ir.printer import print_graph, print_module
from lamina.ir.types import (
    MemRefType,
    ScalarType,
    TensorType,
    VectorType,
    parse_type,
)
from lamina.ir.verifier import verify

__all__ = [
    "OPS", "Block", "Builder", "Graph", "IRError", "Loc", "Module", "Op", "SymbolRef", "Value",
    "MemRefType", "ScalarType", "TensorType", "VectorType", "dialects", "parse", "parse_graph",
    "parse_type", "print_graph", "print_module", "verify",
]
