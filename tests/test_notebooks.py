"""The demo notebooks run top to bottom on a real kernel (nbclient + ipykernel from this venv),
print the predictions we expect, and leave no files outside their temporary store."""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest

from notebook_runner import NOTEBOOKS, execute, kernel_sandbox, printed  # noqa: F401 (fixture)


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


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_and_predicts(name, kernel_sandbox):
    before = _files_under(NOTEBOOKS)
    cells = execute(NOTEBOOKS / name, kernel_sandbox["work"])

    for prefix, parse, expected in EXPECTED[name]:
        assert parse(printed(cells, prefix)) == expected, prefix
    assert printed(cells, "store: ") == str(kernel_sandbox["store"])
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
    assert "without encryption" not in done.stderr  # ipykernel's alarm on local ports, dropped
    # Its temporary store, cache and working folder are gone afterwards.
    assert sorted(p.name for p in tmp_path.iterdir()) == []
