"""IR -> IR transformations and the pass manager.

Importing the package registers every pass by name for textual pipelines.
"""

from lamina.passes import decompose, fusion, simplify  # noqa: F401  (register the passes)
from lamina.passes.manager import PASSES, Pass, PassManager, parse_pipeline, register_pass

# The loop passes are written in parallel; until they land, pipelines stop at the prim stage.
for _name in ("lower_loops", "prepare_loops"):
    try:
        __import__(f"lamina.passes.{_name}")
    except ModuleNotFoundError as _e:
        if _e.name != f"lamina.passes.{_name}":
            raise

__all__ = ["PASSES", "Pass", "PassManager", "parse_pipeline", "register_pass"]
