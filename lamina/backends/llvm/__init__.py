"""The LLVM CPU backend: loop-dialect kernels -> LLVM IR -> host machine code.

``emit_module`` / ``emit_kernel`` write LLVM IR text following the Kernel ABI of
docs/contracts.md; ``compile_object`` optimises it for the host and emits object
code; ``JITLibrary.load`` puts that code into the process.
"""

from lamina.backends.llvm.emit import emit_kernel, emit_module
from lamina.backends.llvm.target import (
    JITLibrary,
    TargetInfo,
    assemble_text,
    compile_object,
    host_target,
    native_asm,
    optimize,
)

__all__ = [
    "JITLibrary", "TargetInfo", "assemble_text", "compile_object", "emit_kernel", "emit_module",
    "host_target", "native_asm", "optimize",
]
