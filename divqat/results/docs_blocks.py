"""The generated blocks of the documentation, rewritten from the committed CSVs
(``divqat report --update docs README.md``).

A block is everything between an opening marker ``<!-- NAME ARG ... -->`` and the next
``<!-- /NAME -->`` of a Markdown file, where NAME is one of :data:`GENERATORS`; the arguments
are paths relative to the file's directory and plain words. The blocks:

- ``verdicts DATA PAGES [headline]``: every verdict (the DivQAT paper's claims on each pair's
  ten-seed run, :data:`divqat.results.seeds10.CLAIMS`, then the trained-in goal of each checked
  setting, :mod:`divqat.results.goal`, then the label-only goal of each label-aimed setting,
  :mod:`divqat.results.label_goal`) as one table of claim, verdict, Δ with its 95 % interval,
  n and the results page; ``headline``: the headline claims, then per goal and victim how many of
  the settings checked on ten seeds reach it, and the best of them;
- ``threats DATA PAGES``: the best defense measured per threat, victim and victim setting, from
  the trained-in and label-only frontier.csv files (:func:`divqat.results.threats.threat_table`);
- ``report_table REPORT HEADING [ROW_PREFIX]``: a table quoted from a committed ``divqat
  report`` output (:func:`report_table`), for runs whose raw files were not kept;
- ``seeds10 RUN PART``: a table of :func:`divqat.results.seeds10.table`;
- ``comparisons CSV KIND METRIC [PREFIX]``: the paired comparisons of a comparisons CSV of one
  kind (``method``, ``defense``, ``victim``) on one metric, treatments starting with PREFIX, with
  their verdicts (:func:`divqat.results.seeds10.comparison_table`);
- ``frontier_summary CSV BUDGET``, ``frontier_goal CSV``, ``frontier_tables CSV``: the tables of
  :mod:`divqat.results.frontier_tables` from a frontier.csv;
- ``detection_tables CSV PART``: a table of a detection CSV
  (:func:`divqat.results.detection_tables.table`: ``attacks``, ``honest`` or ``mixed``);
- ``detection_verdicts CSV``: one sentence per monitor against the goal set for the monitors
  (:func:`divqat.results.detection_tables.monitor_verdicts`);
- ``frontier_verdicts CSV``, ``frontier_effects CSV BUDGET MIN_N``: the sentences of
  :mod:`divqat.results.frontier_verdicts` from a frontier.csv (the trained-in settings checked
  against the goal; the output defenses with at least MIN_N seeds at BUDGET queries);
- ``frontier_seeds CSV ATTACK BUDGET DEFENSE``: the per-seed agreement differences of a defense
  (:func:`divqat.results.frontier_verdicts.seed_table`); ``frontier_epochs CSV BUDGET``: plain
  QAT's agreement against longer-trained thieves (:func:`divqat.results.frontier_verdicts.epoch_gains`);
- ``cell_means CSV METRICS ROWS COLUMN [COL=VALUES ...]``: means over seeds of an experiment's
  attack cells as a pivot table (:func:`divqat.results.cell_tables.cell_means`; METRICS and ROWS
  comma-separated, the filters keep the rows whose column has one of the comma-separated values);
- ``seed_ratios CSV METRIC ROW COLUMN BASELINE [COL=VALUES ...]``: per seed, a metric's ratio to
  the BASELINE row's (:func:`divqat.results.cell_tables.seed_ratios`);
- ``queries_to_reach CSV METRIC ROW BASELINE [COL=VALUES ...]``: the budget at which each row's
  mean curve reaches the BASELINE row's (:func:`divqat.results.cell_tables.queries_to_reach`);
- ``art_crosscheck CSV``: the ART cross-check's table (:func:`divqat.results.art_tables.summary`);
- ``label_goal CSV``: the label-only goal checked on a frontier.csv
  (:func:`divqat.results.label_goal.label_goal_markdown`); ``halving_bars CSV``: plain QAT's
  agreement per seed against each goal thief and what halving it asks of a defense
  (:func:`divqat.results.label_goal.halving_bars`);
- ``answered_labels CSV``: :func:`divqat.results.frontier_tables.answered_label_table` of an
  answered_labels.csv; ``answered_shares CSV ATTACK BUDGET``: the whole histogram of one thief's
  answers per victim and defense (:func:`divqat.results.frontier_tables.answered_label_shares`);
- ``frontier_plots CSV``: the frontier's plots drawn next to the CSV, listed as images;
- ``experiment_plots RESULTS VICTIMS PREFIX``: the experiment plots redrawn next to RESULTS
  (:mod:`divqat.results.redraw`), listed as images.
"""
import os
import re
from collections import namedtuple
from pathlib import Path

from divqat.utils import atomic_write_text

from . import art_tables, cell_tables, detection_tables, seeds10
from .frontier import read_frontier_csv
from .frontier_plots import plot_frontier
from .frontier_tables import answered_label_shares, answered_label_table, frontier_markdown, goal_tables, summary_tables
from .frontier_verdicts import epoch_gains, output_effects, seed_table, trained_verdicts
from .goal import GOAL, check_goal
from .label_goal import LABEL_GOAL, check_label_goal, halving_bars, label_goal_markdown
from .redraw import redraw
from .tables import ci_text, markdown_table, read_rows, signed
from .threats import best_defenses, threat_table
from .words import setting_words, victim_words_of

MARKER = re.compile(r"<!-- (\w+)((?: [^ >]+)*) -->")
OPENING = re.compile(r"<!-- (\w+)\b[^>]*-->")  # any comment that starts with a word
PAIRS = {"mnist_fmnist": "MNIST victim", "fmnist_mnist": "Fashion-MNIST victim"}
HEADLINE = ("§3 adversary error up (KnockoffNets)", "§3 victim accuracy kept", "§4 DCP 1.0 raises adversary error (QAT victim)")  # in this order
PAGES = {"§3": ("DivQAT vs QAT", "divqat-vs-qat.md"), "§4": ("output defenses", "output-defenses.md"),
         "§8": ("trained-in defenses", "trained-in.md"), "§10": ("label-only thieves", "label-only.md")}


def _images(doc_dir, names, folder):
    return "\n\n".join(f"![{name}]({os.path.relpath(Path(folder) / name, doc_dir)})" for name in names)


def _page(section, link):
    words, page = PAGES[section]
    return f"[{words}]({link(page)}) ({section})"


def _claim_rows(data, link, headline):
    rows = []
    for pair, words in PAIRS.items():
        run = data / "ten_seeds" / pair
        comps = read_rows(run / "comparisons.csv")
        claims = seeds10.CLAIMS
        if headline:
            claims = sorted((c for c in claims if c[0] in HEADLINE and "alpha=0.5" not in c[2]),
                            key=lambda c: HEADLINE.index(c[0]))
        for claim, kind, treatment, where, attack, budget, metric, direction in claims:
            row = seeds10.find_claim(comps, kind, treatment, where, attack, budget, metric)
            if row is None:
                continue
            unit = f" {row['unit']}" if row["unit"] else ""
            who = treatment.replace(", direction=forward", "").replace("divqat(", "DivQAT (")
            rows.append([f"{claim.split(' ', 1)[1]}: {who}, {words}", seeds10.claim_verdict(row, direction),
                         f"{signed(row['mean_diff'])}{unit} ({ci_text(row['ci_low'], row['ci_high'])})", row["n"],
                         _page(claim.split(" ", 1)[0], link)])
    return rows


# one setting's goal on one victim: words, verdict, whether its top-1 is within the goal's budget,
# and its paired agreement difference against plain QAT under the thief a row reports
GoalVerdict = namedtuple("GoalVerdict", "setting victim ok decided top1_kept d")


def _goal_verdicts(frontier_csv):
    """The trained-in goal (:mod:`divqat.results.goal`) per setting and pair checked on the goal's
    seeds, as :class:`GoalVerdict` with the KnockoffNets difference."""
    out = []
    for check in check_goal(read_frontier_csv(frontier_csv)):
        for where, c in sorted(check["pairs"].items()):
            if c["knockoff"]["n"] < GOAL.min_n:
                continue
            pair, setting = where.split(", ")
            out.append(GoalVerdict(setting_words(check["defense"], check["setting"]), victim_words_of(pair, setting),
                                   c["ok"], True, c["top1"]["ok"], c["knockoff"]["d"]))
    return out


def _label_goal_verdicts(frontier_csv, ten_seeds_only):
    """The label-only goal (:mod:`divqat.results.label_goal`) per label-aimed setting and pair, as
    :func:`_goal_verdicts` with the Copycat difference; with ``ten_seeds_only``, only those whose
    Copycat cell has the goal's seeds (:data:`LABEL_GOAL` min_n)."""
    out = []
    copycat = LABEL_GOAL.thieves[0]
    for check in check_label_goal(read_frontier_csv(frontier_csv)):
        for (pair, setting), c in sorted(check["pairs"].items()):
            thief = c["thieves"][copycat]
            if thief is None or (ten_seeds_only and thief["n"] < LABEL_GOAL.min_n):
                continue
            kept = c["top1"] is not None and c["top1"].mean_diff >= -LABEL_GOAL.top1_cost
            out.append(GoalVerdict(setting_words(check["defense"], check["setting"]), victim_words_of(pair, setting),
                                   c["ok"], c["decided"], kept, thief["d"]))
    return out


def _agreement(d, thief):
    ci = f" ({ci_text(100 * d.ci_low, 100 * d.ci_high)}, {thief})" if d.ci_low is not None else f" ({thief})"
    return f"agreement {signed(100 * d.mean_diff)} points{ci}"


def _verdict_rows(goal, verdicts, thief, page):
    """One row per setting and pair: the goal's verdict, and the agreement against plain QAT."""
    rows = []
    for v in verdicts:
        verdict = ("reached on this pair" if v.ok else "not reached on this pair" if v.decided
                   else f"undecided (n = {v.d.n} of {LABEL_GOAL.min_n})")
        rows.append([f"{goal}: {v.setting}, {v.victim}", verdict, _agreement(v.d, thief), v.d.n, page])
    return rows


def _summary_rows(goal, verdicts, thief, page):
    """One row per victim: how many of the settings checked there reach the goal, and the best
    of them: one that reaches it, else one within the top-1 budget, then the lowest agreement."""
    rows = []
    for victim in sorted({v.victim for v in verdicts}):
        mine = [v for v in verdicts if v.victim == victim]
        reached = sum(v.ok for v in mine)
        best = min(mine, key=lambda v: (not v.ok, not v.top1_kept, v.d.mean_diff))
        verdict = (f"reached by {reached} of {len(mine)} settings" if reached
                   else f"not reached by any of {len(mine)} settings")
        rows.append([f"{goal}, {victim}, best setting: {best.setting}", verdict, _agreement(best.d, thief),
                     best.d.n, page])
    return rows


def verdicts(doc_dir, data, pages, *flags):
    """The verdicts table (module docstring)."""
    data, pages = doc_dir / data, doc_dir / pages
    link = lambda page: os.path.relpath(pages / page, doc_dir)  # noqa: E731
    headline = "headline" in flags
    goal_rows = _summary_rows if headline else _verdict_rows
    rows = (_claim_rows(data, link, headline)
            + goal_rows("trained-in goal", _goal_verdicts(data / "trained_in" / "frontier.csv"), "KnockoffNets",
                        _page("§8", link))
            + goal_rows("label-only goal", _label_goal_verdicts(data / "label_only" / "frontier.csv", headline),
                        "Copycat", _page("§10", link)))
    return markdown_table(["claim", "verdict", "Δ (95 % CI)", "n", "page"], rows)


def threats(doc_dir, data, pages):
    """The best defense per threat (:mod:`divqat.results.threats`) of the trained-in frontier and
    of the label-only study, each row linked to its study's page."""
    data, pages = doc_dir / data, doc_dir / pages
    studies = [(best_defenses(read_frontier_csv(data / study / "frontier.csv")),
                f"[{PAGES[section][0]}]({os.path.relpath(pages / PAGES[section][1], doc_dir)})")
               for study, section in (("trained_in", "§8"), ("label_only", "§10"))]
    return threat_table(studies)


def frontier_plots(doc_dir, csv_path):
    """Draw the frontier plots next to ``csv_path``; the Markdown that shows them."""
    csv_path = doc_dir / csv_path
    paths = plot_frontier(read_frontier_csv(csv_path), csv_path.parent)
    return _images(doc_dir, [p.name for p in paths], csv_path.parent)


def experiment_plots(doc_dir, results_csv, victims_csv, prefix=""):
    """Redraw the experiment plots next to ``results_csv``; the Markdown that shows them."""
    results_csv = doc_dir / results_csv
    names = redraw(results_csv, doc_dir / victims_csv, results_csv.parent, "" if prefix == "-" else prefix)
    return _images(doc_dir, names, results_csv.parent)


def report_table(doc_dir, report, heading, row_prefix=""):
    """The first Markdown table under the heading of the committed report ``report`` (a
    ``divqat report`` output) that starts with ``heading`` (``_`` for a space), its rows
    limited to those whose first cell starts with ``row_prefix``: numbers of runs whose raw files
    were not kept, quoted from the report those runs wrote."""
    lines = (doc_dir / report).read_text().splitlines()
    title = heading.replace("_", " ")
    start = next((i for i, line in enumerate(lines) if line.startswith("## ") and line[3:].startswith(title)), None)
    if start is None:
        raise ValueError(f"report_table: {report} has no heading starting with {title!r}")
    table = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    if not table:
        raise ValueError(f"report_table: no table under {report}'s heading {title!r}")
    rows = [r for r in table[2:] if r[1:].strip().startswith(row_prefix)]
    return "\n".join(table[:2] + rows)


def comparisons(doc_dir, csv_path, kind, metric, prefix=""):
    """The comparisons block (module docstring)."""
    rows = [r for r in read_rows(doc_dir / csv_path) if str(r["treatment_label"]).startswith(prefix)]
    return seeds10.comparison_table(rows, kind, (metric,))


GENERATORS = {
    "verdicts": verdicts,
    "comparisons": comparisons,
    "report_table": report_table,
    "threats": threats,
    "seeds10": lambda doc_dir, run, part: seeds10.table(doc_dir / run, part),
    "frontier_summary": lambda doc_dir, csv, budget: summary_tables(read_frontier_csv(doc_dir / csv), int(budget)),
    "frontier_goal": lambda doc_dir, csv: goal_tables(read_frontier_csv(doc_dir / csv)),
    "label_goal": lambda doc_dir, csv: label_goal_markdown(check_label_goal(read_frontier_csv(doc_dir / csv))),
    "halving_bars": lambda doc_dir, csv: halving_bars(read_frontier_csv(doc_dir / csv)),
    "frontier_tables": lambda doc_dir, csv: frontier_markdown(read_frontier_csv(doc_dir / csv)),
    "detection_tables": lambda doc_dir, csv, part: detection_tables.table(
        detection_tables.read_detection_csv(doc_dir / csv), part),
    "detection_verdicts": lambda doc_dir, csv: detection_tables.monitor_verdicts(
        detection_tables.read_detection_csv(doc_dir / csv)),
    "frontier_verdicts": lambda doc_dir, csv: trained_verdicts(read_frontier_csv(doc_dir / csv)),
    "frontier_effects": lambda doc_dir, csv, budget, min_n: output_effects(read_frontier_csv(doc_dir / csv), int(budget),
                                                                           int(min_n)),
    "frontier_seeds": lambda doc_dir, csv, attack, budget, defense: seed_table(read_frontier_csv(doc_dir / csv), attack,
                                                                                int(budget), defense),
    "frontier_epochs": lambda doc_dir, csv, budget: epoch_gains(read_frontier_csv(doc_dir / csv), int(budget)),
    "art_crosscheck": lambda doc_dir, csv: art_tables.summary(read_rows(doc_dir / csv, types={})),
    "cell_means": lambda doc_dir, csv, *words: cell_tables.cell_means(read_rows(doc_dir / csv),
                                                                      *cell_tables.parse_arguments(*words)),
    "seed_ratios": lambda doc_dir, csv, metric, row, column, baseline, *words: cell_tables.seed_ratios(
        read_rows(doc_dir / csv), metric, row, column, baseline, cell_tables.parse_filters(words)),
    "queries_to_reach": lambda doc_dir, csv, metric, row, baseline, *words: cell_tables.queries_to_reach(
        read_rows(doc_dir / csv), metric, row, baseline, cell_tables.parse_filters(words)),
    "answered_labels": lambda doc_dir, csv: answered_label_table(read_rows(doc_dir / csv)),
    "answered_shares": lambda doc_dir, csv, attack, budget: answered_label_shares(read_rows(doc_dir / csv), attack,
                                                                                  int(budget)),
    "frontier_plots": frontier_plots,
    "experiment_plots": experiment_plots,
}


FIGURES = ("frontier_plots", "experiment_plots")


def update_text(text, doc_dir, figures=True):
    """``text`` with every generated block rewritten (``figures=False``: the figure blocks, which
    draw files, are left as they are); returns (text, number of blocks rewritten)."""
    for opening in OPENING.finditer(text):
        if opening.group(1) in GENERATORS and not MARKER.fullmatch(opening.group(0)):
            raise ValueError(f"{opening.group(0)}: not a block marker (arguments are separated by one space, "
                             "and the marker ends with ' -->')")
    out, pos, count = [], 0, 0
    for match in MARKER.finditer(text):
        name = match.group(1)
        if name not in GENERATORS or match.start() < pos or (name in FIGURES and not figures):
            continue
        closing = f"<!-- /{name} -->"
        end = text.find(closing, match.end())
        if end < 0:
            raise ValueError(f"{match.group(0)}: no closing {closing}")
        body = GENERATORS[name](Path(doc_dir), *match.group(2).split())
        out += [text[pos:match.end()], "\n", body.rstrip(), "\n"]
        pos, count = end, count + 1
    return "".join(out) + text[pos:], count


def update(path):
    """Rewrite the generated blocks of the Markdown file ``path`` in place (atomically, and only
    when something changed); returns the number of blocks."""
    path = Path(path)
    text = path.read_text()
    new, count = update_text(text, path.parent)
    if new != text:
        atomic_write_text(new, path)
    return count


def markdown_files(paths):
    """The Markdown files of ``paths`` (files, and every ``*.md`` under a directory)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.rglob("*.md"))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"--update: {p} is neither a file nor a directory")
    return out
