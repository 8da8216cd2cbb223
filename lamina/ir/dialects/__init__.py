"""The three stages of the IR: ``tensor`` -> ``prim`` -> ``loop``."""

from lamina.ir.dialects import loop, prim, prim_index, prim_random, tensor

__all__ = ["tensor", "prim", "prim_index", "prim_random", "loop"]
