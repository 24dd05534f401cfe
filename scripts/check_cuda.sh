#!/usr/bin/env bash
# Compile-check every csrc/*.cu with `nvcc -c` against the installed torch's headers.
# A CPU-only torch cannot link CUDA code, but its headers compile it once the one header that
# a CPU build lacks (c10/cuda/impl/cuda_cmake_macros.h) is stubbed. Fails on any compile error;
# skips, saying why, where nvcc is absent. The flags are setup.py's NVCC_FLAGS plus the
# half-precision defines torch's BuildExtension adds.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$NVCC" ]; then
  echo "check_cuda: SKIPPED: nvcc not found (set NVCC or install the CUDA toolkit)"
  exit 0
fi
PY=${PY:-python}
TORCH_INC=$($PY -c "from torch.utils.cpp_extension import include_paths; print(' '.join('-I'+p for p in include_paths()))")
PY_INC=$($PY -c "import sysconfig; print(sysconfig.get_paths()['include'])")
STUB=$(mktemp -d)
trap 'rm -rf "$STUB"' EXIT
mkdir -p "$STUB/c10/cuda/impl"
cat > "$STUB/c10/cuda/impl/cuda_cmake_macros.h" <<'H'
#pragma once
// stub for compile checks against a CPU-only torch
H
status=0
shopt -s nullglob
files=(csrc/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "check_cuda: no .cu files"
  exit 0
fi
for f in "${files[@]}"; do
  start=$(date +%s)
  if "$NVCC" -c "$f" -o "$STUB/$(basename "$f").o" -std=c++17 -O3 \
      -I"$STUB" -Icsrc $TORCH_INC -I"$PY_INC" \
      -DTORCH_EXTENSION_NAME=_cuda -D_GLIBCXX_USE_CXX11_ABI=1 \
      -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
      -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ \
      --expt-relaxed-constexpr -gencode arch=compute_90,code=sm_90 2> "$STUB/err.txt"; then
    echo "check_cuda: $f compiles ($(( $(date +%s) - start ))s)"
  else
    echo "check_cuda: $f FAILED to compile:"
    cat "$STUB/err.txt"
    status=1
  fi
done
exit $status
