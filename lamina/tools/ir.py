"""``lamina ir``: print the IR of a function or nn.Module at chosen stages."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from lamina.tools.loader import load_target

STAGES = ("tensor", "prim", "loop", "llvm", "ptx")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("ir", help="print the IR of FILE.py:NAME at a stage",
                       description="Trace FILE.py:NAME (a function or nn.Module) on example "
                       "inputs and print its IR at the chosen stage(s).")
    p.add_argument("target", metavar="FILE.py:NAME")
    p.add_argument("--stage", choices=(*STAGES, "all"), default="loop",
                   help="which stage to print (default: loop); 'all' prints tensor..llvm")
    p.add_argument("--print-after-all", action="store_true",
                   help="print the IR after every pass of the pipeline")
    p.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="an input like 64x784xf32 (repeat per argument); default: the "
                   "file's example_inputs()")
    p.set_defaults(run=run)


def lower_target(target_text: str, specs: list[str], print_after: bool = False) -> Any:
    """Load, trace and lower ``FILE.py:NAME``: (CompiledFunction, Lowered, inputs)."""
    from lamina.frontend.compile import CompiledFunction

    target = load_target(target_text)
    inputs = target.example_inputs(specs)
    cf = CompiledFunction(target.fn, target.name)
    if not print_after:
        return cf, cf.lower(*inputs), inputs
    from lamina.frontend.compile import Lowered
    from lamina.passes.pipeline import lower

    module, _, _ = cf._trace(tuple(inputs))
    print(f"// -----// IR after trace //----- //\n{module}")
    with contextlib.redirect_stderr(sys.stdout):
        return cf, Lowered(lower(module, print_after="all")), inputs


def ptx_text(lowered: Any) -> str:
    """The PTX of the loop stage's kernels (for sm_90; no GPU needed)."""
    return lowered.as_text("ptx")


def run(args: argparse.Namespace) -> int:
    _, lowered, _ = lower_target(args.target, args.input, args.print_after_all)
    if args.print_after_all:
        return 0
    stages = ("tensor", "prim", "loop", "llvm") if args.stage == "all" else (args.stage,)
    for s in stages:
        text = ptx_text(lowered) if s == "ptx" else lowered.as_text(s)
        if len(stages) > 1:
            print(f"// ===== stage {s} ===== //")
        print(text.rstrip("\n"))
    return 0
