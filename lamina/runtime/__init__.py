"""The CPU runtime: aligned buffers, the kernel cache, calling kernels, running programs.

``compile_program(loop_module)`` is the entry point of the pipeline's last
step: it compiles the module's kernels through the cache (memory, then disk,
then LLVM) and returns a ``Program`` that runs the program func on numpy arrays.
"""

from lamina.runtime.buffers import empty
from lamina.runtime.cache import (
    CacheKey,
    CompiledModule,
    cache_stats,
    clear_cache,
    compile_module,
    reset_cache_stats,
)
from lamina.runtime.errors import ArgumentMismatch
from lamina.runtime.kernel import Kernel
from lamina.runtime.program import Program, ProgramError, compile_program
from lamina.runtime.threads import get_num_threads, parallel_for, set_num_threads

__all__ = [
    "ArgumentMismatch", "CacheKey", "CompiledModule", "Kernel", "Program", "ProgramError",
    "cache_stats", "clear_cache", "compile_module", "compile_program", "empty",
    "get_num_threads", "parallel_for", "reset_cache_stats", "set_num_threads",
]
