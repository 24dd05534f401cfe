"""KnockoffNets with adaptive sampling (Orekondy, Schiele and Fritz, "Knockoff Nets", CVPR 2019,
section 4.1.2): a gradient bandit over the query set's classes learns which classes' images
are worth querying.

Policy (Sutton and Barto, "Reinforcement Learning", section 2.8): preferences H over the K
classes of the query set, pi = softmax(H) over the classes with images left. Each query draws
a class a ~ pi and an unused image of that class; after its reward r,

    rbar  <- running mean of all rewards so far (including r)
    H_a   <- H_a + (r - rbar) (1 - pi_a) / n_a
    H_b   <- H_b - (r - rbar) pi_b / n_a            for b != a

with n_a the number of times class a was drawn (sample-average step size, as in ART's
implementation). Rewards of the victim's answer y and the surrogate's logits s:

    cert:  y_(1) - y_(2)                                margin of the victim's top two
    div:   sum_k max(0, y_k - ybar_k)                   ybar: mean of the victim's earlier answers
    loss:  -sum_k y_k log softmax(s)_k                  the surrogate's soft cross-entropy on x
    all:   mean of the three, each standardised by its running mean and standard deviation

Queries go out in rounds of ``round_size`` images drawn from the policy at the round's start;
the rewards then update H one query at a time, and the surrogate takes one SGD step on the
round (online training, so the loss reward tracks what it has learnt). After the budget is
spent the surrogate is trained on the whole transfer set with the usual schedule, starting
from its online weights.
"""
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from divqat.attacks.common import attack_record, check_ints, queryset_name, setup_attack
from divqat.attacks.queryset import load_queryset
from divqat.attacks.surrogate import make_train_config, optimizer_step, soft_label_loss, train_surrogate
from divqat.progress import progress_bar

__all__ = ["REWARDS", "knockoff_adaptive", "GradientBandit", "Rewards"]

REWARDS = ("cert", "div", "loss", "all")


class GradientBandit:
    """The gradient-bandit policy over ``sizes`` arms (class pools of those sizes)."""

    def __init__(self, sizes):
        self.h = np.zeros(len(sizes))
        self.left = np.asarray(sizes, dtype=np.int64).copy()
        self.pulls = np.zeros(len(sizes), dtype=np.int64)
        self.mean_reward, self.rewards_seen = 0.0, 0

    def probs(self):
        """softmax(H) over the arms with images left (zero for exhausted ones)."""
        logits = np.where(self.left > 0, self.h, -np.inf)
        e = np.exp(logits - logits.max())
        return e / e.sum()

    def sample(self, n):
        """Draw ``n`` arms from the current policy without exceeding any pool."""
        arms = []
        for _ in range(n):
            p = np.where(self.left > 0, self.probs(), 0.0)
            a = int(np.random.choice(len(p), p=p / p.sum()))
            self.left[a] -= 1
            arms.append(a)
        return arms

    def update(self, arm, reward):
        """One gradient-bandit step for ``reward`` received on ``arm``."""
        pi = self.probs()
        self.rewards_seen += 1
        self.mean_reward += (reward - self.mean_reward) / self.rewards_seen
        self.pulls[arm] += 1
        step = (reward - self.mean_reward) / self.pulls[arm]
        onehot = np.zeros_like(self.h)
        onehot[arm] = 1.0
        self.h += step * (onehot - pi)


class Rewards:
    """Per-query rewards ``kind`` in REWARDS, with the running statistics they need."""

    def __init__(self, kind, num_classes):
        if kind not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {kind!r}")
        self.kind = kind
        self.answer_sum, self.answers_seen = torch.zeros(num_classes, dtype=torch.float64), 0
        self.sums, self.squares, self.count = np.zeros(3), np.zeros(3), 0

    def __call__(self, y, logits):
        y = y.double()
        top2 = y.topk(2, dim=1).values
        cert = top2[:, 0] - top2[:, 1]
        seen = self.answers_seen + torch.arange(len(y), dtype=torch.float64)
        before = (self.answer_sum + y.cumsum(0) - y) / seen.clamp_min(1).unsqueeze(1)  # ybar before each query
        div = (y - before).clamp_min(0).sum(dim=1)
        self.answer_sum += y.sum(0)
        self.answers_seen += len(y)
        loss = -(y * F.log_softmax(logits.double(), dim=1)).sum(dim=1)
        if self.kind != "all":
            return {"cert": cert, "div": div, "loss": loss}[self.kind].numpy()
        r = torch.stack([cert, div, loss], dim=1).numpy()
        count = self.count + np.arange(1, len(r) + 1)[:, None]
        mean = (self.sums + r.cumsum(0)) / count
        var = (self.squares + (r ** 2).cumsum(0)) / count - mean ** 2
        self.sums += r.sum(0)
        self.squares += (r ** 2).sum(0)
        self.count += len(r)
        std = np.sqrt(np.clip(var, 0, None))
        z = np.where(std > 1e-12, (r - mean) / np.where(std > 1e-12, std, 1.0), 0.0)
        return z.mean(axis=1)


def knockoff_adaptive(blackbox, queryset, budget, *, reward="all", round_size=64, arch=None, train=None, seed=0,
                      progress=True, adapt_queries=False):
    """KnockoffNets, adaptive strategy (see the module docstring).

    ``queryset`` needs class labels (a dataset name or an (X, Y) pair); ``reward`` is one of
    REWARDS; ``round_size`` queries per policy round. Other arguments as
    :func:`divqat.attacks.knockoff.knockoff` (no transfer-set cache: the queries depend on the
    surrogate). Returns ``(surrogate, record)``; the record holds the final class policy.
    """
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    check_ints(1, round_size=round_size)
    config = make_train_config(train).resolved(blackbox.meta)
    surrogate = setup_attack(blackbox, budget, arch, seed)
    x, y = load_queryset(queryset, blackbox, adapt=adapt_queries, need_labels=True)
    if budget > len(x):
        raise ValueError(f"budget {budget} exceeds the {len(x)} images of the query set")
    classes = torch.unique(y)
    pools = [torch.nonzero(y == c).flatten()[torch.randperm(int((y == c).sum()))].tolist() for c in classes]
    bandit, rewards = GradientBandit([len(p) for p in pools]), Rewards(reward, blackbox.num_classes)
    device = torch.device(config.device)
    surrogate.to(device)
    optimizer = config.sgd(surrogate)
    start = blackbox.queries_used
    chosen, answers = [], []
    with progress_bar(total=budget, desc="knockoff-adaptive", unit="queries", enabled=progress) as bar:
        while len(chosen) < budget:
            arms = bandit.sample(min(round_size, budget - len(chosen)))
            idx = [pools[a].pop() for a in arms]
            xb = x[idx]
            yb = blackbox.query(xb)
            surrogate.eval()
            with torch.no_grad():
                logits = surrogate(xb.to(device)).cpu()
            for a, r in zip(arms, rewards(yb, logits)):
                bandit.update(a, float(r))
            if len(idx) > 1:  # batch norm cannot train on a single example
                optimizer_step(surrogate, optimizer, soft_label_loss, xb.to(device), yb.to(device))
            chosen += idx
            answers.append(yb)
            bar.update(len(idx))
    history = train_surrogate(surrogate, x[chosen], torch.cat(answers), config, progress=progress,
                              desc="knockoff-adaptive")
    record = attack_record("knockoff-adaptive", blackbox, surrogate, budget, seed,
                           blackbox.queries_used - start, train=asdict(config), reward=reward, round_size=round_size,
                           queryset=queryset_name(queryset),
                           adapt_queries=adapt_queries, final_train_loss=history[-1],
                           class_policy={int(c): float(p) for c, p in zip(classes, bandit.probs())},
                           class_counts={int(c): int(n) for c, n in zip(classes, bandit.pulls)})
    return surrogate, record
