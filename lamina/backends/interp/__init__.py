"""The numpy interpreters, the oracle every backend is tested against.

``run`` evaluates prim-dialect funcs (``prim_interp``); ``run_program`` (loop
dialect, ``loop_interp``) is imported on first use.
"""

from __future__ import annotations

from typing import Any

from lamina.backends.interp import prim_random_impl  # noqa: F401 - registers its rules
from lamina.backends.interp.prim_interp import TABLE, run

__all__ = ["TABLE", "run", "run_program"]


def __getattr__(name: str) -> Any:
    if name == "run_program":
        from lamina.backends.interp.loop_interp import run_program

        return run_program
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

from lamina.backends.interp import prim_conv_impl  # noqa: E402, F401, I001 (conv/pool prims)
from lamina.backends.interp import prim_index_impl  # noqa: E402, F401 (registers index prims)
