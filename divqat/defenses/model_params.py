"""The values of a defense's model parameters (adaptive misinformation's model, MAD's
surrogate): a model given as a ``divqat train --out`` directory, and the random model of a
victim's architecture that MAD defaults to."""
import os

import torch

__all__ = ["load_model", "random_model_like"]


def load_model(source):
    """A model argument: an ``nn.Module`` as is, or a path to a ``divqat train --out`` directory
    (or to a file inside one, such as its model.pt), loaded as its float model with
    :func:`divqat.train.load_victim` (``kind="float"``, any run's model: misinformation's too)."""
    if isinstance(source, torch.nn.Module):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"expected an nn.Module or a path, got {type(source).__name__}")
    path = os.fspath(source)
    directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
    if not os.path.exists(path) or not os.path.isfile(os.path.join(directory, "config.json")):
        raise ValueError(f"{path!r} is not a `divqat train --out` directory (or a file in one): "
                         "no config.json there")
    from divqat.train import load_victim

    return load_victim(directory, kind="float", victim_only=False)


def random_model_like(victim, seed=0):
    """A randomly initialised model of ``victim``'s architecture (MAD's default defender
    surrogate, as in Orekondy et al., ICLR 2020). ``victim`` is a ``divqat train --out``
    directory or a divqat model (with ``.arch`` and ``.meta``). The weights are drawn from
    ``seed``; the global RNG is left as it was."""
    from divqat.models import build_model

    if isinstance(victim, (str, os.PathLike)):
        from divqat.train import load_config

        config = load_config(victim)
        arch, meta = config.get("arch"), config.get("meta")
    else:
        arch, meta = getattr(victim, "arch", None), getattr(victim, "meta", None)
    if not isinstance(arch, str) or not meta:
        raise ValueError("victim: its architecture is unknown, so no random model of it can be built")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, **{key: meta[key] for key in ("num_classes", "in_channels", "image_size",
                                                                "mean", "std")})
