"""divqat inside the Adversarial Robustness Toolbox (ART, Nicolae et al. 2018, arXiv 1807.01069).

    from divqat.integrations.art import art_classifier, art_surrogate, DefensePostprocessor
    victim = art_classifier(BlackBox.from_dir("runs/fp", budget=5000))   # queries counted
    thief = art_surrogate("lenet5", victim_meta)                          # SGD, soft-label CE
    KnockoffNets(victim, nb_stolen=5000, use_probability=True, ...).extract(x, thieved_classifier=thief)

- :func:`art_classifier`: a :class:`~divqat.blackbox.BlackBox` becomes an ART
  ``BlackBoxClassifier`` whose every prediction is a counted query of the black box (its
  budget, output truncation and defense apply; a query beyond the budget raises
  ``QueryBudgetExceeded``); a divqat model (``.meta``) becomes an ART ``PyTorchClassifier``
  that predicts probabilities (softmax of the logits, the vectors a black box returns).
- :func:`art_surrogate`: a fresh divqat model (any ``build_model`` arch) as the trainable ART
  classifier an extraction attack fills in: logits, ``CrossEntropyLoss`` (which takes the
  probability vectors KnockoffNets passes as soft targets), SGD with the
  :class:`~divqat.attacks.surrogate.TrainConfig` defaults.
- :class:`DefensePostprocessor`: a :mod:`divqat.defenses` defense as an ART postprocessor on
  predicted probabilities. Defenses that run a model on the query inputs (adaptive
  misinformation, MAD) need those inputs, which ART postprocessors never see: deploy them in a
  BlackBox and wrap that instead.

Inputs are NumPy arrays (N, C, H, W) in [0, 1] (``clip_values=(0, 1)``), as everywhere in divqat.
"""
import numpy as np
import torch
from art.defences.postprocessor import Postprocessor
from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier
from torch import nn

from divqat.blackbox import BlackBox

__all__ = ["art_classifier", "art_surrogate", "DefensePostprocessor"]

_META_KEYS = ("num_classes", "in_channels", "image_size", "mean", "std")


def _input_shape(meta):
    return (int(meta["in_channels"]), int(meta["image_size"]), int(meta["image_size"]))


def art_classifier(victim, postprocessing_defences=None, device_type="cpu"):
    """``victim`` (a BlackBox, or a divqat model with ``.meta``) as an ART classifier that
    predicts probability vectors (see the module docstring)."""
    if isinstance(victim, BlackBox):
        def predict(x):
            return victim.query(torch.as_tensor(np.asarray(x), dtype=torch.float32)).numpy()

        return BlackBoxClassifier(predict, victim.input_shape, victim.num_classes, clip_values=(0.0, 1.0),
                                  postprocessing_defences=postprocessing_defences)
    if isinstance(victim, nn.Module) and isinstance(getattr(victim, "meta", None), dict):
        model = nn.Sequential(victim, nn.Softmax(dim=1)).eval()
        return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), input_shape=_input_shape(victim.meta),
                                 nb_classes=int(victim.meta["num_classes"]), clip_values=(0.0, 1.0),
                                 postprocessing_defences=postprocessing_defences, device_type=device_type)
    raise ValueError(f"victim must be a divqat BlackBox or a divqat model with .meta, got {type(victim).__name__}")


def art_surrogate(arch, meta, train=None, device_type="cpu"):
    """A trainable ART ``PyTorchClassifier`` around ``build_model(arch, **meta)`` (``arch``: a
    name, ``package.module:callable`` or an nn.Module), trained with cross-entropy on (soft)
    targets and SGD with ``train``'s lr, momentum and weight decay (a TrainConfig, a dict of
    its fields or None for the defaults). The model is ``classifier.model``."""
    from divqat.attacks.surrogate import make_train_config
    from divqat.models import build_model

    config = make_train_config(train)
    model = build_model(arch, **{key: meta[key] for key in _META_KEYS})
    return PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), optimizer=config.sgd(model),
                             input_shape=_input_shape(meta), nb_classes=int(meta["num_classes"]),
                             clip_values=(0.0, 1.0), device_type=device_type)


class DefensePostprocessor(Postprocessor):
    """A divqat defense applied to an ART classifier's predicted probabilities (N, C)."""

    params = ["defense"]

    def __init__(self, defense, apply_fit=False, apply_predict=True):
        if not callable(defense):
            raise ValueError(f"defense must be a divqat defense (callable on probabilities), got {type(defense).__name__}")
        if getattr(defense, "needs_input", False):
            raise ValueError(f"defense {defense!r} runs a model on the query inputs, which an ART postprocessor "
                             "does not see: deploy it as BlackBox(model, defense=...) and wrap that with art_classifier")
        super().__init__(is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.defense = defense

    def __call__(self, preds):
        preds = np.asarray(preds)
        out = self.defense(torch.as_tensor(preds, dtype=torch.float32))
        return out.numpy().astype(preds.dtype, copy=False)

    def fit(self, x, y=None, **kwargs):
        """Nothing to fit: a divqat defense is configured by its parameters."""
