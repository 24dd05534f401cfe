"""Proxy-input synthesis (divqat.train.proxies): each transform against its definition."""
import pytest
import torch
import torch.nn.functional as F

from divqat.train.proxies import cross_class_partners, mixup, patch_shuffle, strong_blur, synthesize_proxies


def _images(n=16, size=8):
    return torch.rand(n, 1, size, size)


def test_partners_have_another_label():
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    for _ in range(5):
        j = cross_class_partners(y)
        assert (y[j] != y).all()


def test_mixup_is_a_convex_mix_of_two_classes():
    x, y = _images(), torch.arange(16) % 4
    torch.manual_seed(1)
    mixed = mixup(x, y)
    torch.manual_seed(1)
    lam = torch.empty(16, 1, 1, 1).uniform_(0.3, 0.7)
    partner = cross_class_partners(y)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])


def test_patch_shuffle_permutes_whole_patches():
    x = _images(4, 8)
    out = patch_shuffle(x)
    cut = lambda t: t.reshape(4, 1, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(4, 16, -1)  # 4x4 grid of 2x2
    for i in range(4):
        original = {tuple(p.tolist()) for p in cut(x)[i]}
        shuffled = [tuple(p.tolist()) for p in cut(out)[i]]
        assert set(shuffled) == original and len(shuffled) == 16
    assert not torch.equal(out, x)


def test_blur_is_a_box_filter_plus_noise():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 14, 14] = 1.0
    torch.manual_seed(0)
    blurred = strong_blur(x)
    torch.manual_seed(0)
    box = F.avg_pool2d(x, 15, stride=1, padding=7, count_include_pad=False)
    torch.testing.assert_close(blurred, (box + 0.1 * torch.randn_like(box)).clamp(0, 1))


def test_synthesized_proxies_are_images_from_the_four_transforms():
    x, y = _images(64, 28), torch.arange(64) % 10
    torch.manual_seed(3)
    p = synthesize_proxies(x, y)
    assert p.shape == x.shape and p.min() >= 0 and p.max() <= 1 and not p.requires_grad
    torch.manual_seed(3)
    assert torch.equal(p, synthesize_proxies(x, y))  # reproducible under the seed
    assert (p - x).abs().flatten(1).amax(1).min() > 0  # no image passes unchanged


def test_a_subset_of_transforms():
    x, y = _images(8, 8), torch.arange(8) % 4
    torch.manual_seed(5)
    p = synthesize_proxies(x, y, ("shuffle",))
    torch.manual_seed(5)
    torch.randint(1, (8,))  # the per-row draw of the transform
    torch.testing.assert_close(p, patch_shuffle(x))
    with pytest.raises(ValueError, match="proxy transforms"):
        synthesize_proxies(x, y, ("rotate",))
