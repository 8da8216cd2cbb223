"""Passes as small named objects, and the manager that runs a pipeline of them.

A pipeline can be written as text (``"decompose,simplify,fuse"``) and can print
the IR after every pass or after named ones, the way MLIR's
``--mlir-print-ir-after`` does.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

from lamina.ir import Module, verify
from lamina.ir.printer import print_module

PASSES: dict[str, type[Pass]] = {}


class Pass:
    """A module-to-module transformation. Subclasses are frozen dataclasses."""

    name: ClassVar[str] = ""

    def run(self, module: Module) -> Module:
        raise NotImplementedError


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by name in textual pipelines."""
    if cls.name in PASSES:
        raise ValueError(f"pass {cls.name!r} registered twice")
    PASSES[cls.name] = cls
    return cls


def parse_pipeline(text: str) -> list[Pass]:
    """``"decompose,simplify,fuse"`` -> pass objects with default options."""
    passes = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in PASSES:
            raise ValueError(f"unknown pass {name!r}; known: {', '.join(sorted(PASSES))}")
        passes.append(PASSES[name]())
    return passes


@dataclass
class PassManager:
    """Runs passes in order, verifying after each, optionally printing the IR."""

    passes: list[Pass]
    print_after: Iterable[str] | str = ()  # pass names, or "all"
    out: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr))
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, module: Module) -> Module:
        wanted = self.print_after
        for p in self.passes:
            start = time.perf_counter()
            module = p.run(module)
            self.timings[p.name] = self.timings.get(p.name, 0.0) + time.perf_counter() - start
            verify(module)
            if wanted == "all" or (not isinstance(wanted, str) and p.name in wanted):
                self.out(f"// -----// IR after {p.name} //----- //\n{print_module(module)}")
        return module
