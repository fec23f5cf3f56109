#!/usr/bin/env bash
# Set up everything the whole test suite needs, then run it (and the core suites a second time on
# the portable paths); exits non-zero if either pytest run failed.
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

# The core suites again with VERTA_JUPYTER_PORTABLE=1: every Linux-only fast path (sendfile,
# poll on pipes, killpg, setrlimit) switched off, so the fallbacks macOS and Windows take are
# tested here too. Skipped when arguments select tests by hand.
PORTABLE_SUITES=(tests/test_capture_scenarios.py tests/test_package.py tests/test_store_local.py
                 tests/test_store_concurrency.py tests/test_store_portable.py tests/test_worker.py
                 tests/test_worker_abuse.py tests/test_widget.py tests/test_spares.py
                 tests/test_big_values.py)

run_pytest() {  # LABEL ARGS...: run pytest, report its time; exit 5 (no tests) counts as failure
    local label="$1" start rc=0
    shift
    start="$(date +%s.%N)"
    "$ROOT/.venv/bin/python" -m pytest "$@" || rc=$?
    echo "[test] $label: $(elapsed "$start")s (exit $rc)"
    if [[ "$rc" -eq 5 ]]; then
        echo "[test] $label collected no tests: treating that as a failure" >&2
        rc=1
    fi
    return "$rc"
}

rc=0
run_pytest "pytest" --durations=15 "$@" || rc=$?
if [[ $# -eq 0 ]]; then
    VERTA_JUPYTER_PORTABLE=1 run_pytest "pytest, portable paths" -q "${PORTABLE_SUITES[@]}" || rc=$?
fi
echo "[test] total: $(elapsed "$start_all")s (exit $rc)"
exit "$rc"
