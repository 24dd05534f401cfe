"""The public fused ops of divqat, registered under ``torch.ops.divqat`` (compiled C++/CUDA)
and ``torch.ops.divqat_triton`` (Triton); :mod:`divqat._backend` picks one per call.

- ``fake_quant``: fake quantization with the straight-through estimator (and LSQ gradients).
- ``div_kl_loss``: T^2 * KL between temperature-softmaxed teacher and student logits.
- ``divqat_loss``: the DivQAT objective CE(y, s) - alpha * T^2 * KL(softmax(t/T) || softmax(s/T)).
"""
from divqat import _backend
from divqat.ops.fake_quant import fake_quant
from divqat.ops.kl_loss import div_kl_loss, divqat_loss

_backend.load_available()  # every op module has declared its ops: load what can run now

__all__ = ["fake_quant", "div_kl_loss", "divqat_loss"]
