"""The bad-input matrix: malformed cells, flags and samples through %%verta_model in a real
IPython shell logging to a real LocalStore. Each case fails with its documented code (or
IPython's UsageError for a bad flag), names the user's identifier, and leaves the store
byte-for-byte unchanged."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import pytest
from IPython.core.error import UsageError

from verta_jupyter.errors import NoSampleWarning, NotFoundError, VertaError


@dataclass
class Case:
    id: str
    body: str
    line: str = "--no-panel --sample 1"
    expect: str = ""  # a catalog code, or an exception type name
    names: tuple[str, ...] = ()  # text the message must contain (the user's identifiers)
    setup: str = ""
    absent: tuple[str, ...] = ()  # text it must not contain (the Python API's wording)


def model(predict: str = "return 1", init: str = "pass", extra: str = "") -> str:
    return (f"{extra}class MyModel:\n    def __init__(self, artifacts):\n        {init}\n"
            f"    def predict(self, data):\n        {predict}\n")


CASES = [
    # -- finding the class
    Case("no-class", "x = 1\n", expect="VJ101", names=("no class",)),
    Case("classes-without-predict", "class A:\n    pass\nclass B:\n    pass\n", expect="VJ101",
         names=("A, B", "predict")),
    Case("several-models", model() + "class Other(MyModel):\n    pass\n", expect="VJ102",
         names=("MyModel, Other", "--class MyModel")),
    Case("class-flag-unknown", model(), line="--no-panel --class Missing", expect="VJ101",
         names=("Missing",)),
    Case("class-flag-not-a-class", model(), line="--no-panel --class helper", expect="VJ101",
         names=("helper",), setup="def helper():\n    pass\n"),
    # -- the interface
    Case("predict-missing", "class MyModel:\n    def __init__(self, artifacts):\n        pass\n",
         expect="VJ111", names=("MyModel", "predict")),
    Case("predict-staticmethod", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    @staticmethod\n    def predict(data): return 1\n", expect="VJ112", names=("MyModel.predict", "staticmethod")),
    Case("predict-classmethod", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    @classmethod\n    def predict(cls, data): return 1\n", expect="VJ112", names=("MyModel.predict",)),
    Case("predict-property", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    @property\n    def predict(self): return 1\n", expect="VJ112", names=("MyModel.predict", "property")),
    Case("predict-not-callable", "class MyModel:\n    predict = None\n    def __init__(self, artifacts): pass\n",
         expect="VJ112", names=("MyModel.predict",)),
    Case("predict-no-argument", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    def predict(self): return 1\n", expect="VJ113", names=("MyModel.predict(self)", "cell line 4")),
    Case("predict-two-arguments", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    def predict(self, x, y): return 1\n", expect="VJ113", names=("MyModel.predict(self, x, y)",)),
    Case("predict-keyword-only", "class MyModel:\n    def __init__(self, artifacts): pass\n"
         "    def predict(self, *, data): return 1\n", expect="VJ113", names=("MyModel.predict",)),
    Case("init-missing", "class MyModel:\n    def predict(self, data): return 1\n", expect="VJ114",
         names=("MyModel", "__init__", "cell line 2")),
    Case("init-no-artifacts", "class MyModel:\n    def __init__(self): pass\n    def predict(self, data): return 1\n",
         expect="VJ114", names=("MyModel.__init__(self)",)),
    Case("init-misnamed-artifacts", "class MyModel:\n    def __init__(self, arts): pass\n"
         "    def predict(self, data): return 1\n", expect="VJ114", names=("arts",)),
    Case("init-extra-required", "class MyModel:\n    def __init__(self, artifacts, size): pass\n"
         "    def predict(self, data): return 1\n", expect="VJ114", names=("'size'",)),
    # -- names and values the class uses
    Case("unresolved-name", model("return undefined_helper(data)"), expect="VJ201",
         names=("undefined_helper", "MyModel.predict")),
    Case("unresolved-in-helper", model("return helper(data)",
                                       extra="def helper(x):\n    return not_defined_yet + x\n"),
         expect="VJ201", names=("not_defined_yet", "helper")),
    Case("lock-global", model("return 1 if lock else 0"), expect="VJ202", names=("lock", "lock"),
         setup="import threading\nlock = threading.Lock()\n"),
    Case("generator-global", model("return next(numbers)"), expect="VJ202", names=("numbers",),
         setup="numbers = (i for i in range(3))\n"),
    Case("file-for-writing", model("return log_file.name"), expect="VJ202", names=("log_file",),
         setup="import tempfile\nlog_file = tempfile.TemporaryFile('w')\n"),
    Case("socket-global", model("return str(sock)"), expect="VJ202", names=("sock",),
         setup="import socket\nsock = socket.socket()\n"),
    Case("db-connection", model("return conn.execute('select 1').fetchone()[0]"), expect="VJ202",
         names=("conn",), setup="import sqlite3\nconn = sqlite3.connect(':memory:')\n"),
    Case("display-used", model("display(data)\n        return 1"), expect="VJ204", names=("display",)),
    Case("get-ipython-used", model("return get_ipython().user_ns['x']"), expect="VJ204",
         names=("get_ipython",)),
    Case("stale-instance", model("return helper_obj.value"), expect="VJ205", names=("helper_obj",),
         setup="class Helper:\n    value = 1\nhelper_obj = Helper()\nclass Helper:\n    value = 2\n"),
    # -- secrets
    Case("secret-api-key", model("return API_KEY[:0]"), expect="VJ203", names=("API_KEY", "--allow-secrets"),
         setup='API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"\n', absent=("allow_secrets=",)),
    Case("secret-password", model(init="self.pw = db_password"), expect="VJ203", names=("db_password",),
         setup='db_password = "hunter2"\n'),
    Case("secret-aws-in-dict", model(init="self.c = config"), expect="VJ203", names=("config", "AWS"),
         setup='config = {"region": "eu-west-1", "id": "AKIAIOSFODNN7EXAMPLE"}\n'),
    Case("secret-url-password", model(init="self.dsn = DSN"), expect="VJ203", names=("DSN",),
         setup='DSN = "postgresql://admin:s3cr3tpw@db.internal:5432/prod"\n'),
    Case("secret-literal-in-class", model(init='self.h = {"Authorization": "Bearer sk-abcdefghijklmnopqrstuvwx1234"}'),
         expect="VJ203", names=("Authorization",)),
    # -- artifacts
    Case("artifact-not-logged", model(), line="--no-panel --artifacts never_logged", expect="VJ301",
         names=("never_logged", "--artifacts`"), absent=("`artifacts=`",)),
    Case("artifact-one-of-two-not-logged", model(), line="--no-panel --artifacts vocab,weights",
         expect="VJ301", names=("weights",)),
    Case("artifact-reserved", model(), line="--no-panel --artifacts model.pkl", expect="VJ302",
         names=("model.pkl",)),
    # -- samples
    Case("sample-nan-token", model(), line="--no-panel --sample '{\"a\": NaN}'", expect="VJ303",
         names=('sample["a"]',)),
    Case("sample-lock", model(), line="--no-panel --sample lock", expect="VJ303", names=("lock",),
         setup="import threading\nlock = threading.Lock()\n"),
    Case("sample-name-error", model(), line="--no-panel --sample not_a_variable", expect="UsageError",
         names=("--sample", "not_a_variable")),
    Case("sample-bad-json", model(), line="--no-panel --sample '{\"a\": 1'", expect="UsageError",
         names=("--sample",)),
    Case("sample-flag-without-value", model(), line="--no-panel --sample", expect="UsageError",
         names=("--sample",)),
    # -- running the model
    Case("predict-raises", model('return data["missing"]'), line="--no-panel --sample '{}'",
         expect="VJ402", names=("MyModel.predict", "KeyError", "cell line 6")),
    Case("predict-raises-in-helper", model("return helper(data)", extra="def helper(x):\n    return 1 / x\n"),
         line="--no-panel --sample 0", expect="VJ402", names=("ZeroDivisionError", "cell line 3, in helper")),
    Case("init-raises", model(init='raise RuntimeError("weights missing")'), expect="VJ401",
         names=("MyModel(artifacts=artifacts)", "weights missing", "cell line 4")),
    Case("output-object", model("return {'scores': [1, object()]}"), expect="VJ403",
         names=('result["scores"][1]', "object")),
    Case("output-generator", model("return (x for x in [1])"), expect="VJ403", names=("generator",)),
    Case("rebuild-fails", model(init='self.labels = Path("labels-only-here.txt").read_text()',
                                extra="from pathlib import Path\n"),
         expect="VJ501", names=("MyModel", "FileNotFoundError"),
         setup="from pathlib import Path\nPath('labels-only-here.txt').write_text('x')\n"),
    Case("rebuilt-output-differs", model('return getattr(json, "vj_patched", 0)'), expect="VJ502",
         names=("MyModel.predict", "5", "0"), setup="import json\njson.vj_patched = 5\n"),
    # -- the cell body and the flags themselves
    Case("body-syntax-error", "class MyModel(:\n    pass\n", expect="CellSyntaxError",
         names=("cell line 2", "invalid syntax")),
    Case("body-indentation-error", "class MyModel:\n    def predict(self, data):\n        return 1\n"
         "      x = 2\n", expect="CellSyntaxError", names=("cell line 5", "unindent")),
    Case("body-raises", "x = 1 / 0\n" + model(), expect="ZeroDivisionError"),
    Case("flag-unknown", model(), line="--bogus", expect="UsageError", names=("--bogus",)),
    Case("flag-class-not-identifier", model(), line="--class 'My Model'", expect="UsageError", names=("--class",)),
    Case("flag-artifacts-empty", model(), line="--artifacts ,", expect="UsageError", names=("--artifacts",)),
    Case("flag-run-undefined", model(), line="--run nope", expect="UsageError", names=("nope", "set_experiment_run")),
    Case("flag-run-not-a-run", model(), line="--run not_a_run", expect="UsageError", names=("not_a_run",),
         setup="not_a_run = [1, 2]\n"),
    Case("flag-unbalanced-quote", model(), line="--sample 'oops", expect="UsageError", names=("oops",)),
    Case("already-logged", model(), line="--no-panel --sample 1", expect="AlreadyExistsError",
         names=("baseline", "--overwrite", "not by this cell"), absent=("overwrite=True",),
         setup="%%verta_model --no-panel\n" + model()),
    Case("already-logged-by-the-api", model(), line="--no-panel --sample 1", expect="AlreadyExistsError",
         names=("baseline", "--overwrite"), absent=("overwrite=True",),
         setup=model().replace("MyModel", "ApiModel") + "run.log_model(ApiModel, sample_input=1)\n"),
]


def store_snapshot(root) -> tuple[list[str], list[tuple[str, int]]]:
    """Every metadata row and every blob file: equal snapshots mean an unchanged store."""
    con = sqlite3.connect(f"file:{root / 'metadata.sqlite3'}?mode=ro", uri=True)
    try:
        rows = list(con.iterdump())
    finally:
        con.close()
    blobs = sorted((str(p.relative_to(root)), p.stat().st_size)
                   for p in (root / "blobs").rglob("*") if p.is_file())
    return rows, blobs


@pytest.fixture
def ip(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a case writes stay in its own folder
    shell.run("%load_ext verta_jupyter")
    shell.ip.colors = "nocolor"
    shell.run(f"from verta_jupyter import Client\nclient = Client(store=r'{tmp_path / 'store'}')\n"
              "run = client.set_experiment_run('baseline')\nrun.log_artifact('vocab', ['a', 'b'])\n")
    yield shell
    import json

    if hasattr(json, "vj_patched"):
        del json.vj_patched


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(ip, tmp_path, case):
    if case.setup:
        ip.run(case.setup)
    before = store_snapshot(tmp_path / "store")
    had_model = _has_model(ip)
    error = ip.run_failing(f"%%verta_model {case.line}\n{case.body}")
    if case.expect.startswith("VJ"):
        assert isinstance(error, VertaError), repr(error)
        assert error.codes and error.codes[0] == case.expect, str(error)
        assert f"[{case.expect}]" in str(error)
    elif case.expect == "UsageError":
        assert type(error) is UsageError, repr(error)
    else:
        assert type(error).__name__ == case.expect, repr(error)
    for name in case.names:
        assert name in str(error), f"{name!r} not in {str(error)!r}"
    for words in case.absent:
        assert words not in str(error), f"{words!r} in {str(error)!r}"
    assert store_snapshot(tmp_path / "store") == before
    assert _has_model(ip) == had_model


def _has_model(ip) -> bool:
    try:
        ip.ns["run"].model_info()
    except NotFoundError:
        return False
    return True


def test_a_good_cell_does_change_the_snapshot(ip, tmp_path):
    """The control for the matrix: the snapshot sees a logged model."""
    before = store_snapshot(tmp_path / "store")
    assert any("INSERT INTO \"entities\"" in row for row in before[0])
    ip.run("%%verta_model --no-panel --sample 1\n" + model())
    after = store_snapshot(tmp_path / "store")
    assert after != before and len(after[1]) > len(before[1])
    assert _has_model(ip)


# -- a remedy names the flag or argument of where the user is ---------------------------------

API_CASES = [  # (setup, the call, text the message must contain, text it must not)
    ('API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"\n' + model("return API_KEY[:0]"),
     "run.log_model(MyModel, sample_input=1)", "allow_secrets=True", "--allow-secrets"),
    (model(), "run.log_model(MyModel, artifacts=['never_logged'])", "log_artifact", "--artifacts"),
    (model() + "run.log_model(MyModel, sample_input=1)\n", "run.log_model(MyModel, sample_input=1)", "overwrite=True", "--overwrite"),
]


@pytest.mark.parametrize("setup, call, present, absent", API_CASES,
                         ids=["secret", "artifact", "already-logged"])
def test_python_api_remedies_name_arguments_not_flags(ip, setup, call, present, absent):
    ip.run(setup)
    error = ip.run_failing(call)
    assert present in str(error) and absent not in str(error), str(error)


def test_validate_warnings_use_the_api_wording_and_the_magic_summary_the_flag(ip):
    from IPython.utils.capture import capture_output

    ip.run(model())
    with pytest.warns(NoSampleWarning):
        ip.run("from verta_jupyter import validate\nreport = validate(MyModel, check_rebuild=False)")
    (warning,) = [str(p) for p in ip.ns["report"].problems if p.code == "VJ304"]
    assert "`sample_input=`" in warning and "--sample" not in warning
    with capture_output() as captured:
        ip.run("%%verta_model --no-log --no-panel\n" + model())
    summary = captured.outputs[0].data["text/plain"]
    assert "[VJ304]" in summary and "--sample VALUE" in summary and "sample_input=" not in summary


def test_every_catalog_remedy_speaks_its_contexts_language():
    import re

    from verta_jupyter.catalog import CATALOG

    api_words = re.compile(r"\b(allow_secrets|sample_input|overwrite|check_rebuild)=|`artifacts=`")
    for code, check in CATALOG.items():
        assert not re.search(r"--[a-z]", check.remedy_in("api")), (code, check.remedy)
        assert not api_words.search(check.remedy_in("magic")), (code, check.remedy_in("magic"))
