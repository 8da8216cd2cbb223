"""The three stages of the IR: ``tensor`` -> ``prim`` -> ``loop``."""

from lamina.ir.dialects import (
    loop,
    prim,
    prim_conv,
    prim_index,
    prim_random,
    prim_shape,
    tensor,
    tensor_conv,
)

__all__ = ["tensor", "prim", "prim_index", "prim_random", "prim_conv", "tensor_conv", "loop"]
from lamina.ir.dialects import gpu  # noqa: E402,F401  (loop.gpu_parallel, made by gpu-map)
