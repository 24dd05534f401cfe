"""Trained-in defense objectives beside the paper's DivQAT loss (docs/science.md §3 and §8).

Every objective is a composition of the fused ops of :mod:`divqat.ops` (``div_kl_loss``,
``divqat_loss``) and PyTorch's cross-entropy. Notation: s = f_q(x) (student logits),
t = f_fp(x) (frozen teacher logits), y the label, p = softmax(t/T), q = softmax(s/T),
KL_T(t, s) = T^2 KL(p || q) ("forward") or T^2 KL(q || p) ("reverse"), alpha the weight,
``cap`` an optional bound on the per-row divergence (a capped row contributes the constant cap,
hence no gradient, as in ``divqat_loss``).

- ``divqat`` (default, the paper, arXiv 2512.23948, :func:`divqat_step`): CE(y, s) - alpha * min(KL_T(t, s), cap).
  With T > 1 and the reverse direction this is Nasty Teacher's loss (Ma et al., ICLR 2021;
  VITA-Group/Nasty-Teacher: T = 4, weight 0.04 on CIFAR-10). At T = 1 it equals
  -(1 - alpha p_y) log q_y + alpha sum_{k!=y} p_k log q_k + alpha H(p): a confident teacher
  (p_y ~ 1) and alpha ~ 1 switch the cross-entropy off.
- ``nonlabel`` (non-label divergence with a protected top-1):
  CE(y, s) - alpha * min(KL_T(t~, s~), cap) + margin_weight * mean relu(m - (s_y - max_{k!=y} s_k))
  where t~, s~ have the label logit replaced by a very negative finite number (-1e4 T), so
  softmax(t~/T) and softmax(s~/T) are p and q renormalised over the classes k != y and the
  label class adds exactly 0 (and gets 0 gradient) in the fused KL. The full CE is kept; the
  hinge keeps log q_y - max_{k!=y} log q_k = s_y - max_{k!=y} s_k at least m.
- ``proxy`` (divergence on attacker-like inputs, after InI, arXiv 2308.00958): on the training
  batch x, CE(y, s) + distill * KL_T(t, s); on proxies x~ synthesised from that batch
  (:func:`divqat.train.proxies.synthesize_proxies`, from the ``proxy_transforms`` chosen), minus alpha times either
  min(KL_T(f_fp(x~), f_q(x~)), cap) (``proxy_target="kl"``) or the entropy
  H(softmax(f_q(x~))) = log C - KL(softmax(f_q(x~)) || uniform) (``"entropy"``, the KL taken by
  ``div_kl_loss`` in the reverse direction against all-zero logits); or, with ``"shift"``,
  plus alpha * CE((argmax f_fp(x~) + 1) mod C, f_q(x~)): consistent wrong labels on proxies, a
  fixed cyclic shift of the teacher's (our variant: maximising the divergence moves the answers
  to whatever class is cheapest, a shift teaches a surrogate a mapping that is wrong on the
  victim's own inputs; no cap); or, with ``"permute"``, plus alpha * KL_T(roll(t~), s~), t~ = f_fp(x~)
  with its classes renamed by the same shift (roll(t~)_j = t~_{(j-1) mod C}): the soft form of
  ``"shift"``, f_fp's whole answer on the proxy moved one class along, so soft labels mislead as
  the argmax does (our variant; no cap); or, with ``"swap"``, plus alpha * KL_T(swap(t~), s~),
  swap(t~) = t~ with its largest and second-largest logits exchanged: the answer on a proxy is
  f_fp's runner-up class, an input-dependent relabelling that splits a sink class over the
  classes f_fp ranks second (a permutation of classes only moves the sink; our variant; no cap);
  or, with ``"keep_sink"``, ``"permute"`` with the sink class k* kept: plus
  alpha * KL_T(t~[:, o], s~), where o renames the classes other than k* cyclically among
  themselves (f_fp's class c_i answered as c_{i+1}, c_0 < ... < c_{C-2} the classes != k*) and
  o[k*] = k*, and k* = the class f_fp gives most often on the first 2,000 images of the outlier
  training set (:func:`outlier_sink`; only with an outlier ``proxy_source``). A thief that drops
  its dominant answered class drops k*, the answer that tells it least, and what it keeps is
  renamed (our variant; no cap). Real images and proxies
  go through f_q in one batch (so batch-norm and observer statistics see both). With
  ``proxy_source="glyphs"`` the proxies are images of the offline outlier set
  (:mod:`divqat.data.outliers`) instead (:mod:`divqat.train.exposure`).
- ``misinform`` (trained-in misinformation on outliers, after adaptive misinformation):
  :mod:`divqat.train.misinformation_objective`.
- ``diverse`` (K heads that agree in distribution and disagree on outliers, one answer picked
  by a hash, after EDM): :mod:`divqat.train.diverse_heads`.

A new objective registers its step builder in :data:`STEPS`; each option of its own is a field
of :class:`~divqat.train.options.VictimConfig` marked ``objectives=(name,)`` (which makes it a
``divqat train`` option, refused with the other objectives) and a field of :class:`Objective`
of the same name.
"""
import copy
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from divqat.checks import check_choice, check_int, check_real
from divqat.data import outliers
from divqat.models.multihead import MIN_HEADS, with_heads
from divqat.ops import div_kl_loss, divqat_loss
from divqat.train.diverse_heads import diverse_step
from divqat.train.exposure import PROXY_SOURCES, forward_pair, proxy_batch
from divqat.train.misinformation_objective import misinform_step
from divqat.train.options import DEFAULTS, FIELDS, LABEL_OBJECTIVES
from divqat.train.proxies import TRANSFORMS, check_transforms

RELABELLINGS = ("permute", "swap", "keep_sink")  # the targets that distil f_fp's answer relabelled
PROXY_TARGETS = ("kl", "entropy", "shift", *RELABELLINGS)
SINK_SAMPLE = 2000  # outliers f_fp answers to name the sink class of ``keep_sink``
MASK_LOGIT = -1e4  # times max(1, T): exp(MASK_LOGIT / T - ...) underflows to exactly 0 in float32


def _capped_mean(rows, kl_cap):
    return (rows if kl_cap is None else rows.clamp(max=kl_cap)).mean()


def mask_label(logits, target, temperature=1.0):
    """``logits`` with the label column replaced by ``MASK_LOGIT * max(1, T)`` (out of place; the
    masked entry gets no gradient). softmax(result / T) is softmax(logits / T) renormalised over
    the classes k != target."""
    index = target.unsqueeze(-1)
    return logits.scatter(-1, index, logits.new_full(index.shape, MASK_LOGIT * max(1.0, temperature)))


def label_margin(logits, target):
    """s_y - max_{k != y} s_k per row (= log q_y - max_{k != y} log q_k at T = 1)."""
    label = logits.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    others = logits.masked_fill(F.one_hot(target, logits.shape[-1]).bool(), float("-inf"))
    return label - others.amax(dim=-1)


def nonlabel_loss(student_logits, teacher_logits, target, alpha, temperature=1.0, direction="forward",
                  kl_cap=None, margin=1.0, margin_weight=1.0):
    """The ``nonlabel`` objective (module docstring): full CE, minus alpha times the capped
    non-label divergence, plus the margin hinge. Returns a 0-d tensor."""
    ce = F.cross_entropy(student_logits, target)
    rows = div_kl_loss(mask_label(student_logits, target, temperature),
                       mask_label(teacher_logits, target, temperature), temperature, "none", direction)
    hinge = F.relu(margin - label_margin(student_logits, target)).mean()
    return ce - alpha * _capped_mean(rows, kl_cap) + margin_weight * hinge


def entropy(logits):
    """H(softmax(logits)) per row, as log C - KL(softmax(logits) || uniform) with the fused KL."""
    return math.log(logits.shape[-1]) - div_kl_loss(logits, torch.zeros_like(logits), 1.0, "none", "reverse")


def swap_top2(logits):
    """``logits`` with, per row, the largest and the second-largest entries exchanged (out of place)."""
    top2 = logits.topk(2, dim=-1).indices
    return logits.scatter(-1, top2, logits.gather(-1, top2.flip(-1)))


def keep_sink_order(classes, sink):
    """The column order o of ``keep_sink``'s target t[:, o] (module docstring): o[c_i] = c_{i-1}
    over the classes c_0 < ... < c_{C-2} other than ``sink``, o[sink] = sink."""
    others = [k for k in range(classes) if k != sink]
    order = list(range(classes))
    for i, k in enumerate(others):
        order[k] = others[i - 1]
    return torch.tensor(order)


@torch.no_grad()
def outlier_sink(teacher, like, source):
    """The class the frozen ``teacher`` gives most often on the first :data:`SINK_SAMPLE` images
    of the outlier set ``source``, shaped like ``like`` (N, C, S, S) (the lowest such class on a tie)."""
    images = outliers.load_outliers(source, outliers.DEFAULT_COUNT, like.shape[1], like.shape[-1])[:SINK_SAMPLE]
    answers = teacher(images.to(like.device, like.dtype)).argmax(-1)
    return int(torch.bincount(answers).argmax())


def relabelled(teacher_logits, proxy_target, sink=None):
    """The soft target of a relabelling ``proxy_target`` (:data:`RELABELLINGS`, module docstring):
    f_fp's logits with the classes renamed one along (``permute``; all but ``sink`` for
    ``keep_sink``) or the two largest exchanged (``swap``)."""
    if proxy_target == "permute":
        return teacher_logits.roll(1, -1)
    if proxy_target == "swap":
        return swap_top2(teacher_logits)
    if sink is None:
        raise ValueError("sink: proxy_target keep_sink needs the sink class")
    return teacher_logits[:, keep_sink_order(teacher_logits.shape[-1], sink).to(teacher_logits.device)]


def proxy_loss(student_logits, teacher_logits, target, proxy_student, proxy_teacher, alpha, temperature=1.0,
               direction="forward", kl_cap=None, proxy_target="kl", distill=0.0, sink=None):
    """The ``proxy`` objective (module docstring) from the logits of the real batch and of its
    proxies (``proxy_teacher`` may be None for ``proxy_target="entropy"``, ``teacher_logits`` for
    ``distill=0``; ``sink`` is k* of ``"keep_sink"``). Returns a 0-d tensor."""
    loss = F.cross_entropy(student_logits, target)
    if distill:
        loss = loss + distill * div_kl_loss(student_logits, teacher_logits, temperature, "batchmean", direction)
    if proxy_target == "shift":
        return loss + alpha * F.cross_entropy(proxy_student, (proxy_teacher.argmax(-1) + 1) % proxy_student.shape[-1])
    if proxy_target in RELABELLINGS:
        return loss + alpha * div_kl_loss(proxy_student, relabelled(proxy_teacher, proxy_target, sink), temperature,
                                          "batchmean", direction)
    if proxy_target == "kl":
        spread = div_kl_loss(proxy_student, proxy_teacher, temperature, "none", direction)
    else:
        spread = entropy(proxy_student)
    return loss - alpha * _capped_mean(spread, kl_cap)


def warmed_alpha(alpha, warmup_epochs, epochs_done):
    """alpha * min(1, epochs_done / warmup_epochs) (alpha itself without warm-up)."""
    return alpha * min(1.0, epochs_done / warmup_epochs) if warmup_epochs else alpha


def ce_only(logits, y):
    """The monitors of a cross-entropy-only step: loss = ce = CE(logits, y)."""
    loss = F.cross_entropy(logits, y)
    return {"loss": loss, "ce": loss.detach()}


def divqat_step(teacher, alpha, temperature=DEFAULTS.temperature, direction=DEFAULTS.direction,
                kl_cap=DEFAULTS.kl_cap, alpha_warmup_epochs=DEFAULTS.alpha_warmup):
    """The DivQAT training step for :func:`divqat.train.loop.fit` (the paper's loss,
    :mod:`divqat.train.trainers`); alpha = 0 is plain QAT (CE alone, the teacher never runs)."""

    def step(model, x, y, epochs_done):
        logits = model(x)
        a = warmed_alpha(alpha, alpha_warmup_epochs, epochs_done)
        if a == 0:
            return ce_only(logits, y)
        with torch.no_grad():
            teacher_logits = teacher(x)
        loss = divqat_loss(logits, teacher_logits, y, a, temperature, direction, kl_cap)
        return {"loss": loss, "ce": F.cross_entropy(logits.detach(), y)}

    return step


def _nonlabel_step(objective, teacher, alpha, temperature, direction, kl_cap, alpha_warmup_epochs):
    def step(model, x, y, epochs_done):
        a = warmed_alpha(alpha, alpha_warmup_epochs, epochs_done)
        logits = model(x)
        with torch.no_grad():
            t_real = teacher(x)
        loss = nonlabel_loss(logits, t_real, y, a, temperature, direction, kl_cap, objective.margin,
                             objective.margin_weight)
        return {"loss": loss, "ce": F.cross_entropy(logits.detach(), y)}

    return step


def _proxy_step(objective, teacher, alpha, temperature, direction, kl_cap, alpha_warmup_epochs):
    distill, target = objective.distill, objective.proxy_target
    sink = None  # k* of keep_sink, named from the outlier set at the first step

    def step(model, x, y, epochs_done):
        nonlocal sink
        if target == "keep_sink" and sink is None:
            sink = outlier_sink(teacher, x, objective.extra_source)
        a = warmed_alpha(alpha, alpha_warmup_epochs, epochs_done)
        proxies = proxy_batch(x, y, objective.proxy_transforms, objective.extra_source)
        # the teacher runs only on what the loss reads: real images for distill, proxies unless entropy
        logits, proxy_logits, t_real, t_proxy = forward_pair(model, teacher, x, proxies, bool(distill),
                                                             target != "entropy")
        loss = proxy_loss(logits, t_real, y, proxy_logits, t_proxy, a, temperature, direction, kl_cap, target,
                          distill, sink)
        return {"loss": loss, "ce": F.cross_entropy(logits.detach(), y)}

    return step


def _outlier_step(build):
    """The step builder of an objective trained on the outlier set (``misinform``, ``diverse``):
    ``build(objective, teacher, alpha_at, T, direction)`` with ``alpha_at(epochs_done)`` the
    warmed-up weight; these objectives have no per-row cap."""
    def make(objective, teacher, alpha, temperature, direction, kl_cap, alpha_warmup_epochs):
        return build(objective, teacher, lambda done: warmed_alpha(alpha, alpha_warmup_epochs, done), temperature,
                     direction)

    return make


#: objective name -> its step builder ``(objective, teacher, alpha, T, direction, cap, warm-up) -> step``;
#: an objective's own options are the VictimConfig fields that name it (``objectives=(name,)``)
STEPS = {
    "divqat": lambda objective, *args: divqat_step(*args),
    "nonlabel": _nonlabel_step,
    "proxy": _proxy_step,
    "misinform": _outlier_step(misinform_step),
    "diverse": _outlier_step(diverse_step),
}
OBJECTIVES = tuple(STEPS)


def own_options(name):
    """The options (VictimConfig fields) marked ``objectives=(..., name, ...)``: those the objective
    ``name`` reads that not every objective does (``kl_cap`` is shared by three)."""
    return tuple(f for f, spec in FIELDS.items() if name in (spec.metadata["objectives"] or ()))


@dataclass(frozen=True)
class Objective:
    """A trained-in defense objective and its own parameters (module docstring); the shared
    ones (alpha, T, direction, cap, warm-up) are the DivQAT trainer's. Each field is the
    :class:`~divqat.train.options.VictimConfig` option of that name, with its default."""

    name: str = DEFAULTS.objective
    margin: float = DEFAULTS.margin
    margin_weight: float = DEFAULTS.margin_weight
    proxy_target: str = DEFAULTS.proxy_target
    distill: float = DEFAULTS.distill
    proxy_transforms: tuple = tuple(DEFAULTS.proxy_transforms.split(","))
    proxy_source: str | None = DEFAULTS.proxy_source  # None: transforms for proxy, glyphs for the others
    heads: int = DEFAULTS.heads

    def __post_init__(self):
        check_transforms(self.proxy_transforms)
        check_choice("objective", self.name, OBJECTIVES)
        check_choice("proxy_target", self.proxy_target, PROXY_TARGETS)
        for key in ("margin", "margin_weight", "distill"):
            check_real(key, getattr(self, key), 0)
        if self.proxy_source is not None:
            check_choice("proxy_source", self.proxy_source, PROXY_SOURCES)
        if self.name == "proxy" and self.proxy_target == "keep_sink" and self.extra_source == "transforms":
            raise ValueError("proxy_target keep_sink names its sink on an outlier set: set proxy_source "
                             f"to one of {', '.join(outliers.OUTLIER_SETS)}")
        check_int("heads", self.heads, MIN_HEADS)

    @property
    def extra_source(self):
        """Where the proxy / outlier inputs come from (:data:`divqat.train.exposure.PROXY_SOURCES`)."""
        return self.proxy_source or ("transforms" if self.name == "proxy" else "glyphs")

    def model_options(self):
        """The ``build_model`` keywords of the student's float model (K heads for ``diverse``)."""
        return {"heads": self.heads} if self.name == "diverse" else {}

    def float_student(self, teacher):
        """The float model the student is prepared from: a copy of f_fp (with K heads for ``diverse``)."""
        student = copy.deepcopy(teacher).cpu()
        return with_heads(student, self.heads) if self.name == "diverse" else student

    def signature(self):
        """The parameters that matter for ``self.name`` (the paper's objective has none)."""
        keep = [k for k in own_options(self.name) if k not in ("proxy_transforms", "proxy_source")]
        signature = {"objective": self.name, **{k: v for k, v in asdict(self).items() if k in keep}}
        if self.name == "proxy" and tuple(self.proxy_transforms) != TRANSFORMS:  # old runs resume unchanged
            signature["proxy_transforms"] = list(self.proxy_transforms)
        if self.name in LABEL_OBJECTIVES or self.proxy_source not in (None, "transforms"):
            signature["proxy_source"] = self.extra_source
        return signature

    def make_step(self, teacher, alpha, temperature=DEFAULTS.temperature, direction=DEFAULTS.direction,
                  kl_cap=DEFAULTS.kl_cap, alpha_warmup_epochs=DEFAULTS.alpha_warmup):
        """A training step for :func:`divqat.train.loop.fit` minimising this objective (the
        paper's: :func:`divqat_step`)."""
        return STEPS[self.name](self, teacher, alpha, temperature, direction, kl_cap, alpha_warmup_epochs)


def objective_of(config):
    """The :class:`Objective` of a :class:`~divqat.train.options.VictimConfig`; ValueError naming
    the option."""
    values = {f.name: getattr(config, f.name) for f in fields(Objective) if f.name != "name"}
    values["proxy_transforms"] = tuple(values["proxy_transforms"].split(","))
    try:
        return Objective(config.objective, **values)
    except ValueError as exc:
        option = "proxy-transforms" if str(exc).startswith("proxy transforms") else str(exc).split(" ")[0]
        raise ValueError(f"--{option.replace('_', '-')}: {exc}") from None
