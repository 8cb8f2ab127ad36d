#!/usr/bin/env bash
# GPU timings (benchmarks/gpu/bench.py): bash benchmarks/gpu/run.sh OUTDIR [--dry-run] [options]
# Needs python3 with torch (and timm for the lite0 teacher); installs nothing, reads no network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ $# -lt 1 ]; then
  echo "usage: bash benchmarks/gpu/run.sh OUTDIR [--dry-run] [--iters N]" >&2
  exit 2
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
exec timeout 480 "$PY" benchmarks/gpu/bench.py "$@"
