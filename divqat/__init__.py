"""divqat: quantization-aware training that resists model extraction (DivQAT), with fused
fake-quant and softmax-KL kernels, extraction attacks, output-perturbation defenses and the
experiments that reproduce the papers' claims."""

__version__ = "0.1.0"

# torch first: the compiled extensions (divqat._C, divqat._cuda) link against its libraries
# (libc10, libtorch), which only importing torch loads, so `import divqat._C` works on its own.
import torch  # noqa: E402,F401
