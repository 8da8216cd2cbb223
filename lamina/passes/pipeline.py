"""The pipeline from a tensor-dialect module to the loop stage, keeping every stage.

``lower`` is what eager dispatch and ``lamina.compile`` call; the stages it
returns are what ``lamina ir`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lamina.ir import Module, verify
from lamina.ir.printer import print_module
from lamina.passes.manager import Pass, PassManager, parse_pipeline
from lamina.passes.rewrite import clone_module

PRIM_PIPELINE = "decompose,simplify,fuse"
LOOP_PIPELINE = "lower-loops,prepare-loops"
STAGES = ("tensor", "prim", "loop")

ArgLayouts = Sequence[tuple[int | None, ...]] | None
TARGETS = ("cpu", "cuda")


def check_target(target: str) -> str:
    """``target`` itself when it names a known loop-stage target, else a ValueError."""
    if target not in TARGETS:
        raise ValueError(f"lower: unknown target {target!r}; expected one of "
                         f"{', '.join(map(repr, TARGETS))}")
    return target


@dataclass(frozen=True)
class Stages:
    """The module at each stage: tensor (as given), prim (fused groups), loop (kernels)."""

    tensor: Module
    prim: Module
    loop: Module

    def as_text(self, stage: str, locs: bool = False) -> str:
        """The IR text of ``stage`` (``"tensor"``, ``"prim"`` or ``"loop"``)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return print_module(getattr(self, stage), locs=locs)


def to_prim(module: Module, print_after: Iterable[str] | str = (),
            autodiff: Pass | None = None) -> Module:
    """decompose, simplify, fuse: a new module of fusion groups (``module`` is not changed).

    ``autodiff`` (an ``Autodiff`` pass) runs on the primitives, right after decompose.
    """
    verify(module)
    passes = parse_pipeline(PRIM_PIPELINE)
    if autodiff is not None:
        passes.insert(1, autodiff)
    return PassManager(passes, print_after=print_after).run(clone_module(module))


def to_loops(prim: Module, arg_layouts: ArgLayouts = None,
             print_after: Iterable[str] | str = (), target: str = "cpu") -> Module:
    """lower-loops, prepare-loops: kernels and the program (``prim`` is not changed).

    ``target`` shapes the loops for the hardware (``"cuda"``: scalar rows and
    plain accumulating loops that ``gpu-map`` spreads over a warp); the meaning
    of the loop IR does not depend on it, so the CPU backend runs either.
    """
    # imported here: the loop passes live in their own modules and import this package
    from lamina.passes.lower_loops import LowerLoops
    from lamina.passes.prepare_loops import PrepareLoops

    passes = [LowerLoops(arg_layouts=arg_layouts, target=check_target(target)), PrepareLoops()]
    return PassManager(passes, print_after=print_after).run(clone_module(prim))


def lower(module: Module, arg_layouts: ArgLayouts = None,
          print_after: Iterable[str] | str | None = None, autodiff: Pass | None = None,
          target: str = "cpu") -> Stages:
    """Lower a tensor-dialect module to the loop stage; every stage is verified.

    ``arg_layouts`` gives, per func argument, its stride pattern (docs/contracts.md,
    eager specialisation); ``print_after`` names passes (or ``"all"``) whose output
    is printed to stderr; ``autodiff`` adds the reverse sweep (see ``to_prim``);
    ``target`` (``"cpu"`` or ``"cuda"``) picks the loop shapes (see ``to_loops``).
    """
    check_target(target)
    wanted = () if print_after is None else print_after
    prim = to_prim(module, wanted, autodiff)
    loop = to_loops(prim, arg_layouts, wanted, target)
    return Stages(module, prim, loop)
