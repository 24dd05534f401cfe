"""One-seed screen of the label-aimed objectives on the MNIST victim, quick setting (the first
10,000 training images, LeNet-5, seed 0), and the settings the rule of docs/guide/label-only.md
picks. No attack and no attacker query set: held-out top-1 on training images 55,000-59,999
(never trained on in this setting) and the answers on a held-out outlier split.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/label_only_screen.py OUT_DIR

Writes OUT_DIR/<setting>/ (the runs) and prints the table as CSV (docs/results/data/label_only/
screen.csv), then the selection.
"""
import csv
import dataclasses
import sys
from pathlib import Path

from divqat.data import load_tensors
from divqat.train.label_selection import screen_metrics, select_setting
from divqat.train.victim import VictimConfig, train_victim

QUICK = dict(dataset="mnist", arch="lenet5", limit=10000, seed=0, device="cpu", no_progress=True)
CANDIDATES = {
    "qat": dict(method="qat"),
    "misinform a0.1": dict(method="divqat", objective="misinform", alpha=0.1, distill=1.0),
    "misinform a0.25": dict(method="divqat", objective="misinform", alpha=0.25, distill=1.0),
    "misinform a0.5": dict(method="divqat", objective="misinform", alpha=0.5, distill=1.0),
    "misinform a1": dict(method="divqat", objective="misinform", alpha=1.0, distill=1.0),
    "misinform a3": dict(method="divqat", objective="misinform", alpha=3.0, distill=1.0),
    "diverse a0.1": dict(method="divqat", objective="diverse", heads=3, alpha=0.1, distill=1.0),
    "diverse a0.3": dict(method="divqat", objective="diverse", heads=3, alpha=0.3, distill=1.0),
    "diverse a0.5": dict(method="divqat", objective="diverse", heads=3, alpha=0.5, distill=1.0),
    "diverse a1": dict(method="divqat", objective="diverse", heads=3, alpha=1.0, distill=1.0),
    "proxy-glyphs a0.03": dict(method="divqat", objective="proxy", proxy_source="glyphs", alpha=0.03, kl_cap=2.0,
                               distill=1.0),
    "proxy-glyphs a0.1": dict(method="divqat", objective="proxy", proxy_source="glyphs", alpha=0.1, kl_cap=2.0,
                              distill=1.0),
    "proxy-glyphs a0.3": dict(method="divqat", objective="proxy", proxy_source="glyphs", alpha=0.3, kl_cap=2.0,
                              distill=1.0),
    "proxy-glyphs a1": dict(method="divqat", objective="proxy", proxy_source="glyphs", alpha=1.0, kl_cap=2.0,
                            distill=1.0),
    **{f"proxy-permute a{a:g}": dict(method="divqat", objective="proxy", proxy_source="glyphs", proxy_target="permute",
                                     alpha=a, distill=1.0) for a in (0.03, 0.1, 0.3, 1.0)},
    **{f"proxy-shift a{a:g}": dict(method="divqat", objective="proxy", proxy_source="glyphs", proxy_target="shift",
                                   alpha=a, distill=1.0) for a in (0.03, 0.1, 0.3, 1.0, 3.0)},
}


def main(out):
    out = Path(out)
    teacher = out / "fp"
    if not (teacher / "metrics.json").is_file():
        train_victim(VictimConfig(**QUICK, method="fp", out=str(teacher)))
    images, labels = load_tensors("mnist", "train")
    images, labels = images[55000:], labels[55000:]
    rows = []
    for name, options in CANDIDATES.items():
        run = out / name.replace(" ", "_")
        if not (run / "metrics.json").is_file():
            train_victim(dataclasses.replace(VictimConfig(**QUICK, out=str(run), teacher=str(teacher)), **options))
        rows.append({"setting": name, **screen_metrics(run, teacher, images, labels)})
        print(rows[-1], flush=True)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    qat = rows[0]["heldout_top1"]
    for family in ("misinform", "diverse", "proxy-glyphs", "proxy-permute", "proxy-shift"):
        picked = select_setting([r for r in rows if r["setting"].startswith(family)], qat)
        print(f"{family}: {picked['setting'] if picked else 'none qualifies'}")


if __name__ == "__main__":
    main(sys.argv[1])
