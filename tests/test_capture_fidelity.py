"""Capture fidelity: the rebuilt model is the notebook's model, or validation fails honestly.

Each test's sample does NOT touch the state in question, so the one-sample output check
(VJ502) cannot see it: either the capture carries the state (the rebuilt fingerprint equals
the notebook's), or the fidelity proof (VJ504) names the object and attribute that differ.
"""
from __future__ import annotations

import pickle

from verta_jupyter import capture_model, validate
from verta_jupyter.capture.fingerprint import differences
from verta_jupyter.worker.rebuild import rebuild_in_subprocess

MODEL = """
class MyModel:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {body}
"""


def carried(shell, tmp_path, cells, sample, body, after=()):
    """Capture after `cells`, run `after`, rebuild: the fingerprints must agree; returns captured."""
    for cell in cells:
        shell.run(cell)
    shell.run(MODEL.format(body=body))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    package = captured.save(tmp_path / "pkg", sample_input=sample)
    for cell in after:
        shell.run(cell)
    result = rebuild_in_subprocess(package, sample_input=sample)
    assert result.ok, result.traceback
    assert result.loaded_from == "model.py"
    assert differences(captured.fingerprint, result.fingerprint) == []
    return captured, result


# -- the proof itself ----------------------------------------------------------------------

def test_proof_names_the_object_and_attribute_the_sample_never_touches(shell):
    shell.run("def rare(x):\n    return x + 1\n\ndef faster(x):\n    return x + 1000")
    shell.run("rare.__code__ = faster.__code__  # state no source statement carries")
    shell.run(MODEL.format(body="data if data < 10 else rare(data)"))
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1)
    assert [p.code for p in report.errors] == ["VJ504"]
    message = str(report.errors[0])
    assert "'rare.__code__'" in message and "re-run that cell" in message


def test_proof_is_quiet_when_the_package_is_faithful(shell):
    shell.run("import numpy as np\nW = np.arange(6.0).reshape(2, 3)\nNAMES = {'b', 'a', 'c'}")
    shell.run(MODEL.format(body="[float(W.sum()), sorted(NAMES), data]"))
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1)
    assert report.errors == []


# -- class 3: lambdas and closure-made functions as source, never bytecode -------------------

def test_lambdas_and_closure_made_functions_are_source(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "import functools\nsquare = lambda x: x * x",
        "def make_scaler(k, offset=1):\n    def scale(x, extra=offset):\n        return x * k + extra\n    return scale",
        "triple = make_scaler(3)\nOPS = {'neg': lambda v: -v, 'double': functools.partial(make_scaler(2), extra=0)}",
    ], 5, "[square(data), triple(data), OPS['neg'](data), OPS['double'](data)]")
    assert result.output == [25, 16, -5, 10]
    assert "square = lambda x: x * x" in captured.source
    assert "def scale(x, extra=None):" in captured.source  # inside a generated factory
    assert captured.tied == []
    for data in captured.pickled.values():  # the pickles carry data, no code objects
        assert b"_make_function" not in data and b"_builtin_type" not in data


def test_function_without_source_is_tied_to_this_python(shell, tmp_path):
    shell.run("exec('plus_one = lambda x: x + 1')")
    shell.run(MODEL.format(body="plus_one(data)"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert captured.tied == ["plus_one"]
    package = captured.save(tmp_path / "pkg")
    manifest = __import__("json").loads((package / "verta_model.json").read_text())
    assert manifest["tied_to_python"] == "3.11" and manifest["tied_values"] == ["plus_one"]
    result = rebuild_in_subprocess(package, sample_input=2)  # same minor: loads
    assert result.ok and result.output == 3


def test_pickled_values_reference_lambdas_by_name(shell, tmp_path):
    captured, _ = carried(shell, tmp_path, ["RULES = [(lambda s: s.isdigit(), 'num'), (lambda s: s.isalpha(), 'word')]"],
                          "abc", "[label for test, label in RULES if test(data)]")
    names = set()

    class Recorder(pickle.Unpickler):
        def persistent_load(self, pid):
            names.add(pid)
            return None

    Recorder(__import__("io").BytesIO(captured.pickled["RULES"])).load()
    assert len(names) == 2 and all(n.startswith("_vj_lambda_") for n in names)
