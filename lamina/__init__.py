"""Lamina: a PyTorch-compatible deep-learning framework built as a compiler stack."""

__version__ = "0.1.0"
