"""Capture-time problems: each names the user's identifier, where it is used, and one remedy."""
from __future__ import annotations

import sys

import pytest

from verta_jupyter import capture_model
from verta_jupyter.errors import CaptureError, VertaError

USES = """class MyModel:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {expr}
"""

UNPICKLABLE = {
    "lock": "import threading\nresource = threading.Lock()",
    "rlock": "import threading\nresource = threading.RLock()",
    "thread": "import threading\nresource = threading.Thread(target=print)",
    "socket": "import socket\nresource = socket.socket()",
    "generator": "resource = (i for i in range(3))",
    "sqlite-connection": "import sqlite3\nresource = sqlite3.connect(':memory:')",
    "file-open-for-writing": "import tempfile\nresource = tempfile.TemporaryFile('w')",
    "object-holding-a-lock": "import threading\nclass Holder:\n    def __init__(self):\n"
                             "        self.lock = threading.Lock()\nresource = Holder()",
}


def capture_error(shell, *cells) -> CaptureError:
    for cell in cells:
        shell.run(cell)
    with pytest.raises(CaptureError) as info:
        capture_model(shell.ns["MyModel"], shell.ns)
    return info.value


def test_unresolved_name_names_it_with_cell_line_and_method(shell):
    error = capture_error(shell, USES.format(expr="scaler.transform(data)"))
    assert error.codes == ["VJ201"]
    message = str(error)
    assert "'scaler'" in message and "MyModel.predict" in message and "cell line 6" in message
    assert "earlier cell" in message  # the remedy


def test_every_unresolved_name_is_reported_at_once(shell):
    error = capture_error(shell, USES.format(expr="first(data) + second"))
    assert sorted(p.name for p in error.problems) == ["first", "second"]


@pytest.mark.parametrize("case", sorted(UNPICKLABLE))
def test_unpicklable_value_names_the_global(shell, case):
    error = capture_error(shell, UNPICKLABLE[case], USES.format(expr="str(resource) and data"))
    assert error.codes == ["VJ202"]
    assert "'resource'" in str(error) and "__init__" in str(error)


@pytest.mark.parametrize("name", ["display", "get_ipython"])
def test_ipython_only_names_are_refused(shell, name):
    error = capture_error(shell, USES.format(expr=f"{name} and data"))
    assert error.codes == ["VJ204"]
    assert f"'{name}'" in str(error) and "IPython" in str(error)


def test_ipython_object_imported_by_name_is_refused(shell):
    error = capture_error(shell, "from IPython.display import HTML", USES.format(expr="HTML(data)"))
    assert error.codes == ["VJ204"] and "'HTML'" in str(error)


def test_value_of_a_redefined_class_refers_back_to_the_notebook(shell):
    error = capture_error(
        shell, "class Rule:\n    pass", "rule = Rule()", "class Rule:\n    pass",
        USES.format(expr="rule"))
    assert error.codes == ["VJ205"]
    assert "'rule'" in str(error) and "'Rule'" in str(error)


def test_instance_instead_of_class(shell):
    shell.run(USES.format(expr="data"))
    with pytest.raises(CaptureError) as info:
        capture_model(shell.ns["MyModel"](artifacts={}), shell.ns)
    assert info.value.codes == ["VJ103"] and "'MyModel'" in str(info.value)


@pytest.mark.parametrize("call", ["eval('data')", "globals()['data']", "exec('x = 1') or data"])
def test_dynamic_lookups_warn(shell, call):
    shell.run(USES.format(expr=call))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert [w.code for w in captured.warnings] == ["VJ206"]
    assert "MyModel.predict" in str(captured.warnings[0])


def test_global_statement_warns_about_mutated_state(shell):
    shell.run("calls = 0")
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data):\n        global calls\n        calls += 1\n        return calls")
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert "VJ207" in [w.code for w in captured.warnings]
    assert any(w.name == "calls" for w in captured.warnings if w.code == "VJ207")


def test_pickled_values_are_reported_as_captured_by_value(shell):
    shell.run("import collections\ncounts = collections.Counter('aab')")
    shell.run(USES.format(expr="counts[data]"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert [(w.code, w.name) for w in captured.warnings] == [("VJ208", "counts")]


def test_errors_render_without_internal_frames(shell):
    error = capture_error(shell, USES.format(expr="missing_thing"))
    assert isinstance(error, VertaError)
    rendered = error._render_traceback_()
    assert rendered == [f"CaptureError: {error}"]


def test_a_class_made_by_exec_is_not_matched_to_a_namesake_in_history(shell):
    shell.run("class MyModel:\n    def predict(self, data):\n        return 'from history'")
    shell.run("exec('class MyModel:\\n    def __init__(self, artifacts):\\n        pass\\n"
              "    def predict(self, data):\\n        return data\\n')")
    with pytest.raises(CaptureError) as info:
        capture_model(shell.ns["MyModel"], shell.ns)
    assert info.value.codes == ["VJ104"] and "'MyModel'" in str(info.value)


def test_ipython_open_is_the_builtin(shell):
    captured_cell = USES.format(expr="open")
    shell.run(captured_cell)
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert captured.warnings == [] and "open =" not in captured.source


def test_a_helper_defined_under_time_magic_says_how_to_fix_it(shell):
    shell.run("%%time\ndef helper(x):\n    return x")
    shell.run(USES.format(expr="helper(data)"))
    with pytest.raises(CaptureError) as info:
        capture_model(shell.ns["MyModel"], shell.ns)
    assert info.value.codes == ["VJ104"]
    assert "'helper'" in str(info.value) and "without %%time" in str(info.value)


def test_class_without_methods_and_without_history_gets_a_fitting_remedy(shell):
    shell.ip.run_cell("import dataclasses\n@dataclasses.dataclass\nclass Cfg:\n    k: int = 2", store_history=False)
    error = capture_error(shell, USES.format(expr="Cfg().k * data"))
    assert error.codes == ["VJ104"]
    message = str(error)
    assert "'Cfg'" in message and "history" in message and "cell_source=" in message


def test_closure_over_an_unpicklable_value_is_a_coded_error_not_a_crash(shell):
    error = capture_error(shell, "import threading\ndef make():\n    lock = threading.Lock()\n"
                                 "    def guarded(x):\n        with lock:\n            return x\n    return guarded\n"
                                 "guarded = make()", USES.format(expr="guarded(data)"))
    assert error.codes == ["VJ202"]
    assert "'guarded'" in str(error)


def test_a_module_made_in_memory_is_named_as_unbundlable(shell):
    """Neither installed nor a file: the package could not carry it, and the rebuild would
    fail far from the cause; the capture says so, naming the module."""
    shell.run("import sys, types\nghost = types.ModuleType('ghost_vj')\nghost.double = lambda x: 2 * x\n"
              "sys.modules['ghost_vj'] = ghost\nimport ghost_vj")
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data):\n        return ghost_vj.double(data)")
    try:
        with pytest.raises(CaptureError) as caught:
            capture_model(shell.ns["MyModel"], shell.ns)
        assert caught.value.codes == ["VJ210"] and "'ghost_vj'" in str(caught.value)
        assert "pip install -e ." in str(caught.value)
    finally:
        sys.modules.pop("ghost_vj", None)


def test_a_local_compiled_extension_is_unbundlable_but_a_local_source_module_is_not(tmp_path):
    import importlib.machinery
    import types

    from verta_jupyter.capture.bundle import unbundlable

    binary = tmp_path / f"fastpath{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    binary.write_bytes(b"\x7fELF")
    extension = types.ModuleType("fastpath_vj")
    extension.__file__ = str(binary)
    assert "compiled extension" in unbundlable(extension) and binary.name in unbundlable(extension)
    source = tmp_path / "helpers_vj.py"
    source.write_text("X = 1\n")
    plain = types.ModuleType("helpers_vj")
    plain.__file__ = str(source)
    assert unbundlable(plain) is None
    assert unbundlable(sys.modules["json"]) is None and unbundlable(sys.modules["pytest"]) is None
