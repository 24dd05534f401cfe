#!/usr/bin/env bash
# The 10-seed reduced grids of both dataset pairs (docs/science.md §9), resumable.
# Runs from a frozen copy of the code (runs/src-<commit>), so every cell of the run has one code
# fingerprint however the working tree changes meanwhile (a later commit is another code, and
# recomputes: resume with the commit the run started from). Four one-thread processes: per
# pair, seeds 0-4 and 5-9 into one directory; each runs, for its seeds, stage 0 (QAT and DivQAT,
# no defense, KnockoffNets at 5000 queries), stage 1 (the same behind DCP), stage 2 (Copycat at
# 5000 queries, no defense and DCP), stage 3 (everything at 1000 queries), stage 4 (KnockoffNets
# at 10000 queries, no defense) and then the rest of
# the grid. The stages are the pairs of experiments/mnist_pairs_cpu_seeds10*.toml, each run from
# its file of one pair (scripts/freeze_code.sh).
#   bash scripts/seeds10.sh [COMMIT]   # start (or resume) in the background
# The 30 Nov run used the frozen commit f763217 (merged into main's history as a side parent):
#   bash scripts/seeds10.sh f763217   resumes it with the same code fingerprint.
#   divqat report runs/mnist_fmnist_seeds10      # tables, comparisons.csv, report.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/freeze_code.sh "${1:-HEAD}"   # sets $commit and $src
py=$(pwd)/.venv/bin/python
for pair in mnist_fmnist fmnist_mnist; do
  for seeds in 0-4 5-9; do
    log=runs/${pair}_seeds10.$seeds.log
    (
      echo "start $(date -u +%FT%TZ) commit $commit seeds $seeds; $(uptime)"
      for stage in ${pair}_cpu_seeds10_none ${pair}_cpu_seeds10_headline ${pair}_cpu_seeds10_copycat ${pair}_cpu_seeds10_budget1k ${pair}_cpu_seeds10_budget10k_none ${pair}_cpu_seeds10; do
        OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)/$src nice -n 10 "$py" -P -m divqat.cli experiment \
          $src/experiments/$stage.toml --out runs/${pair}_seeds10 --seeds $seeds --no-report --quiet
        echo "done $stage $(date -u +%FT%TZ); $(uptime)"
      done
    ) >>"$log" 2>&1 &
  done
done
echo "started; logs: runs/*_seeds10.*.log"
