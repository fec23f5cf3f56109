"""Run demo notebooks on a real kernel from this venv, in a sandbox of temporary folders."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def kernel_sandbox(tmp_path, monkeypatch):
    """Folders for one kernel: its working dir, store, temp dir and a kernelspec for this venv."""
    names = ("work", "store", "cache", "home", "tmp", "jupyter", "runtime")
    dirs = {name: tmp_path / name for name in names}
    for path in dirs.values():
        path.mkdir()
    kernel_dir = dirs["jupyter"] / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    # This interpreter (the venv's) runs the kernel, whatever kernels the machine has installed.
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python"}
    (kernel_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(dirs["jupyter"]))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(dirs["runtime"]))
    monkeypatch.setenv("VERTA_JUPYTER_STORE", str(dirs["store"]))
    # Runs fetched from the store are cached per user; keep this test's cache out of ~/.cache.
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(dirs["cache"]))
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("TMPDIR", str(dirs["tmp"]))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return dirs


def execute(path: Path, workdir: Path) -> list[list[str]]:
    """Run the notebook; return each code cell's text outputs (stdout and text/plain)."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=240,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return [_texts(cell) for cell in nb.cells if cell.cell_type == "code"]


def _texts(cell) -> list[str]:
    texts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif "text/plain" in out.get("data", {}):
            texts.append(out.data["text/plain"])
    return texts


def printed(cells: list[list[str]], prefix: str) -> str:
    lines = [line for texts in cells for text in texts for line in text.splitlines()]
    found = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    assert found, f"no line starting {prefix!r} in the notebook's output:\n" + "\n".join(lines)
    return found[-1]
