"""Attacker-like proxy inputs synthesised from a batch of training images only (docs/science.md §8).

An extraction attacker queries the victim with images from another distribution (MNIST victims
with Fashion-MNIST, and the reverse). The defender never sees that query set; it builds
stand-ins from its own training batch, one proxy per image, each made by one of four
transforms drawn uniformly per row (images in [0, 1], shape (N, C, H, W)):

- ``mixup``:   lam * x_i + (1 - lam) * x_j, x_j a random image of another class, lam ~ U(0.3, 0.7)
               (cross-class mixup: an image of no class);
- ``shuffle``: the image cut into a g x g grid of patches (g = 4, or 2, whatever divides H and W)
               put back in a random order (local strokes kept, the global shape destroyed);
- ``noise``:   x + N(0, 0.5^2) per pixel, clamped to [0, 1] (strong noise);
- ``blur``:    a box blur of width W // 4 * 2 + 1 (15 for 28 x 28 images) plus N(0, 0.1^2) noise.

This is the "out-of-distribution term" idea of InI (Isolation and Induction, arXiv 2308.00958)
with proxies that need no outside data. Random draws use torch's global generator, which the
training loop seeds, so a run is reproducible.
"""
import torch
import torch.nn.functional as F

TRANSFORMS = ("mixup", "shuffle", "noise", "blur")


def cross_class_partners(y):
    """For each row i an index j with y[j] != y[i], drawn uniformly among those rows
    (row 0 when no row has another label)."""
    scores = torch.rand(len(y), len(y), device=y.device)
    scores[y[:, None] == y[None, :]] = -1.0
    return scores.argmax(dim=1)


def mixup(x, y):
    lam = torch.empty(len(x), 1, 1, 1, device=x.device).uniform_(0.3, 0.7)
    return lam * x + (1 - lam) * x[cross_class_partners(y)]


def patch_shuffle(x):
    n, c, h, w = x.shape
    g = next((g for g in (4, 2) if h % g == 0 and w % g == 0), 1)
    patches = x.reshape(n, c, g, h // g, g, w // g).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, c, h // g, w // g)
    order = torch.rand(n, g * g, device=x.device).argsort(dim=1)
    patches = patches[torch.arange(n, device=x.device)[:, None], order]
    return patches.reshape(n, g, g, c, h // g, w // g).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def strong_noise(x, std=0.5):
    return (x + std * torch.randn_like(x)).clamp(0, 1)


def strong_blur(x):
    k = x.shape[-1] // 4 * 2 + 1
    blurred = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
    return strong_noise(blurred, std=0.1)


def check_transforms(transforms):
    """ValueError unless ``transforms`` is a non-empty sequence of names from :data:`TRANSFORMS`."""
    if not transforms or any(t not in TRANSFORMS for t in transforms):
        raise ValueError(f"proxy transforms must be a non-empty subset of {TRANSFORMS}, got {tuple(transforms)}")


def synthesize_proxies(x, y, transforms=TRANSFORMS):
    """One proxy per row of ``x`` (N, C, H, W) in [0, 1] with labels ``y`` (N,): the transform
    of each row drawn uniformly from ``transforms`` (names of :data:`TRANSFORMS`, module
    docstring). Returns (N, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    check_transforms(transforms)
    build = {"mixup": lambda: mixup(x, y), "shuffle": lambda: patch_shuffle(x), "noise": lambda: strong_noise(x),
             "blur": lambda: strong_blur(x)}
    kind = torch.randint(len(transforms), (len(x),), device=x.device)
    candidates = torch.stack([build[t]() for t in transforms])
    return candidates[kind, torch.arange(len(x), device=x.device)].clamp(0, 1).detach()
