"""The demo notebooks run top to bottom on a real kernel (nbclient + ipykernel from this venv),
print the predictions we expect, and leave no files outside their temporary store."""
from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _literal(text: str):
    return ast.literal_eval(text)


# notebook -> [(line prefix printed by a cell, how to parse the rest, expected value)]
EXPECTED = {
    "quickstart.ipynb": [
        ("panel: ", json.loads, {"words": 3, "longest": "cat"}),
        ("fresh process: ", _literal, {"words": 3, "longest": "cat"}),
    ],
    "artifacts.ipynb": [
        ("fetched vocab: ", _literal, ["awful", "bad", "fine", "good", "great"]),
        ("fresh process: ", _literal, {"score": -3.0, "label": "negative"}),
    ],
    "dataframe.ipynb": [
        ("coefficients: ", _literal, [50000.0, 1000.0]),
        ("panel: ", json.loads, [{"price": 160000.0}]),
        ("fresh process: ", _literal, [{"price": 310000.0}]),
    ],
}


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


def _printed(cells: list[list[str]], prefix: str) -> str:
    lines = [line for texts in cells for text in texts for line in text.splitlines()]
    found = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    assert found, f"no line starting {prefix!r} in the notebook's output:\n" + "\n".join(lines)
    return found[-1]


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_predicts(name, kernel_sandbox):
    before = _files_under(NOTEBOOKS)
    cells = execute(NOTEBOOKS / name, kernel_sandbox["work"])

    for prefix, parse, expected in EXPECTED[name]:
        assert parse(_printed(cells, prefix)) == expected, prefix
    assert _printed(cells, "store: ") == str(kernel_sandbox["store"])
    magic_cell = next(texts for texts in cells if any("PredictPanel" in t for t in texts))
    assert magic_cell, "the %%verta_model cell displayed no panel"

    # Everything the notebook wrote is in its store (and the fetch cache): not beside it, not in
    # its working dir, home or temp dir (after the kernel and its workers shut down).
    assert _files_under(kernel_sandbox["store"]), "nothing was logged to the store"
    assert _files_under(kernel_sandbox["work"]) == []
    assert _files_under(kernel_sandbox["home"]) == []
    assert _files_under(kernel_sandbox["tmp"]) == []
    assert _files_under(NOTEBOOKS) == before


@pytest.mark.slow
def test_quickstart_script_runs_the_main_job(tmp_path):
    """README's first command: set up (already done here, so quick) and run the quickstart."""
    import subprocess

    repo = NOTEBOOKS.parent
    env = {**os.environ, "TMPDIR": str(tmp_path), "HOME": str(tmp_path / "home")}
    done = subprocess.run([str(repo / "scripts" / "quickstart.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fresh process: {'words': 3, 'longest': 'cat'}" in done.stdout
    assert "6 code cells ran without error" in done.stdout
    # Its temporary store, cache and working folder are gone afterwards.
    assert sorted(p.name for p in tmp_path.iterdir()) == []
