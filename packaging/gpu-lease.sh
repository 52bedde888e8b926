#!/usr/bin/env bash
# The whole GPU-lease plan in one command (docs/GPU.md): check the machine, train the registry's models from the
# shipped weights in fixed time budgets, time inference, write weights + metrics.json + lease.log to $OUT.
#
#   bash packaging/gpu-lease.sh                 # on the GPU machine: bundle in build/gpu-bundle, files to $OUT
#   bash packaging/gpu-lease.sh --smoke         # here / CI: the same plan on the CPU, tiny budgets and bundle
#   bash packaging/gpu-lease.sh --tasks bass    # a subset of the plan
#
# Only python with torch, numpy and safetensors is needed there (nothing installed, nothing downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
for arg in "$@"; do [ "$arg" = "--smoke" ] && SMOKE=1; done

# the python that has torch: $PYTHON, this checkout's venv (here), or the machine's own
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
            PY="$candidate"; break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "gpu-lease: no python with torch found (set PYTHON=/path/to/python)" >&2
    exit 2
fi

export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
if [ "$SMOKE" = 1 ]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" CUDA_VISIBLE_DEVICES=""
    BUNDLE="${BUNDLE:-build/gpu-bundle-smoke}"
    OUT_DIR="${OUT:-build/gpu-smoke-out}"
    if [ ! -f "$BUNDLE/manifest.json" ]; then
        # the tiny bundle needs this machine's full dependencies (fluidsynth, soundfonts): never on the GPU machine
        "$PY" packaging/gpu_lease.py bundle --smoke --out "$BUNDLE"
    fi
    if [ -z "${OUT:-}" ]; then rm -rf "$OUT_DIR"; fi  # our own default scratch folder, never a given $OUT
else
    BUNDLE="${BUNDLE:-build/gpu-bundle}"
    OUT_DIR="${OUT:-build/gpu-out}"
    export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

exec "$PY" packaging/gpu_lease.py run --bundle "$BUNDLE" --out "$OUT_DIR" "$@"
