"""validate(): each check of the catalog against classes defined in a real IPython shell."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from verta_jupyter.validation.secrets import BUDGET_VARIABLE, SCAN_BUDGET, credential_kind, secret_reason
from verta_jupyter.errors import (DynamicLookupWarning, MutatedGlobalWarning, NoSampleWarning,
                                  ValidationError)
from verta_jupyter.validation.validate import prepare_model, validate

SEED = '''
class MyModel(object):
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"echo": data}
'''


def define(shell, code: str, name: str = "MyModel"):
    shell.run(code)
    return shell.ns[name]


def check(shell, code: str, name: str = "MyModel", **kwargs):
    cls = define(shell, code, name)
    return validate(cls, namespace=shell.ns, **kwargs)


def codes(report) -> list[str]:
    return [p.code for p in report.problems]


def status(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


# -- a model that passes ---------------------------------------------------------------------

def test_seed_model_passes_every_check_and_rebuilds_identically(shell):
    report = check(shell, SEED, sample_input={"text": "hi"})
    assert report.ok and report.problems == []
    assert set(status(report).values()) == {"ok"}
    assert report.sample_output == {"echo": {"text": "hi"}}
    assert report.rebuilt_output == report.sample_output
    assert (report.package_dir / "model.py").is_file()
    assert json.loads((report.package_dir / "input_example.json").read_text()) == {"text": "hi"}
    assert report.timings["total"] >= report.timings["rebuild"] > 0


def test_no_sample_is_a_warning_and_rebuild_checks_construction_only(shell):
    with pytest.warns(NoSampleWarning) as seen:
        report = check(shell, SEED)
    assert report.ok and codes(report) == ["VJ304"] and [w.message.code for w in seen] == ["VJ304"]
    assert status(report)["predict"] == "skipped" and status(report)["rebuild"] == "ok"
    assert "construct only" in next(c.detail for c in report.checks if c.name == "rebuild")


def test_check_rebuild_false_still_writes_the_package(shell):
    report = check(shell, SEED, sample_input=1, check_rebuild=False)
    assert report.ok and status(report)["rebuild"] == "skipped"
    assert (report.package_dir / "verta_model.json").is_file()


def test_prepare_model_returns_package_and_report(shell):
    cls = define(shell, SEED)
    prepared = prepare_model(cls, namespace=shell.ns, sample_input=[1, 2])
    assert prepared.package_dir == prepared.report.package_dir
    assert prepared.captured.class_name == "MyModel"


def test_prepare_model_raises_with_the_report_and_codes(shell):
    cls = define(shell, "class MyModel:\n    def __init__(self, artifacts): pass\n")
    with pytest.raises(ValidationError) as info:
        prepare_model(cls, namespace=shell.ns, sample_input=1)
    assert info.value.codes == ["VJ111"]
    assert info.value.report.class_name == "MyModel"
    assert "MyModel" in str(info.value) and "VJ111" in str(info.value)


def test_public_validate_is_the_function(shell):
    import verta_jupyter
    from verta_jupyter.validation.validate import validate as from_module

    cls = define(shell, SEED)
    assert verta_jupyter.validate is from_module
    assert verta_jupyter.validate(cls, namespace=shell.ns, sample_input=1, check_rebuild=False).ok


# -- the class and its interface ---------------------------------------------------------------

def test_instance_instead_of_class(shell):
    shell.run(SEED + "model = MyModel(artifacts={})\n")
    report = validate(shell.ns["model"], namespace=shell.ns)
    assert codes(report) == ["VJ103"] and "MyModel" in report.errors[0].message


def test_function_instead_of_class(shell):
    shell.run("def predict(data):\n    return data\n")
    report = validate(shell.ns["predict"], namespace=shell.ns)
    assert codes(report) == ["VJ101"] and "'predict'" in report.errors[0].message


@pytest.mark.parametrize("body, code", [
    ("    def __init__(self, artifacts): pass\n", "VJ111"),
    ("    def __init__(self, artifacts): pass\n    @staticmethod\n    def predict(data): return data\n", "VJ112"),
    ("    def __init__(self, artifacts): pass\n    @classmethod\n    def predict(cls, data): return data\n", "VJ112"),
    ("    def __init__(self, artifacts): pass\n    @property\n    def predict(self): return 1\n", "VJ112"),
    ("    def __init__(self, artifacts): pass\n    predict = 3\n", "VJ112"),
    ("    def __init__(self, artifacts): pass\n    def predict(self): return 1\n", "VJ113"),
    ("    def __init__(self, artifacts): pass\n    def predict(self, a, b): return 1\n", "VJ113"),
    ("    def __init__(self, artifacts): pass\n    def predict(self, *, data): return 1\n", "VJ113"),
    ("    def predict(self, data): return 1\n", "VJ114"),
    ("    def __init__(self): pass\n    def predict(self, data): return 1\n", "VJ114"),
    ("    def __init__(self, artifacts, size): pass\n    def predict(self, data): return 1\n", "VJ114"),
    ("    def __init__(self, *args): pass\n    def predict(self, data): return 1\n", "VJ114"),
])
def test_interface_problems(shell, body, code):
    report = check(shell, "class MyModel:\n" + body, sample_input=1)
    assert code in codes(report)
    error = next(p for p in report.errors if p.code == code)
    assert "MyModel" in error.message
    assert error.where and error.where.startswith("cell line")
    assert status(report)["predict"] == "skipped"  # nothing expensive after an error


@pytest.mark.parametrize("body", [
    "    def __init__(self, artifacts=None): pass\n    def predict(self, data, threshold=0.5): return 1\n",
    "    def __init__(self, **kwargs): pass\n    def predict(self, *rows): return 1\n",
    "    def __init__(self, *, artifacts): pass\n    def predict(self, data, /): return 1\n",
])
def test_interface_variants_that_work(shell, body):
    report = check(shell, "class MyModel:\n" + body, sample_input=1)
    assert report.ok, report.error_message()


def test_interface_where_points_at_the_cell_line(shell):
    report = check(shell, "x = 1\n\nclass MyModel:\n    def __init__(self, artifacts): pass\n"
                          "    def predict(self): return 1\n", sample_input=1)
    assert report.errors[0].where == "cell line 5, in MyModel.predict"


def test_static_checks_all_report_at_once(shell):
    report = check(shell, "class MyModel:\n    def __init__(self): pass\n    def predict(self): pass\n",
                   sample_input={"x": float("nan")}, artifacts={"model.pkl": None})
    assert {"VJ113", "VJ114", "VJ302", "VJ303"} <= set(codes(report))


# -- artifacts -------------------------------------------------------------------------------

def test_artifact_paths_reach_init(shell, tmp_path):
    (tmp_path / "vocab.txt").write_text("a b c")
    code = ('class MyModel:\n    def __init__(self, artifacts):\n'
            '        self.words = open(artifacts["vocab"]).read().split()\n'
            '    def predict(self, data):\n        return [w for w in data if w in self.words]\n')
    report = check(shell, code, artifacts={"vocab": tmp_path / "vocab.txt"}, sample_input=["a", "z"])
    assert report.ok and report.sample_output == ["a"] and report.rebuilt_output == ["a"]


@pytest.mark.parametrize("artifacts, code", [
    ({"vocab": None}, "VJ301"),
    (["vocab"], "VJ301"),
    ({"vocab": "/nonexistent/vocab"}, "VJ301"),
    ({"requirements.txt": "/tmp"}, "VJ302"),
    (["custom_modules"], "VJ302"),
])
def test_artifact_problems(shell, artifacts, code):
    report = check(shell, SEED, artifacts=artifacts, sample_input=1)
    assert codes(report)[0] == code
    key = list(artifacts)[0]
    assert report.errors[0].name == key and f"'{key}'" in report.errors[0].message


# -- samples ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sample, where", [
    (float("nan"), "sample"),
    ({"x": [1, math.inf]}, 'sample["x"][1]'),
    ({1: "a"}, "sample[1]"),
    ({"when": object()}, 'sample["when"]'),
    ({"s": {1, 2}}, 'sample["s"]'),
])
def test_sample_not_json(shell, sample, where):
    report = check(shell, SEED, sample_input=sample)
    assert codes(report) == ["VJ303"]
    assert report.errors[0].name == where and where in report.errors[0].message


def test_predict_receives_what_deployment_sends(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return type(data).__name__\n')
    report = check(shell, code, sample_input=(1, 2))
    assert report.sample_output == "list" and report.rebuilt_output == "list"


# -- names and values (from capture) and secrets --------------------------------------------

def test_capture_problems_are_reported_not_duplicated(shell):
    code = ('import threading\nlock = threading.Lock()\n'
            'class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        with lock:\n            return undefined_thing(data)\n')
    report = check(shell, code, sample_input=1)
    assert sorted(codes(report)) == ["VJ201", "VJ202"]
    assert {p.name for p in report.errors} == {"undefined_thing", "lock"}
    assert status(report)["capture"] == "error" and status(report)["secrets"] == "skipped"


def test_ipython_only_name(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        display(data)\n        return data\n')
    report = check(shell, code, sample_input=1)
    assert "VJ204" in codes(report) and report.errors[0].name == "display"


def test_dynamic_lookup_is_a_warning(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return eval("data")\n')
    with pytest.warns(DynamicLookupWarning, match=r"\[VJ206\] cell line 4"):
        report = check(shell, code, sample_input=2)
    assert report.ok and codes(report) == ["VJ206"]
    assert report.warnings[0].where == "cell line 4"


def test_mutated_global_is_a_warning(shell):
    code = ('COUNT = 0\nclass MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        global COUNT\n        COUNT += 1\n        return data\n')
    with pytest.warns(MutatedGlobalWarning) as seen:
        report = check(shell, code, sample_input=2)
    warning = next(p for p in report.problems if p.code == "VJ207")
    assert any(w.message.problem == warning for w in seen)
    assert not warning.is_error and warning.name == "COUNT"


SECRET_CELLS = [
    ('API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"\n', "API_KEY"),
    ('db_password = "hunter2"\n', "db_password"),
    ('aws = "AKIAIOSFODNN7EXAMPLE"\n', "aws"),
    ('auth = {"token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}\n', "auth"),
    ('DSN = "postgresql://admin:s3cr3t@db.internal:5432/prod"\n', "DSN"),
    ('jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"\n', "jwt"),
    ('blob = "Zx9Qw3Ertyu7IopAsd5FghJkL2ZxcVbnM1qwErTy8u"\n', "blob"),
    ('class Settings:\n    pass\nsettings = {"openai": {"apiKey": "abc123def456ghi789"}}\n', "settings"),
]


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return [value]


@pytest.mark.parametrize("globals_code, name", SECRET_CELLS)
def test_secret_looking_globals_are_refused(shell, globals_code, name):
    code = globals_code + ('class MyModel:\n    def __init__(self, artifacts):\n'
                           f'        self.s = {name}\n    def predict(self, data):\n        return 1\n')
    report = check(shell, code, sample_input=1)
    assert codes(report) == ["VJ203"], report.problems
    assert report.errors[0].name == name
    for secret in _strings(shell.ns[name]):
        assert secret[3:] not in str(report.errors[0])  # never echo the secret
    assert check(shell, code, sample_input=1, allow_secrets=True).ok


def test_secret_literal_inside_the_class_is_refused(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts):\n'
            '        self.headers = {"Authorization": "Bearer sk-abcdefghijklmnopqrstuvwx1234"}\n'
            '    def predict(self, data):\n        return 1\n')
    report = check(shell, code, sample_input=1)
    assert report.errors[0].code == "VJ203" and "model.py line" in report.errors[0].where


@pytest.mark.parametrize("name, value", [
    ("SORT_KEY", "score"), ("TOKEN_PATTERN", r"(?u)\b\w\w+\b"), ("text_key", "review_text"),
    ("MODEL_SHA", "3f786850e387550fdab836ed7e6dc881de23001b"), ("label", "positive"),
    ("max_tokens", 100), ("key_columns", "user_id,item_id"),
])
def test_ordinary_values_are_not_secrets(name, value):
    assert secret_reason(name, value) is None


def test_credential_kinds_are_named_without_the_value():
    assert credential_kind("AKIAIOSFODNN7EXAMPLE") == "an AWS access key id"
    assert credential_kind("-----BEGIN RSA PRIVATE KEY-----\nMIIE") == "a private key"
    assert credential_kind("hello world") is None


# -- running the model -----------------------------------------------------------------------

def test_predict_raising_gives_trimmed_traceback_with_cell_lines(shell):
    code = ('def helper(x):\n    return x["missing"]\n\n'
            'class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return helper(data)\n')
    report = check(shell, code, sample_input={"a": 1})
    assert codes(report) == ["VJ402"]
    error = report.errors[0]
    assert error.where == "cell line 2, in helper" and "KeyError" in error.message
    details = report.details["VJ402"]
    assert "cell line 7, in MyModel.predict" in details and "verta_jupyter" not in details
    assert status(report)["rebuild"] == "skipped"


def test_construct_raising(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts):\n        raise RuntimeError("no weights")\n'
            '    def predict(self, data):\n        return 1\n')
    report = check(shell, code, sample_input=1)
    assert codes(report) == ["VJ401"] and report.errors[0].where == "cell line 3, in MyModel.__init__"


def test_output_not_json_compatible(shell):
    code = ('class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return {"scores": [1, object()]}\n')
    report = check(shell, code, sample_input=1)
    assert codes(report) == ["VJ403"]
    assert 'result["scores"][1]' in str(report.errors[0]) and "object" in report.errors[0].message


def test_known_types_in_the_output_are_converted(shell):
    code = ('import numpy as np\nclass MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return np.array(data) * 2\n')
    report = check(shell, code, sample_input=[1, 2])
    assert report.ok and report.sample_output == [2, 4] and report.rebuilt_output == [2, 4]


def test_rebuild_failing_in_a_fresh_process(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.txt").write_text("yes\n")
    code = ('from pathlib import Path\nclass MyModel:\n    def __init__(self, artifacts):\n'
            '        self.labels = Path("labels.txt").read_text().split()\n'
            '    def predict(self, data):\n        return self.labels\n')
    report = check(shell, code, sample_input=1)
    assert codes(report) == ["VJ501"]
    assert "FileNotFoundError" in report.errors[0].message and "labels.txt" in report.details["VJ501"]


def test_rebuilt_output_differs_from_the_notebook(shell):
    code = ('import json\njson.vj_patched = 5\n'
            'class MyModel:\n    def __init__(self, artifacts): pass\n'
            '    def predict(self, data):\n        return getattr(json, "vj_patched", 0)\n')
    try:
        report = check(shell, code, sample_input=1)
    finally:
        import json as json_module
        del json_module.vj_patched
    assert codes(report) == ["VJ502"]
    assert "5" in report.errors[0].message and "0" in report.errors[0].message


# -- docs/validation-catalog.md: every code, an example that really produces it ---------------
# Regenerate the page after changing a message: `python tests/test_validate.py --write-doc`.

DOC = Path(__file__).resolve().parent.parent / "docs" / "validation-catalog.md"
EXAMPLES = {  # code -> cells run in order; the last one shows the problem
"VJ101": ["%%verta_model --no-log\nthreshold = 0.5\n"],
"VJ102": ["%%verta_model --no-log\nclass Small:\n    def __init__(self, artifacts): pass\n    def predict(self, data): return 1\n\nclass Large(Small):\n    def predict(self, data): return 2\n"],
"VJ103": ["from verta_jupyter import validate\n\nclass MyModel:\n    def __init__(self, artifacts): pass\n    def predict(self, data): return data\n\nprint(validate(MyModel(artifacts={})).errors[0])\n"],
"VJ104": ["from verta_jupyter import validate\n\nexec('class Generated:\\n    def __init__(self, artifacts): pass\\n    def predict(self, data): return data\\n')\nprint(validate(Generated, sample_input=1).errors[0])\n"],
"VJ111": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def score(self, data):\n        return 1\n"],
"VJ112": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    @staticmethod\n    def predict(data):\n        return 1\n"],
"VJ113": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, features, labels):\n        return 1\n"],
"VJ114": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, path):\n        self.path = path\n\n    def predict(self, data):\n        return 1\n"],
"VJ201": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return scaler.transform(data)\n"],
"VJ202": ["import threading\nlock = threading.Lock()\n",
          "%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        with lock:\n            return data\n"],
"VJ203": ['OPENAI_API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"\n',
          "%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        self.key = OPENAI_API_KEY\n\n    def predict(self, data):\n        return data\n"],
"VJ204": ["%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        display(data)\n        return data\n"],
"VJ205": ["class Tokenizer:\n    def split(self, text): return text.split()\n\ntokenizer = Tokenizer()\n",
          "class Tokenizer:  # redefined after `tokenizer` was made\n    def split(self, text): return text.lower().split()\n",
          "%%verta_model --no-log\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return tokenizer.split(data)\n"],
"VJ206": ["%%verta_model --no-log --no-panel --sample 2\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return eval(\"data * 2\")\n"],
"VJ207": ["calls = 0\n",
          "%%verta_model --no-log --no-panel\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        global calls\n        calls += 1\n        return data\n"],
"VJ208": ["import numpy as np\nweights = np.array([0.2, 0.8])\n",
          "%%verta_model --no-log --no-panel --sample '[1, 2]'\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return float(np.dot(weights, data))\n"],
"VJ209": ["%env VERTA_JUPYTER_SECRET_SCAN_BUDGET=1000\nrows = [[f\"w{i}\"] for i in range(5000)]\n",
          "%%verta_model --no-log --no-panel --sample 1\nclass MyModel:\n    def __init__(self, artifacts):\n        self.rows = rows\n\n    def predict(self, data):\n        return len(self.rows[data])\n"],
"VJ210": ["import sys, types\nghost = types.ModuleType(\"ghost\")  # a module made in memory\nghost.double = lambda x: 2 * x\nsys.modules[\"ghost\"] = ghost\n",
          "%%verta_model --no-log --no-panel --sample 1\nimport ghost\n\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return ghost.double(data)\n"],
"VJ301": ["%%verta_model --no-log --artifacts vocab\nclass MyModel:\n    def __init__(self, artifacts):\n        self.vocab = open(artifacts[\"vocab\"]).read().split()\n\n    def predict(self, data):\n        return data\n"],
"VJ302": ["%%verta_model --no-log --artifacts model.pkl\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data\n"],
"VJ303": ["%%verta_model --no-log --sample '{\"x\": NaN}'\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data\n"],
"VJ304": ["%%verta_model --no-log --no-panel\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data\n"],
"VJ401": ["%%verta_model --no-log --sample 1\nclass MyModel:\n    def __init__(self, artifacts):\n        self.weights = artifacts[\"weights\"]\n\n    def predict(self, data):\n        return data\n"],
"VJ402": ["%%verta_model --no-log --sample '{\"text\": \"hi\"}'\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return len(data[\"txt\"])\n"],
"VJ403": ["%%verta_model --no-log --sample 1\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return {\"scores\": [0.5, object()]}\n"],
"VJ501": ["from pathlib import Path\nPath(\"labels.txt\").write_text(\"spam ham\")\n",
          "%%verta_model --no-log --sample 1\nclass MyModel:\n    def __init__(self, artifacts):\n        self.labels = Path(\"labels.txt\").read_text().split()\n\n    def predict(self, data):\n        return self.labels[data]\n"],
"VJ502": ["import math\nmath.SCALE = 3  # notebook state the package cannot see\n",
          "%%verta_model --no-log --sample 2\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data * getattr(math, \"SCALE\", 1)\n"],
"VJ504": ["def rare(x):\n    return x + 1\n\ndef faster(x):\n    return x + 1000\n\nrare.__code__ = faster.__code__  # no statement in any cell says this\n",
          "%%verta_model --no-log --no-panel --sample 1\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data if data < 10 else rare(data)\n"],
"VJ503": ["%%verta_model --no-log --no-panel --sample 1\nimport threading\n\nclass MyModel:\n    guard = threading.Lock()\n\n    def __init__(self, artifacts):\n        pass\n\n    def predict(self, data):\n        return data\n"],
}


def run_example(ip, cells: list[str]) -> str:
    """The text a user sees: the failing cell's message, or printed and displayed text."""
    from IPython.utils.capture import capture_output

    seen = []
    for cell in cells:
        with capture_output() as captured:
            result = ip.run_cell(cell, store_history=True)
        error = result.error_in_exec or result.error_before_exec
        if error is not None:
            return str(error)
        seen.append(captured.stdout)
        seen += [o.data.get("text/plain", "") for o in captured.outputs]
    return "\n".join(seen)


def example_message(ip, code: str) -> str:
    text = run_example(ip, EXAMPLES[code])
    lines = [line.strip() for line in text.splitlines() if f"[{code}]" in line]
    assert lines, f"the example for {code} did not produce it:\n{text}"
    return lines[0]


def doc_sections(text: str) -> dict[str, tuple[list[str], str]]:
    """code -> (example cells, message) as written in the page."""
    sections = {}
    for chunk in text.split("\n## ")[1:]:
        code = chunk.split()[0]
        cells = re.findall(r"```python\n(.*?)```", chunk, flags=re.S)
        message = re.findall(r"```text\n(.*?)\n```", chunk, flags=re.S)
        sections[code] = (cells, message[0] if message else "")
    return sections


def render_doc(messages: dict[str, str]) -> str:
    from verta_jupyter.catalog import CATALOG

    out = [DOC_INTRO]
    for code, check in CATALOG.items():
        out.append(f"## {code} · {check.title} ({check.severity})\n")
        if check.magic_remedy:  # the remedy names the argument or flag of where the user is
            out.append(f"Remedy (Python API): {check.remedy}\n\n"
                       f"Remedy (`%%verta_model`): {check.magic_remedy}\n")
        else:
            out.append(f"Remedy: {check.remedy}\n")
        for cell in EXAMPLES[code]:
            out.append(f"```python\n{cell}```\n")
        out.append(f"Message:\n\n```text\n{messages[code]}\n```\n")
    return "\n".join(out)


DOC_INTRO = """# Validation catalog

Every problem `%%verta_model` (and `run.log_model`, and `verta_jupyter.validate`) can find has a
stable code. Errors stop the log: the cell fails, `str(exc)` names your identifier, the cell line
and the code, and the store is left unchanged. Warnings are shown in the summary and the model is
logged; from the Python API (`validate`, `run.log_model`) each is also issued through Python's
`warnings` as a `VertaWarning` subclass whose `code` is the code below (the magic shows it once,
in its summary). Checks run cheap first: every static check (class, interface, artifacts, sample,
capture, secrets) always runs, so you see all of those at once; the checks that run your code
(construct, predict, rebuild in a fresh process) are skipped once an error is known.

A bad flag (unknown flag, a `--sample` that is neither JSON nor a Python expression that
evaluates, `--run` naming nothing usable, no run at all without `--no-log`) is IPython's own
`UsageError` and has no code. An exception or syntax error in the cell body fails the cell as it
would without the magic. A remedy names what to change where you are: the `%%verta_model` flag
(`--allow-secrets`) in a magic cell, the argument (`allow_secrets=True`) in the Python API.

Samples: `validate(..., sample_input=)` and `run.log_model(..., sample_input=)` take plain JSON
values (VJ303 otherwise; `None` or no argument means no sample). `%%verta_model --sample` text is
parsed as JSON when it is JSON, else evaluated as a Python expression in the notebook and
converted with `to_json_compatible`, so `--sample df.head(3)` sends records. Either way `predict`
is tried on exactly what a deployed model would receive: the JSON round trip of the sample,
converted to `predict`'s annotated type (`pandas.DataFrame`, `numpy.ndarray`) if it has one.

Each example below is a notebook cell (or cells, run in order); the message is what it printed
when this page was generated, and the test suite (`tests/test_validate.py`) re-runs every example
and checks that it still prints exactly that.
"""


@pytest.fixture
def doc_shell(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(BUDGET_VARIABLE, str(SCAN_BUDGET))  # restored after VJ209's `%env`
    shell.run("%load_ext verta_jupyter")
    shell.ip.colors = "nocolor"
    yield shell.ip
    if hasattr(math, "SCALE"):
        del math.SCALE


def test_every_catalog_code_has_an_example():
    from verta_jupyter.catalog import CATALOG

    assert set(EXAMPLES) == set(CATALOG)


def test_every_error_remedy_is_something_to_do():
    """An error's remedy is one action the user can take ("Log a file...", "Make predict..."),
    not a diagnosis ("The model depends on something...; see the error"), which left the
    reader of VJ501 and VJ502 with nothing to do."""
    from verta_jupyter.catalog import CATALOG

    for check in CATALOG.values():
        if check.severity != "error":
            continue
        for remedy in filter(None, (check.remedy, check.magic_remedy)):
            assert remedy.split()[0] not in {"The", "It", "This", "A", "An", "See"}, (check.code, remedy)
            assert "see the" not in remedy.lower(), (check.code, remedy)


@pytest.mark.parametrize("code", sorted(EXAMPLES))
def test_catalog_page_example_gives_its_documented_message(doc_shell, code):
    cells, message = doc_sections(DOC.read_text()).get(code, ([], ""))
    assert cells == EXAMPLES[code], f"docs/validation-catalog.md is behind for {code}; regenerate it"
    assert example_message(doc_shell, code) == message, "regenerate: python tests/test_validate.py --write-doc"


if __name__ == "__main__" and "--write-doc" in sys.argv:
    import os
    import tempfile

    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.colors = "nocolor"
    ip.run_cell("%load_ext verta_jupyter")
    messages = {}
    home = os.getcwd()
    for code in EXAMPLES:
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            ip.reset(new_session=True)
            ip.run_cell("%load_ext verta_jupyter", store_history=True)  # as the doc_shell fixture does
            try:
                messages[code] = example_message(ip, code)
            finally:
                os.chdir(home)
                os.environ.pop(BUDGET_VARIABLE, None)
        if hasattr(math, "SCALE"):
            del math.SCALE
    DOC.write_text(render_doc(messages))
    print(f"wrote {DOC}")
