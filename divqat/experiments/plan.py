"""What a run of an experiment grid would compute, without computing or writing anything
(`divqat experiment CONFIG --out DIR --plan`): per seed, the victims, misinformation models and
attack cells that the cache of ``DIR`` lacks (:mod:`divqat.experiments.cells`), and an estimate
of their compute time.

The estimate of a cell to compute is the median ``time_s`` of the finished cells in the same
directory whose configuration differs from it only in the seed and, for an attack cell, in the
victim and the defense (the same attack, budget, data and robustness settings); a cell with no
such finished cell is counted as untimed and left out of the sum. The sum is the time of one
worker; n workers take about 1/n of it.
"""
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from .cells import CellCache, cell_kind, grid_cells
from .runner import grid_jobs

#: what a cell's configuration may differ in and still time like it, per kind
_TIMING_FREE = {"victim": ("seed", "teacher"), "misinformation": ("seed",),
                "attack": ("seed", "victim", "defense", "misinformation")}
#: the :class:`SeedPlan` tally of each kind of cell
_TALLIES = {"victim": "victims", "misinformation": "misinformation", "attack": "attacks"}


@dataclass
class Tally:
    """Cells of one kind for one seed: how many the grid has, how many to compute."""

    total: int = 0
    todo: int = 0

    def __str__(self):
        return f"{self.todo} of {self.total}"


@dataclass
class SeedPlan:
    seed: int
    victims: Tally = field(default_factory=Tally)
    misinformation: Tally = field(default_factory=Tally)
    attacks: Tally = field(default_factory=Tally)
    reused: int = 0  # cells computed by other code that ``--reuse-stale`` would adopt
    seconds: float = 0.0  # estimated compute of the timed cells to compute
    untimed: int = 0  # cells to compute with no finished cell like them


#: printed under the plans
PLAN_NOTE = ("Estimated compute: per cell to compute, the median time of the finished cells in --out with the "
             "same settings but seed (and, for an attack cell, victim and defense), summed for one worker; "
             "untimed cells have none and are not in the sum.")


def _timing_key(kind, spec):
    free = _TIMING_FREE[kind]
    return kind, json.dumps({k: v for k, v in spec.items() if k not in free}, sort_keys=True, default=str)


class _Timings:
    """Median ``time_s`` of the cache's finished cells, by :func:`_timing_key`."""

    def __init__(self, cache):
        times = defaultdict(list)
        for kind in _TALLIES:
            for record in cache.all_records(kind):
                if "spec" in record and "time_s" in record:
                    times[_timing_key(kind, record["spec"])].append(record["time_s"])
        self.median = {key: statistics.median(values) for key, values in times.items()}

    def add(self, plan, kind, cell):
        seconds = self.median.get(_timing_key(kind, cell.spec))
        if seconds is None:
            plan.untimed += 1
        else:
            plan.seconds += seconds


def plan_grid(config, out_dir, reuse_stale=False):
    """One :class:`SeedPlan` per seed of ``config`` for a run into ``out_dir`` (which need not
    exist): the grid's cells, and of the jobs the runner would make of them
    (:func:`divqat.experiments.runner.grid_jobs`) those whose cell the cache lacks;
    ``reuse_stale``: one with a record of the same configuration computed by other code counts
    as done (``reused``), as ``--reuse-stale`` would adopt it. Reads only."""
    cache = CellCache(out_dir, create=False)
    timings = _Timings(cache)
    other_code = {kind: cache.config_keys(kind) for kind in _TALLIES} if reuse_stale else {}
    plans = {seed: SeedPlan(seed) for seed in config.seeds}
    for cell in grid_cells(config):
        getattr(plans[cell.spec["seed"]], _TALLIES[cell_kind(cell)]).total += 1
    for job in grid_jobs(config, cache)[0]:  # a run's worker skips the jobs whose cell is cached
        plan = plans[job.cell.spec["seed"]]
        if cache.record(job.cell) is not None:
            continue
        if job.cell.config_key in other_code.get(job.kind, ()):
            plan.reused += 1
            continue
        getattr(plan, _TALLIES[job.kind]).todo += 1
        timings.add(plan, job.kind, job.cell)
    return list(plans.values())


def _duration(seconds):
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{seconds:.0f} s"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def plan_table(plans, reuse_stale=False):
    """The plans as a Markdown table, one row per seed and a total."""
    total = SeedPlan("all")
    for plan in plans:
        for name in ("victims", "misinformation", "attacks"):
            mine, whole = getattr(plan, name), getattr(total, name)
            whole.total, whole.todo = whole.total + mine.total, whole.todo + mine.todo
        total.reused, total.seconds, total.untimed = (total.reused + plan.reused, total.seconds + plan.seconds,
                                                      total.untimed + plan.untimed)
    reused = " | reused (other code)" if reuse_stale else ""
    lines = [f"| seed | victims to train | misinformation models to train | attack cells to run{reused} "
             f"| estimated compute | untimed cells |",
             "|---" * (6 + bool(reuse_stale)) + "|"]
    for plan in plans + ([total] if len(plans) > 1 else []):
        cells = [plan.seed, plan.victims, plan.misinformation, plan.attacks]
        cells += [plan.reused] if reuse_stale else []
        cells += [_duration(plan.seconds), plan.untimed]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)
