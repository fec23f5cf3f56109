"""The capture table: each scenario defines a model across several cells of a real IPython
shell, captures it, and rebuilds it in a fresh `python -I` process that must predict the same."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest

from verta_jupyter import capture_model, to_json_compatible
from verta_jupyter.capture.fingerprint import differences
from verta_jupyter.jsonify.input import convert_input
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


# Issue 11's failure classes, several variants each. Where a later cell changes state, the
# sample does not have to touch it: the fingerprint comparison below checks every object.
SCENARIOS += [
    # 1. state changed after a definition
    Scenario("class-attribute-tuned-later", [
        model("data if data < 10 else MyModel.THRESHOLD"), "MyModel.THRESHOLD = 0.7"], 1),  # sample: not read
    Scenario("class-attribute-overwritten-later", [
        "class MyModel:\n    THRESHOLD = 0.5\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return data > self.THRESHOLD", "MyModel.THRESHOLD = 0.9"], 0.7),
    Scenario("setattr-on-class", [model("getattr(MyModel, 'labels', ['x'])[data] if data >= 0 else data"),
                                  "setattr(MyModel, 'labels', ['neg', 'pos'])"], -1),  # sample: not read
    Scenario("monkeypatched-method", [
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def post(self, x):\n        return x\n    def predict(self, data):\n        return self.post(data)",
        "def post_v2(self, x):\n    return x * 100", "MyModel.post = post_v2"], 3),
    Scenario("monkeypatched-method-by-lambda", [
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def post(self, x):\n        return x\n    def predict(self, data):\n        return self.post(data)",
        "MyModel.post = lambda self, x: -x"], 3),
    Scenario("class-body-random-weights", [
        "import random\nrandom.seed(7)",
        "class MyModel:\n    weights = [random.random() for _ in range(3)]\n    def __init__(self, artifacts):\n"
        "        pass\n    def predict(self, data):\n        return [round(w * data, 9) for w in self.weights]"], 2),
    Scenario("class-list-mutated-in-place", [
        "class MyModel:\n    stop = ['a']\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [w for w in data.split() if w not in self.stop]",
        "MyModel.stop.append('the')"], "the a cat"),
    Scenario("base-class-attribute-tuned-later", [
        "class Base:\n    scale = 1", "class MyModel(Base):\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return data * self.scale", "Base.scale = 4"], 2),
    Scenario("function-default-changed-later", [
        "def score(x, k=1):\n    return x * k", "score.__defaults__ = (5,)", model("score(data, 1)")], 2),  # not read
    Scenario("function-default-from-global-reassigned-later", [
        "K = 3\ndef score(x, k=K):\n    return x * k", "K = 1000", model("[score(data), K]")], 2),
    Scenario("function-kwdefaults-changed-later", [
        "def score(x, *, k=1):\n    return x * k", "score.__kwdefaults__ = {'k': 7}", model("score(data)")], 2),
    Scenario("function-attribute-set-later", [
        "def score(x):\n    return x * score.factor", "score.factor = 3", model("score(data) if data else 0")], 0),  # not read
    Scenario("singledispatch-overloads-by-annotation", [
        "import functools\n@functools.singledispatch\ndef enc(x):\n    return 'any'",
        "@enc.register\ndef _(x: int):\n    return 'int'", "@enc.register\ndef _(x: str):\n    return 'str'",
        model("[enc(data), enc(1), enc('s'), enc(None)]")], 1.5),
    Scenario("singledispatch-overload-registered-imperatively", [
        "import functools\n@functools.singledispatch\ndef enc(x):\n    return 'any'",
        "def enc_list(x):\n    return 'list'\nenc.register(list, enc_list)", model("[enc(data), enc([])]")], 1),
    Scenario("singledispatch-overload-on-notebook-class", [
        "import functools\nclass Doc:\n    pass\n@functools.singledispatch\ndef enc(x):\n    return 'any'",
        "@enc.register\ndef _(x: Doc):\n    return 'doc'", model("[enc(data), enc(Doc())]")], 1),
    # 7. ordering through cycles
    Scenario("model-registered-by-decorator", [
        "MODEL_REGISTRY = {}\ndef register_model(name):\n    def decorator(cls):\n"
        "        if name in MODEL_REGISTRY:\n            raise ValueError(name)\n"
        "        MODEL_REGISTRY[name] = cls\n        return cls\n    return decorator",
        "@register_model('mine')\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [sorted(MODEL_REGISTRY), MODEL_REGISTRY['mine'] is MyModel]"], 0),
    Scenario("handlers-list-filled-by-decorator", [
        "HANDLERS = []\ndef handler(fn):\n    HANDLERS.append(fn)\n    return fn",
        "@handler\ndef upper(s):\n    return s.upper()\n@handler\ndef rev(s):\n    return s[::-1]",
        model("[h(data) for h in HANDLERS]")], "ab"),
    Scenario("set-filled-by-decorator", [
        "TAGS = set()\ndef tagged(cls):\n    TAGS.add(cls.__name__)\n    return cls",
        "@tagged\nclass Helper:\n    pass",
        "@tagged\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return sorted(TAGS) + [Helper.__name__]"], 0),
    Scenario("registry-with-several-models-and-factory", [
        "REGISTRY = {}\ndef register(name):\n    def wrap(cls):\n        REGISTRY[name] = cls\n        return cls\n    return wrap",
        "@register('small')\nclass Small:\n    size = 1", "@register('large')\nclass Large:\n    size = 10",
        "def build(name):\n    return REGISTRY[name]()",
        model("build(data).size")], "large"),
    # 3. lambdas, partials, closure-made functions (as source)
    Scenario("lambda-in-dict-of-ops", ["OPS = {'sq': lambda x: x * x, 'neg': lambda x: -x}",
                                       model("{k: f(data) for k, f in OPS.items()}")], 3),
    Scenario("lambda-with-default", ["BASE = 10\nadd = lambda x, b=BASE: x + b", model("add(data)")], 1),
    Scenario("two-lambdas-on-one-line", ["inc, dec = (lambda x: x + 1), (lambda x: x - 1)",
                                         model("[inc(data), dec(data)]")], 5),
    Scenario("partial-of-notebook-function", [
        "import functools\ndef power(x, n):\n    return x ** n\nsquare = functools.partial(power, n=2)",
        model("square(data)")], 7),
    Scenario("partial-of-lambda", ["import functools\nscale = functools.partial(lambda k, x: k * x, 3)",
                                   model("scale(data)")], 7),
    Scenario("closure-made-function", [
        "def make_scaler(k):\n    def scale(x):\n        return x * k\n    return scale\ntriple = make_scaler(3)",
        model("triple(data)")], 5),
    Scenario("closure-over-notebook-function", [
        "def clean(s):\n    return s.strip()\ndef compose(f, g):\n    return lambda x: g(f(x))\npipeline = compose(clean, str.upper)",
        model("pipeline(data)")], "  hi "),
    Scenario("closure-made-with-default-from-factory-local", [
        "def make(k):\n    bonus = k + 1\n    def f(x, extra=bonus):\n        return x * k + extra\n    return f\nfn = make(2)",
        model("fn(data)")], 3),
    Scenario("list-of-closures", [
        "def make(k):\n    return lambda x: x + k\nADDERS = [make(i) for i in range(3)]",
        model("[a(data) for a in ADDERS]")], 10),
    Scenario("sorted-key-lambda-class-attribute", [
        "class MyModel:\n    key = staticmethod(lambda kv: -kv[1])\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return sorted(data.items(), key=self.key)[0][0]"], {"a": 1, "b": 3}),
    Scenario("function-transformer-with-lambda", [
        "from sklearn.preprocessing import FunctionTransformer\nimport numpy as np\n"
        "halve = FunctionTransformer(lambda X: X / 2)",
        model("halve.transform(np.asarray(data, dtype=float)).tolist()")], [[2.0, 4.0]]),
    # 2. wrappers
    Scenario("decorator-without-wraps-on-helper", [
        "def logged(fn):\n    def inner(*a, **k):\n        return ['log', fn(*a, **k)]\n    return inner",
        "@logged\ndef helper(x):\n    return x + 1", model("helper(data)")], 1),
    Scenario("np-vectorize-rebinding", [
        "import numpy as np\ndef clip(x):\n    return x if x > 0 else 0\nclip = np.vectorize(clip)",
        model("clip(np.array(data)).tolist()")], [1, -2]),
    Scenario("np-vectorize-decorator", [
        "import numpy as np\n@np.vectorize\ndef double(x):\n    return 2 * x", model("double(np.array(data)).tolist()")], [1, 2]),
    Scenario("stacked-decorators-without-wraps", [
        "def twice(fn):\n    def inner(x):\n        return fn(fn(x))\n    return inner\n"
        "def plus(n):\n    def deco(fn):\n        def inner(x):\n            return fn(x) + n\n        return inner\n    return deco",
        "@twice\n@plus(1)\ndef base(x):\n    return x * 2", model("base(data)")], 1),
    Scenario("wraps-decorator-with-state", [
        "import functools\nCALLS = {'n': 0}\ndef counted(fn):\n    @functools.wraps(fn)\n    def inner(*a):\n"
        "        CALLS['n'] += 1\n        return fn(*a)\n    return inner",
        "@counted\ndef f(x):\n    return x", model("[f(data), f.__name__]")], 4),
    # 4. classes without a class statement
    Scenario("typing-namedtuple", [
        "from typing import NamedTuple\nclass Pair(NamedTuple):\n    a: int\n    b: int = 0",
        model("list(Pair(data))")], 3),
    Scenario("typing-namedtuple-with-method", [
        "from typing import NamedTuple\nclass Pair(NamedTuple):\n    a: int\n    b: int = 1\n"
        "    def total(self):\n        return self.a + self.b", model("Pair(data).total()")], 3),
    Scenario("collections-namedtuple", [
        "import collections\nPoint = collections.namedtuple('Point', ['x', 'y'], defaults=[0])",
        model("Point(data)._asdict()")], 2),
    Scenario("namedtuple-instance-value", [
        "from collections import namedtuple\nCfg = namedtuple('Cfg', 'lr depth')\ncfg = Cfg(0.1, 3)",
        model("[cfg.lr, cfg.depth * data]")], 2),
    Scenario("functional-enum", ["import enum\nColor = enum.Enum('Color', 'RED GREEN')",
                                 model("Color(data).name")], 2),
    Scenario("functional-enum-member-value", ["import enum\nLevel = enum.Enum('Level', {'LOW': 1, 'HIGH': 9})\nDEFAULT = Level.HIGH",
                                              model("[DEFAULT.value, Level(data).name]")], 1),
    Scenario("namedtuple-rebinding-an-earlier-class-name", [
        "class Point:\n    x = 1", "import collections\nPoint = collections.namedtuple('Point', 'x y')",
        model("Point(data, 2).y")], 1),
    Scenario("functional-enum-rebinding-an-earlier-enum", [
        "import enum\nclass Color(enum.Enum):\n    A = 'a'", "Color = enum.Enum('Color', 'RED GREEN')",
        model("Color(data).name")], 2),
    Scenario("type-call-class", ["Box = type('Box', (), {'size': 3})", model("Box.size * data")], 2),
    Scenario("type-call-subclass-of-notebook-class", [
        "class Base:\n    def f(self):\n        return 'base'", "Child = type('Child', (Base,), {'g': 1})",
        model("[Child().f(), Child.g]")], 0),
    # 5. names only in string annotations
    Scenario("string-annotation-dataframe", [
        "import pandas as pd",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data: 'pd.DataFrame'):\n        return list(data.columns)"], {"a": [1], "b": [2]}),
    Scenario("string-annotation-ndarray", [
        "import numpy as np",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data: 'np.ndarray'):\n        return [type(data).__name__, data.shape[0]]"], [1, 2]),
    Scenario("string-annotation-undefined-name-is-fine", [
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data) -> 'Optional[Undefined]':\n        return data"], 1),
    # patterns from public notebooks and code
    Scenario("sklearn-pipeline-global", [
        "import numpy as np\nfrom sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\n"
        "from sklearn.linear_model import LinearRegression",
        "pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))",
        model("[round(float(v), 6) for v in pipe.predict(np.array(data, dtype=float).reshape(-1, 1))]")], [3.0]),
    Scenario("label-map-and-inverse", [
        "LABELS = ['cat', 'dog']\nLABEL2ID = {l: i for i, l in enumerate(LABELS)}\nID2LABEL = {i: l for l, i in LABEL2ID.items()}",
        model("[ID2LABEL[LABEL2ID[data]], len(ID2LABEL)]")], "dog"),
    Scenario("config-dataclass-instance-tuned-later", [
        "import dataclasses\n@dataclasses.dataclass\nclass Config:\n    lr: float = 0.1\n    layers: int = 2",
        "config = Config()", "config.layers = 5", model("[config.layers, config.lr]")], 0),
    Scenario("pandas-series-lookup", [
        "import pandas as pd\nPRICES = pd.Series({'apple': 1.5, 'pear': 2.0})", model("float(PRICES[data])")], "pear"),
    Scenario("numpy-random-generator-state", [
        "import numpy as np\nrng = np.random.default_rng(0)\nNOISE = rng.normal(size=3).round(6).tolist()",
        model("[n + data for n in NOISE]")], 1.0),
    Scenario("dict-of-lambdas-feature-builders", [
        "FEATURES = {'len': len, 'upper': lambda s: sum(c.isupper() for c in s), 'words': lambda s: len(s.split())}",
        model("{k: f(data) for k, f in FEATURES.items()}")], "Hello Big World"),
    Scenario("class-level-compiled-regex-and-constants", [
        "import re\nclass MyModel:\n    PATTERN = re.compile(r'\\d+')\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [int(x) for x in self.PATTERN.findall(data)]"], "a1b22"),
    Scenario("cached-property-on-model", [
        "import functools\nclass MyModel:\n    def __init__(self, artifacts):\n        self.k = 3\n"
        "    @functools.cached_property\n    def table(self):\n        return {i: i * self.k for i in range(5)}\n"
        "    def predict(self, data):\n        return self.table[data]"], 2),
    Scenario("abstract-base-in-notebook", [
        "import abc\nclass Base(abc.ABC):\n    @abc.abstractmethod\n    def transform(self, x):\n        ...",
        "class MyModel(Base):\n    def __init__(self, artifacts):\n        pass\n    def transform(self, x):\n        return x + 1\n"
        "    def predict(self, data):\n        return self.transform(data)"], 1),
    # found by trying notebook patterns nobody here wrote (round 3)
    Scenario("defaultdict-lambda", ["from collections import defaultdict\nCOUNTS = defaultdict(lambda: 7)\nCOUNTS['a'] = 1",
                                    model("[COUNTS[w] for w in data]")], ["a", "b"]),
    Scenario("logger-global", ["import logging\nlog = logging.getLogger('nb')", model("(log.info('x'), data)[1]")], 3),
    Scenario("slots-model", ["class MyModel:\n    __slots__ = ('k',)\n    def __init__(self, artifacts):\n        self.k = 2\n    def predict(self, data):\n        return data * self.k"], 4),
    Scenario("generic-model", ["from typing import Generic, TypeVar\nT = TypeVar('T')",
                               "class MyModel(Generic[T]):\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return data"], 4),
    Scenario("nested-config-class", ["class MyModel:\n    class Config:\n        k = 3\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return data * self.Config.k"], 4),
    Scenario("dataclass-model", ["from dataclasses import dataclass, field\n@dataclass\nclass MyModel:\n    artifacts: dict = field(default_factory=dict)\n    k: int = 5\n    def predict(self, data):\n        return data * self.k"], 2),
    Scenario("itemgetter-global", ["import operator\nGET = operator.itemgetter('a', 'b')", model("list(GET(data))")], {"a": 1, "b": 2}),
    Scenario("maketrans-table", ["TABLE = str.maketrans('abc', 'xyz')", model("data.translate(TABLE)")], "aabbcc"),
    Scenario("function-stored-on-self", ["def helper(x):\n    return x + 1",
        "class MyModel:\n    def __init__(self, artifacts):\n        self.fn = helper\n    def predict(self, data):\n        return self.fn(data)"], 1),
    Scenario("try-import-fallback", ["try:\n    import ujson as json\nexcept ImportError:\n    import json", model("json.dumps(data)")], {"a": 1}),
    Scenario("shadowed-import", ["from math import log", "def log(x):\n    return 'mine'", model("log(data)")], 3),
    Scenario("match-statement", ["class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        match data:\n            case {'x': x}:\n                return x\n            case _:\n                return None"], {"x": 4}),
    Scenario("generator-helper", ["def pairs(xs):\n    for a, b in zip(xs, xs[1:]):\n        yield a + b", model("list(pairs(data))")], [1, 2, 3]),
    Scenario("simplenamespace-config", ["import types\nCFG = types.SimpleNamespace(k=4, name='n')", model("[data * CFG.k, CFG.name]")], 2),
    Scenario("decimal-fraction-date", ["import decimal, fractions, datetime\nD = decimal.Decimal('1.10')\nF = fractions.Fraction(1, 3)\nDAY = datetime.date(2024, 1, 2)",
                                       model("[str(D * 2), str(F * 3), DAY.isoformat()]")], 0),
    Scenario("class-decorator-adds-method", ["def with_describe(cls):\n    cls.describe = lambda self: 'described'\n    return cls",
        "@with_describe\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return self.describe()"], 0),
    Scenario("init-subclass-registry", ["class Base:\n    registry = []\n    def __init_subclass__(cls, **kw):\n        super().__init_subclass__(**kw)\n        Base.registry.append(cls.__name__)",
        "class MyModel(Base):\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return Base.registry"], 0),
    Scenario("partialmethod", ["import functools\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n    def _mul(self, x, k):\n        return x * k\n    triple = functools.partialmethod(_mul, k=3)\n    def predict(self, data):\n        return self.triple(data)"], 2),
    Scenario("pandas-categorical-global", ["import pandas as pd\nCATS = pd.Series(['a', 'b', 'a'], dtype='category')", model("[str(c) for c in CATS.cat.categories] + [int(CATS.cat.codes[data])]")], 1),
    Scenario("structured-array", ["import numpy as np\nARR = np.array([(1, 2.0), (3, 4.0)], dtype=[('a', 'i4'), ('b', 'f8')])", model("float(ARR['b'][data])")], 1),
    Scenario("model-attr-set-after-class", ["class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return MyModel.SCALE * data", "MyModel.SCALE = 7"], 2),
    Scenario("global-set-by-exec", ["exec('K = 9')", model("K + data")], 1),
    Scenario("property-builtin-call", ["class MyModel:\n    def __init__(self, artifacts):\n        self._k = 2\n    def _get(self):\n        return self._k\n    k = property(_get)\n    def predict(self, data):\n        return data * self.k"], 3),
    Scenario("class-name-differs-from-variable", ["class _Impl:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return data + 1", "MyModel = _Impl"], 1),
    Scenario("subclass-body-reads-a-tuned-base-attribute", [
        "class Base:\n    k = 1", "Base.k = 5",
        "class MyModel(Base):\n    k2 = Base.k * 2\n    def __init__(self, artifacts):\n        pass\n"
        "    def predict(self, data):\n        return [self.k, self.k2, data]"], 0),
    # frameworks mixed as notebooks mix them (scikit-learn, pandas, typing)
    Scenario("vectorizer-with-notebook-tokenizer", [
        "import re\nWORD = re.compile(r'[a-z]+')\ndef my_tokenize(text):\n    return WORD.findall(text.lower())",
        "from sklearn.feature_extraction.text import CountVectorizer\nVEC = CountVectorizer(tokenizer=my_tokenize, token_pattern=None).fit(['Good day', 'bad day'])",
        model("VEC.transform([data]).toarray().tolist()")], "good GOOD bad"),
    Scenario("vectorizer-with-lambda-preprocessor", [
        "from sklearn.feature_extraction.text import TfidfVectorizer\nTF = TfidfVectorizer(preprocessor=lambda s: s.replace('!', ' ')).fit(['aa bb!', 'bb cc'])",
        model("[round(v, 6) for v in TF.transform([data]).toarray()[0]]")], "aa! cc"),
    Scenario("pipeline-with-notebook-transformer-class", [
        "import numpy as np\nfrom sklearn.base import BaseEstimator, TransformerMixin\nfrom sklearn.pipeline import Pipeline\nfrom sklearn.linear_model import LinearRegression",
        "class AddSquares(BaseEstimator, TransformerMixin):\n    def __init__(self, power=2):\n        self.power = power\n    def fit(self, X, y=None):\n        return self\n    def transform(self, X):\n        return np.hstack([X, X ** self.power])",
        "PIPE = Pipeline([('sq', AddSquares(power=3)), ('lr', LinearRegression())]).fit(np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([1.0, 8.0, 27.0, 64.0]))",
        model("[round(float(v), 6) for v in PIPE.predict(np.array(data).reshape(-1, 1))]")], [5.0]),
    Scenario("column-transformer-function-transformer", [
        "import numpy as np, pandas as pd\nfrom sklearn.compose import ColumnTransformer\nfrom sklearn.preprocessing import FunctionTransformer, OneHotEncoder",
        "DF = pd.DataFrame({'n': [1.0, 10.0], 'c': ['x', 'y']})\nCT = ColumnTransformer([('log', FunctionTransformer(np.log1p), ['n']), ('oh', OneHotEncoder(), ['c'])]).fit(DF)",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return [round(float(v), 6) for v in CT.transform(pd.DataFrame(data)).ravel()]"],
        [{"n": 3.0, "c": "y"}]),
    Scenario("model-is-a-sklearn-estimator-subclass", [
        "from sklearn.base import BaseEstimator\nclass MyModel(BaseEstimator):\n    def __init__(self, artifacts=None, k=3):\n        self.artifacts = artifacts\n        self.k = k\n    def predict(self, data):\n        return [x * self.k for x in data]"], [1, 2]),
    Scenario("dataframe-lookup-with-loc", [
        "import pandas as pd\nPRICES = pd.DataFrame({'sku': ['a', 'b'], 'price': [1.5, 2.25]}).set_index('sku')",
        model("float(PRICES.loc[data, 'price'])")], "b"),
    Scenario("enum-keys-in-global-dict", [
        "import enum\nclass Color(enum.Enum):\n    RED = 'red'\n    BLUE = 'blue'", "WEIGHT = {Color.RED: 1, Color.BLUE: 2}",
        model("WEIGHT[Color(data)]")], "blue"),
    Scenario("callable-object-helper", [
        "class Scorer:\n    def __init__(self, w):\n        self.w = w\n    def __call__(self, x):\n        return x * self.w", "SCORE = Scorer(4)",
        model("SCORE(data)")], 2),
    Scenario("apply-helper-on-dataframe", [
        "import pandas as pd\ndef band(x):\n    return 'hi' if x > 5 else 'lo'",
        model("pd.DataFrame(data)['v'].apply(band).tolist()")], [{"v": 3}, {"v": 9}]),
    Scenario("json-config-loaded-from-file", [
        "import json, tempfile, os\n_p = os.path.join(tempfile.mkdtemp(), 'c.json')\nwith open(_p, 'w') as f:\n    json.dump({'k': 3}, f)\nCONFIG = json.load(open(_p))",
        model("data * CONFIG['k']")], 2),
    Scenario("staticmethod-reads-constant", ["RATE = 0.25",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n    @staticmethod\n    def tax(x):\n        return x * RATE\n    def predict(self, data):\n        return self.tax(data)"], 8),
    Scenario("fitted-kmeans-and-scaler", [
        "import numpy as np\nfrom sklearn.cluster import KMeans\nfrom sklearn.preprocessing import StandardScaler\nX = np.array([[0.0, 0.0], [0.1, 0.1], [5.0, 5.0], [5.1, 5.1]])\nSC = StandardScaler().fit(X)\nKM = KMeans(n_clusters=2, n_init=3, random_state=0).fit(SC.transform(X))",
        model("[int(v) for v in KM.predict(SC.transform(np.array(data)))] ")], [[0.0, 0.0], [5.0, 5.0]]),
    Scenario("global-list-of-pairs-built-in-loop", ["RULES = []\nfor w, s in [('good', 1), ('bad', -1)]:\n    RULES.append((w, s))",
        model("sum(s for w, s in RULES if w in data.split())")], "good good bad"),
    Scenario("helper-with-kwargs-and-star-args", ["def combine(*parts, sep='-', **extra):\n    return sep.join(parts) + str(sorted(extra))",
        model("combine(*data, sep='+', z=1)")], ["a", "b"]),
    Scenario("model-with-class-method-constructor", [
        "class MyModel:\n    def __init__(self, artifacts, scale=1):\n        self.scale = scale\n    @classmethod\n    def doubled(cls):\n        return cls({}, scale=2)\n    def predict(self, data):\n        return data * self.scale + self.doubled().scale"], 3),
    Scenario("typed-dict-and-protocol", ["from typing import TypedDict, Protocol\nclass Row(TypedDict):\n    x: int\nclass HasX(Protocol):\n    x: int",
        "class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data: Row) -> int:\n        return data['x'] + 1"], {"x": 1}),
    # earlier `def`s of a name that values still hold: rebuilt from their own source
    Scenario("functions-defined-in-a-loop", ["OPS = {}\nfor n in (1, 2, 3):\n    def op(x, n=n):\n        return x * n\n    OPS[n] = op", model("[OPS[k](data) for k in sorted(OPS)]")], 2),
    Scenario("dict-made-before-the-helper-was-edited", ["def score(x):\n    return x + 1", "TABLE = {'s': score}", "def score(x):\n    return x + 100",
                                                        model("[TABLE['s'](data), score(data)]")], 1),
    Scenario("old-helper-calls-a-global-that-changed", ["def g(x):\n    return 1", "def f(x):\n    return g(x) * 10", "HOLD = [f]", "def f(x):\n    return -1", "def g(x):\n    return 2",
                                                       model("[HOLD[0](data), f(data)]")], 0),
    # values that refer to notebook definitions, to each other, or are large
    Scenario("instance-with-getstate", ["class Cache:\n    def __init__(self):\n        self.data = {'a': 1}\n        self.tmp = object()\n    def __getstate__(self):\n        return {'data': self.data}\n    def __setstate__(self, st):\n        self.data = st['data']\n        self.tmp = None",
        "C = Cache()\nC.data['b'] = 2", model("sorted(C.data.items())")], 0),
    Scenario("slots-instance-value", ["class P:\n    __slots__ = ('x', 'y')\n    def __init__(self, x, y):\n        self.x, self.y = x, y", "PT = P(1, 2)", model("PT.x + PT.y + data")], 1),
    Scenario("frozen-dataclass-value", ["from dataclasses import dataclass\n@dataclass(frozen=True)\nclass Cfg:\n    k: int\n    tags: tuple", "CFG = Cfg(3, ('a',))", model("[CFG.k * data, list(CFG.tags)]")], 2),
    Scenario("instance-holding-notebook-function", ["def double(x):\n    return 2 * x", "class Step:\n    def __init__(self, fn):\n        self.fn = fn\n    def run(self, x):\n        return self.fn(x)", "STEPS = [Step(double), Step(abs)]",
        model("[s.run(data) for s in STEPS]")], -3),
    Scenario("value-referencing-the-model-class", ["class MyModel:\n    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n        return [c.__name__ for c in KNOWN] + [data]", "KNOWN = [MyModel, int]"], 1),
    Scenario("model-instance-as-default-attribute", ["class MyModel:\n    def __init__(self, artifacts, k=1):\n        self.k = k\n    def predict(self, data):\n        return data * self.k + MyModel.fallback.k", "MyModel.fallback = MyModel({}, k=10)"], 2),
    Scenario("enum-members-in-list-value", ["import enum\nclass Level(enum.IntEnum):\n    LOW = 1\n    HIGH = 2", "ORDER = [Level.HIGH, Level.LOW]", model("[int(x) * data for x in ORDER]")], 3),
    Scenario("nested-dict-of-numpy", ["import numpy as np\nW = {'layer1': {'w': np.arange(6).reshape(2, 3), 'b': np.zeros(3)}, 'names': ['a', 'b', 'c']}",
        model("dict(zip(W['names'], (np.array(data) @ W['layer1']['w'] + W['layer1']['b']).tolist()))")], [1, 1]),
    Scenario("pandas-multiindex-value", ["import pandas as pd\nMI = pd.DataFrame({'v': [1, 2, 3, 4]}, index=pd.MultiIndex.from_tuples([('a', 1), ('a', 2), ('b', 1), ('b', 2)]))",
        model("int(MI.loc[(data, 2), 'v'])")], "b"),
    Scenario("big-python-list-value", ["BIG = list(range(200000))", model("BIG[data] + len(BIG)")], 5),
    Scenario("value-cycle-through-instance", ["class Node:\n    def __init__(self, name):\n        self.name = name\n        self.peer = None", "A = Node('a')\nB = Node('b')\nA.peer = B\nB.peer = A", model("[A.peer.name, A.peer.peer.name]")], 0),
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
    instance = cls(artifacts={})  # the sample converted as a deployment converts it
    expected = to_json_compatible(instance.predict(convert_input(instance.predict, scenario.sample)))
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
    assert len(SCENARIOS) >= 145
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
