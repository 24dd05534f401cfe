# Sourced by the long-run drivers (scripts/seeds10.sh, frontier.sh, labelonly.sh): freeze the code of COMMIT (default
# HEAD) into runs/src-<commit> (sources plus the built C++ extension) and set $src to it, so every
# cell of a run has one code fingerprint however the working tree changes meanwhile. Run the
# experiments with PYTHONPATH=$(pwd)/$src python -P ... Each dataset pair of the configs with
# [[pairs]] is written as a file of its own, $src/experiments/<config name>.toml (e.g.
# frontier_mnist_fmnist_cpu_core.toml), which the code of any commit reads; the drivers run those.
commit=$(git rev-parse --short "${1:-HEAD}")
src=runs/src-$commit
if [ ! -d "$src" ]; then
  mkdir -p "$src.tmp"
  git archive "$commit" divqat csrc triton_kernels | tar -x -C "$src.tmp"
  cp divqat/_C*.so "$src.tmp/divqat/" 2>/dev/null || true
  mv "$src.tmp" "$src"
fi
.venv/bin/python -m divqat.experiments.pair_files $(grep -l '^\[\[pairs\]\]' experiments/*.toml) \
  --out "$src/experiments" >/dev/null
