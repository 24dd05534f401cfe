"""The adversary's natural images: a query set given by dataset name or as tensors.

Nothing is adapted silently: images whose (C, H, W) differ from the victim's input are
refused with a ValueError unless ``adapt=True``, which maps them with
:func:`divqat.data.resize_to` (channel repeat or mean, bilinear resize).
"""
import torch

__all__ = ["load_queryset"]


def load_queryset(queryset, blackbox, adapt=False, need_labels=False):
    """Return ``(X, Y)`` for ``queryset`` fitted to ``blackbox``'s input shape.

    ``queryset`` is a dataset name (its train split, via :func:`divqat.data.load_images`: an
    ``imagefolder:PATH`` stays on disk and is decoded as images are drawn), an
    image tensor X (N, C, H, W) in [0, 1], or an (X, Y) pair. Y (int64 class ids of the query
    set's own taxonomy) is None for a bare tensor; ``need_labels=True`` (adaptive sampling)
    makes its absence an error.
    """
    if isinstance(queryset, str):
        from divqat.data import load_images

        x, y = load_images(queryset, "train")
        name = queryset
    elif torch.is_tensor(queryset):
        x, y, name = queryset, None, "tensor"
    elif isinstance(queryset, (tuple, list)) and len(queryset) == 2 and all(map(torch.is_tensor, queryset)):
        (x, y), name = queryset, "tensors"
    else:
        raise ValueError("queryset must be a dataset name, an image tensor or an (X, Y) tensor pair, "
                         f"got {type(queryset).__name__}")
    if x.dim() != 4 or not x.is_floating_point() or len(x) == 0:
        raise ValueError(f"queryset images must be a non-empty float (N, C, H, W) tensor, got "
                         f"{x.dtype} of shape {tuple(x.shape)}")
    if y is not None and (y.shape != (len(x),) or y.dtype != torch.int64):
        raise ValueError(f"queryset labels must be int64 of shape ({len(x)},), got {y.dtype} of shape {tuple(y.shape)}")
    if need_labels and y is None:
        raise ValueError("queryset: this attack samples by the query set's classes; give (X, Y) or a dataset name")
    want = blackbox.input_shape
    if tuple(x.shape[1:]) != want:
        if not adapt:
            raise ValueError(f"queryset {name!r} has images of shape {tuple(x.shape[1:])} but the victim takes "
                             f"{want}; adapt them explicitly (adapt_queries=True, --adapt-queries)")
        if want[1] != want[2]:
            raise ValueError(f"queryset: cannot adapt to a non-square victim input {want}")
        from divqat.data import resize_to

        x = resize_to(x, want[0], want[1])
    return x, y
