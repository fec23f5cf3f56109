#!/usr/bin/env bash
# Set up (a .venv with verta_jupyter and a kernel) and run notebooks/quickstart.ipynb
# headless on a real kernel, against an embedded store in a temporary folder, then print
# what each cell printed. Leaves nothing behind but .venv and pip's verta_jupyter.egg-info
# (both git-ignored): the store, the model cache and the kernel's IPython profile live in a
# temporary folder removed on exit.
#
#   scripts/quickstart.sh                 # the quickstart
#   scripts/quickstart.sh notebooks/X.ipynb   # any other demo notebook
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NOTEBOOK="$(realpath "${1:-notebooks/quickstart.ipynb}")"

scripts/setup.sh base

WORK="$(mktemp -d -t vj-quickstart-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export VERTA_JUPYTER_STORE="$WORK/store"
export VERTA_JUPYTER_CACHE="$WORK/cache"  # models fetched back from the store
export IPYTHONDIR="$WORK/ipython"  # else the kernel creates ~/.ipython/profile_default
export JUPYTER_RUNTIME_DIR="$WORK/runtime"  # the kernel's connection file
export PATH="$ROOT/.venv/bin:$PATH"

start="$(date +%s.%N)"
# ipykernel warns on every start that its 127.0.0.1 TCP ports are unencrypted, which reads as
# an alarm in a first run; the ports are local and the connection file is in $WORK. Only that
# line is dropped from the kernel's stderr; the notebook's exit status is kept.
quiet_kernel() { grep -v "Kernel is running over TCP without encryption" >&2 || true; }
{ "$ROOT/.venv/bin/python" - "$NOTEBOOK" "$WORK" 2>&1 1>&3 3>&- <<'PY' | quiet_kernel; } 3>&1
"""Execute one notebook on a real kernel and print each cell's text output."""
import re
import sys

import nbclient
import nbformat

path, workdir = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(
    nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": workdir}}
)
try:
    client.execute()
except nbclient.exceptions.CellExecutionError as exc:
    # Kernel tracebacks carry terminal colours; a log reads better without them.
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    print(f"{path} failed:\n{message}", file=sys.stderr)
    sys.exit(1)


def texts(cell):
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            yield out.text.rstrip("\n")
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data:
                yield data["text/plain"].rstrip("\n")


code_cells = [c for c in nb.cells if c.cell_type == "code"]
for number, cell in enumerate(code_cells, 1):
    first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    print(f"--- cell {number}: {first_line[:70]}")
    for text in texts(cell):
        print(text)
print(f"=== {path}: {len(code_cells)} code cells ran without error")
PY
echo "[quickstart] notebook ran in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s"
