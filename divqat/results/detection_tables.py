"""The Markdown of a detection CSV (benchmarks/detection_eval.py, one row per client, pair, seed
and monitor): its tables and the sentences that state it against the goal set for the monitors.

- :func:`table` (``attacks``, ``honest``, ``mixed``): per attack, the seeds flagged, the median
  and max alarm query, and the medians of the share answered before the alarm and of the
  agreements; *block kept* = (block − 0.1) / (log − 0.1), the share of the agreement above
  chance that a thief cut off at its alarm keeps; per honest client, the clients flagged and the
  false alarms per 10,000 queries = 10⁴ · flagged / queries; per in-distribution share of the
  adaptive thief, the seeds flagged and the delays;
- :func:`monitor_verdicts`: per monitor, one sentence against the goal (every attack flagged
  within :data:`FLAG_WITHIN` queries, median over seeds; no false alarm; a blocked thief keeping
  at most :data:`KEPT_AT_MOST` of its agreement above chance).

Monitors, clients and shares are listed in the order the CSV first names them.
"""
import math
import statistics

from .tables import markdown_table, read_rows

PARTS = ("attacks", "honest", "mixed")
CHANCE = 0.1  # ten classes
FLAG_WITHIN = 1000
KEPT_AT_MOST = 0.5


def _groups(rows, kind, key):
    groups = {}
    for r in rows:
        if r["kind"] == kind:
            groups.setdefault(key(r), []).append(r)
    return groups


def _ordered(rows, column):
    return list(dict.fromkeys(r[column] for r in rows))


def _median(values):
    return statistics.median(values) if values else None


def _fmt(value):
    return "-" if value is None else f"{value:.2f}"


def _delays(g):
    return [r["alarm_query"] for r in g if r["alarm_query"] is not None]


def _delay(delays):
    """Median and max of alarm queries as text ("-" for none; a median between two seeds ends in .5)."""
    if not delays:
        return ["-", "-"]
    return [f"{statistics.median(delays):g}", str(max(delays))]


def attack_summary(g):
    """Of one attack's rows (one per seed) for one monitor: flagged seeds, delays, the median share
    answered, the median agreements (``log``, ``block``, ``labels``) and block kept (module docstring)."""
    med = {k: _median([r[f"agreement_{k}"] for r in g if r[f"agreement_{k}"] is not None])
           for k in ("log", "block", "labels")}
    kept = None if med["log"] is None or med["log"] <= CHANCE or med["block"] is None \
        else (med["block"] - CHANCE) / (med["log"] - CHANCE)
    return {"delays": _delays(g), "n": len(g), "answered": _median([r["answered"] / r["queries"] for r in g]),
            **med, "kept": kept}


def _attacks(rows):
    out = []
    for (pair, client, monitor), g in _groups(rows, "attack", lambda r: (r["pair"], r["client"], r["monitor"])).items():
        s = attack_summary(g)
        out.append([pair, client, monitor, f"{len(s['delays'])}/{s['n']}", *_delay(s["delays"]), _fmt(s["answered"]),
                    _fmt(s["log"]), _fmt(s["block"]), _fmt(s["labels"]), _fmt(s["kept"])])
    return markdown_table(["pair (victim <- queries)", "attack", "monitor", "flagged", "delay median", "delay max",
                           "answered before alarm", "agreement log", "block", "labels", "block kept"], out)


def honest_counts(rows, monitor, client="all"):
    """(clients flagged, clients, queries) of the honest ``client`` kind (``all``: every kind) for ``monitor``."""
    g = [r for r in rows if r["kind"] == "honest" and r["monitor"] == monitor and client in (r["client"], "all")]
    return sum(r["alarm_query"] is not None for r in g), len(g), sum(r["queries"] for r in g)


def _per_10k(flagged, queries):
    return _fmt(1e4 * flagged / queries if queries else None)


def _honest(rows):
    honest = [r for r in rows if r["kind"] == "honest"]
    out = []
    for monitor in _ordered(honest, "monitor"):
        for client in _ordered(honest, "client") + ["all"]:
            flagged, n, queries = honest_counts(rows, monitor, client)
            out.append([monitor, client, f"{flagged}/{n}", queries, _per_10k(flagged, queries)])
    return markdown_table(["monitor", "honest client", "clients flagged", "honest queries",
                           "false alarms per 10,000 queries"], out)


def _mixed(rows):
    out = [[pair, f"{share:g}", monitor, f"{len(_delays(g))}/{len(g)}", *_delay(_delays(g))]
           for (pair, share, monitor), g in _groups(rows, "mixed", lambda r: (r["pair"], r["share"], r["monitor"])).items()]
    return markdown_table(["pair", "in-distribution share", "monitor", "flagged", "delay median", "delay max"], out)


def table(rows, part):
    """The Markdown table ``part`` (one of :data:`PARTS`) of detection CSV ``rows``."""
    parts = {"attacks": _attacks, "honest": _honest, "mixed": _mixed}
    if part not in parts:
        raise ValueError(f"part: {part!r} is not one of {', '.join(PARTS)}")
    return parts[part](rows)


def read_detection_csv(path):
    """The rows of a detection CSV, numbers parsed, empty cells None."""
    return read_rows(path)


def _attack_words(rows, monitor):
    """Whether ``monitor`` flags every attack in time (the median over seeds, a missed seed
    counting as never, within :data:`FLAG_WITHIN`), the attacks it does not, and the largest
    block kept (0 when it is below 0, at chance; None when no thief had an answer before its
    alarm)."""
    slow, kept = {}, []
    for (pair, client), g in _groups(rows, "attack", lambda r: (r["pair"], r["client"])).items():
        s = attack_summary([r for r in g if r["monitor"] == monitor])
        if statistics.median(s["delays"] + [math.inf] * (s["n"] - len(s["delays"]))) > FLAG_WITHIN:
            late = f"median delay {_delay(s['delays'])[0]} over the flagged seeds, " if s["delays"] else ""
            slow.setdefault(pair, []).append(f"{client} ({late}{len(s['delays'])}/{s['n']} flagged)")
        if s["kept"] is not None:
            kept.append(s["kept"])
    flagged = (f"flags every attack within {FLAG_WITHIN:,} queries on every pair" if not slow
               else f"late or missing (median alarm past {FLAG_WITHIN:,} queries, a missed seed counting as "
               f"never) on {'; '.join(f'{pair}: ' + ', '.join(c) for pair, c in slow.items())}")
    return flagged, max(max(kept), 0.0) if kept else None


def monitor_verdicts(rows):
    """One Markdown bullet per monitor (module docstring): the attacks it is slow on or misses,
    the most a blocked thief keeps, its false alarms per honest kind, and the adaptive thief's
    shares it still flags on at least half the seeds."""
    honest = [r for r in rows if r["kind"] == "honest"]
    lines = []
    for monitor in _ordered(rows, "monitor"):
        flagged, kept = _attack_words(rows, monitor)
        alarms, n, queries = honest_counts(rows, monitor)
        kinds = [f"{c} {f}/{k}" for c in _ordered(honest, "client")
                 for f, k, _ in [honest_counts(rows, monitor, c)] if f]
        shares = {pair: [f"{share:g}" for (p, share, m), g in
                         _groups(rows, "mixed", lambda r: (r["pair"], r["share"], r["monitor"])).items()
                         if p == pair and m == monitor and 2 * len(_delays(g)) >= len(g)]
                  for pair in _ordered([r for r in rows if r["kind"] == "mixed"], "pair")}
        mixed = ", ".join(f"on {pair} " + (f"at share{'s' * (len(s) > 1)} {', '.join(s)}" if s else "at no share") for pair, s in shares.items())
        lines.append(
            f"- `{monitor}`: {flagged}; a thief blocked at its alarm keeps "
            + ("no answer" if kept is None else f"at most {_fmt(kept)} of its agreement above chance")
            + f" (goal: ≤ {KEPT_AT_MOST:g}); false alarms on {alarms} of {n} honest clients "
            f"({_per_10k(alarms, queries)} per 10,000 queries" + (f": {', '.join(kinds)}" if kinds else "")
            + f"); the thief mixing in-distribution images into its queries is flagged on at least half the "
            f"seeds {mixed}.")
    return "\n".join(lines)
