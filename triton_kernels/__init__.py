"""Triton kernels of the divqat ops, one module per op, installed as ``divqat.triton_kernels``
(setup.py's package_dir; the folder stays at the top of the repository). Importing the package
defines every op under ``torch.ops.divqat_triton`` (used when DIVQAT_BACKEND=triton); their fake
implementations and autograd formulas are attached by :mod:`divqat._backend`."""
from divqat.triton_kernels import fake_quant, kl_loss  # noqa: F401

__all__ = ["fake_quant", "kl_loss"]
