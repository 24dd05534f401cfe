"""Triton kernels of the divqat ops, one module per op (used when DIVQAT_BACKEND=triton)."""
