"""CUDA runtime: the driver API binding (``driver``) and loop programs on the GPU (``program``).

Nothing here loads libcuda at import time.
"""

from lamina.runtime.cuda.driver import CudaError, CudaUnavailable, available

__all__ = ["CudaError", "CudaUnavailable", "available"]
