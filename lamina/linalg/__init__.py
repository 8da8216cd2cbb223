"""``lamina.linalg``: PyTorch's ``torch.linalg`` (norms and products so far).

The functions live with the other tensor operations in
``lamina.frontend.ops_linalg``; this module gives them PyTorch's names.
Decompositions (``svd``, ``qr``, ``eigh``, ...) and the norms that need them
(matrix ord 'nuc', 2, -2) are not available yet.
"""

from lamina.frontend.ops import matmul
from lamina.frontend.ops_linalg import linalg_norm as norm
from lamina.frontend.ops_linalg import matrix_norm, vecdot, vector_norm

__all__ = ["matmul", "matrix_norm", "norm", "vecdot", "vector_norm"]
