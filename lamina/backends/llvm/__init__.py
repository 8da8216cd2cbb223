"""backends/llvm"""
