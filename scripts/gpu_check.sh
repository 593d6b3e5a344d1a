#!/usr/bin/env bash
# GPU check: the model bench at 600x1000 (R50, R101, with and without bf16 autocast), one torchrun
# training step of SpatialFlow-R50 over NCCL, and 200 iterations of a tiny row, on one NVIDIA GPU in under
# 8 minutes; prints one JSON summary (spatialflow.benchmarks.gpu_check).
#
#   scripts/gpu_check.sh                 # on the GPU machine (or: make gpu-check)
#   scripts/gpu_check.sh --device cpu    # every piece on the CPU, small sizes
#                                        # (tests/spatialflow/benchmarks/test_gpu_check.py)
#
# Extra options (--size, --depths, --repeats, --step-size, --row-iters) go to the Python module.
set -euo pipefail
cd "$(dirname "$0")/.."
export KEDRO_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
# The 8-minute budget of the issue, enforced: a hung NCCL rendezvous fails the check instead of waiting.
exec timeout --kill-after 10 "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" -m spatialflow.benchmarks.gpu_check "$@"
