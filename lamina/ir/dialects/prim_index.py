"""Prim dialect extension: index primitives (shape/dtype rules; VJPs live in passes)."""

from __future__ import annotations
