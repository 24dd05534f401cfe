"""What a defense costs the victim's honest users (docs/science.md §4 and §6).

On the victim's test set, with p = softmax(f(x)) the clean answers and y = defense(p, x) the
returned ones:

    victim_accuracy        top-1 accuracy of y (the accuracy honest users see)
    victim_accuracy_clean  top-1 accuracy of p
    argmax_changed         share of rows where argmax y != argmax p
    mean_l1, mean_kl       mean_i ||p_i - y_i||_1 and mean_i KL(p_i || y_i) (divqat.metrics)
    latency_per_query_s    median over ``repeats`` timed calls of the defense on one batch
                           (:func:`divqat.bench.median_ms`: CUDA events on GPU, the wall clock
                           on CPU), divided by the batch's rows (the latency it adds per query)
    victim_latency_per_query_s   the same for the victim's forward pass, timed alongside
    latency_overhead       latency_per_query_s / victim_latency_per_query_s
"""
import torch
import torch.nn.functional as F

from divqat.bench import median_ms
from divqat.checks import check_int
from divqat.metrics import accuracy, mean_kl, mean_l1
from divqat.progress import progress_bar
from divqat.utils import dataset_tensors as as_tensors

from .base import model_device

__all__ = ["defense_cost", "as_tensors"]


@torch.no_grad()
def defense_cost(victim, defense, test_set, batch_size=256, repeats=5, progress=False):
    """The cost of ``defense`` on ``victim`` (``forward(x) -> logits``) over ``test_set``.

    ``test_set`` is an (X, Y) tensor pair or a Dataset of (x, y); the victim runs on its own
    device, in eval mode. Returns the dict described in the module docstring, plus
    ``defense`` (its repr) and ``num_queries``. Latencies are wall-clock seconds in this
    process (a shared machine makes them noisy: compare ratios).
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    repeats = check_int("repeats", repeats, low=1)
    x_all, y_all = as_tensors(test_set)
    victim.eval()
    device = model_device(victim)
    clean, returned = [], []
    for i in progress_bar(range(0, len(x_all), batch_size), total=len(x_all), desc="defense cost", unit="queries",
                          size=lambda i: min(batch_size, len(x_all) - i), enabled=progress):
        x = x_all[i:i + batch_size].to(device)
        p = F.softmax(victim(x).float(), dim=1)
        clean.append(p.cpu())
        returned.append(defense(p, x).float().cpu())
    clean, returned = torch.cat(clean), torch.cat(returned)

    x = x_all[:batch_size].to(device)
    p = F.softmax(victim(x).float(), dim=1)
    defense_s = median_ms(lambda: defense(p, x), device, repeat=repeats, warmup=1) / 1e3 / len(x)
    victim_s = median_ms(lambda: victim(x), device, repeat=repeats, warmup=1) / 1e3 / len(x)
    return {
        "defense": repr(defense),
        "num_queries": len(x_all),
        "victim_accuracy": accuracy(returned, y_all),
        "victim_accuracy_clean": accuracy(clean, y_all),
        "argmax_changed": (returned.argmax(dim=1) != clean.argmax(dim=1)).double().mean().item(),
        "mean_l1": mean_l1(clean, returned),
        "mean_kl": mean_kl(clean, returned),
        "latency_per_query_s": defense_s,
        "victim_latency_per_query_s": victim_s,
        "latency_overhead": defense_s / victim_s,
    }
