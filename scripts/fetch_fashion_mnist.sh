#!/usr/bin/env bash
# Get Fashion-MNIST (Debian's dataset-fashion-mnist: the four IDX files) where divqat's loader
# looks for it (divqat/data/sources.py):
#   as root:         apt-get install dataset-fashion-mnist   -> /usr/share/datasets/fashion-mnist
#   without root     apt-get download dataset-fashion-mnist + dpkg -x (no root needed)
#   (or --user):     -> ${DIVQAT_DATA:-~/.cache/divqat}/fashion-mnist
# Does nothing when either place already holds the files (with --user: when the user's does). Exit status 1 with a hint when
# neither works (no apt-get/dpkg: not Debian or Ubuntu; see docs/guide/install.md).
set -euo pipefail

SYSTEM_DIR=/usr/share/datasets/fashion-mnist
USER_DIR="${DIVQAT_DATA:-$HOME/.cache/divqat}/fashion-mnist"
FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"

have_all() {
  local f
  for f in $FILES; do [ -f "$1/$f" ] || return 1; done
}

mode=auto
[ "${1:-}" = "--user" ] && mode=user
if have_all "$USER_DIR" || { [ "$mode" = auto ] && have_all "$SYSTEM_DIR"; }; then
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "Fashion-MNIST: no apt-get/dpkg here; put the four IDX files ($FILES) in $USER_DIR" >&2
  exit 1
fi
if [ "$mode" = auto ] && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) >/dev/null
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -q dataset-fashion-mnist >/dev/null); then
  echo "Fashion-MNIST: 'apt-get download dataset-fashion-mnist' failed (package lists missing? " \
       "someone with root runs 'apt-get update' once); or put the IDX files in $USER_DIR" >&2
  exit 1
fi
dpkg -x "$work"/dataset-fashion-mnist_*.deb "$work/root"
mkdir -p "$USER_DIR"
for f in $FILES; do
  cp "$work/root$SYSTEM_DIR/$f" "$USER_DIR/.$f.part"
  mv "$USER_DIR/.$f.part" "$USER_DIR/$f"
done
echo "Fashion-MNIST installed without root in $USER_DIR"
