#!/usr/bin/env bash
# Readiness check of a lent GPU: the fp32/bf16 step table of both stages with the
# matmul peaks, HuBERT-large-sized extraction throughput (random weights), one
# stage-1 and one stage-2 epoch (bf16) on an IEMOCAP-sized random cache, peak GPU
# memory; writes docs/BENCHMARKS_GPU.md (and docs/benchmarks_gpu.json).
# On a machine without CUDA it runs the same code at the tiny size (seconds).
#
#   tools/device_check.sh                    # writes docs/BENCHMARKS_GPU.md
#   tools/device_check.sh --output /tmp/out  # elsewhere; other options: --size, --device
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
WORK="$(mktemp -d -t ser_device_check.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
cd "$ROOT"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m benchmarks.device_check \
    --work_dir "$WORK" --output "$ROOT/docs" "$@"
