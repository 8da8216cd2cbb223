"""backends/interp"""
