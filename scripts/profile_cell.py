"""Where the time of one attack cell of the ten-seed reduced grid goes: train the seed-0
f_fp and QAT victims of the mnist_fmnist pair of experiments/mnist_pairs_cpu.toml once, then
profile two KnockoffNets cells (no defense and DCP beta 0.5) at 1500 queries, 20 surrogate
epochs, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/profile_cell.py runs/profile
"""
import cProfile
import pstats
import sys
import time

from divqat.experiments.config import parse_config
from divqat.experiments.runner import run_experiment

RAW = {"name": "profile", "seeds": [0],
       "data": {"victim": "mnist", "queryset": "fashion-mnist", "train_limit": 10000, "test_limit": 2000},
       "victim": {"arch": "lenet5", "epochs": 3}, "quant": {"epochs": 1}, "methods": [{"name": "qat"}],
       "defenses": [{"name": "none"}, {"name": "dcp", "beta": 0.5}],
       "attacks": [{"name": "knockoff", "budget": [1000], "epochs": 20, "momentum": 0.9}]}


def main(out):
    start = time.perf_counter()
    run_experiment(parse_config(RAW), out, progress=False, report=False)  # victims + two 1000-query cells
    print(f"victims and two 1000-query cells: {time.perf_counter() - start:.1f} s")
    RAW["attacks"][0]["budget"] = [1500]
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    run_experiment(parse_config(RAW), out, progress=False, report=False)
    profile.disable()
    print(f"two 1500-query cells: {time.perf_counter() - start:.1f} s")
    pstats.Stats(profile).sort_stats("cumtime").print_stats(30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/profile")
