#!/usr/bin/env bash
# The label-only study (docs/science.md §10), resumable, from a frozen copy of the code:
#   bash scripts/labelonly.sh STAGE [COMMIT] [SEEDS...]
# runs the dataset pairs of experiments/labelonly_mnist_pairs_full_<STAGE>.toml (both, or the one
# a stage has; each from its file of one pair, scripts/freeze_code.sh), one one-thread process per pair at the lowest
# priority, into runs/labelonly_<pair> (the cell cache, so a rerun resumes), logging to
# runs/labelonly_<pair>.log. Cells computed by another code with the same configuration are
# adopted (--reuse-stale), so later stages pair with earlier victims.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: labelonly.sh STAGE [COMMIT] [SEEDS...]}
source scripts/freeze_code.sh "${2:-HEAD}"   # sets $commit and $src
shift $(( $# >= 2 ? 2 : 1 ))
seeds=${*:-0 1 2 3 4 5 6 7 8 9}
py=$(pwd)/.venv/bin/python
if ! compgen -G "$src/experiments/labelonly_*_full_${stage}.toml" >/dev/null; then
  echo "labelonly.sh: STAGE $stage: no experiments/labelonly_mnist_pairs_full_$stage.toml at $commit" >&2
  exit 2
fi
mkdir -p runs
for pair in mnist_fmnist fmnist_mnist; do
  [ -f "$src/experiments/labelonly_${pair}_full_${stage}.toml" ] || continue   # a stage of one pair
  (
    echo "start $stage $(date -u +%FT%TZ) commit $commit seeds $seeds; $(uptime)"
    for seed in $seeds; do   # seed by seed, so an interruption leaves whole seeds
      OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)/$src nice -n 19 "$py" -P -m divqat.cli experiment \
        "$src/experiments/labelonly_${pair}_full_${stage}.toml" --out "runs/labelonly_$pair" --seeds "$seed" \
        --reuse-stale --no-report --no-progress
    done
    echo "done $stage $(date -u +%FT%TZ); $(uptime)"
  ) >>"runs/labelonly_$pair.log" 2>&1 &
done
wait
