#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py) from a fresh checkout on a GPU machine: install, then run.
# A machine without internet takes wheels from WHEELS=<folder> (the CUDA build of torch==2.13.0 and
# the project's dependencies); the report goes to benchmarks/results/gpu_check.md, or REPORT.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import nas, torch" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" torch==2.13.0
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" -c requirements/constraints.txt -e .
  else
    "$PY" -m pip install -q torch==2.13.0
    "$PY" -m pip install -q -c requirements/constraints.txt -e .
  fi
fi
exec "$PY" scripts/gpu_check.py --device "${DEVICE:-cuda}" --out "${REPORT:-benchmarks/results/gpu_check.md}" "$@"
