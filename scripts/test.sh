#!/usr/bin/env bash
# Set up everything the whole test suite needs, then run it; exits with pytest's code.
#
#   scripts/test.sh              # all tests (browser and MLflow ones included)
#   scripts/test.sh -k panel     # extra arguments go to pytest
#
# pytest's "no tests collected" (exit 5) counts as a failure: a suite that ran nothing
# proves nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start_all="$(date +%s.%N)"
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

scripts/setup.sh test
echo "[test] setup total: $(elapsed "$start_all")s"

# Tests that need MLflow start its server from here (its own venv; see scripts/setup.sh).
export VJ_MLFLOW_BIN="${VJ_MLFLOW_BIN:-$ROOT/.venv-mlflow/bin/mlflow}"
# The venv's bin first: kernels, `jupyter` and helper subprocesses use the venv's Python.
export PATH="$ROOT/.venv/bin:$PATH"

start_tests="$(date +%s.%N)"
rc=0
"$ROOT/.venv/bin/python" -m pytest --durations=15 "$@" || rc=$?
echo "[test] pytest: $(elapsed "$start_tests")s (exit $rc); total: $(elapsed "$start_all")s"
if [[ "$rc" -eq 5 ]]; then
    echo "[test] pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$rc"
