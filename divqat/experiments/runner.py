"""Run an experiment grid: train each victim once, attack it under every defense and budget,
cache every finished cell, then write the result tables and the report.

The work itself is done by a *pipeline* (the library's functions, see
:class:`divqat.experiments.pipeline.LibraryPipeline`) with three methods::

    train_victim(cell: VictimCell, teacher_dir: Path | None, out_dir: Path) -> (model, metrics: dict)
    load_victim(cell: VictimCell, out_dir: Path) -> model
    evaluate_victim(cell: VictimCell, out_dir: Path, metrics: dict) -> metrics to add (may be empty)
    attack(victim: model, cell: AttackCell, victim_dir: Path) -> metrics: dict

``teacher_dir`` is the finished output directory of the cell's teacher (the full-precision
victim of the same seed) for ptq/qat/divqat, else None.

The runner owns the order, the caching and resumption: a finished victim is loaded, never
retrained; a finished attack cell is skipped; a victim whose attack cells are all finished is
not even loaded. An interrupted run resumes where it stopped when started again.
"""
import time
from pathlib import Path

from tqdm.auto import tqdm

from divqat.utils import atomic_write_json

from .aggregate import write_results
from .cells import CellCache, attack_cells, attacked_victims, victim_cells
from .report import write_report


class _Victims:
    """Victim models of one seed, trained or loaded on first use, kept for reuse."""

    def __init__(self, cache, pipeline, counts):
        self.cache, self.pipeline, self.counts = cache, pipeline, counts
        self.models = {}

    def record(self, cell):
        """The victim's record, training the victim (and its teacher) if it has none."""
        record = self.cache.victim_record(cell.key)
        if record is None:
            self.get(cell)
            record = self.cache.victim_record(cell.key)
        return record

    def get(self, cell):
        if cell.key in self.models:
            return self.models[cell.key]
        out_dir = self.cache.victim_dir(cell.key)
        if self.cache.victim_record(cell.key) is not None:
            model = self.pipeline.load_victim(cell, out_dir)
        else:
            teacher_dir = None
            if cell.teacher is not None:
                self.record(cell.teacher)
                teacher_dir = self.cache.victim_dir(cell.teacher.key)
            start = time.perf_counter()
            model, metrics = self.pipeline.train_victim(cell, teacher_dir, out_dir)
            self.cache.save_victim_record(cell.key, {
                "key": cell.key, "seed": cell.seed, "method": cell.method.as_dict(),
                "label": cell.method.label, "spec": cell.spec, "metrics": metrics,
                "time_s": time.perf_counter() - start})
            self.counts["victims_trained"] += 1
        self.models[cell.key] = model
        return model


def run_experiment(config, out_dir, pipeline=None, progress=True, report=True):
    """Run (or resume) ``config``'s grid into ``out_dir``; returns counts of the work done:
    ``victims_trained``, ``cells_run``, ``cells_cached``. Writes results.csv, results.json,
    victims.csv and (``report=True``) report.md with its plots."""
    if pipeline is None:
        from .pipeline import LibraryPipeline

        pipeline = LibraryPipeline(config, progress=progress)
    out_dir = Path(out_dir)
    cache = CellCache(out_dir)
    # several configs may share one directory (and its cached victims): one record per config
    atomic_write_json(config.raw, out_dir / "configs" / f"{config.name}.json")
    counts = {"victims_trained": 0, "cells_run": 0, "cells_cached": 0}
    total = sum(len(attack_cells(config, v)) for s in config.seeds for v in attacked_victims(config, s))
    bar = tqdm(total=total, desc=f"experiment {config.name}", disable=not progress)
    for seed in config.seeds:
        victims = _Victims(cache, pipeline, counts)
        for victim in victim_cells(config, seed):
            record = victims.record(victim)
            extra = pipeline.evaluate_victim(victim, cache.victim_dir(victim.key), record["metrics"])
            if extra:
                record["metrics"].update(extra)
                cache.save_victim_record(victim.key, record)
        for victim in attacked_victims(config, seed):
            for cell in attack_cells(config, victim):
                bar.set_postfix_str(f"seed {seed} {victim.method.label} {cell.defense.label} {cell.attack.label}")
                if cache.attack_record(cell.key) is not None:
                    counts["cells_cached"] += 1
                    bar.update(1)
                    continue
                model = victims.get(victim)
                start = time.perf_counter()
                metrics = pipeline.attack(model, cell, cache.victim_dir(victim.key))
                cache.save_attack_record(cell.key, {
                    "key": cell.key, "seed": seed, "victim_key": victim.key,
                    "method": victim.method.as_dict(), "victim_label": victim.method.label,
                    "defense": cell.defense.as_dict(), "attack": cell.attack.as_dict(),
                    "spec": cell.spec, "metrics": metrics, "time_s": time.perf_counter() - start})
                counts["cells_run"] += 1
                bar.update(1)
    bar.close()
    if report:
        write_report(out_dir)
    else:
        write_results(out_dir)
    return counts
