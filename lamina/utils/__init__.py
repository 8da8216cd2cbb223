"""``lamina.utils``: utilities with PyTorch's names (``lamina.utils.data``)."""

from lamina.utils import data

__all__ = ["data"]
