#!/usr/bin/env bash
# The trained-in defense frontier of both dataset pairs (docs/science.md §8 and §9),
# resumable, from a frozen copy of the code (scripts/freeze_code.sh). Per pair, one
# one-thread process runs the pair's configs of experiments/frontier_mnist_pairs_cpu_<part>.toml
# (each from its file of one pair, scripts/freeze_code.sh), into runs/frontier_<pair>, in this order:
#   seeds 0-9: core (QAT, DivQAT alpha 1, proxy-KL), output (DCP 0.5 alone and stacked),
#              adaptive (sharpened KnockoffNets), knockoff_adaptive, proxy_shuffle_blur(_adaptive), epochs20(_dcp),
#              extended_output (DCP beta grid, reverse sigmoid)
#   seeds 0-2: budget20k, extended_trained (every formulation over its weight) and extended_stacked
#              (the same behind DCP 0.5), mad, am
# then `table` writes runs/frontier_table/frontier.csv, which is copied to docs/results/data/trained_in/,
# and `divqat report --update docs/results` rewrites the pages' tables and plots from it.
#   bash scripts/frontier.sh [COMMIT]     # start (or resume) in the background
# The 30 Nov 2026 cells came from four codes with bit-identical victims (docs/results/trained-in.md): the trained-in branch (core/output/adaptive), 949c4fd (the rest),
# b83f7bc (am, which needs it) and f763217 (the ten-seed grids).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/freeze_code.sh "${1:-HEAD}"   # sets $commit and $src
py=$(pwd)/.venv/bin/python
for pair in mnist_fmnist fmnist_mnist; do
  (
    run() { OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)/$src nice -n 10 "$py" -P -m divqat.experiments.frontier run "$@" \
              --out runs/frontier_$pair; }
    echo "start $(date -u +%FT%TZ) commit $commit; $(uptime)"
    run $src/experiments/frontier_${pair}_cpu_{core,output,adaptive,knockoff_adaptive,proxy_shuffle_blur,proxy_shuffle_blur_adaptive,epochs20,epochs20_dcp,extended_output}.toml \
      --seeds 0 1 2 3 4 5 6 7 8 9
    run $src/experiments/frontier_${pair}_cpu_{budget20k,extended_trained,extended_stacked,mad,am}.toml --seeds 0 1 2
    echo "done $(date -u +%FT%TZ); $(uptime)"
  ) >>"runs/frontier_$pair.log" 2>&1 &
done
wait
# the ten-seed grids' cells (scripts/seeds10.sh) join as the 20-epoch attacker
"$py" -m divqat.experiments.frontier table runs/frontier_mnist_fmnist runs/frontier_fmnist_mnist \
  runs/mnist_fmnist_seeds10 runs/fmnist_mnist_seeds10 --out runs/frontier_table --no-plots
cp runs/frontier_table/frontier.csv docs/results/data/trained_in/frontier.csv
"$py" -m divqat.cli report --update docs/results
