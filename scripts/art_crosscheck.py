"""Cross-check divqat's KnockoffNets and Copycat against ART's own implementations.

Both sides attack the same black box (a ``divqat train`` victim, probabilities, no defense)
with the same query set, budget and surrogate training (architecture of the victim, SGD lr
0.01, momentum 0.9, weight decay 5e-4, batch 64, the given epochs; the settings of
experiments/mnist_pairs_cpu.toml's knockoff), one row per (implementation, attack, seed),
scored by :func:`divqat.metrics.evaluate_surrogate` on the victim's whole test set.
ART's side: ``KnockoffNets(sampling_strategy="random", use_probability=True)`` (soft labels,
cross-entropy on probability targets) and ``CopycatCNN`` (hard labels), the victim wrapped by
:func:`divqat.integrations.art.art_classifier` (queries counted by the BlackBox), the surrogate
by :func:`~divqat.integrations.art.art_surrogate`. Resumable: rows already in OUT are skipped.
``--summary`` prints the Markdown table of docs/results/attacks.md from OUT
(:func:`divqat.results.art_tables.summary`).

    OMP_NUM_THREADS=1 nice -n 10 python scripts/art_crosscheck.py --victim runs/art_crosscheck/fp \\
        --queryset fashion-mnist --budget 5000 --epochs 20 --seeds 0 1 2 --out docs/results/data/art_crosscheck/art_crosscheck.csv
"""
import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

import torch

from divqat.results.art_tables import summary

FIELDS = ["victim", "implementation", "attack", "seed", "budget", "epochs", "queries_used", "victim_accuracy",
          "adversary_accuracy", "agreement", "seconds"]


def _read(path):
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _divqat(attack, blackbox, queryset, budget, train, seed):
    from divqat.attacks import ATTACKS

    surrogate, _ = ATTACKS[attack](blackbox, queryset=queryset, budget=budget, train=train, seed=seed, progress=False)
    return surrogate


def _art(attack, blackbox, queryset, budget, train, seed):
    from art.attacks.extraction import CopycatCNN, KnockoffNets

    from divqat.data import load_tensors
    from divqat.integrations.art import art_classifier, art_surrogate
    from divqat.utils import seed_everything

    seed_everything(seed)  # numpy (ART's sampling) and torch (the surrogate's initialisation)
    x = load_tensors(queryset, "train")[0].numpy()
    common = dict(batch_size_fit=train["batch_size"], batch_size_query=256, nb_epochs=train["epochs"],
                  nb_stolen=budget)
    victim = art_classifier(blackbox)
    if attack == "knockoff":
        art_attack = KnockoffNets(victim, sampling_strategy="random", use_probability=True, **common)
    else:
        art_attack = CopycatCNN(victim, **common)
    thief = art_surrogate(blackbox.arch, blackbox.meta, train={k: train[k] for k in ("lr", "momentum", "weight_decay")})
    return art_attack.extract(x, thieved_classifier=thief).model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--victim", help="a `divqat train --out` directory (required unless --summary)")
    p.add_argument("--queryset", default="fashion-mnist")
    p.add_argument("--budget", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--attacks", nargs="+", default=["knockoff", "copycat"])
    p.add_argument("--out", required=True, type=Path, help="CSV, one row per run (appended, resumable)")
    p.add_argument("--summary", action="store_true", help="print the Markdown summary of OUT and run nothing")
    args = p.parse_args()
    if args.summary:
        print(summary(_read(args.out)))
        return
    if args.victim is None:
        p.error("--victim is required")

    from divqat.blackbox import BlackBox
    from divqat.data import load_tensors
    from divqat.metrics import evaluate_surrogate
    from divqat.train import load_config

    config = load_config(args.victim)
    test = load_tensors(config["dataset"], "test")
    train = {"epochs": args.epochs, "lr": 0.01, "momentum": args.momentum, "weight_decay": 5e-4, "batch_size": 64}
    rows = _read(args.out)
    victim_name = Path(args.victim).name
    for seed in args.seeds:
        for attack in args.attacks:
            for name, run in (("divqat", _divqat), ("art", _art)):
                key = (victim_name, name, attack, str(seed))
                if any((r["victim"], r["implementation"], r["attack"], r["seed"]) == key for r in rows):
                    continue
                blackbox = BlackBox.from_dir(args.victim, budget=args.budget)
                start = time.time()
                surrogate = run(attack, blackbox, args.queryset, args.budget, train, seed)
                scores = evaluate_surrogate(surrogate, blackbox, test)
                rows.append({"victim": victim_name, "implementation": name, "attack": attack, "seed": seed,
                             "budget": args.budget, "epochs": args.epochs, "queries_used": blackbox.queries_used,
                             "victim_accuracy": f"{scores['victim_accuracy']:.4f}",
                             "adversary_accuracy": f"{scores['adversary_accuracy']:.4f}",
                             "agreement": f"{scores['agreement']:.4f}", "seconds": f"{time.time() - start:.0f}"})
                _write(args.out, rows)
                print(", ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main()
