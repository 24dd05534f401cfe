"""Adaptive misinformation: Kariyappa and Qureshi, "Defending Against Model Stealing Attacks
with Adaptive Misinformation", CVPR 2020.

A query whose top probability s = max_k p_k is low looks out of distribution (the
maximum-softmax-probability detector), as the synthetic or surrogate-data queries of an
extraction attack do. Those queries are answered with a blend of the victim's probabilities p
and those of a misinformation model f_mis, trained to put little mass on the true class:

    a = 1 / (1 + exp(nu * (s - tau))) = sigmoid(nu * (tau - s))
    y = (1 - a) * p + a * softmax(f_mis(x))

    misinformation loss: L(x, y) = -log(1 - softmax(f_mis(x))_y)
                                 = logsumexp_k z_k - logsumexp_{k != y} z_k    (z = f_mis(x))

y is a convex combination of two probability vectors, so it is one too.
"""
import torch
import torch.nn.functional as F

from .base import Defense, model_device
from .params import Param

__all__ = ["AdaptiveMisinformation", "misinformation_loss", "train_misinformation_model"]


class AdaptiveMisinformation(Defense):
    """AdaptiveMisinformation(misinformation_model, tau, nu=1000); call as ``defense(probs, x)``.

    ``misinformation_model``: ``forward(x in [0, 1]) -> logits`` over the same classes (from
    :func:`train_misinformation_model` or ``divqat train-misinformation``); put in eval mode.
    """

    NAME = "adaptive_misinformation"
    ALIASES = ("am",)
    PARAMS = (
        Param("misinformation_model", "model", aliases=("model",),
              help="a model trained to put little mass on the true class: `divqat train-misinformation --out DIR`",
              source="Kariyappa and Qureshi 2020"),
        Param("tau", "real", low=0.0, high=1.0, help="out-of-distribution threshold on the top probability",
              source="no published default: Kariyappa and Qureshi 2020 sweep it for their accuracy trade-off"),
        Param("nu", "real", 1000.0, low=0.0, help="sharpness of the blend",
              source="Kariyappa and Qureshi 2020, docs/science.md §4"),
    )
    needs_input = True

    def _perturb(self, p, x):
        model = self.misinformation_model
        logits = model(x.to(model_device(model), torch.float32))
        if logits.shape != p.shape:
            raise ValueError(f"misinformation_model returned shape {tuple(logits.shape)} for probs of shape "
                             f"{tuple(p.shape)}: it must classify the same {p.shape[1]} classes")
        p_mis = F.softmax(logits.to(p.device, p.dtype), dim=1)
        a = torch.sigmoid(self.nu * (self.tau - p.amax(dim=1, keepdim=True)))
        return (1.0 - a) * p + a * p_mis


def misinformation_loss(logits, target):
    """Mean over the batch of -log(1 - softmax(logits)_target), computed from logsumexps (stable):
    :func:`divqat.train.misinformation_objective.away_loss`, which the ``misinform`` objective
    trains with too."""
    from divqat.train.misinformation_objective import away_loss

    return away_loss(logits, target).mean()


def train_misinformation_model(model, train_set, epochs=5, batch_size=128, lr=1e-3, optimizer="adam",
                               seed=0, device="cpu", progress=True, out_dir=None, dataset=None):
    """Train ``model`` in place to minimise the probability of the true class; returns it in eval mode.

    Minimises :func:`misinformation_loss` over ``train_set`` (a Dataset of (x, y)) with the
    shared training loop :func:`divqat.train.loop.fit` (cosine learning rate, ``seed`` seeds
    Python, NumPy and torch, ``progress=False`` silences the bar).

    With ``out_dir``, the run is written in the ``divqat train --out`` format (config.json with
    method "misinformation", model.pt, log.jsonl, metrics.json; ``model`` must be a divqat
    model, with ``.arch`` and ``.meta``), so the CLI can load it:
    ``--defense am --defense-arg model=OUT_DIR --defense-arg tau=0.5``. ``dataset`` names the
    training set in config.json.
    """
    from divqat.train.artifacts import MISINFORMATION, start_run, write_run_results
    from divqat.train.loop import fit

    if out_dir is not None:
        if not (hasattr(model, "arch") and hasattr(model, "meta")):
            raise ValueError("out_dir: only a divqat model (with .arch and .meta) can be saved as a run directory")
        start_run(out_dir, {"method": MISINFORMATION, "quantized": False, "qconfig": None, "arch": model.arch,
                               "meta": dict(model.meta), "dataset": dataset, "epochs": epochs,
                               "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "seed": seed})

    def step(net, x, y, global_step):
        return {"loss": misinformation_loss(net(x), y)}

    history = fit(model, train_set, step, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                  seed=seed, device=device, progress=progress, out_dir=out_dir, desc="misinformation")
    if out_dir is not None:
        write_run_results(out_dir, model, {"train_loss": history[-1]["loss"]})
    return model.eval()
