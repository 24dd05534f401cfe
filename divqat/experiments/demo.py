"""The demo: QAT against DivQAT under KnockoffNets on the built-in data, end to end (its command,
``divqat demo``, is :mod:`divqat.experiments.demo_command`).

A small built-in experiment run by the same runner as ``divqat experiment``: a LeNet-5 MNIST
victim (LeCun et al. 1998) is trained in full precision, then quantized to int8 twice, by plain
QAT and by DivQAT at one alpha (arXiv 2512.23948: CE - alpha * KL(f_fp || f_q)); both int8
victims are attacked through a query-counted black box by KnockoffNets (Orekondy et al., CVPR
2019) with 5000 Fashion-MNIST images as queries (surrogate: 20 epochs of SGD with momentum 0.9,
one of docs/science.md §5's two settings), and the table compares victim accuracy, the adversary's
classification error and its agreement with the victim. ``quick`` shrinks every setting for a
smoke test.
"""
from divqat.results.aggregate import collect

from .config import parse_config

FULL = {"train_limit": 10000, "test_limit": 2000, "fp_epochs": 3, "quant_epochs": 1, "budget": 5000,
        "attack_epochs": 20}
QUICK = {"train_limit": 512, "test_limit": 256, "fp_epochs": 1, "quant_epochs": 1, "budget": 256,
         "attack_epochs": 2}


def demo_config(quick=False, seed=0, alpha=1.0):
    """The demo's experiment config (see the module docstring)."""
    s = QUICK if quick else FULL
    return parse_config({
        "name": "demo-quick" if quick else "demo",
        "seeds": [seed],
        "data": {"victim": "mnist", "queryset": "fashion-mnist", "train_limit": s["train_limit"],
                 "test_limit": s["test_limit"]},
        "victim": {"arch": "lenet5", "epochs": s["fp_epochs"]},
        "quant": {"epochs": s["quant_epochs"]},
        "methods": [{"name": "qat"}, {"name": "divqat", "alpha": alpha}],
        "defenses": [{"name": "none"}],
        "attacks": [{"name": "knockoff", "budget": s["budget"], "epochs": s["attack_epochs"], "momentum": 0.9}],
    })


def demo_rows(out_dir):
    """The rows of the demo's table (one per int8 victim, QAT first) from a finished demo directory."""
    tables = collect(out_dir)
    victims = {(r["seed"], r["victim_label"]): r for r in tables["victims"]}
    rows = []
    for cell in sorted(tables["cells"], key=lambda r: (r["method"] != "qat", r["victim_label"])):
        v = victims[(cell["seed"], cell["victim_label"])]
        rows.append({"victim": cell["victim_label"], "seed": cell["seed"], "victim_accuracy": cell["victim_accuracy"],
                     "kl_fp_q": v["kl_fp_q"], "adversary_error": cell["adversary_error"],
                     "agreement": cell["agreement"], "attack": cell["attack_label"], "budget": cell["budget"]})
    return rows


def demo_table(rows):
    """The comparison table (text) of :func:`demo_rows`."""
    header = f"{'victim (int8)':<22} {'victim acc':>10} {'KL(fp||q)':>10} {'adv error':>10} {'agreement':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['victim']:<22} {r['victim_accuracy']:>10.2%} {r['kl_fp_q']:>10.4f} "
                     f"{r['adversary_error']:>10.2%} {r['agreement']:>10.2%}")
    lines.append(f"attack: {rows[0]['attack']}, budget {rows[0]['budget']} Fashion-MNIST queries; "
                 "victim: LeNet-5 on MNIST")
    return "\n".join(lines)
