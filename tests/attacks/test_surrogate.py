"""The surrogate's soft-label loss has the soft cross-entropy's gradient."""
import pytest
import torch
import torch.nn.functional as F


@pytest.mark.parametrize("targets", [
    torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(1)), dim=1),  # soft
    F.one_hot(torch.tensor([0, 1, 2, 3, 4, 0]), 5).float(),  # labels: zeros must not give NaN
    torch.tensor([[0.5, 0.5, 0, 0, 0]] * 6),  # top-k style zeros
])
def test_soft_label_loss_has_the_soft_cross_entropy_gradient(targets):
    """KL(y || softmax(s)) and PyTorch's soft-target cross-entropy differ by H(y), a constant:
    their gradients in the student's logits agree (up to the 1e-8 clamp of zero entries)."""
    from divqat.attacks.surrogate import soft_label_loss

    s = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_label_loss(s.float(), targets), s)
    (expected,) = torch.autograd.grad(F.cross_entropy(s, targets.double()), s)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-4)
    entropy = -(torch.xlogy(targets.double(), targets.double())).sum(1).mean()
    torch.testing.assert_close(soft_label_loss(s.float(), targets).double() + entropy,
                               F.cross_entropy(s, targets.double()), atol=1e-5, rtol=1e-5)
