#!/usr/bin/env bash
# The label-only study (docs/science.md §10), resumable, from a frozen copy of the code:
#   bash scripts/labelonly.sh STAGE [COMMIT] [SEEDS...]
# runs the dataset pairs of experiments/labelonly_mnist_pairs_full_<STAGE>.toml (both, or the one
# a stage has; each from its file of one pair, scripts/freeze_code.sh) as one queue of
# (seed, pair) jobs, seed by seed, so an interruption leaves whole seeds; LABELONLY_JOBS workers
# (default: the number of cores) take the next job as each finishes, one one-thread process at
# the lowest priority per job, so no core idles while a slower pair finishes its seed. Results go
# into runs/labelonly_<pair> (the cell cache, so a rerun resumes), logs to
# runs/labelonly_<pair>.log; a failed seed fails the script (after the other jobs). Cells computed by
# another code with the same configuration are adopted (--reuse-stale), so later stages pair with
# earlier victims.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: labelonly.sh STAGE [COMMIT] [SEEDS...]}
source scripts/freeze_code.sh "${2:-HEAD}"   # sets $commit and $src
shift $(( $# >= 2 ? 2 : 1 ))
seeds=${*:-0 1 2 3 4 5 6 7 8 9}
jobs=${LABELONLY_JOBS:-$(nproc)}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
  echo "labelonly.sh: LABELONLY_JOBS must be a positive integer, got '$jobs'" >&2
  exit 2
fi
if ! compgen -G "$src/experiments/labelonly_*_full_${stage}.toml" >/dev/null; then
  echo "labelonly.sh: STAGE $stage: no experiments/labelonly_mnist_pairs_full_$stage.toml at $commit" >&2
  exit 2
fi
mkdir -p runs
run_one() {  # run_one PAIR SEED: one seed of one pair, appended to that pair's log; fails as the run does
  local pair=$1 seed=$2 log=runs/labelonly_$1.log rc=0
  echo "start $stage $pair seed $seed $(date -u +%FT%TZ) commit $commit; $(uptime)" >>"$log"
  OMP_NUM_THREADS=1 PYTHONPATH=$(pwd)/$src nice -n 19 .venv/bin/python -P -m divqat.cli experiment \
    "$src/experiments/labelonly_${pair}_full_${stage}.toml" --out "runs/labelonly_$pair" --seeds "$seed" \
    --reuse-stale --no-report --no-progress >>"$log" 2>&1 || rc=$?
  echo "done $stage $pair seed $seed $(date -u +%FT%TZ) rc $rc; $(uptime)" >>"$log"
  [ "$rc" = 0 ] || echo "labelonly.sh: $stage $pair seed $seed failed (rc $rc); see $log" >&2
  return "$rc"
}
export -f run_one
export stage commit src
for seed in $seeds; do
  for pair in mnist_fmnist fmnist_mnist; do
    if [ -f "$src/experiments/labelonly_${pair}_full_${stage}.toml" ]; then echo "$pair $seed"; fi   # a stage of one pair
  done
done | xargs -P "$jobs" -L 1 bash -c 'run_one "$@"' _
