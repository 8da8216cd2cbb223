"""The exception the runtime raises for buffers that do not fit a kernel or program."""

from __future__ import annotations


class ArgumentMismatch(TypeError, ValueError):
    """Buffers that do not fit a kernel's or program's signature.

    A subclass of both TypeError (wrong dtype) and ValueError (wrong shape), so
    callers written for either, as for PyTorch, catch it.
    """
