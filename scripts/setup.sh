#!/usr/bin/env bash
# Set up what verta_jupyter needs, idempotently, and print how long each step took.
#
#   scripts/setup.sh base   # .venv with the package + a kernel (what the quickstart needs)
#   scripts/setup.sh test   # base + test extra + Debian's chromium + MLflow in .venv-mlflow
#
# Each pip step is skipped when a stamp file records the same pyproject.toml hash, so a
# second run takes about a second. MLflow gets its own venv so its pins never constrain ours.
set -euo pipefail

MODE="${1:-base}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
MLFLOW_VENV="$ROOT/.venv-mlflow"
# [auth]: the MLflow store's tests run a server with basic auth, which needs Flask-WTF.
MLFLOW_SPEC="mlflow[auth]"
PIP_FLAGS=(--disable-pip-version-check --progress-bar off -q)

now() { date +%s.%N; }
# step NAME CMD...: run CMD, then print its duration (and fail loudly with its name).
# CMD runs in an `||` context, where bash ignores `set -e`: step functions check each command.
step() {
    local name="$1" start rc=0
    shift
    start="$(now)"
    echo "[setup] $name ..."
    "$@" || rc=$?
    awk -v s="$start" -v e="$(now)" -v n="$name" -v rc="$rc" \
        'BEGIN { printf "[setup] %-34s %7.1fs%s\n", n, e - s, (rc ? "  FAILED (exit " rc ")" : "") }'
    return "$rc"
}

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    command -v python3.11 || command -v python3
}

stamp_key() {
    # The pyproject hash plus the interpreter: a changed dependency list reinstalls.
    echo "$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1) $1"
}

stamp_ok() { [[ -f "$VENV/.vj-stamp-$1" && "$(cat "$VENV/.vj-stamp-$1")" == "$(stamp_key "$1")" ]]; }
stamp_write() { stamp_key "$1" >"$VENV/.vj-stamp-$1"; }

make_venv() { [[ -x "$VENV/bin/python" ]] || "$(pick_python)" -m venv "$VENV"; }

install_base() {
    "$VENV/bin/pip" install "${PIP_FLAGS[@]}" -e . ipykernel nbclient nbformat || return
    stamp_write base
}

install_test() {
    "$VENV/bin/pip" install "${PIP_FLAGS[@]}" -e ".[test]" || return
    stamp_write test
    stamp_write base
}

install_chromium() {
    [[ -x /usr/bin/chromium ]] && return 0
    # apt needs root (a CI container); elsewhere, install chromium yourself and re-run.
    if [[ "$(id -u)" != 0 ]]; then
        echo "[setup] /usr/bin/chromium is missing and apt-get needs root: run" \
             "'sudo apt-get install --no-install-recommends chromium', then this again" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || return
    # headless tests need the browser only, not its ~100 recommended desktop packages
    apt-get install -y -q --no-install-recommends chromium
}

install_mlflow() {
    local key
    key="$(python3 -V 2>&1) $MLFLOW_SPEC"
    if [[ -x "$MLFLOW_VENV/bin/mlflow" && -f "$MLFLOW_VENV/.vj-stamp" \
          && "$(cat "$MLFLOW_VENV/.vj-stamp")" == "$key" ]]; then
        return 0
    fi
    [[ -x "$MLFLOW_VENV/bin/python" ]] || "$(pick_python)" -m venv "$MLFLOW_VENV" || return
    "$MLFLOW_VENV/bin/pip" install "${PIP_FLAGS[@]}" "$MLFLOW_SPEC" || return
    echo "$key" >"$MLFLOW_VENV/.vj-stamp"
}

main() {
    step "venv (.venv)" make_venv
    case "$MODE" in
        base)
            if stamp_ok base || stamp_ok test; then echo "[setup] .venv is up to date"
            else step "pip install -e . + kernel" install_base; fi
            ;;
        test)
            # MLflow (~850 MB) downloads in the background while the rest installs.
            local mlflow_log mlflow_pid
            mlflow_log="$(mktemp)"
            ( step "mlflow in .venv-mlflow" install_mlflow ) >"$mlflow_log" 2>&1 &
            mlflow_pid=$!
            if stamp_ok test; then echo "[setup] .venv is up to date"
            else step "pip install -e .[test]" install_test; fi
            step "chromium (Debian)" install_chromium
            local rc=0
            wait "$mlflow_pid" || rc=$?
            cat "$mlflow_log"
            rm -f "$mlflow_log"
            return "$rc"
            ;;
        *) echo "usage: scripts/setup.sh [base|test]" >&2; return 2 ;;
    esac
}

main
