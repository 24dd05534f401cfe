"""Querying a transfer set in a fixed order, with an on-disk cache shared across budgets.

For attacks whose queries do not depend on the surrogate (KnockoffNets random, Copycat), the
transfer set of budget B is the first B images of one seeded permutation of the query set, so
a smaller budget's transfer set is a prefix of a larger one's. The cache stores the answers to
the longest prefix queried so far, keyed by everything that determines them (the black box's
:meth:`~divqat.blackbox.BlackBox.identity`, a hash of the query images and of the order);
a run with budget B reads the first B cached answers and queries only the images beyond the
cached prefix. Query the largest budget first and every smaller one costs no victim queries.
Files are written atomically and loaded with ``weights_only=True``.
"""
import hashlib
import json
from pathlib import Path

import torch

from divqat.progress import progress_bar
from divqat.utils import atomic_save, load_torch_file

__all__ = ["tensor_hash", "check_answers", "query_in_order"]

_CHUNK = 1024  # rows per query call


def tensor_hash(t):
    """A short sha256 of a tensor's dtype, shape and bytes."""
    t = t.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def _cache_path(cache_dir, key):
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"transfer-{name}.pt"


def check_answers(answers, num_classes, source):
    """``answers`` read back from ``source``: ValueError naming it unless they are an
    (N, num_classes) tensor of finite probabilities (a damaged file would train on NaN)."""
    if not torch.is_tensor(answers) or answers.dim() != 2 or answers.shape[1] != num_classes:
        raise ValueError(f"{source}: expected (N, {num_classes}) answers, got "
                         f"{tuple(answers.shape) if torch.is_tensor(answers) else type(answers).__name__}: remove the file")
    if not torch.isfinite(answers).all() or (answers < -1e-6).any() or (answers > 1 + 1e-6).any():
        raise ValueError(f"{source}: holds answers that are not probabilities (NaN, infinite or outside [0, 1]): "
                         "the file is damaged, remove it")
    return answers


def _load(path, key, num_classes):
    if not path.exists():
        return torch.empty(0)
    stored = load_torch_file(path, "transfer cache")
    if not isinstance(stored, dict) or stored.get("key") != key:
        raise ValueError(f"transfer cache {path} holds another key: remove the file")
    return check_answers(stored.get("answers"), num_classes, f"transfer cache {path}")


def query_in_order(blackbox, x, order, budget, cache_dir=None, progress=True):
    """Answers of ``blackbox`` to ``x[order[:budget]]``, and how many of them were fresh queries.

    Returns ``(answers (budget, C), fresh)``. With ``cache_dir`` the answers to the longest
    prefix queried so far are reused and the cache is extended to ``budget``. The queries needed
    are checked against the black box's remaining budget before any is sent.
    """
    if budget > len(order):
        raise ValueError(f"budget {budget} exceeds the {len(order)} images of the query set")
    cached, path, key = torch.empty(0), None, None
    if cache_dir is not None:
        images = x.fingerprint() if hasattr(x, "fingerprint") else tensor_hash(x)  # LazyImages: files
        key = {**blackbox.identity(), "images": images, "order": tensor_hash(order)}
        path = _cache_path(cache_dir, key)
        cached = _load(path, key, blackbox.num_classes)
    start = min(len(cached), budget)
    needed = budget - start
    left = blackbox.budget_left
    if left is not None and needed > left:
        raise ValueError(f"budget: the transfer set needs {needed} fresh queries, the black box allows {left}")
    chunks = progress_bar(range(start, budget, _CHUNK), total=needed, unit="queries", desc="querying",
                          size=lambda i: min(_CHUNK, budget - i), enabled=progress)
    with chunks:
        fresh = [blackbox.query(x[order[i:min(i + _CHUNK, budget)]]) for i in chunks]
    if not fresh:
        return cached[:budget], 0
    answers = torch.cat(([cached[:start]] if start else []) + fresh)
    if path is not None:
        atomic_save({"key": key, "answers": answers}, path)
    return answers, needed
