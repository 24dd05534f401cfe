"""Pure-PyTorch implementations of the divqat ops: the fallback when the compiled
extension is not built, and the oracle the tests compare the kernels with."""
from divqat.reference.fake_quant import fake_quant
from divqat.reference.kl_loss import div_kl_loss, divqat_loss

__all__ = ["fake_quant", "div_kl_loss", "divqat_loss"]
