"""The capture table: each scenario defines a model across several cells of a real IPython
shell, captures it, and rebuilds it in a fresh `python -I` process that must predict the same."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from verta_jupyter import capture_model, to_json_compatible
from verta_jupyter.capture.fingerprint import differences
from verta_jupyter.worker.rebuild import rebuild_in_subprocess


@dataclass
class Scenario:
    id: str
    cells: list[str]
    sample: object
    class_name: str = "MyModel"
    after: tuple[str, ...] = ()  # cells run after capture: they must not change the package


MODEL = """
class MyModel:
    def __init__(self, artifacts):
        self.artifacts = artifacts

    def predict(self, data):
        return {body}
"""


def model(body: str) -> str:
    return MODEL.format(body=body)


SCENARIOS = [
    Scenario("seed-model", [MODEL.format(body="data")], {"text": "hi"}),
    Scenario("helpers-call-helpers-across-cells", [
        "def clean(text):\n    return text.strip().lower()",
        "def tokens(text):\n    return clean(text).split()",
        "def count(text):\n    return len(tokens(text))",
        model("count(data['text'])")], {"text": "  Hello Big World "}),
    Scenario("constants-from-other-cells", [
        "THRESHOLD = 0.5\nLABELS = ('neg', 'pos')", "WEIGHTS = {'a': 1.5, 'b': -2.0}",
        model("LABELS[int(sum(WEIGHTS.get(w, 0) for w in data) > THRESHOLD)]")], ["a", "a", "b", "a"]),
    Scenario("aliased-import", ["import numpy as np",
                                model("float(np.mean(np.asarray(data)) * 2)")], [1, 2, 3]),
    Scenario("from-import-alias", ["from collections import Counter as C",
                                   model("C(data).most_common(1)[0][0]")], ["x", "y", "y"]),
    Scenario("submodule-import", ["import xml.etree.ElementTree\nimport os.path",
                                  model("[xml.etree.ElementTree.fromstring(data).tag, os.path.basename('/a/b')]")],
             "<root/>"),
    Scenario("sklearn-submodule-import", [
        "import sklearn.linear_model\nimport numpy as np",
        "X = np.array([[0.0], [1.0], [2.0], [3.0]])\ny = np.array([0, 0, 1, 1])",
        "clf = sklearn.linear_model.LogisticRegression().fit(X, y)",
        model("[int(v) for v in clf.predict(np.array(data).reshape(-1, 1))] + "
              "[sklearn.linear_model.LogisticRegression.__name__]")], [0.1, 2.9]),
    Scenario("base-class-from-earlier-cell", [
        "class Base:\n    scale = 3\n    def scaled(self, x):\n        return x * self.scale",
        "class MyModel(Base):\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return self.scaled(data)"], 7),
    Scenario("notebook-decorator-on-method", [
        "import functools\n\ndef doubled(fn):\n    @functools.wraps(fn)\n    def wrapper(*a, **k):\n"
        "        return 2 * fn(*a, **k)\n    return wrapper",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    @doubled\n    def predict(self, data):\n        return data + 1"], 4),
    Scenario("decorator-without-wraps", [
        "def tagged(fn):\n    def inner(self, data):\n        return {'tag': 'v1', 'value': fn(self, data)}\n    return inner",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    @tagged\n    def predict(self, data):\n        return data * 3"], 2),
    Scenario("class-attribute-and-default-from-globals", [
        "LIMIT = 10\nPREFIX = 'id-'",
        "class MyModel:\n    limit = LIMIT * 2\n    def __init__(self, artifacts, prefix=PREFIX):\n"
        "        self.prefix = prefix\n    def predict(self, data):\n        return self.prefix + str(min(data, self.limit))"], 50),
    Scenario("dataclass-helper", [
        "from dataclasses import dataclass\n\n@dataclass\nclass Settings:\n    factor: float = 1.0\n    name: str = 'x'",
        "settings = Settings(factor=4.0, name='quad')",
        model("{'name': settings.name, 'v': data * settings.factor, 'default': Settings().factor}")], 2),
    Scenario("lru-cache-helper", [
        "import functools\n\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
        model("fib(data)")], 30),
    Scenario("fitted-sklearn-scaler", [
        "import numpy as np\nfrom sklearn.preprocessing import StandardScaler",
        "scaler = StandardScaler().fit(np.array([[1.0, 10.0], [3.0, 30.0]]))",
        model("scaler.transform(np.asarray(data, dtype=float)).round(6).tolist()")], [[2.0, 20.0]]),
    Scenario("numpy-array-global", ["import numpy as np\nWEIGHTS = np.linspace(0, 1, 5)",
                                    model("float(WEIGHTS @ np.asarray(data, dtype=float))")], [1, 1, 1, 1, 1]),
    Scenario("reassigned-after-capture", [
        "OFFSET = 100", "def shift(x):\n    return x + OFFSET", model("shift(data)")], 1,
        after=("OFFSET = -5", "def shift(x):\n    return 0")),
    Scenario("mutually-recursive-helpers", [
        "def is_even(n):\n    return True if n == 0 else is_odd(n - 1)",
        "def is_odd(n):\n    return False if n == 0 else is_even(n - 1)",
        model("[is_even(data), is_odd(data)]")], 7),
    Scenario("local-helper-module", [
        "from vj_local_helpers import normalise\nimport vj_local_helpers as helpers",
        model("[normalise(data), helpers.VERSION]")], " MiXeD "),
    Scenario("value-of-a-local-module-class", [
        "import vj_local_helpers\ntriple = vj_local_helpers.Scaler(3)", model("triple(data)")], 7),
    Scenario("class-with-no-methods-as-config", [
        "class Config:\n    threshold = 0.25\n    labels = ['low', 'high']",
        model("Config.labels[data > Config.threshold]")], 0.3),
    Scenario("redefined-class-live-definition-wins", [
        model("'first'"), model("'second'"), model("'third: ' + str(data)")], 3),
    Scenario("comprehension-in-class-body", [
        "NAMES = ['ann', 'bob']\nSUFFIX = '!'",
        "class MyModel:\n    labels = [n.upper() + SUFFIX for n in NAMES]\n"
        "    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [self.labels[i] for i in data if i < len(NAMES)]"], [1, 0, 5]),
    Scenario("annotations-from-notebook", [
        "from typing import Dict\n\nclass Payload(dict):\n    pass",
        "class MyModel:\n    def __init__(self, artifacts: Dict[str, str]) -> None:\n        pass\n"
        "    def predict(self, data: Payload) -> Dict[str, int]:\n        return {k: len(v) for k, v in data.items()}"],
        {"a": "xyz"}),
    Scenario("nested-function-reads-global", [
        "FACTOR = 3",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n"
        "        def times(x):\n            return x * FACTOR\n        return list(map(times, data))"], [1, 2]),
    Scenario("lambda-global", ["square = lambda x: x * x", model("[square(v) for v in data]")], [3, 4]),
    Scenario("enum-from-notebook", [
        "import enum\n\nclass Color(enum.Enum):\n    RED = 'red'\n    BLUE = 'blue'",
        "DEFAULT = Color.BLUE", model("[Color(data).name, DEFAULT.value]")], "red"),
    Scenario("dict-of-notebook-functions", [
        "def up(s):\n    return s.upper()\n\ndef rev(s):\n    return s[::-1]",
        "OPS = {'up': up, 'rev': rev}", model("{k: f(data) for k, f in OPS.items()}")], "abc"),
    Scenario("static-class-methods-and-property", [
        "class MyModel:\n    def __init__(self, artifacts):\n        self.n = 2\n"
        "    @staticmethod\n    def twice(x):\n        return 2 * x\n"
        "    @classmethod\n    def name(cls):\n        return cls.__name__\n"
        "    @property\n    def n2(self):\n        return self.n ** 2\n"
        "    def predict(self, data):\n        return [self.twice(data), self.name(), self.n2]"], 5),
    Scenario("pandas-in-predict", [
        "import pandas as pd",
        model("pd.DataFrame(data).assign(total=lambda d: d['a'] + d['b']).to_dict(orient='records')")],
        [{"a": 1, "b": 2}, {"a": 3, "b": 4}]),
    Scenario("compiled-regex-global", [
        "import re\nWORD = re.compile(r'[a-z]+')", model("WORD.findall(data.lower())")], "Hi There, 42 you"),
    Scenario("aliased-helper-function", [
        "def base_score(x):\n    return x * 10", "score = base_score", model("score(data)")], 4),
    Scenario("math-constant-from-import", ["from math import pi, sqrt",
                                           model("round(sqrt(data) * pi, 6)")], 16),
    Scenario("instance-of-notebook-class-global", [
        "class Tokenizer:\n    def __init__(self, lower):\n        self.lower = lower\n"
        "    def __call__(self, text):\n        return (text.lower() if self.lower else text).split()",
        "tok = Tokenizer(lower=True)", model("tok(data)")], "A B c"),
    Scenario("future-annotations-in-the-notebook", [
        "from __future__ import annotations\nimport dataclasses",
        "@dataclasses.dataclass\nclass Point:\n    x: float\n    y: Later",
        "class MyModel:\n    def __init__(self, artifacts: dict[str, str]) -> None:\n        pass\n"
        "    def predict(self, data: list[float]) -> Later:\n        return dataclasses.astuple(Point(*data))",
        "Later = tuple"], [1.0, 2.0]),
    Scenario("module-dunders-are-not-captured", [
        "import logging\nlog = logging.getLogger(__name__)",
        model("[logging.getLogger(__name__).name != '', __doc__ is None or True, data]")], 5),
    Scenario("metaclass-and-keyword-from-notebook", [
        "class Registry(type):\n    names = []\n    def __new__(mcs, name, bases, ns, tag='none'):\n"
        "        cls = super().__new__(mcs, name, bases, ns)\n        cls.tag = tag\n        return cls",
        "TAG = 'v2'",
        "class MyModel(metaclass=Registry, tag=TAG):\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [self.tag, data]"], 1),
]


@pytest.fixture
def local_helpers(tmp_path, monkeypatch):
    """A helpers module beside the 'notebook', importable but not an installed distribution."""
    (tmp_path / "vj_local_helpers.py").write_text(
        "VERSION = '1.2'\n\ndef normalise(text):\n    return text.strip().lower()\n\n"
        "class Scaler:\n    def __init__(self, k):\n        self.k = k\n\n"
        "    def __call__(self, x):\n        return x * self.k\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    import sys

    sys.modules.pop("vj_local_helpers", None)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario_rebuilds_in_fresh_process(scenario, shell, local_helpers, tmp_path):
    for cell in scenario.cells:
        shell.run(textwrap.dedent(cell))
    cls = shell.ns[scenario.class_name]
    expected = to_json_compatible(cls(artifacts={}).predict(scenario.sample))
    captured = capture_model(cls, shell.ns)
    package = captured.save(tmp_path / "package", sample_input=scenario.sample)
    for cell in scenario.after:
        shell.run(cell)

    result = rebuild_in_subprocess(package, sample_input=scenario.sample)

    assert result.ok, result.traceback
    assert result.output == expected
    assert result.loaded_from == "model.py"
    assert differences(captured.fingerprint, result.fingerprint) == []  # the fidelity proof agrees
    assert captured.fingerprint  # and had something to compare


def test_scenario_table_is_large_enough():
    assert len(SCENARIOS) >= 25
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)


def test_global_statement_state_is_carried_into_the_package(shell, tmp_path):
    shell.run("COUNT = 0")
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data):\n        global COUNT\n        COUNT += 1\n        return COUNT + data")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    result = rebuild_in_subprocess(package, sample_input=10)
    assert result.ok, result.traceback
    assert result.output == 11


def test_modules_imported_inside_methods_are_pinned(shell):
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n        import numpy\n"
              "        self.np = numpy\n    def predict(self, data):\n        from sklearn import __version__\n"
              "        import json\n        return json.dumps(data)")
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert [r.split("==")[0] for r in captured.requirements] == ["numpy", "scikit-learn"]
