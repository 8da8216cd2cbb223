"""Register-tiled kernels for contractions (placeholder)."""

from __future__ import annotations


def emit_contraction(ev, ops, yielded, out, dims) -> bool:
    return False
