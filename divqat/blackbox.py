"""The query-counted victim interface: the only thing an extraction attack sees.

A deployed classifier answers queries x in [0, 1]^(C,H,W) with a probability vector, or less
(Orekondy et al., "Knockoff Nets", CVPR 2019, section 6; Tramer et al., "Stealing Machine
Learning Models via Prediction APIs", USENIX Security 2016). For every query batch:

    p = softmax(f(x))                    the victim's probabilities (float, fake-quant or int8 model)
    p = defense(p)                       optional output perturbation, a callable (N, C) -> (N, C)
    answer = truncate(p)                 the output mode, one of the truncating defenses of
                                         :mod:`divqat.defenses` (:data:`OUTPUT_MODES`):
                                         "probs": p unchanged
                                         "topk": :class:`~divqat.defenses.TopK` (k): the k largest
                                                 entries, renormalised to sum to 1
                                         "rounded": :class:`~divqat.defenses.Rounding` (decimals):
                                                 entries rounded to ``decimals`` decimals by largest
                                                 remainder, so rows still sum to 1
                                         "label": :class:`~divqat.defenses.LabelOnly`: one-hot argmax

Every input row is counted, atomically: under a lock the query is checked against the budget
and counted before it is answered, so concurrent threads never get more than the budget
answered. A query that would exceed the budget is refused whole with
:class:`QueryBudgetExceeded`; nothing is answered and nothing is counted (a query whose
answering fails is uncounted again). Answers are detached CPU float32 tensors: no gradient
reaches the victim.

Python cannot truly hide an object: the wrapped model lives in a private attribute, and a
caller that digs it out is cheating by convention, not stopped by the language. Attacks in
:mod:`divqat.attacks` use only :meth:`BlackBox.query` and the public metadata (number of
classes, input shape, normalisation statistics and architecture name, which the threat model
of docs/science.md §1 grants the adversary).
"""
import hashlib
import os
import threading

import torch
import torch.nn.functional as F

from divqat.defenses import LabelOnly, Rounding, TopK
from divqat.defenses.rounding import MAX_DECIMALS

__all__ = ["BlackBox", "QueryBudgetExceeded", "OUTPUT_MODES"]

#: output mode -> the defense class that truncates the answers and the BlackBox argument that is
#: its one parameter ("probs": no truncation)
OUTPUT_MODES = {"probs": (None, None), "topk": (TopK, "k"), "rounded": (Rounding, "decimals"),
                "label": (LabelOnly, None)}
_META_KEYS = ("num_classes", "in_channels", "image_size", "mean", "std")


class QueryBudgetExceeded(RuntimeError):
    """A query batch would take the black box past its query budget; it was not answered."""


def _truncation(output, k, decimals, num_classes):
    """The defense object of an output mode, its parameter checked; None for "probs"."""
    if output not in OUTPUT_MODES:
        raise ValueError(f"output must be one of {tuple(OUTPUT_MODES)}, got {output!r}")
    cls, arg = OUTPUT_MODES[output]
    given = {"k": k, "decimals": decimals}
    for name, value in given.items():
        if name != arg and value is not None:
            raise ValueError(f"{name} is only used with output={'topk' if name == 'k' else 'rounded'!r}, "
                             f"got {name}={value!r} with output={output!r}")
    high = num_classes if arg == "k" else MAX_DECIMALS
    value = given.get(arg)
    if arg is not None and (isinstance(value, bool) or not isinstance(value, int)
                            or not (1 if arg == "k" else 0) <= value <= high):
        raise ValueError(f"{arg} must be an int in [{1 if arg == 'k' else 0}, {high}] for output={output!r}, "
                         f"got {value!r}")
    if cls is None:
        return None
    return cls(value) if arg is not None else cls()


class BlackBox:
    """A victim behind a query-counting, budget-enforcing prediction API.

    Args:
        model: the victim, ``forward(x in [0, 1]) -> logits``; put in eval mode and moved to ``device``.
        output: "probs", "topk", "rounded" or "label" (see the module docstring).
        k: entries kept by "topk" (1 <= k <= num_classes).
        decimals: decimals kept by "rounded" (0 <= decimals <= 15).
        defense: a callable mapping (N, C) probabilities to (N, C) probabilities, applied before
            the truncation (e.g. a :mod:`divqat.defenses` object); one with a true ``needs_input``
            attribute is called as ``defense(p, x)`` with the query batch.
        budget: the most input rows this black box will ever answer (None: unlimited).
        batch_size: rows per forward pass of the victim (also the defense's batch).
        device: where the victim runs.
        meta: dict with num_classes, in_channels, image_size, mean, std; default ``model.meta``.
        arch: architecture name published with the API; default ``model.arch`` if present.
        victim_id: a string identifying the victim's weights, used to key transfer-set caches;
            :meth:`from_dir` sets it from the checkpoint's hash.
        defense_id: a string identifying the defense and its parameters for cache keys;
            default ``repr(defense)``.
    """

    def __init__(self, model, output="probs", k=None, decimals=None, defense=None, budget=None,
                 batch_size=256, device="cpu", meta=None, arch=None, victim_id=None, defense_id=None):
        meta = dict(meta if meta is not None else getattr(model, "meta", None) or {})
        missing = [key for key in _META_KEYS if key not in meta]
        if missing:
            raise ValueError(f"meta lacks {missing}: pass meta=dict(num_classes=..., in_channels=..., "
                             "image_size=..., mean=..., std=...) or a model with a .meta dict")
        self._truncation = _truncation(output, k, decimals, int(meta["num_classes"]))
        if defense is not None and not callable(defense):
            raise ValueError(f"defense must be callable on (N, C) probabilities, got {type(defense).__name__}")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise ValueError(f"budget must be None or an int >= 0, got {budget!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        self._defense = defense
        self.output, self.k, self.decimals = output, k, decimals
        self.budget, self.batch_size = budget, batch_size
        self.meta = meta
        self.arch = arch if arch is not None else getattr(model, "arch", None)
        self.victim_id = victim_id
        self.defense_id = defense_id if defense_id is not None or defense is None else repr(defense)
        self.queries_used = 0
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, directory, kind="auto", **kwargs):
        """Deploy the victim of a ``divqat train`` output directory (via ``divqat.train.load_victim``).

        ``kind`` is passed to ``load_victim`` ("auto", "float", "fake_quant", "int8"); the other
        keyword arguments go to :class:`BlackBox`. ``victim_id`` defaults to a hash of the
        directory's config and checkpoint files plus ``kind``.
        """
        from divqat.train import load_config, load_victim

        config = load_config(directory)
        model = load_victim(directory, kind=kind, device=kwargs.get("device", "cpu"))
        if kwargs.get("meta") is None and getattr(model, "meta", None) is None:
            kwargs["meta"] = config["meta"]
        kwargs.setdefault("arch", getattr(model, "arch", None) or config.get("arch"))
        kwargs.setdefault("victim_id", _directory_hash(directory, kind))
        return cls(model, **kwargs)

    @property
    def num_classes(self):
        return int(self.meta["num_classes"])

    @property
    def input_shape(self):
        """(C, H, W) of the images the victim accepts."""
        size = self.meta["image_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return (int(self.meta["in_channels"]), h, w)

    @property
    def budget_left(self):
        """Queries still allowed (None when the budget is unlimited)."""
        return None if self.budget is None else self.budget - self.queries_used

    def identity(self):
        """What determines this black box's answers, as a dict for cache keys.

        Raises ValueError when the victim or the defense has no stable identity
        (no ``victim_id``; a defense whose repr is the default ``<... at 0x...>``).
        """
        if self.victim_id is None:
            raise ValueError("this BlackBox has no victim_id: pass victim_id=... (from_dir sets it) "
                             "to cache its answers")
        if self._defense is not None and " at 0x" in self.defense_id:
            raise ValueError(f"defense_id {self.defense_id!r} is not stable across runs: pass defense_id=...")
        return {"victim": self.victim_id, "output": self.output, "k": self.k,
                "decimals": self.decimals, "defense": self.defense_id}

    def query(self, x):
        """Answer a batch x of shape (N, C, H, W) in [0, 1]; counts N queries.

        Raises ValueError for a bad x and QueryBudgetExceeded (answering nothing) when N
        exceeds :attr:`budget_left`.
        """
        self._check(x)
        n = x.shape[0]
        with self._lock:  # check and count in one step, before answering
            if self.budget is not None and self.queries_used + n > self.budget:
                raise QueryBudgetExceeded(
                    f"query of {n} inputs refused: {self.queries_used} of the budget of {self.budget} already used")
            self.queries_used += n
        try:
            return self._answer(x)
        except BaseException:
            with self._lock:  # nothing was answered: nothing stays counted
                self.queries_used -= n
            raise

    def uncounted_query(self, x):
        """The answers :meth:`query` would give, without counting them against the budget.

        For the experimenter's evaluation on the victim's test set
        (:func:`divqat.metrics.evaluate_surrogate`); an attack never calls it.
        """
        self._check(x)
        return self._answer(x)

    def _check(self, x):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {type(x).__name__}"
                             + (f" of dtype {x.dtype}" if torch.is_tensor(x) else ""))
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
            raise ValueError("x must hold pixel values in [0, 1] (and no NaN)")

    @torch.no_grad()
    def _answer(self, x):
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i:i + self.batch_size].to(self._device, torch.float32)
            logits = self._model(xb)
            p = F.softmax(logits.float(), dim=1)
            if self._defense is not None:
                defended = (self._defense(p, xb) if getattr(self._defense, "needs_input", False)
                            else self._defense(p))
                if tuple(defended.shape) != tuple(p.shape):
                    raise RuntimeError(f"defense returned shape {tuple(defended.shape)} for probabilities "
                                       f"of shape {tuple(p.shape)}")
                p = defended.float()
            if self._truncation is not None:
                p = self._truncation(p)
            outs.append(p.detach().cpu())
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes)

    def __repr__(self):
        return (f"BlackBox(arch={self.arch!r}, output={self.output!r}, k={self.k}, decimals={self.decimals}, "
                f"defense={self.defense_id}, budget={self.budget}, queries_used={self.queries_used})")


def _directory_hash(directory, kind):
    digest = hashlib.sha256(kind.encode())
    for name in sorted(os.listdir(directory)):
        if name.startswith("model") or name == "config.json":
            with open(os.path.join(directory, name), "rb") as f:
                digest.update(name.encode())
                digest.update(f.read())
    return digest.hexdigest()[:16]
