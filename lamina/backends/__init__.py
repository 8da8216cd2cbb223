"""Loop IR -> target code: llvm (CPU), nvptx (PTX); interp (the numpy oracle)."""
