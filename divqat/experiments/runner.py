"""Run an experiment grid: train each victim once, attack it under every defense and budget,
cache every finished cell, then write the result tables and the report.

The work itself is done by a *pipeline* (the library's functions, see
:class:`divqat.experiments.pipeline.LibraryPipeline`) with these methods::

    train_victim(cell: VictimCell, teacher_dir: Path | None, out_dir: Path) -> (model, metrics: dict)
    load_victim(cell: VictimCell, out_dir: Path) -> model
    evaluate_victim(cell: VictimCell, out_dir: Path, metrics: dict) -> metrics to add (may be empty)
    attack(victim: model, cell: AttackCell, victim_dir: Path) -> metrics: dict
    train_misinformation(cell: MisinformationCell, out_dir: Path) -> metrics: dict

An attack cell whose defense is adaptive misinformation is given its trained misinformation
model as ``attack(..., misinformation_dir=Path)`` (the folder ``train_misinformation`` wrote).

``teacher_dir`` is the finished output directory of the cell's teacher (the full-precision
victim of the same seed) for ptq/qat/divqat, else None.

The runner turns the grid into jobs (:func:`grid_jobs`: per seed the teacher, then its
students, then the misinformation model when an attack cell still needs one, then the attack
cells) and hands them to an executor
(:mod:`divqat.experiments.executors`: in this process, or as Ray tasks). Whoever runs a cell
(:class:`CellWorker`) claims it (:mod:`divqat.experiments.cell_lock`), skips it if the cache has
it, else computes it and writes its record atomically; so a rerun, or a second driver on the
same directory, never computes a finished cell again, and an interrupted run resumes where it
stopped. A failing cell is recorded in ``OUT/failures/<key>.json`` with its error, the cells
that need it are skipped, the rest of the grid goes on, and :class:`ExperimentFailed` names the
failed cells at the end (after the tables are written).
"""
import contextlib
import dataclasses
import time
import uuid
from collections import defaultdict
from pathlib import Path

import torch

from divqat.checks import check_output_dir
from divqat.progress import progress_bar
from divqat.results.aggregate import write_results
from divqat.results.report import write_report
from divqat.utils import atomic_write_json, seed_everything

from .cell_lock import claim
from .cells import CellCache, attack_cells, attacked_victims, misinformation_name, victim_cells, victim_name
from .config import load_experiment_configs
from .executors import CACHED, DONE, FAILED, SKIPPED, Job, Outcome, SequentialExecutor
from .pairs import pair_runs


class ExperimentFailed(RuntimeError):
    """Some cells of the grid failed (the others are finished and tabulated)."""

    def __init__(self, counts, failures):
        self.counts, self.failures = counts, failures
        # the last line of an error names its cause (a Ray error carries the remote traceback)
        lines = [f"  {label}: {outcome.status}: {outcome.error.splitlines()[-1]}" for label, outcome in failures]
        n_failed = sum(o.status == FAILED for _, o in failures)
        super().__init__(f"{n_failed} cells failed, {len(failures) - n_failed} skipped:\n" + "\n".join(lines))


def _victim_label(cell):
    return f"seed {cell.seed} {cell.method.label}"


def _attack_label(cell):
    return f"{_victim_label(cell.victim)} | {cell.defense.label} | {cell.attack.label}"


def _transfer_group(cell):
    """Attack cells that share one transfer-set cache: all but the budget alike."""
    params = tuple(p for p in cell.attack.params if p[0] != "budget")
    return cell.victim.key, cell.defense, cell.attack.name, params


def grid_jobs(config, cache):
    """The grid's jobs in topological order, and how many attack cells the cache already holds
    (those get no job). Per seed: the teacher, its students, the misinformation model (when an
    attack cell to run has adaptive misinformation), then the attack cells of each victim,
    largest budget first; a smaller budget waits for the larger one of its transfer group,
    whose cached transfer set it reuses (:mod:`divqat.attacks.transfer`)."""
    jobs, cached = [], 0
    for seed in config.seeds:
        for victim in victim_cells(config, seed):
            needs = (victim.teacher.key,) if victim.teacher is not None else ()
            jobs.append(Job(victim.key, "victim", _victim_label(victim), victim, needs=needs))
        attack_jobs, seed_cached = _attack_jobs(config, cache, seed)
        cached += seed_cached
        misinformation = next((j.cell.misinformation for j in attack_jobs if j.cell.misinformation), None)
        if misinformation is not None:
            jobs.append(Job(misinformation.key, "misinformation", f"seed {seed} misinformation model",
                            misinformation))
        jobs.extend(attack_jobs)
    return jobs, cached


def _attack_jobs(config, cache, seed):
    """The jobs of one seed's attack cells that the cache lacks, and the number it holds (see
    :func:`grid_jobs`)."""
    jobs, cached = [], 0
    for victim in attacked_victims(config, seed):
        last_of_group = {}
        for cell in attack_cells(config, victim):
            if cache.attack_record(cell.key) is not None:
                cached += 1
                continue
            group = _transfer_group(cell)
            after = (last_of_group[group],) if group in last_of_group else ()
            needs = (victim.key,) + ((cell.misinformation.key,) if cell.misinformation is not None else ())
            jobs.append(Job(cell.key, "attack", _attack_label(cell), cell, needs=needs, after=after))
            last_of_group[group] = cell.key
    return jobs, cached


# in a Ray worker process: {run token: pipeline}, the pipeline (and its loaded test set) that the
# first task of a run built, for the run's later tasks in the same process
_WORKER_PIPELINE = {}


class CellWorker:
    """Does one job against the cache of ``out_dir``, in the driver or in a Ray worker: the cell
    is claimed, skipped if finished, else computed (global RNGs seeded with the cell's seed,
    ``threads`` torch threads) and its record written atomically. A failure is recorded and
    returned as an :class:`Outcome`, never raised. Without ``pipeline`` each process builds a
    :class:`~divqat.experiments.pipeline.LibraryPipeline` of ``config`` on first use."""

    def __init__(self, out_dir, config, pipeline=None, progress=False, threads=None):
        self.out_dir, self.config, self.progress, self.threads = Path(out_dir), config, progress, threads
        self._given = pipeline
        self._token = uuid.uuid4().hex  # this run's, to find its pipeline again in a worker process
        self._built, self._in_worker = None, False
        self._models, self._models_seed = {}, None

    def __getstate__(self):  # what travels to a Ray worker: no models, no pipeline built here
        return {**self.__dict__, "_built": None, "_models": {}, "_models_seed": None}

    def __setstate__(self, state):
        self.__dict__.update(state, _in_worker=True)
        self._built = _WORKER_PIPELINE.get(self._token)  # built by an earlier task of this run

    @property
    def pipeline(self):
        if self._given is not None:
            return self._given
        if self._built is None:
            from .pipeline import LibraryPipeline

            self._built = LibraryPipeline(self.config, progress=self.progress)
            if self._in_worker:
                _WORKER_PIPELINE.clear()
                _WORKER_PIPELINE[self._token] = self._built
        return self._built

    def __call__(self, job, dep_outcomes):
        lost = [d for d, o in zip(job.deps, dep_outcomes) if d in job.needs and not o.ok]
        if lost:
            return Outcome(SKIPPED, f"needs cell {lost[0]}, which did not finish")
        cache = CellCache(self.out_dir)
        try:
            with self._torch_threads(), claim(self.out_dir, job.key, self._record_path(job)):
                seed_everything(job.cell.victim.seed if job.kind == "attack" else job.cell.seed)
                work = {"victim": self._victim, "misinformation": self._misinformation, "attack": self._attack}
                status = work[job.kind](cache, job.cell)
        except Exception as exc:
            return Outcome.failure(exc)
        return Outcome(status)

    _FOLDER_NAMES = {"victim": victim_name, "misinformation": misinformation_name}

    def _record_path(self, job):
        name = self._FOLDER_NAMES[job.kind](job.cell) if job.kind in self._FOLDER_NAMES else None
        return CellCache(self.out_dir).record_path(job.kind, job.key, name)

    @contextlib.contextmanager
    def _torch_threads(self):
        if self.threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _remember(self, cell, model):
        """Keep the victims of one seed in memory for its attack cells."""
        if cell.seed != self._models_seed:
            self._models, self._models_seed = {}, cell.seed
        self._models[cell.key] = model

    def _victim(self, cache, cell):
        out_dir = cache.victim_dir(cell.key, victim_name(cell))
        record = cache.victim_record(cell.key)
        status = CACHED
        if record is None:
            teacher_dir = cache.victim_dir(cell.teacher.key) if cell.teacher is not None else None
            start = time.perf_counter()
            model, metrics = self.pipeline.train_victim(cell, teacher_dir, out_dir)
            record = {"key": cell.key, "seed": cell.seed, "method": cell.method.as_dict(),
                      "label": cell.method.label, "spec": cell.spec, "metrics": metrics,
                      "time_s": time.perf_counter() - start}
            cache.save_victim_record(cell.key, record)
            self._remember(cell, model)
            status = DONE
        extra = self.pipeline.evaluate_victim(cell, out_dir, record["metrics"])
        if extra:
            record["metrics"].update(extra)
            cache.save_victim_record(cell.key, record)
        return status

    def _misinformation(self, cache, cell):
        if cache.misinformation_record(cell.key) is not None:
            return CACHED
        start = time.perf_counter()
        out_dir = cache.misinformation_dir(cell.key, misinformation_name(cell))
        metrics = self.pipeline.train_misinformation(cell, out_dir)
        cache.save_misinformation_record(cell.key, {"key": cell.key, "seed": cell.seed, "spec": cell.spec,
                                                    "metrics": metrics, "time_s": time.perf_counter() - start})
        return DONE

    def _attack(self, cache, cell):
        if cache.attack_record(cell.key) is not None:
            return CACHED
        victim = cell.victim
        victim_dir = cache.victim_dir(victim.key)
        if victim.seed != self._models_seed or victim.key not in self._models:
            self._remember(victim, self.pipeline.load_victim(victim, victim_dir))
        start = time.perf_counter()
        extra = {} if cell.misinformation is None else {
            "misinformation_dir": cache.misinformation_dir(cell.misinformation.key)}
        metrics = self.pipeline.attack(self._models[victim.key], cell, victim_dir, **extra)
        cache.save_attack_record(cell.key, {
            "key": cell.key, "seed": victim.seed, "victim_key": victim.key,
            "method": victim.method.as_dict(), "victim_label": victim.method.label,
            "defense": cell.defense.as_dict(), "attack": cell.attack.as_dict(),
            "spec": cell.spec, "metrics": metrics, "time_s": time.perf_counter() - start})
        return DONE


class _GridTracker:
    """The driver's view of the grid: one bar over its cells (victims and attack cells), the
    finished ones counted, the running ones named; the counts; the failures, each recorded in
    ``OUT/failures/<key>.json`` until its cell succeeds."""

    COUNTS = {"victim": "victims_trained", "attack": "cells_run", "misinformation": "misinformation_models_trained"}

    def __init__(self, out_dir, name, total, cached, enabled):
        self.out_dir = out_dir
        self.bar = progress_bar(total=total, initial=cached, desc=f"experiment {name}", unit="cells", enabled=enabled,
                                leave=True)
        self.running = {}
        self.counts = {"victims_trained": 0, "cells_run": 0, "cells_cached": cached}
        self.failures = []

    def _show(self, refresh=True):
        labels = list(self.running.values())
        more = f" (+{len(labels) - 3})" if len(labels) > 3 else ""
        self.bar.set_postfix_str(("running: " + "; ".join(labels[:3]) + more) if labels else "", refresh=refresh)

    def start(self, job):
        self.running[job.key] = job.label
        self._show()

    def done(self, job, outcome):
        self.running.pop(job.key, None)
        if outcome.status == DONE:
            count = self.COUNTS[job.kind]
            self.counts[count] = self.counts.get(count, 0) + 1
        elif outcome.status == CACHED and job.kind == "attack":
            self.counts["cells_cached"] += 1
        elif not outcome.ok:
            self.failures.append((job.label, outcome))
        self._record(job, outcome)
        self._show(refresh=False)  # the count and what still runs, shown together by the update
        self.bar.update(1)

    def _record(self, job, outcome):
        """``OUT/failures/<key>.json`` holds the error of a failed cell until it succeeds."""
        path = self.out_dir / "failures" / f"{job.key}.json"
        if outcome.status == FAILED:
            atomic_write_json({"key": job.key, "kind": job.kind, "label": job.label, "error": outcome.error,
                               "traceback": outcome.details}, path)
        elif outcome.ok:
            path.unlink(missing_ok=True)

    def close(self):
        self.bar.close()


def run_experiment(config, out_dir, pipeline=None, progress=True, report=True, executor=None):
    """Run (or resume) ``config``'s grid into ``out_dir`` with ``executor`` (default:
    :class:`~divqat.experiments.executors.SequentialExecutor`); returns counts of the work done:
    ``victims_trained``, ``cells_run``, ``cells_cached`` (and ``misinformation_models_trained``
    when some were trained). Writes results.csv, results.json,
    victims.csv and (``report=True``) report.md with its plots. Raises
    :class:`ExperimentFailed` after writing them if any cell failed."""
    executor = executor or SequentialExecutor()
    out_dir = Path(out_dir)
    cache = CellCache(out_dir)
    worker = CellWorker(out_dir, config, pipeline, progress=progress and executor.in_process,
                        threads=executor.threads)
    _ = worker.pipeline  # builds (and so validates) the pipeline before any work
    # several configs may share one directory (and its cached victims): one record per config
    atomic_write_json(config.raw, out_dir / "configs" / f"{config.name}.json")
    jobs, cached = grid_jobs(config, cache)
    tracker = _GridTracker(out_dir, config.name, len(jobs) + cached, cached, progress)
    try:
        executor.run(jobs, worker, tracker.start, tracker.done)
    finally:
        tracker.close()
    if report:
        write_report(out_dir)
    else:
        write_results(out_dir)
    if tracker.failures:
        raise ExperimentFailed(tracker.counts, tracker.failures)
    return tracker.counts


def run_seed_major(config_paths, out_dir, seeds, progress=False, pair=None):
    """Run every config (TOML paths) for each seed in turn: every config for seed 0, then every
    config for seed 1, ..., so an interrupted run leaves whole seeds of every config, the configs
    share their cached victims, and a rerun resumes. A file with dataset pairs runs ``pair``'s
    config into ``out_dir``, or without ``pair`` each pair's into ``out_dir/<pair name>``
    (:func:`divqat.experiments.pairs.pair_runs`). Returns the summed work counts of
    :func:`run_experiment`."""
    check_output_dir("--out", out_dir)
    runs = [run for path in config_paths  # all validated before any work
            for run in pair_runs(load_experiment_configs(path), out_dir, pair, source=path)]
    totals = defaultdict(int)
    for seed in seeds:
        for config, out in runs:
            counts = run_experiment(dataclasses.replace(config, seeds=[seed]), out, progress=progress, report=False)
            for key, value in counts.items():
                totals[key] += value
            print(f"frontier run: seed {seed} {config.name}: {counts}", flush=True)
    return dict(totals)
