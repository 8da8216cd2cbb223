"""The LLVM CPU backend: loop-dialect kernels -> LLVM IR -> host machine code."""

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
    "JITLibrary", "TargetInfo", "assemble_text", "compile_object", "host_target", "native_asm",
    "optimize",
]
