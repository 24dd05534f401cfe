#!/usr/bin/env bash
# Copy the raw per-seed CSVs (and the report) of the 10-seed runs into docs/reproduction/seeds10/
# after rewriting them with `divqat report`; safe while the runs go on (every file is written
# atomically from the finished cells only).
set -euo pipefail
cd "$(dirname "$0")/../.."
for pair in mnist_fmnist fmnist_mnist; do
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/divqat report runs/${pair}_seeds10 >/dev/null
  mkdir -p docs/reproduction/seeds10/$pair
  cp runs/${pair}_seeds10/{results.csv,victims.csv,comparisons.csv,summary.csv,report.md} docs/reproduction/seeds10/$pair/
done
echo "collected: $(date -u +%FT%TZ); $(uptime)"
