"""The three stages of the IR: ``tensor`` -> ``prim`` -> ``loop``."""

from lamina.ir.dialects import loop, prim, tensor

__all__ = ["tensor", "prim", "loop"]
