#!/usr/bin/env bash
# Build bench/.pai-venv: the open-source `perforatedai` 3.2.9 in its own venv, so the library (and its
# unpinned dependencies) never touch the block's pinned .venv. Used by `python -m bench.pb_speed` (which runs
# it when bench/.pai-venv is missing); safe to re-run.
#
# perforatedai's metadata lists torch, torchvision, matplotlib, pandas, cryptography, pyyaml,
# safetensors, requests. torchvision is skipped: its PyPI wheel would pull a CUDA torch and the GD code
# path we benchmark never imports it (checked by the import probe at the end). torch is the local CPU
# wheel pinned like the block's (2.13.0), so both sides run the same kernels.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.pai-venv
PY=${PYTHON:-python3}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import perforatedai" 2>/dev/null; then
  echo "pai-venv ready: $VENV"
  exit 0
fi
"$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" --no-deps perforatedai==3.2.9
# The small runtime dependencies from its metadata (minus torchvision); numpy comes with pandas.
"${PIP[@]}" matplotlib pandas cryptography pyyaml safetensors requests
"$VENV/bin/python" - <<'EOF'
import perforatedai
from perforatedai import globals_perforatedai, utils_perforatedai  # noqa: F401  (the GD API we use)
import torch
print("pai-venv ready: perforatedai", getattr(perforatedai, "__version__", "3.2.9"), "torch", torch.__version__)
EOF
