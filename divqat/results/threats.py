"""Which defense for which threat, chosen from the frontier's rows by a fixed rule.

A threat is what the thief reads (:func:`reads`): the probability vectors (KnockoffNets, its
adaptive and sharpening variants, mean-smoothing, a soft sink-aware thief) or the labels alone
(Copycat, vote-smoothing, the sink-aware and mixed thieves by default). Per dataset pair, victim
setting and threat, at one budget:

1. the thieves of that threat run against plain QAT (no output defense) are the threat's thieves;
2. a candidate is any other (defense, setting) run against at least one of them on at least
   ``min_seeds`` seeds paired with QAT, whose top-1 is within ``top1_cost`` of QAT's (paired
   mean, on the first thief it was run against);
3. its strongest thief is the one of those it was run against with the highest mean agreement;
4. the best defense is, among the candidates run against the most of the threat's thieves, the
   one whose strongest thief has the lowest mean agreement.

The table names the strongest thief, its agreement against the defense and against QAT, the
paired difference with its 95 % Student-t interval (docs/science.md §9) and n, and the threat's
thieves never run against the defense: a verdict holds only against the thieves it names.
"""
from .frontier import BASELINE, by_cell, paired_difference, seed_mean
from .tables import markdown_table, points
from .words import ATTACK_NAME, DATASETS, setting_words, thief_name, victim_words

__all__ = ["reads", "best_defenses", "threat_table"]

_LABEL_THIEVES = ("copycat", "jbda", "sink-aware", "mixed")  # labels unless soft=True
_SOFT_THIEVES = ("knockoff", "dfme", "maze", "smoothing")    # probabilities unless aggregate=vote


def reads(attack):
    """``"labels"`` or ``"probabilities"``: what a frontier attack name's thief trains on."""
    match = ATTACK_NAME.match(attack)
    options = dict(kv.split("=", 1) for kv in (match["options"] or "").split(",") if kv)
    base = match["base"]
    if base in _LABEL_THIEVES:
        return "probabilities" if options.get("soft", "False").lower() in ("true", "1") else "labels"
    if base in _SOFT_THIEVES:
        return "labels" if options.get("aggregate") == "vote" else "probabilities"
    raise ValueError(f"attack {attack!r}: unknown thief, cannot tell whether it reads labels or probabilities")


def _candidates(groups, where, thieves, budget, top1_cost, min_seeds):
    """{(defense, setting): ({thief: (by_seed, qat_by_seed)}, Δ top-1)} of the candidates (module
    docstring), each with the thieves it was run against on ``min_seeds`` paired seeds."""
    defenses = {(d, s) for (p, v, a, b, d, s) in groups if (p, v) == where and b == budget and a in thieves}
    out = {}
    for defense in sorted(defenses - {BASELINE}):
        cells = {t: (groups.get(where + (t, budget) + defense, {}), groups[where + (t, budget) + BASELINE])
                 for t in thieves}
        cells = {t: c for t, c in cells.items() if len(set(c[0]) & set(c[1])) >= min_seeds}
        d_top1 = paired_difference(*next(iter(cells.values())), "victim_accuracy") if cells else None
        if d_top1 is not None and d_top1.mean_diff >= -top1_cost:
            out[defense] = cells, d_top1
    return out


def best_defenses(rows, budget=5000, top1_cost=0.005, min_seeds=3):
    """One entry per (pair, victim setting, threat) with QAT cells (module docstring): the best
    defense (None when no candidate qualifies) with its strongest thief's paired comparison."""
    groups = by_cell(rows)
    out = []
    for where in sorted({(r["pair"], r["victim_setting"]) for r in rows}):
        for threat in ("probabilities", "labels"):
            thieves = sorted({a for (p, v, a, b, d, s) in groups if (p, v) == where and b == budget
                              and (d, s) == BASELINE and reads(a) == threat})
            if not thieves:
                continue
            entry = {"pair": where[0], "victim_setting": where[1], "threat": threat, "thieves": thieves,
                     "defense": None}
            scored = []
            for defense, (cells, d_top1) in _candidates(groups, where, thieves, budget, top1_cost, min_seeds).items():
                thief = max(cells, key=lambda t: seed_mean(cells[t][0], "agreement"))
                scored.append((len(thieves) - len(cells), seed_mean(cells[thief][0], "agreement"), defense, thief,
                               cells, d_top1))
            if scored:
                *_, defense, thief, cells, d_top1 = min(scored, key=lambda item: item[:2])
                mine, base = cells[thief]
                entry.update(defense=defense, thief=thief, agreement=seed_mean(mine, "agreement"),
                             qat_agreement=seed_mean(base, "agreement"),
                             d_agreement=paired_difference(mine, base, "agreement"),
                             d_top1=d_top1,
                             untried=[t for t in thieves if t not in cells])
            out.append(entry)
    return out


def threat_table(studies):
    """The best defenses as one Markdown table; ``studies``: (entries of :func:`best_defenses`,
    the link to the results page its rows point to) per study."""
    rows = []
    for entries, link in studies:
        rows += _rows(entries, link)
    return markdown_table(["thief reads", "victim", "best defense measured", "its strongest thief tried",
                           "agreement %: defense / QAT", "Δ agreement, points [95 % CI]", "verdict",
                           "Δ top-1, points", "n", "thieves not tried against it", "page"], rows)


def _rows(entries, link):
    rows = []
    for e in entries:
        victim = f"{DATASETS.get(e['pair'].split('<-')[0])} ({victim_words(e['victim_setting'])})"
        if e["defense"] is None:
            rows.append([e["threat"], victim, "none within the top-1 cost", "", "", "", "", "", "", "", link])
            continue
        d = e["d_agreement"]
        verdict = "lowers it" if d.ci_high is not None and d.ci_high < 0 else "not separable from QAT"
        rows.append([e["threat"], victim, setting_words(*e["defense"]), thief_name(e["thief"]),
                     f"{100 * e['agreement']:.1f} / {100 * e['qat_agreement']:.1f}", points(d), verdict,
                     points(e["d_top1"]), d.n, "; ".join(map(thief_name, e["untried"])) or "none", link])
    return rows
