"""One-seed screen of the label-aimed objectives (LeNet-5, seed 0), and the settings the rule of
docs/guide/label-only.md picks. No attack and no attacker query set: held-out top-1 on training
images 55,000-59,999 (never trained on in either setting) and the answers on a held-out outlier
split.

- ``--setting quick`` (default): the MNIST victim on the first 10,000 training images, every
  label-aimed objective (docs/results/data/label_only/screen.csv);
- ``--setting full``: the victim as deployed, on the first 55,000 training images (the deployed
  victim trains on all 60,000; the last 5,000 are held out here only), the relabelling targets of
  the proxy objective; ``--dataset`` mnist or fashion-mnist, one screen per victim
  (docs/results/data/label_only/screen_full_<dataset>.csv);
- ``--round 2`` (with ``--setting full``): the second round, two ways to pay less top-1 for a
  larger alpha of the ``permute`` target, each a family the rule picks from on its own: a
  heavier distillation weight (distill 3) and twice the epochs (6)
  (docs/results/data/label_only/screen_full_<dataset>_round2.csv);
- ``--round 3`` (with ``--setting full``): the third round, the ``swap`` target (f_fp's runner-up
  class), which splits a sink class instead of moving it whole, at the first round's alphas
  (docs/results/data/label_only/screen_full_<dataset>_round3.csv);
- ``--round 4`` (with ``--setting full``): the fourth round, the ``keep_sink`` target (``permute``
  with f_fp's sink class on the outlier set kept), at the first round's alphas and, as a family
  of its own, alpha 1 and 3 with 6 epochs
  (docs/results/data/label_only/screen_full_<dataset>_round4.csv).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/label_only_screen.py OUT_DIR [--setting full --dataset D [--round 2|3|4]]

Writes OUT_DIR/<setting>/ (the runs) and prints the table as CSV, then the selection.
"""
import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from divqat.data import load_tensors
from divqat.train.artifacts import load_victim
from divqat.train.label_selection import screen_metrics, select_setting
from divqat.train.objectives import outlier_sink
from divqat.train.victim import VictimConfig, train_victim

HELDOUT_FROM = 55000
LIMITS = {"quick": 10000, "full": HELDOUT_FROM}


def _proxy(target, alphas, label=None, **extra):
    return {f"{label or 'proxy-' + target} a{a:g}": dict(method="divqat", objective="proxy", proxy_source="glyphs",
                                           proxy_target=target, alpha=a, **{"distill": 1.0, **extra})
            for a in alphas}


QUICK_CANDIDATES = {
    "qat": dict(method="qat"),
    **{f"misinform a{a:g}": dict(method="divqat", objective="misinform", alpha=a, distill=1.0)
       for a in (0.1, 0.25, 0.5, 1.0, 3.0)},
    **{f"diverse a{a:g}": dict(method="divqat", objective="diverse", heads=3, alpha=a, distill=1.0)
       for a in (0.1, 0.3, 0.5, 1.0)},
    **_proxy("kl", (0.03, 0.1, 0.3, 1.0), label="proxy-glyphs", kl_cap=2.0),
    **_proxy("permute", (0.03, 0.1, 0.3, 1.0)),
    **_proxy("shift", (0.03, 0.1, 0.3, 1.0, 3.0)),
}
FULL_CANDIDATES = {"qat": dict(method="qat"), **_proxy("shift", (0.1, 0.3, 1.0, 3.0)),
                   **_proxy("permute", (0.1, 0.3, 1.0, 3.0))}
SECOND_ROUND = {"qat": dict(method="qat"),
                **_proxy("permute", (1.0, 3.0), label="proxy-permute-distill3", distill=3.0),
                **_proxy("permute", (1.0, 3.0), label="proxy-permute-epochs6", epochs=6)}
THIRD_ROUND = {"qat": dict(method="qat"), **_proxy("swap", (0.1, 0.3, 1.0, 3.0))}
FOURTH_ROUND = {"qat": dict(method="qat"), **_proxy("keep_sink", (0.1, 0.3, 1.0, 3.0)),
                **_proxy("keep_sink", (1.0, 3.0), label="proxy-keep_sink-epochs6", epochs=6)}
CANDIDATES = {("quick", 1): QUICK_CANDIDATES, ("full", 1): FULL_CANDIDATES, ("full", 2): SECOND_ROUND,
              ("full", 3): THIRD_ROUND, ("full", 4): FOURTH_ROUND}


def family(setting):
    """The family of a candidate: its name without the alpha (``proxy-permute a0.3`` -> ``proxy-permute``)."""
    return setting.rsplit(" a", 1)[0]


def picks(rows):
    """{family: the row the rule picks in it, or None}, in the rows' order, from the screen's rows
    (``setting``, ``heldout_top1``, ``outlier_change``), the first of them plain QAT's."""
    qat = rows[0]["heldout_top1"]
    families = dict.fromkeys(family(r["setting"]) for r in rows[1:])
    return {name: select_setting([r for r in rows if family(r["setting"]) == name], qat) for name in families}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--setting", choices=sorted(LIMITS), default="quick")
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--round", type=int, choices=(1, 2, 3, 4), default=1)
    args = parser.parse_args(argv)
    if args.setting == "quick" and args.dataset != "mnist":
        parser.error("--dataset: the quick screen is of the MNIST victim only")
    if (args.setting, args.round) not in CANDIDATES:
        parser.error("--round: the later rounds are of the victims as deployed (--setting full) only")
    out = Path(args.out)
    # the runs are cached by candidate name alone, so one OUT holds the screen of one setting and data set
    stamp, screen = out / "screen.json", {"setting": args.setting, "dataset": args.dataset}
    if stamp.is_file() and json.loads(stamp.read_text()) != screen:
        parser.error(f"out: {out} holds the screen of {json.loads(stamp.read_text())}, not of {screen}")
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(screen))
    base = dict(dataset=args.dataset, arch="lenet5", limit=LIMITS[args.setting], seed=0, device="cpu",
                no_progress=True)
    teacher = out / "fp"
    if not (teacher / "metrics.json").is_file():
        train_victim(VictimConfig(**base, method="fp", out=str(teacher)))
    images, labels = load_tensors(args.dataset, "train")
    images, labels = images[HELDOUT_FROM:], labels[HELDOUT_FROM:]
    if any(options.get("proxy_target") == "keep_sink" for options in CANDIDATES[args.setting, args.round].values()):
        print(f"keep_sink's sink class: {outlier_sink(load_victim(teacher, 'float'), images[:1], 'glyphs')}")
    rows = []
    for name, options in CANDIDATES[args.setting, args.round].items():
        run = out / name.replace(" ", "_")
        if not (run / "metrics.json").is_file():
            train_victim(dataclasses.replace(VictimConfig(**base, out=str(run), teacher=str(teacher)), **options))
        rows.append({"setting": name, **screen_metrics(run, teacher, images, labels)})
        print(rows[-1], flush=True)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    for name, picked in picks(rows).items():
        print(f"{name}: {picked['setting'] if picked else 'none qualifies'}")


if __name__ == "__main__":
    main()
