#!/usr/bin/env bash
# Copy the raw per-seed CSVs (and the report, written without plots, which stay behind) of the
# 10-seed runs into docs/results/data/ten_seeds/ after rewriting them with `divqat report`; safe
# while the runs go on (every file is written atomically from the finished cells only).
set -euo pipefail
cd "$(dirname "$0")/.."
for pair in mnist_fmnist fmnist_mnist; do
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/divqat report runs/${pair}_seeds10 --no-plots >/dev/null
  mkdir -p docs/results/data/ten_seeds/$pair
  cp runs/${pair}_seeds10/{results.csv,victims.csv,comparisons.csv,summary.csv,report.md} docs/results/data/ten_seeds/$pair/
done
.venv/bin/divqat report --update docs/results README.md
echo "collected: $(date -u +%FT%TZ); $(uptime)"
