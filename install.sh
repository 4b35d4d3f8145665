#!/usr/bin/env bash
# Install ImageBART into the active Python environment (a venv or conda env is recommended).
#   1. torch 2.13.0 first, so no other package pulls a different (multi-GB CUDA) build;
#   2. taming-transformers without its dependencies (they would pull torchvision, whose broken
#      C ops make `import pytorch_lightning` fail on CPU-only machines);
#   3. this package in editable mode with the test extras.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
"$PYTHON" -m pip install --quiet "torch==2.13.0"
"$PYTHON" -m pip install --quiet --no-deps "taming-transformers-rom1504==0.0.6"
echo "installing imagebart; pip may then print, in red, that taming-transformers-rom1504 requires torchvision," \
     "which is not installed: that is expected (taming is installed without its dependencies on purpose, see" \
     "README) and harmless"
"$PYTHON" -m pip install --quiet -e ".[test]"
if "$PYTHON" -m pip show torchvision >/dev/null 2>&1; then
  echo "warning: torchvision is installed in this environment; if 'import pytorch_lightning' fails" \
       "with 'operator torchvision::nms does not exist', run: $PYTHON -m pip uninstall torchvision" >&2
fi
"$PYTHON" -c "import imagebart, pytorch_lightning, x_transformers, taming.modules.vqvae.quantize" \
  && echo "imagebart installed"
