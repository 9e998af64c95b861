#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine: the Fashion-MNIST package, Chromium (the explorer's
# browser tests) and a .venv holding this package with its explorer, Snakemake (+ SLURM plugin), the
# Hugging Face and Lightning integrations and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if command -v apt-get >/dev/null 2>&1; then
  want=()
  dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || want+=(dataset-fashion-mnist)
  dpkg -s fortunes >/dev/null 2>&1 || want+=(fortunes)  # English text for the language-model example
  dpkg -s chromium >/dev/null 2>&1 || want+=(chromium)  # the explorer's browser tests (Playwright drives it)
  "$PYTHON" -c "import ensurepip" >/dev/null 2>&1 || want+=(python3-venv)
  if [ ${#want[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}"
  fi
else
  echo "install.sh: no apt-get here; set data.fashion_mnist_dir in config.yaml to your Fashion-MNIST idx files" >&2
fi

"$PYTHON" - <<'PY' || { echo "install.sh: Snakemake 9 needs Python >= 3.11; run PYTHON=python3.11 ./install.sh" >&2; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torchvision pulls the matching CUDA-enabled torch; it runs on CPU too.
.venv/bin/python -m pip install -q -e ".[explorer,test,hf,lightning]"
echo "install.sh: ready; activate with: . .venv/bin/activate"
