"""%%verta_model in a real Jupyter kernel (nbclient): the seed's example, the seed's "custom model
with dependencies" pattern, hidden notebook state, and a failing cell stopping Run All."""
from __future__ import annotations

import json
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.slow


def notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, cwd) -> nbformat.NotebookNode:
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    return client.execute()


def outputs_of(cell) -> tuple[str, str]:
    """(all text/plain + stream text, all text/html) of a cell."""
    text, page = [], []
    for out in cell.outputs:
        if out.output_type == "stream":
            text.append(out.text)
        elif "data" in out:
            text.append(out.data.get("text/plain", ""))
            page.append(out.data.get("text/html", ""))
    return "\n".join(text), "\n".join(page)


SETUP = """\
%load_ext verta_jupyter
from verta_jupyter import Client
client = Client(store="store")
run = client.set_experiment_run("seed-example")"""

SEED = """\
%%verta_model --sample '{"text": "hi"}'
class MyModel(object):
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"echo": data}"""

DEPENDENCIES = """\
with open("vocab.txt", "w") as f:
    f.write("good\\ngreat\\n")
run2 = client.set_experiment_run("with-dependencies")
run2.log_artifact("vocab", "vocab.txt")"""

WITH_ARTIFACT = """\
%%verta_model --run run2 --artifacts vocab --sample '"a good day"'
class Sentiment:
    def __init__(self, artifacts):
        with open(artifacts["vocab"]) as f:
            self.words = set(f.read().split())

    def predict(self, data):
        return sum(word in self.words for word in data.split())"""

HIDDEN_BEFORE = """\
THRESHOLD = 0.5
run3 = client.set_experiment_run("hidden-state")"""

HIDDEN_MODEL = """\
%%verta_model --sample 0.7 --no-panel
class Gate:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return data > THRESHOLD"""

HIDDEN_AFTER = "THRESHOLD = 0.9  # a later cell changes the global"

REPORT = """\
import json, os
from verta_jupyter import Client as FreshClient
fresh = FreshClient(store="store")
results = {
    "seed": fresh.get_experiment_run(id=run.id).load_model().predict({"text": "yo"}),
    "seed_rebuilt_from_store": run.get_model() is not MyModel,
    "dependencies": fresh.get_experiment_run(id=run2.id).load_model().predict("great great meh"),
    "hidden_logged": run3.load_model().predict(0.7),
    "hidden_notebook": Gate(artifacts={}).predict(0.7),
    "moved_vocab": os.replace("vocab.txt", "vocab-moved.txt") or run2.load_model().predict("good"),
}
print(json.dumps(results))"""


def test_seed_example_dependencies_and_hidden_state_in_a_real_kernel(tmp_path):
    nb = execute(notebook(SETUP, SEED, DEPENDENCIES, WITH_ARTIFACT, HIDDEN_BEFORE, HIDDEN_MODEL,
                          HIDDEN_AFTER, REPORT), tmp_path)
    results = json.loads(nb.cells[-1].outputs[-1].text)
    assert results == {
        "seed": {"echo": {"text": "yo"}},
        "seed_rebuilt_from_store": True,
        "dependencies": 2,
        "hidden_logged": True,  # the logged model keeps THRESHOLD = 0.5
        "hidden_notebook": False,  # the notebook now says 0.9
        "moved_vocab": 1,  # the artifact lives in the store, not at the notebook's path
    }
    seed_text, seed_html = outputs_of(nb.cells[1])
    assert "MyModel: logged to ExperimentRun 'seed-example'" in seed_text
    assert '<details class="vj-model-py">' in seed_html
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in nb.cells[1].outputs)
    dep_text, _ = outputs_of(nb.cells[3])
    assert "✓ artifacts  vocab" in dep_text and "✓ rebuild" in dep_text
    hidden_text, hidden_html = outputs_of(nb.cells[5])
    assert "THRESHOLD = 0.5, captured" in hidden_text and "THRESHOLD = 0.5, captured" in hidden_html


FAILING = """\
%%verta_model --no-log --sample '{"a": 1}'
class Broken:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return data["missing"]"""


def test_a_failing_cell_stops_run_all_with_a_short_message(tmp_path):
    nb = notebook("%load_ext verta_jupyter", FAILING, "open('after.txt', 'w').write('ran')")
    with pytest.raises(CellExecutionError) as info:
        execute(nb, tmp_path)
    assert info.value.ename == "ValidationError"
    assert "[VJ402]" in info.value.evalue and "cell line 7, in Broken.predict" in info.value.evalue
    error = next(o for o in nb.cells[1].outputs if o.output_type == "error")
    assert error.traceback[0].startswith("ValidationError: Broken cannot be logged")
    assert not any("verta_jupyter/" in line for line in error.traceback)  # no internal frames
    assert not (tmp_path / "after.txt").exists()


# -- what JupyterLab and Notebook 7 send: each execute_request carries the cell's id -------------

class Kernel:
    """A real ipykernel, driven as a front end drives it (cellId in the request's metadata)."""

    def __init__(self, cwd):
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str, cell_id: str) -> tuple[dict, list[dict]]:
        """(the execute_reply content, the iopub outputs) of one cell."""
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.kc.shell_channel.send(msg)
        outputs = []
        while True:
            reply = self.kc.get_iopub_msg(timeout=120)
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            kind = reply["msg_type"]
            if kind == "status" and reply["content"]["execution_state"] == "idle":
                break
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(dict(reply["content"], output_type=kind))
        while True:
            shell = self.kc.get_shell_msg(timeout=120)
            if shell["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                return shell["content"], outputs

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.close()


def plain_text(outputs: list[dict]) -> str:
    return "\n".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


def test_an_edited_cell_replaces_its_own_model_in_a_real_kernel(kernel):
    reply, _ = kernel.run(SETUP, "setup")
    assert reply["status"] == "ok"
    reply, first = kernel.run(SEED.replace("--sample", "--no-panel --sample"), "model-cell")
    assert reply["status"] == "ok" and "replaced" not in plain_text(first)
    edited = SEED.replace("--sample", "--no-panel --sample").replace('{"echo": data}', '{"echo": data, "v": 2}')
    reply, again = kernel.run(edited, "model-cell")  # the same cell, edited: its id is unchanged
    assert reply["status"] == "ok", reply
    assert "replaced the model this cell logged at" in plain_text(again)
    reply, _ = kernel.run("answer = run.load_model().predict(1)\nprint(answer)", "check")
    assert reply["status"] == "ok"
    reply, other = kernel.run(edited, "another-cell")  # a copy of the cell elsewhere
    assert reply["status"] == "error" and reply["ename"] == "AlreadyExistsError"
    assert "not by this cell" in reply["evalue"] and "--overwrite" in reply["evalue"]


def test_a_syntax_error_in_a_real_kernel_is_short_and_on_the_cells_line(kernel):
    kernel.run("%load_ext verta_jupyter", "load")
    reply, outputs = kernel.run("%%verta_model --no-log\nx = 1\nclass MyModel(:\n    pass\n", "typo")
    assert reply["status"] == "error"
    (error,) = [o for o in outputs if o["output_type"] == "error"]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))  # no colours
    assert "Cell In[2], line 3" in shown and "SyntaxError: invalid syntax" in shown
    assert len(shown.splitlines()) <= 6 and "verta_jupyter" not in shown and "Traceback" not in shown


def test_restart_and_run_all_replaces_each_cells_own_model_and_a_copy_does_not(tmp_path, monkeypatch):
    """Two kernels, one after the other, run the same notebook (as "Restart Kernel and Run All"
    does): the second run replaces what each cell logged. A copy of the notebook (same cell ids,
    another notebook path) is another notebook: it needs --overwrite."""
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "analysis.ipynb"))  # as Jupyter Server sets it
    nb = notebook(SETUP, SEED.replace("--sample", "--no-panel --sample"),
                  "print(run.load_model().predict('x'))")
    first = execute(nb, tmp_path)
    assert "replaced" not in outputs_of(first.cells[1])[0]
    again = execute(nb, tmp_path)  # a new kernel: nothing in memory from the first
    text, _ = outputs_of(again.cells[1])
    assert re.search(r"replaced the model this cell logged at \d\d:\d\d:\d\d on \d{4}-\d\d-\d\d, "
                     r"in an earlier kernel session", text), text
    assert "{'echo': 'x'}" in outputs_of(again.cells[2])[0]
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "analysis-Copy1.ipynb"))
    with pytest.raises(CellExecutionError, match="not by this cell"):
        execute(nb, tmp_path)
