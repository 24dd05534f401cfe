"""The metrics of docs/science.md §6, defined once and used by every report.

Model extraction is judged on the victim's test set (Orekondy et al., "Knockoff Nets", CVPR 2019;
Jagielski et al., "High accuracy and high fidelity extraction of neural networks", USENIX 2020):

- accuracy           = mean_i [argmax s_i == y_i]
- agreement          = mean_i [argmax s_i == argmax v_i]   (fidelity; disagreement = 1 - agreement)
- adversary_error    = 1 - adversary accuracy
- normalized_accuracy = adversary accuracy / victim accuracy
- mean_l1(p, q)      = mean_i sum_k |p_ik - q_ik|
- mean_kl(p, q)      = mean_i sum_k p_ik log(p_ik / q_ik)   (0 log 0 = 0)

``scores`` arguments accept either a (N, C) matrix of logits/probabilities (its row argmax is
the prediction) or a (N,) vector of predicted labels. The victim's accuracy is the top-1 of the
vector it actually returns, so a defense that flips the argmax costs it accuracy.
"""
import torch
import torch.nn.functional as F

from divqat.utils import dataset_tensors

__all__ = [
    "accuracy",
    "agreement",
    "adversary_error",
    "normalized_accuracy",
    "mean_l1",
    "mean_kl",
    "predict_logits",
    "evaluate_surrogate",
]


def _labels(scores, name):
    if scores.dim() == 2:
        return scores.argmax(dim=1)
    if scores.dim() == 1:
        return scores
    raise ValueError(f"{name} must be (N, C) scores or (N,) labels, got shape {tuple(scores.shape)}")


def _pair(a, b, name_a, name_b):
    a, b = _labels(a, name_a), _labels(b, name_b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} hold {a.numel()} and {b.numel()} rows; they must match")
    if a.numel() == 0:
        raise ValueError(f"{name_a} is empty: a share of zero rows is undefined")
    return a, b


def accuracy(scores, labels):
    """Share of rows whose prediction (argmax of ``scores``, or ``scores`` itself if 1-D) equals ``labels``."""
    pred, labels = _pair(scores, labels, "scores", "labels")
    return (pred.cpu() == labels.cpu()).double().mean().item()


def agreement(scores_a, scores_b):
    """Fidelity: share of rows where the two models predict the same class."""
    a, b = _pair(scores_a, scores_b, "scores_a", "scores_b")
    return (a.cpu() == b.cpu()).double().mean().item()


def adversary_error(adversary_accuracy):
    """Adversary classification error = 1 - adversary accuracy."""
    return 1.0 - float(adversary_accuracy)


def normalized_accuracy(adversary_accuracy, victim_accuracy):
    """Adversary accuracy as a share of the victim's accuracy (Orekondy et al. 2019)."""
    if victim_accuracy <= 0:
        raise ValueError(f"victim_accuracy must be > 0 to normalize by it, got {victim_accuracy}")
    return float(adversary_accuracy) / float(victim_accuracy)


def _prob_pair(p, q):
    if p.dim() != 2 or p.shape != q.shape:
        raise ValueError("p and q must be (N, C) probability batches of one shape, "
                         f"got {tuple(p.shape)} and {tuple(q.shape)}")
    if p.shape[0] == 0:
        raise ValueError("p is empty: a mean over zero rows is undefined")
    return p.detach().double().cpu(), q.detach().double().cpu()


def mean_l1(p, q):
    """Mean over rows of the L1 distance sum_k |p_k - q_k| (in [0, 2] for distributions)."""
    p, q = _prob_pair(p, q)
    return (p - q).abs().sum(dim=1).mean().item()


def mean_kl(p, q, eps=1e-12):
    """Mean over rows of KL(p || q) = sum_k p_k (log p_k - log q_k), in float64, 0 log 0 = 0.

    ``q`` is clamped below at ``eps`` before the log, so a returned vector with zeros where
    ``p`` has mass (top-k, label-only, rounding) gives a large finite value instead of inf;
    ``eps=0`` gives the exact (possibly infinite) divergence.
    """
    p, q = _prob_pair(p, q)
    return (torch.xlogy(p, p) - torch.xlogy(p, q.clamp_min(eps))).sum(dim=1).mean().item()


@torch.no_grad()
def predict_logits(model, x, batch_size=256, device="cpu"):
    """Logits of ``model`` (put in eval mode) on ``x``, in batches, returned on the CPU."""
    model.eval()
    outs = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, 0)


def evaluate_surrogate(surrogate, victim, test_set, batch_size=256, device="cpu"):
    """Score a surrogate against its victim on the victim's test set (docs/science.md §6).

    ``victim`` is a :class:`divqat.blackbox.BlackBox` (its answers, defense and truncation
    included, are taken with :meth:`~divqat.blackbox.BlackBox.uncounted_query`, so evaluation
    never spends the adversary's budget) or a plain ``nn.Module`` returning logits.
    ``test_set`` is a Dataset of (x, y) or an (X, Y) tensor pair.

    Returns a dict with victim_accuracy, adversary_accuracy, adversary_error, agreement and
    normalized_accuracy (None when the victim's returned top-1 is never right, e.g. behind a
    defense that flips every answer: the ratio is undefined there, and one such cell must not
    abort a grid).
    """
    x, y = dataset_tensors(test_set)
    if hasattr(victim, "uncounted_query"):
        victim_out = victim.uncounted_query(x)
    else:
        victim_out = F.softmax(predict_logits(victim, x, batch_size, device), dim=1)
    surrogate_out = predict_logits(surrogate, x, batch_size, device)
    victim_acc = accuracy(victim_out, y)
    adversary_acc = accuracy(surrogate_out, y)
    return {
        "victim_accuracy": victim_acc,
        "adversary_accuracy": adversary_acc,
        "adversary_error": adversary_error(adversary_acc),
        "agreement": agreement(surrogate_out, victim_out),
        "normalized_accuracy": normalized_accuracy(adversary_acc, victim_acc) if victim_acc > 0 else None,
    }
