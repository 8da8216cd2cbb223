"""Reference helpers: numpy always, PyTorch when installed."""

from __future__ import annotations

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the comparisons against PyTorch skip cleanly
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def assert_close(actual, expected, dtype=None, rtol=None, atol=None) -> None:
    """Compare a lamina tensor (or array) with a numpy reference, dtype included."""
    a = np.asarray(actual)
    e = np.asarray(expected)
    if dtype is not None:
        assert a.dtype == np.dtype(dtype), f"dtype {a.dtype} != {dtype}"
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    if a.dtype.kind == "f":
        tol = {2: 1e-3, 4: 1e-5, 8: 1e-12}[a.dtype.itemsize]
        np.testing.assert_allclose(a, e, rtol=rtol or tol, atol=atol or tol, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, e)
