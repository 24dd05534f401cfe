"""Experiment throughput: one grid of independent one-thread cells (8 seeds of a full-precision
smallcnn victim on sklearn digits, ``epochs`` epochs each, no attack cells), run by the
sequential executor and by ``--executor ray`` on a local 2-CPU Ray instance, back to back in one
run. Stores in the JSON's ``extra_info`` both wall times, the Ray instance's start-up, cells per
hour and the ratios (Ray start-up included and excluded).

    OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_experiment_throughput.py \\
        --benchmark-json=bench_experiment_throughput.json -s
"""
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
RAW = {"name": "throughput", "seeds": SEEDS, "data": {"victim": "digits"},
       "victim": {"arch": "smallcnn", "epochs": EPOCHS, "batch_size": 64}, "methods": [{"name": "fp"}]}


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_grid_throughput_sequential_vs_ray(benchmark, tmp_path):
    config = parse_config(RAW)
    n = len(SEEDS)

    def grid(executor, out):
        counts = run_experiment(config, tmp_path / out, progress=False, report=False, executor=executor)
        assert counts["victims_trained"] == n

    sequential_s = _timed(lambda: grid(SequentialExecutor(threads=1), "sequential"))
    ray_tmp = tempfile.mkdtemp(prefix="ray")
    startup_s = _timed(lambda: ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_tmp,
                                        logging_level="warning"))
    try:
        ray_s = benchmark.pedantic(lambda: _timed(lambda: grid(RayExecutor(cpus=1), "ray")), rounds=1, iterations=1)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    info = {"cells": n, "epochs": EPOCHS, "sequential_s": sequential_s, "ray_s": ray_s, "ray_startup_s": startup_s,
            "sequential_cells_per_hour": 3600 * n / sequential_s,
            "ray_cells_per_hour": 3600 * n / (ray_s + startup_s),
            "ratio": sequential_s / (ray_s + startup_s), "ratio_without_startup": sequential_s / ray_s}
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))
