"""Tensor operations: math (see lamina.frontend.ops for the core set)."""

from __future__ import annotations

__all__: list[str] = []

# Tensor methods this module adds: name -> function (bound by lamina.frontend.methods).
TENSOR_METHODS: dict = {}
