"""Where the drop-the-sink thief's agreement comes from (docs/results/label-only.md): for the
victims of one seed of a label-only run, the thief's own attack
(``sink-aware``, mode drop, max share 0.3, 20-epoch surrogate, the run's seed, so each
agreement is the grid cell's), then on the victim's test images: the share of its answers the
surrogate gives to each class, and per class of the victim's answer how many test images the
surrogate agrees on. Analysis of a finished verdict; nothing is selected on it.

    OMP_NUM_THREADS=1 python scripts/label_only_drop_probe.py RUN VICTIM QUERYSET SEED VICTIM_GLOB...

RUN: a label-only run directory (runs/labelonly_<pair>), VICTIM and QUERYSET its data sets, SEED
the seed, each VICTIM_GLOB a pattern of a victim folder name of that seed under RUN/victims
(e.g. ``qat-seed0-*``). It prints to stdout; the committed output is
docs/results/data/label_only/drop_probe_<pair>_seed<seed>.txt.
"""
import argparse
from pathlib import Path

import torch

from divqat.attacks import ATTACKS
from divqat.blackbox import BlackBox
from divqat.data import load_tensors
from divqat.train.artifacts import load_victim

BUDGET, MAX_SHARE, EPOCHS = 5000, 0.3, 20


def _shares(labels, classes):
    counts = torch.bincount(labels, minlength=classes)
    return (100 * counts / counts.sum()).round().int().tolist()


def probe(victim_dir, queryset, images, seed):
    """(record of the attack, agreement %, surrogate's class shares %, agreements per victim class)."""
    victim = load_victim(victim_dir, "int8")
    surrogate, record = ATTACKS["sink-aware"](BlackBox(victim, budget=BUDGET), queryset, BUDGET, mode="drop",
                                              max_share=MAX_SHARE, train={"epochs": EPOCHS, "momentum": 0.9},
                                              seed=seed, progress=False)
    with torch.no_grad():
        answers, stolen = victim(images).argmax(-1), surrogate(images).argmax(-1)
    classes = int(victim.meta["num_classes"])
    per_class = [int(((answers == c) & (stolen == c)).sum()) for c in range(classes)]
    return record, 100 * (answers == stolen).double().mean().item(), _shares(stolen, classes), per_class


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("victim")
    parser.add_argument("queryset")
    parser.add_argument("seed", type=int)
    parser.add_argument("victims", nargs="+", metavar="VICTIM_GLOB")
    args = parser.parse_args(argv)
    folders = [sorted((args.run / "victims").glob(pattern)) for pattern in args.victims]
    for pattern, found in zip(args.victims, folders):
        if len(found) != 1:
            parser.error(f"VICTIM_GLOB: {pattern!r} matches {len(found)} victim folders under {args.run}, not one")
    images, _ = load_tensors(args.victim, "test")
    for [folder] in folders:
        record, agreement, shares, per_class = probe(folder, args.queryset, images, args.seed)
        print(f"{folder.name}: dropped class {record['dropped_class']}, kept {record['kept_examples']} of {BUDGET}, "
              f"agreement {agreement:.1f} %")
        print(f"  surrogate's answers per class, %: {shares}")
        print(f"  test images agreed on, per class of the victim's answer: {per_class}")


if __name__ == "__main__":
    main()
