"""The values of a defense's model parameters (adaptive misinformation's model, MAD's
surrogate): a model given as a ``divqat train --out`` directory, and the random model of a
victim's architecture that MAD defaults to."""
import os

import torch

__all__ = ["load_model", "random_model_like", "check_models_fit"]

_SHAPE_KEYS = ("in_channels", "image_size", "num_classes")


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

    arch, meta = _arch_and_meta(victim)
    if not isinstance(arch, str) or not meta:
        raise ValueError("victim: its architecture is unknown, so no random model of it can be built")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch, **{key: meta[key] for key in ("num_classes", "in_channels", "image_size",
                                                                "mean", "std")})


def _arch_and_meta(victim):
    """``(arch, meta)`` of a ``divqat train --out`` directory or a divqat model (None when unknown)."""
    if isinstance(victim, (str, os.PathLike)):
        from divqat.train import load_config

        config = load_config(victim)
        return config.get("arch"), config.get("meta")
    return getattr(victim, "arch", None), getattr(victim, "meta", None)


def check_models_fit(defense, params, args, victim):
    """ValueError naming the argument when a model argument (of ``params``, the defense's PARAMS,
    valued in ``args``) takes other inputs or classes than ``victim`` answers."""
    meta = _arch_and_meta(victim)[1]
    if not isinstance(meta, dict):
        return
    want = {k: meta.get(k) for k in _SHAPE_KEYS}
    for param in params:
        got = getattr(args.get(param.name), "meta", None) if param.type == "model" else None
        if isinstance(got, dict) and {k: got.get(k) for k in _SHAPE_KEYS} != want:
            raise ValueError(f"{defense} argument {param.name}: the model is built for "
                             f"{ {k: got.get(k) for k in _SHAPE_KEYS} }, the victim for {want}")
