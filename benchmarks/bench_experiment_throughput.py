"""Experiment throughput: one grid of independent one-thread cells (8 seeds of a full-precision
smallcnn victim on sklearn digits, ``EPOCHS`` epochs each, no attack cells), run by the
sequential executor and by ``--executor ray`` on a local 2-CPU Ray instance, in alternation
(sequential, Ray, sequential, Ray: the load of a shared machine drifts), each into a fresh
directory. The Ray instance is started once and its start-up timed apart. Stores in the JSON's
``extra_info`` each run's wall time and load average, cells per hour and the ratios.

    OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_experiment_throughput.py \
        --benchmark-json=bench_experiment_throughput.json -s
"""
import os
import shutil
import tempfile
import time

import pytest

from divqat.experiments import parse_config
from divqat.experiments.executors import RayExecutor, SequentialExecutor
from divqat.experiments.runner import run_experiment

ray = pytest.importorskip("ray")

SEEDS = list(range(8))
EPOCHS = 40
ROUNDS = 2
RAW = {"name": "throughput", "seeds": SEEDS, "data": {"victim": "digits"},
       "victim": {"arch": "smallcnn", "epochs": EPOCHS, "batch_size": 64}, "methods": [{"name": "fp"}]}


def test_grid_throughput_sequential_vs_ray(benchmark, tmp_path):
    config = parse_config(RAW)
    n = len(SEEDS)
    runs = []

    def grid(kind, executor):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        counts = run_experiment(config, tmp_path / f"{kind}{len(runs)}", progress=False, report=False,
                                executor=executor)
        runs.append({"kind": kind, "wall_s": time.perf_counter() - start, "load_before": load})
        assert counts["victims_trained"] == n

    ray_tmp = tempfile.mkdtemp(prefix="ray")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp, logging_level="warning")
    startup_s = time.perf_counter() - start

    def rounds():
        for _ in range(ROUNDS):
            grid("sequential", SequentialExecutor(threads=1))
            grid("ray", RayExecutor(cpus=1))

    try:
        benchmark.pedantic(rounds, rounds=1, iterations=1)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    pairs = [(runs[i]["wall_s"], runs[i + 1]["wall_s"]) for i in range(0, len(runs), 2)]
    info = {"cells": n, "epochs": EPOCHS, "ray_startup_s": startup_s, "runs": runs,
            "ratios": [s / r for s, r in pairs],
            "ratios_with_startup": [s / (r + startup_s) for s, r in pairs],
            "sequential_cells_per_hour": [3600 * n / s for s, _ in pairs],
            "ray_cells_per_hour": [3600 * n / r for _, r in pairs]}
    benchmark.extra_info.update(info)
    print(f"\n{info}")
