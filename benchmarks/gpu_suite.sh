#!/usr/bin/env bash
# The GPU suite in one command (see benchmarks/gpu_suite.py): on one H100 / H200, at most
# 9 minutes, one JSON file per part in benchmarks/results/gpu/.
#
#   bash benchmarks/gpu_suite.sh                       # the suite on the GPU
#   bash benchmarks/gpu_suite.sh --authors ../EGHN     # with the authors' code beside eghn
#   bash benchmarks/gpu_suite.sh --smoke --out /tmp/s  # every part in seconds on a CPU
#
# PYTHON selects the interpreter (default: python); EGHN_DATA_DIR the motion-capture data.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$here/gpu_suite.py" "$@"
