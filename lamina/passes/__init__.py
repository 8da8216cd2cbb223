"""IR -> IR transformations and the pass manager.

Importing the package registers every pass by name for textual pipelines.
"""

from lamina.passes import (  # noqa: F401  (register the passes)
    autodiff,
    decompose,
    fusion,
    lower_loops,
    memory_plan,
    prepare_loops,
    simplify,
)
from lamina.passes.manager import PASSES, Pass, PassManager, parse_pipeline, register_pass

__all__ = ["PASSES", "Pass", "PassManager", "parse_pipeline", "register_pass"]
