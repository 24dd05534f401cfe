#!/usr/bin/env bash
# The 10-seed reduced grids of both dataset pairs (issue 18, docs/science.md §9), resumable.
# Runs from a frozen copy of the code (runs/src-<commit>), so every cell of the run has one code
# fingerprint however the working tree changes meanwhile. Four one-thread processes: per pair,
# seeds 0-4 and 5-9 into one directory; each runs the headline stage (KnockoffNets at 5000
# queries, no defense and DCP) for its seeds before the rest of the grid.
#   bash docs/reproduction/seeds10.sh            # start (or resume) in the background
#   divqat report runs/mnist_fmnist_seeds10      # tables, comparisons.csv, report.md
set -euo pipefail
cd "$(dirname "$0")/../.."
commit=$(git rev-parse --short HEAD)
src=runs/src-$commit
if [ ! -d "$src" ]; then
  mkdir -p "$src.tmp"
  git archive HEAD divqat csrc triton_kernels | tar -x -C "$src.tmp"
  cp divqat/_C*.so "$src.tmp/divqat/" 2>/dev/null || true
  mv "$src.tmp" "$src"
fi
py=$(pwd)/.venv/bin/python
for pair in mnist_fmnist fmnist_mnist; do
  for seeds in 0-4 5-9; do
    log=runs/${pair}_seeds10.$seeds.log
    (
      echo "start $(date -u +%FT%TZ) commit $commit seeds $seeds; $(uptime)"
      for stage in ${pair}_cpu_seeds10_headline ${pair}_cpu_seeds10; do
        OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)/$src nice -n 10 "$py" -P -m divqat.cli experiment \
          experiments/$stage.toml --out runs/${pair}_seeds10 --seeds $seeds --no-report --quiet
        echo "done $stage $(date -u +%FT%TZ); $(uptime)"
      done
    ) >>"$log" 2>&1 &
  done
done
echo "started; logs: runs/*_seeds10.*.log"
