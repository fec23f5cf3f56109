"""Capture from a real Jupyter kernel (nbclient), rebuilt in a fresh process."""
from __future__ import annotations

import json

import nbformat
from nbclient import NotebookClient

CELLS = [
    "import re\nWORD = re.compile(r'[a-z]+')",
    "def tokenize(text):\n    return WORD.findall(text.lower())",
    "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
    "    def predict(self, data):\n        return {'tokens': tokenize(data['text'])}",
    "import json, tempfile\nfrom verta_jupyter import capture_model\n"
    "from verta_jupyter.worker.rebuild import rebuild_in_subprocess\n"
    "captured = capture_model(MyModel)\n"
    "package = captured.save(tempfile.mkdtemp() + '/pkg', sample_input={'text': 'Hi THERE'})\n"
    "result = rebuild_in_subprocess(package, sample_input={'text': 'Hi THERE'})\n"
    "print(json.dumps({'ok': result.ok, 'output': result.output, 'error': result.traceback,\n"
    "                  'here': MyModel({}).predict({'text': 'Hi THERE'}), 'source': captured.source}))",
]


def test_class_captured_in_a_real_kernel_rebuilds_in_a_fresh_process(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    stream = "".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.output_type == "stream")
    reply = json.loads(stream.strip().splitlines()[-1])
    assert reply["ok"], reply["error"]
    assert reply["output"] == reply["here"] == {"tokens": ["hi", "there"]}
    assert "def tokenize(text):" in reply["source"] and "WORD = _vj_value(\"WORD\")" in reply["source"]
