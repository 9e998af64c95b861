#!/usr/bin/env bash
# The device check (docs/speed.md#the-device-check): benchmarks/gpu_check.py on a GPU machine in one call.
#
#   benchmarks/gpu_check.sh --prepare                    # here, once: what the GPU machine lacks, into .gpu-check/
#   benchmarks/gpu_check.sh --device cuda --out DIR      # there (carry .gpu-check): at most 8 minutes
#   benchmarks/gpu_check.sh --device cpu --out DIR       # the smoke mode: tiny sizes, every part (CI runs it)
#
# The GPU machine has Python, torch, h5py, scipy, matplotlib, pytest and pyyaml, but no Snakemake, no
# internet and room for 64 MiB of files. So the check calls the package's functions (as the rule scripts
# do) with src/ on PYTHONPATH; --prepare copies what it lacks into .gpu-check/ (ignored by git; carry it):
# the Fashion-MNIST idx files (30 MB) and wheels of jsonschema and its dependencies for CPython 3.12
# (1 MB), installed there into .gpu-check/site when `import jsonschema` fails.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-check
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
FASHION_SOURCE=/usr/share/datasets/fashion-mnist

if [ "${1:-}" = --prepare ]; then
  mkdir -p "$CARRY/fashion-mnist" "$CARRY/wheels"
  cp "$FASHION_SOURCE"/*-ubyte.gz "$CARRY/fashion-mnist/"
  "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY/wheels" jsonschema
  du -sh "$CARRY"
  exit 0
fi

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import jsonschema" 2>/dev/null; then
  [ -d "$CARRY/wheels" ] || { echo "gpu_check: no jsonschema here; run benchmarks/gpu_check.sh --prepare first and carry $CARRY" >&2; exit 1; }
  [ -d "$CARRY/site/jsonschema" ] || "$PY" -m pip install -q --no-index --find-links "$CARRY/wheels" --target "$CARRY/site" jsonschema
  export PYTHONPATH="$PYTHONPATH:$PWD/$CARRY/site"
fi
FASHION="${LCA_FASHION_MNIST_DIR:-}"
for dir in "$FASHION" "$CARRY/fashion-mnist" "$FASHION_SOURCE"; do
  if [ -n "$dir" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ]; then FASHION="$dir"; break; fi
done
[ -f "$FASHION/train-images-idx3-ubyte.gz" ] || { echo "gpu_check: no Fashion-MNIST idx files; run benchmarks/gpu_check.sh --prepare first and carry $CARRY" >&2; exit 1; }
exec "$PY" benchmarks/gpu_check.py --fashion-mnist-dir "$(cd "$FASHION" && pwd)" "$@"
