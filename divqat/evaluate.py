"""A trained victim's test accuracy, and what a defense costs it (the library of
``divqat evaluate``, whose options are :mod:`divqat.evaluate_command`'s).

The victim is loaded with :func:`divqat.train.load_victim` and scored on the test split of the
dataset it was trained on (docs/science.md §6). With a ``defense`` the result adds the
defense's cost (:func:`divqat.defenses.defense_cost`): accuracy of the returned vectors, mean
L1 and KL between clean and returned vectors, and latency added per query. The result is
a dict; the command prints it and, with ``--out``, writes it as JSON (atomically).
"""
import torch.nn.functional as F

from divqat.checks import check_int
from divqat.defenses import defense_cost
from divqat.metrics import accuracy, predict_logits


def evaluate_victim(victim_dir, kind="auto", defense=None, limit=None, data_root=None, batch_size=256,
                    repeats=5, progress=True):
    """The dict ``divqat evaluate`` reports: victim, kind, dataset, num_test, accuracy and,
    with a defense, the keys of :func:`divqat.defenses.defense_cost`."""
    check_int("limit", limit, 1, optional=True)
    check_int("batch_size", batch_size, 1)
    check_int("repeats", repeats, 1)
    from divqat.data import load_tensors
    from divqat.train import load_config, load_victim

    config = load_config(victim_dir)
    model = load_victim(victim_dir, kind=kind)
    x, y = load_tensors(config["dataset"], "test", root=data_root, limit=limit)
    result = {"victim": str(victim_dir), "kind": kind, "method": config.get("method"),
              "arch": config.get("arch"), "dataset": config["dataset"], "num_test": len(y)}
    if defense is None:
        result["accuracy"] = accuracy(F.softmax(predict_logits(model, x, batch_size), dim=1), y)
    else:
        cost = defense_cost(model, defense, (x, y), batch_size=batch_size, repeats=repeats, progress=progress)
        result["accuracy"] = cost["victim_accuracy_clean"]
        result.update(cost)
    return result
