"""The NVPTX backend: loop-stage modules -> PTX (llvmlite) -> cubin (``ptxas``).

``gpu_module(loop)`` is a copy of a loop-stage module after ``gpu-map``;
``emit_module`` writes its NVPTX LLVM IR; ``compile_ptx`` makes PTX text for an
``arch`` such as ``"sm_90"``; ``assemble_cubin`` runs ptxas when it is
installed. ``module_ptx(loop, arch)`` does all of it. Nothing here needs a GPU.
"""

from __future__ import annotations

from lamina.backends.nvptx.emit import arg_slots, emit_kernel, emit_module
from lamina.backends.nvptx.target import (
    DEFAULT_ARCH,
    PtxasError,
    assemble_cubin,
    compile_ptx,
    ptxas_path,
)
from lamina.ir import Module


def gpu_module(loop: Module, block: int | None = None) -> Module:
    """A copy of the loop-stage ``loop`` with every kernel mapped by ``gpu-map``."""
    from lamina.passes.gpu_map import GpuMap
    from lamina.passes.rewrite import clone_module

    return GpuMap(block=block).run(clone_module(loop))


def module_ptx(loop: Module, arch: str = DEFAULT_ARCH) -> str:
    """PTX text of every kernel of the loop-stage module ``loop`` for ``arch``."""
    return compile_ptx(emit_module(gpu_module(loop)), arch)


__all__ = [
    "DEFAULT_ARCH", "PtxasError", "arg_slots", "assemble_cubin", "compile_ptx", "emit_kernel",
    "emit_module", "gpu_module", "module_ptx", "ptxas_path",
]
