"""Capture fidelity: the rebuilt model is the notebook's model, or validation fails honestly.

Each test's sample does NOT touch the state in question, so the one-sample output check
(VJ502) cannot see it: either the capture carries the state (the rebuilt fingerprint equals
the notebook's), or the fidelity proof (VJ504) names the object and attribute that differ.
"""
from __future__ import annotations

import pickle

import pytest

from verta_jupyter import capture_model, validate
from verta_jupyter.errors import CapturedByValueWarning
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
    with pytest.warns(CapturedByValueWarning, match="'W'"):  # an array: frozen at capture
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
        assert b"_make_function" not in data.in_band() and b"_builtin_type" not in data.in_band()


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

    Recorder(__import__("io").BytesIO(captured.pickled["RULES"].in_band())).load()
    assert len(names) == 2 and all(n.startswith("_vj_lambda_") for n in names)


# -- class 1: state changed after a definition is carried -----------------------------------

def test_class_attributes_set_later_are_carried_though_the_sample_never_reads_them(shell, tmp_path):
    for cell in ["import numpy as np\nclass MyModel:\n    THRESHOLD = 0.5\n    weights = np.ones(2)\n"
                 "    def __init__(self, artifacts):\n        pass\n    def label(self, x):\n        return 'orig'\n"
                 "    def predict(self, data):\n        return data if data < 10 else [self.THRESHOLD, self.label(data), self.EXTRA, self.weights.tolist()]",
                 "MyModel.THRESHOLD = 0.7\nsetattr(MyModel, 'EXTRA', {'a': 1})\nMyModel.weights[0] = 5.0",
                 "def fast_label(self, x):\n    return 'fast'\nMyModel.label = fast_label"]:
        shell.run(cell)
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    package = captured.save(tmp_path / "pkg2", sample_input=1)
    shell.run("MyModel.THRESHOLD = 0.1  # after capture: must not matter")
    result = rebuild_in_subprocess(package, sample_input=1)
    assert result.ok, result.traceback
    assert differences(captured.fingerprint, result.fingerprint) == []
    assert "MyModel.THRESHOLD = 0.7" in captured.source and "MyModel.label = fast_label" in captured.source
    from verta_jupyter import load_package

    rebuilt = load_package(package)(artifacts={})
    assert rebuilt.predict(99) == [0.7, "fast", {"a": 1}, [5.0, 1.0]]


def test_function_defaults_and_attributes_set_later_are_carried(shell, tmp_path):
    captured, _ = carried(shell, tmp_path, [
        "LIMIT = 3\ndef score(x, k=LIMIT, *, scale=1):\n    return x * k * scale",
        "LIMIT = 100  # the default is still 3\nscore.__kwdefaults__ = {'scale': 2}\nscore.version = 'v2'",
    ], 1, "data if data < 10 else [score(data), score.version]")
    assert "score.__kwdefaults__ = {'scale': 2}" in captured.source
    assert "score.__defaults__ = (3,)" in captured.source
    assert "score.version = 'v2'" in captured.source


def test_singledispatch_overloads_registered_later_are_carried(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "import functools\n@functools.singledispatch\ndef encode(x):\n    return 'any'",
        "@encode.register\ndef _(x: int):\n    return 'int'\n\n@encode.register(list)\ndef _(x):\n    return 'list'",
        "def encode_str(x):\n    return 'str'\nencode.register(str, encode_str)",
        "_ = None  # IPython rebinds `_` all the time",
    ], 1.5, "[encode(data), encode(1), encode([]), encode('s')]")
    assert result.output == ["any", "int", "list", "str"]


# -- class 7: ordering through cycles (class -> decorator -> registry -> class) ---------------

def test_registry_filled_by_decorators_is_emitted_empty_then_refilled(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "MODELS = {}\nHANDLERS = []\ndef register(name):\n    def deco(cls):\n        MODELS[name] = cls\n"
        "        return cls\n    return deco\ndef handler(fn):\n    HANDLERS.append(fn)\n    return fn",
        "@register('base')\nclass Base:\n    pass",
        "@handler\ndef shout(x):\n    return x.upper()",
        "MODELS['extra'] = dict  # filled by hand too",
    ], "a", "[sorted(MODELS), MODELS['base'].__name__, [h(data) for h in HANDLERS]]")
    assert result.output == [["base", "extra"], "Base", ["A"]]
    assert "MODELS = {}" in captured.source and "_vj_refill(MODELS" in captured.source


# -- class 2: wrappers without functools.wraps are not "redefined" (no false VJ205) ---------

def test_wrappers_without_wraps_and_vectorize_rebuild(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "import numpy as np\ndef logged(fn):\n    def inner(*a, **k):\n        return ['logged', fn(*a, **k)]\n    return inner",
        "@logged\ndef helper(x):\n    return x + 1",
        "def clip(x):\n    return x if x > 0 else 0\nclip = np.vectorize(clip)",
        "@np.vectorize\ndef double(x):\n    return 2 * x",
    ], 3, "[helper(data), clip(np.array([data, -1])).tolist(), double(np.array([data])).tolist()]")
    assert result.output == [["logged", 4], [3, 0], [6]]
    assert "@logged\ndef helper(x):" in captured.source and "def clip(x):" in captured.source


# -- class 4: classes without a class statement ----------------------------------------------

def test_classes_made_without_a_class_statement(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "import collections, dataclasses, enum\nfrom typing import NamedTuple",
        "class Pair(NamedTuple):\n    a: int\n    b: int = 0",
        "Point = collections.namedtuple('Point', ['x', 'y'], defaults=[0])",
        "Color = enum.Enum('Color', 'RED GREEN')",
        "Box = type('Box', (), {'size': 3})",
    ], 1, "[list(Pair(data)), list(Point(data)), Color.GREEN.value, Box.size]")
    assert result.output == [[1, 0], [1, 0], 2, 3]
    assert "Point = collections.namedtuple('Point'" in captured.source


# -- class 5: names only inside string annotations ---------------------------------------------

def test_names_in_string_annotations_are_captured(shell, tmp_path):
    shell.run("import pandas as pd")
    shell.run("class Typed:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data: 'pd.DataFrame') -> 'Optional[int]':\n        return type(data).__name__")
    typed = capture_model(shell.ns["Typed"], shell.ns)
    assert "import pandas as pd" in typed.source
    package = typed.save(tmp_path / "typed", sample_input={"a": [1, 2]})
    rebuilt = rebuild_in_subprocess(package, sample_input={"a": [1, 2]})
    assert rebuilt.ok, rebuilt.traceback
    assert rebuilt.output == "DataFrame"  # converted as the annotation says, as in the notebook


# -- class 9: labels are the In[N] the user sees ------------------------------------------------

def test_magic_cell_is_labelled_with_the_number_the_user_sees(shell, tmp_path, monkeypatch):
    from verta_jupyter.capture import cells

    monkeypatch.chdir(tmp_path)
    shell.run("%load_ext verta_jupyter")
    shell.run("x = 1")
    result = shell.ip.run_cell("%%verta_model --no-log --no-panel --sample 1\nclass Labelled:\n"
                               "    def __init__(self, artifacts):\n        pass\n"
                               "    def predict(self, data):\n        return data", store_history=True)
    result.raise_error()
    code = shell.ns["Labelled"].predict.__code__
    assert cells.cell_number(code.co_filename) == result.execution_count
    captured = capture_model(shell.ns["Labelled"], shell.ns)
    assert captured.defined_in.startswith(f"cell In[{result.execution_count}]")


# -- class 8: each big value stored once ---------------------------------------------------------

def test_a_big_value_is_stored_once(shell, tmp_path):
    shell.run("import numpy as np\nBIG = np.arange(1_000_000, dtype='float64')  # 8 MB")
    shell.run(MODEL.format(body="float(BIG[data])"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert captured.class_pickle is None and "stored twice" in captured.class_pickle_skipped
    package = captured.save(tmp_path / "pkg", sample_input=3)
    size = sum(f.stat().st_size for f in package.rglob("*") if f.is_file())
    assert 8_000_000 < size < 8_500_000
    result = rebuild_in_subprocess(package, sample_input=3)
    assert result.ok and result.output == 3.0


# -- class 6: namespace packages, src layouts, package data files --------------------------------

def test_namespace_packages_and_package_data_files_are_bundled(shell, tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "vj_nsp" / "inner").mkdir(parents=True)  # no __init__.py anywhere: a namespace package
    (src / "vj_nsp" / "inner" / "mod.py").write_text("def shout(x):\n    return x.upper() + '!'\n")
    (src / "vj_datapkg").mkdir()
    (src / "vj_datapkg" / "__init__.py").write_text(
        "from pathlib import Path\nWORDS = Path(__file__).with_name('words.txt').read_text().split()\n"
        "def known(w):\n    return w in WORDS\n")
    (src / "vj_datapkg" / "words.txt").write_text("alpha beta\n")
    monkeypatch.syspath_prepend(str(src))
    try:
        captured, result = carried(shell, tmp_path, ["from vj_nsp.inner.mod import shout\nimport vj_datapkg"],
                                   "alpha", "[shout(data), vj_datapkg.known(data)]")
    finally:
        for name in ("vj_nsp", "vj_nsp.inner", "vj_nsp.inner.mod", "vj_datapkg"):
            __import__("sys").modules.pop(name, None)
    assert result.output == ["ALPHA!", True]
    assert {"vj_nsp/inner/mod.py", "vj_datapkg/words.txt"} <= set(captured.bundled)


def test_definitions_from_a_file_run_with_percent_run(shell, tmp_path):
    script = tmp_path / "defs.py"
    script.write_text("class Settings:\n    factor = 3\n\ndef scale(x):\n    return x * Settings.factor\n")
    captured, result = carried(shell, tmp_path, [f"%run {script}"], 2, "scale(data)")
    assert result.output == 6
    assert "class Settings:" in captured.source and "from defs.py line 1" in captured.source


def test_proof_sees_closure_values_inside_captured_values():
    from verta_jupyter.capture.fingerprint import fingerprint

    def make(k):
        return lambda x: x + k

    first = fingerprint({"ADDERS": [make(1), make(2)]}, ["ADDERS"], {__name__})
    second = fingerprint({"ADDERS": [make(1), make(3)]}, ["ADDERS"], {__name__})
    same = fingerprint({"ADDERS": [make(1), make(2)]}, ["ADDERS"], {__name__})
    assert differences(first, second) == ["ADDERS"] and differences(first, same) == []


def test_validation_passes_the_proof_when_capture_carries_state_changed_later(shell):
    shell.run(MODEL.format(body="data if data < 10 else [MyModel.THRESHOLD, helper(data)]"))
    shell.run("MyModel.THRESHOLD = 0.7\ndef helper(x, k=1):\n    return x * k\nhelper.__defaults__ = (3,)")
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1)
    assert report.errors == []
    assert {c.name: c.status for c in report.checks}["rebuild"] == "ok"  # the proof ran and agreed
    assert "MyModel.THRESHOLD = 0.7" in report.captured.source


def test_one_object_under_several_names_is_stored_once_and_stays_one(shell, tmp_path):
    captured, result = carried(shell, tmp_path, [
        "import numpy as np\nW = np.arange(300_000, dtype='float64')\nW2 = W",
        "class Holder:\n    pass\nHolder.weights = W",
    ], 0, "[W2 is W, Holder.weights is W, float(W2[data])]")
    assert result.output == [True, True, 0.0]
    assert sum(len(p) for p in captured.pickled.values()) < 2_500_000  # one 2.4 MB array
    assert ("W2 = W" in captured.source or "W = W2" in captured.source)
    assert "Holder.weights = W" in captured.source


def test_rebuild_hint_names_missing_requirements_only_for_import_errors(shell, tmp_path, monkeypatch):
    monkeypatch.setenv("VJ_FIDELITY_FLAG", "on")
    shell.run("import os\nclass MyModel:\n    flag = os.environ['VJ_FIDELITY_FLAG']\n"
              "    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return self.flag")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg", sample_input=1)
    monkeypatch.delenv("VJ_FIDELITY_FLAG")
    result = rebuild_in_subprocess(package, sample_input=1)
    assert not result.ok and "KeyError" in result.error
    assert "requirements.txt" not in result.error and "re-run the notebook's cells" in result.error
