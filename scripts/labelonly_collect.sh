#!/usr/bin/env bash
# Collect the label-only study's finished cells (runs/labelonly_<pair>, written by
# scripts/labelonly.sh) into docs/results/data/label_only/: frontier.csv (one row per pair,
# victim setting, defense, setting, thief, budget and seed), answered_labels.csv (the labels each
# thief was answered), frontier.md and <pair>/victims.csv (every victim's accuracy and divergence
# from f_fp); then regenerate the results pages from the CSVs.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(pwd)/.venv/bin/python
"$py" -m divqat.experiments.frontier table runs/labelonly_mnist_fmnist runs/labelonly_fmnist_mnist \
  --out docs/results/data/label_only --no-plots
for pair in mnist_fmnist fmnist_mnist; do
  mkdir -p "docs/results/data/label_only/$pair"
  cp "runs/labelonly_$pair/victims.csv" "docs/results/data/label_only/$pair/victims.csv"
done
"$py" -m divqat.cli report --update docs/results README.md
