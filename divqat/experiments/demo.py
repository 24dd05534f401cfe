"""The demo: QAT, DivQAT, the best-established output defense and the best-established trained-in
defense against a soft-label and a label-only thief on the built-in data, end to end (its
command, ``divqat demo``, is :mod:`divqat.experiments.demo_command`).

A small built-in experiment run by the same runner as ``divqat experiment``: a LeNet-5 MNIST
victim (LeCun et al. 1998) is trained in full precision on the whole training set, then
quantized to int8 three times: by plain QAT, by DivQAT at one alpha (arXiv 2512.23948:
CE - alpha * KL(f_fp || f_q)) and by the relabelling objective that the label-only study
established on this victim (proxy objective, ``permute`` target on the glyph outliers, alpha 3:
outliers answered with f_fp's answer moved one class along; docs/science.md §8). Each int8 victim
answers as it is and through DCP at beta 1 (docs/science.md §4), the defense the ten-seed runs
established against soft-label thieves (docs/results/output-defenses.md); each is attacked through
a query-counted black box by KnockoffNets (Orekondy et al., CVPR 2019; trains on the
probabilities) and by Copycat (Correia-Silva et al., IJCNN 2018; trains on the labels only) with
5000 Fashion-MNIST images as queries (surrogates: 20 epochs of SGD with momentum 0.9, one of
docs/science.md §5's two settings). The table compares victim accuracy, the adversary's
classification error and its agreement with the victim, so it shows what the defenses do to a
thief that reads probabilities and to one that reads labels only.
``quick`` shrinks every setting for a smoke test.
"""
from divqat.results.aggregate import collect

from .config import Entry, parse_config

FULL = {"train_limit": None, "test_limit": 2000, "fp_epochs": 3, "quant_epochs": 1, "budget": 5000,
        "attack_epochs": 20}
QUICK = {"train_limit": 512, "test_limit": 256, "fp_epochs": 1, "quant_epochs": 1, "budget": 256,
         "attack_epochs": 2}


THIEVES = ("knockoff", "copycat")  # soft labels, then labels only
# the trained-in defense the label-only study established on the MNIST victim (docs/results/label-only.md):
# outliers answered with f_fp's answer moved one class along, at the alpha its selection rule picked
RELABEL = {"name": "divqat", "objective": "proxy", "proxy_source": "glyphs", "proxy_target": "permute", "alpha": 3.0,
           "distill": 1.0}
# the table's name for it (its config label is too long for a column)
SHORT_NAMES = {Entry("divqat", tuple(sorted((k, v) for k, v in RELABEL.items() if k != "name"))).label:
               "permute(alpha=3.0)"}


def demo_config(quick=False, seed=0, alpha=1.0):
    """The demo's experiment config (see the module docstring)."""
    s = QUICK if quick else FULL
    return parse_config({
        "name": "demo-quick" if quick else "demo",
        "seeds": [seed],
        "data": {"victim": "mnist", "queryset": "fashion-mnist", "test_limit": s["test_limit"],
                 **({"train_limit": s["train_limit"]} if s["train_limit"] else {})},
        "victim": {"arch": "lenet5", "epochs": s["fp_epochs"]},
        "quant": {"epochs": s["quant_epochs"]},
        "methods": [{"name": "qat"}, {"name": "divqat", "alpha": alpha}, RELABEL],
        "defenses": [{"name": "none"}, {"name": "dcp", "beta": 1.0}],
        "attacks": [{"name": name, "budget": s["budget"], "epochs": s["attack_epochs"], "momentum": 0.9}
                    for name in THIEVES],
    })


def demo_rows(out_dir):
    """The rows of the demo's table (one per thief, int8 victim and defense: KnockoffNets first,
    QAT first, undefended first) from a finished demo directory."""
    tables = collect(out_dir)
    victims = {(r["seed"], r["victim_label"]): r for r in tables["victims"]}
    rows = []
    order = lambda r: (THIEVES.index(r["attack"]), r["method"] != "qat", r["victim_label"],  # noqa: E731
                       r["defense"] != "none", r["defense_label"])
    for cell in sorted(tables["cells"], key=order):
        v = victims[(cell["seed"], cell["victim_label"])]
        rows.append({"victim": SHORT_NAMES.get(cell["victim_label"], cell["victim_label"]),
                     "defense": cell["defense_label"], "thief": cell["attack"],
                     "seed": cell["seed"], "victim_accuracy": cell["victim_accuracy"],
                     "kl_fp_q": v["kl_fp_q"], "adversary_error": cell["adversary_error"],
                     "agreement": cell["agreement"], "attack": cell["attack_label"], "budget": cell["budget"]})
    return rows


def demo_table(rows):
    """The comparison table (text) of :func:`demo_rows`."""
    header = (f"{'thief':<9} {'victim (int8)':<20} {'defense':<14} {'victim acc':>10} {'KL(fp||q)':>10} "
              f"{'adv error':>10} {'agreement':>10}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['thief']:<9} {r['victim']:<20} {r['defense']:<14} {r['victim_accuracy']:>10.2%} "
                     f"{r['kl_fp_q']:>10.4f} {r['adversary_error']:>10.2%} {r['agreement']:>10.2%}")
    lines.append(f"thieves: knockoff (trains on the probabilities), copycat (on the labels only), "
                 f"{rows[0]['budget']} Fashion-MNIST queries each; victim: LeNet-5 on MNIST")
    return "\n".join(lines)
