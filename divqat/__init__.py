"""divqat: quantization-aware training that resists model extraction (DivQAT), with fused
fake-quant and softmax-KL kernels, extraction attacks, output-perturbation defenses and the
experiments that reproduce the papers' claims."""

__version__ = "0.1.0"
