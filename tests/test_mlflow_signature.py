"""MLflow-native signatures, checked against the real mlflow package (.venv-mlflow): the
signature we write by hand equals `mlflow.models.infer_signature` over many sample shapes;
MLflow's schema enforcement, where it happens, is undone so predict sees the JSON that was sent;
an export loads without the type-hint warning and predicts what our rebuilt model predicts."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from mlflow_server import MLFLOW_PYTHON, mlflow_bin  # noqa: F401
from verta_jupyter import load_package
from verta_jupyter.jsonify.input import convert_input
from verta_jupyter.package.mlflow_export import entry_source, export_mlflow
from verta_jupyter.package.mlflow_signature import sample_kind, schema_json, signature_for

pytestmark = pytest.mark.mlflow

#: (sample input, sample output): every JSON shape a notebook's sample takes, and the awkward ones.
SAMPLES = [
    ({"text": "hi"}, {"label": "greeting", "score": 0.9}),
    ({"a": 1, "b": 2.5, "c": True, "d": None}, [1, 2]),
    ({"words": ["a", "b"], "ids": [1, 2]}, {"known": ["a"], "size": 3}),
    ({"n": {"x": 1, "y": "z"}, "m": {"deep": {"deeper": [1.5]}}}, "ok"),
    ({"a": [], "b": {}}, None),
    ({"a": [], "x": 1}, None),
    ({"n": {"x": {}}, "x": 1}, None),
    ({"a": {}}, None),
    ({"n": {"x": None, "y": 1}}, None),
    ({"a": [None, "x"]}, None),
    ({"a": [[1, None]]}, None),
    ({"a": [[1, 2], [3]], "b": [{"k": 1}, {"k": 2, "j": "x"}]}, [[0.5]]),
    ({"a": [None, "x"], "b": [1, None]}, {"a": None}),
    ({"a": 2 ** 40, "s": "é ü \u2603"}, 2 ** 40),
    ([{"text": "a"}, {"text": "b"}], [{"label": "x"}, {"label": "y"}]),
    ([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}], [0.1, 0.2, 0.3]),
    ([{"a": [1, 2], "o": {"p": True}}], [[1]]),
    ([{"a": 1}, {"b": 2}], None),
    ([{"a": 1}, {"a": None}], None),
    ([{"a": {"x": 1}}, {"a": {"y": "s"}}], None),
    ([{"a": 1}, {"a": 2.5}], None),
    ([1, 2, 3], [2, 4, 6]),
    ([0.5, 1.5], 2.0),
    (["cat", "bird"], {"cat": 1}),
    ([True, False], [False, True]),
    ([1, 2.5], 3.5),
    (["a", 1], None),
    ([None], None),
    ([None, "a"], None),
    ([[1, 2], [3, 4]], [3, 7]),
    ([[{"a": 1}]], None),
    ([[], [1]], None),
    ([], []),
    ("plain", "PLAIN"),
    (3, 9),
    (2.5, 6.25),
    (True, False),
    ({"a": [1, "x"]}, None),
    ({"x": [[1], ["a"]]}, None),
]
IDS = [json.dumps(s)[:40] for s, _ in SAMPLES]


def in_mlflow(script: str, payload: object = None, cwd=None, env=None, timeout: float = 180
              ) -> object:
    """Run `script` under the real mlflow's Python with `payload` as JSON on its stdin; it
    prints one JSON line last, which is returned."""
    done = subprocess.run([str(MLFLOW_PYTHON), "-c", script], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


INFER = """
import json, sys, warnings
warnings.simplefilter("ignore")
import logging; logging.disable(logging.WARNING)
from mlflow.models import infer_signature
out = []
for x, y in json.load(sys.stdin):
    row = {}
    for name, value in (("input", x), ("output", y)):
        try:
            row[name] = infer_signature(value).to_dict()["inputs"] if value is not None else None
        except Exception as exc:
            row[name] = "error: " + type(exc).__name__
    try:
        row["both"] = infer_signature(x, y).to_dict() if x is not None else None
    except Exception as exc:
        row["both"] = "error: " + type(exc).__name__
    out.append(row)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def inferred(mlflow_bin):
    return in_mlflow(INFER, SAMPLES)


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=IDS)
def test_the_schema_of_every_sample_is_mlflows_own(inferred, index):
    """Byte for byte the JSON that `infer_signature` puts in MLmodel, for inputs and outputs
    (where MLflow's inference fails, both fall back to one unnamed `any` column)."""
    x, y = SAMPLES[index]
    real = inferred[index]
    for value, theirs in ((x, real["input"]), (y, real["output"])):
        if value is not None:
            assert schema_json(value) == theirs
    ours = signature_for(x, y)
    if ours is not None:
        assert ours == real["both"]


ROUND_TRIP = """
import json, sys, types, warnings
warnings.simplefilter("ignore")
import logging; logging.disable(logging.WARNING)
from mlflow.models import infer_signature
from mlflow.models.utils import _enforce_schema
out = []
for entry, sample, variants in json.load(sys.stdin):
    module = types.ModuleType("entry")
    module.__file__ = "/nonexistent/verta_model_entry.py"  # the package is never read here
    exec(entry, module.__dict__)
    schema = infer_signature(sample).inputs
    row = []
    for x in [sample, *variants]:
        try:
            row.append({"got": module._from_wire(_enforce_schema(x, schema))})
        except Exception as exc:
            row.append({"error": f"{type(exc).__name__}: {exc}"[:300]})
    out.append(row)
print(json.dumps(out))
"""


def variants_of(sample) -> list:
    """Other valid inputs of the sample's shape: a batch where the sample was one item. (Not a
    one-item list for a dict or scalar sample: enforcement makes `[x]` and `x` the same
    one-row DataFrame, which is why MLmodel asks MLflow not to enforce; see
    test_an_export_is_signed_predicts_what_it_was_sent_and_loads_without_warnings.)"""
    kind = sample_kind(sample)
    if kind == "dict":
        return [[sample, sample, sample]]
    if kind == "records":
        return [sample * 3, sample[:1]]
    if kind == "scalar":
        return [[sample, sample, sample]]
    if kind == "scalars":
        return [sample[:1], sample * 2]
    return []


def entry_for(sample) -> str:
    return entry_source("M", "p", "0", sample_kind(sample))


def test_enforcement_is_undone_exactly_for_every_sample_we_sign(mlflow_bin):
    """Where MLflow enforces the schema (an MLflow without the type-hint flag, mlflow.evaluate,
    spark_udf) every input becomes a DataFrame; the entry turns it back into the JSON that was
    sent, for the sample and for batches of it. The samples we refuse to sign are exactly those
    where that is impossible: MLflow rejects or changes the sample itself."""
    signed = [(s, variants_of(s)) for s, _ in SAMPLES if s is not None]
    got = in_mlflow(ROUND_TRIP, [(entry_for(s), s, v) for s, v in signed])
    for (sample, variants), rows in zip(signed, got):
        back = [row.get("got", row.get("error")) for row in rows]
        if sample_kind(sample) is not None:
            assert exact(back) == exact([sample, *variants]), sample
        else:
            assert exact(back[0]) != exact(sample), f"{sample!r} round-trips: it could be signed"


def exact(value) -> str:
    """JSON text: 1 and 1.0 (and True) differ, as they do on the wire."""
    return json.dumps(value, sort_keys=True)


def test_no_signature_where_mlflow_cannot_express_the_sample():
    """{} beside other values, null inside a list, records with different keys or missing
    values, mixed-type lists, nested lists, [] and null: MLflow refuses or changes these
    samples under enforcement (the round-trip test above shows each), so none is signed."""
    unsigned = [s for s, _ in SAMPLES if sample_kind(s) is None]
    assert unsigned == [
        {"a": [], "b": {}}, {"a": {}}, {"a": [None, "x"]}, {"a": [[1, None]]},
        {"a": [None, "x"], "b": [1, None]}, [{"a": 1}, {"b": 2}], [{"a": 1}, {"a": None}],
        [{"a": 1}, {"a": 2.5}], [1, 2.5], ["a", 1], [None], [None, "a"], [[1, 2], [3, 4]],
        [[{"a": 1}]], [[], [1]], [], {"a": [1, "x"]}, {"x": [[1], ["a"]]}]
    assert all(signature_for(s, None) is None for s in unsigned) and signature_for(None) is None


# -- a real export loaded by the real mlflow ---------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: mlflow's Python imports this worktree's verta_jupyter (the entry's optional helpers), not
#: whichever copy its site-packages holds.
MLFLOW_ENV = {**os.environ, "PYTHONPATH": REPO}

ECHO = '''
class Echo:
    """Answers with exactly what predict was handed: its type and value."""

    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"type": type(data).__name__, "data": data}
'''

FRAME = '''
import pandas as pd

class Frame:
    def __init__(self, artifacts):
        pass

    def predict(self, data: pd.DataFrame):
        return {"columns": list(data.columns), "rows": len(data), "total": float(data["x"].sum())}
'''

LOAD_AND_PREDICT = """
import json, sys, warnings
payload = json.load(sys.stdin)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import mlflow
    from mlflow.models import Model, infer_signature
    model = mlflow.pyfunc.load_model(payload["uri"])
    answers = []
    for x in payload["inputs"]:
        try:
            answers.append({"got": model.predict(x)})
        except Exception as exc:
            answers.append({"error": f"{type(exc).__name__}: {exc}"[:500]})
meta = model.metadata
import pandas as pd
sample = payload["sample"]
print(json.dumps({
    "warnings": [str(w.message)[:300] for w in caught],
    "answers": answers,
    "signature": meta.signature.to_dict() if meta.signature else None,
    "inferred": infer_signature(sample, payload["output"]).to_dict(),
    "inferred_frame": (infer_signature(pd.DataFrame(sample)).to_dict()["inputs"]
                       if isinstance(sample, list) and all(isinstance(r, dict) for r in sample)
                       else None),
    "model_uuid": meta.model_uuid, "mlflow_version": meta.mlflow_version,
    "utc_time_created": meta.utc_time_created, "model_id": getattr(meta, "model_id", None),
    "run_id": meta.run_id, "example": meta.load_input_example(model._model_meta_path)
    if hasattr(model, "_model_meta_path") else None,
}))
"""

DICT_INPUTS = [{"text": "a", "n": 2}, [{"text": "a", "n": 2}], [{"text": "b", "n": 1}] * 3,
               [{"text": "a", "n": None}, {"text": None, "n": 2.5}], {"text": "x", "extra": [1, None]},
               {"text": "é", "n": 1.0}, "just a string", [1, 2.5], [], {}, [[1, 2], [3]], 7]


def load_in_mlflow(uri, inputs, sample, output, cwd, env=None) -> dict:
    return in_mlflow(LOAD_AND_PREDICT, {"uri": str(uri), "inputs": inputs, "sample": sample,
                                        "output": output}, cwd=cwd, env=env or MLFLOW_ENV)


def test_an_export_is_signed_predicts_what_it_was_sent_and_loads_without_warnings(
        make_package, tmp_path, mlflow_bin):
    sample = {"text": "hi", "n": 1}
    pkg = make_package(ECHO, "Echo", sample=sample)
    model = load_package(pkg)(artifacts={})
    output = model.predict(sample)
    exported = export_mlflow(pkg, tmp_path / "m")
    got = load_in_mlflow(exported, DICT_INPUTS, sample, output, tmp_path)
    assert [a.get("got", a.get("error")) for a in got["answers"]] == [
        model.predict(x) for x in DICT_INPUTS]
    assert not [w for w in got["warnings"] if "type hint" in w.lower()], got["warnings"]
    assert got["signature"]["inputs"] == got["inferred"]["inputs"]
    assert got["model_uuid"] and len(got["model_uuid"]) == 32
    assert got["mlflow_version"] is None  # mlflow is not installed where the export ran
    assert got["utc_time_created"]


def test_a_typed_dataframe_model_is_signed_like_its_frame(make_package, tmp_path, mlflow_bin):
    """A predict annotated `pd.DataFrame` gets its frame from the JSON records (convert_input),
    through MLflow too; the signature of the records equals MLflow's for that DataFrame."""
    sample = [{"x": 1.5, "name": "a"}, {"x": 2.0, "name": "b"}]
    pkg = make_package(FRAME, "Frame", sample=sample)
    model = load_package(pkg)(artifacts={})
    inputs = [sample, sample * 50, sample[:1], {"x": [1.0, 2.0], "name": ["p", "q"]}]
    got = load_in_mlflow(export_mlflow(pkg, tmp_path / "m"), inputs, sample, None, tmp_path)
    assert [a.get("got", a.get("error")) for a in got["answers"]] == [
        model.predict(convert_input(model.predict, x)) for x in inputs]
    assert got["signature"]["inputs"] == got["inferred"]["inputs"] == got["inferred_frame"]
    assert not [w for w in got["warnings"] if "type hint" in w.lower()], got["warnings"]


WITHOUT_VERTA_JUPYTER = """
import json, sys
sys.modules["verta_jupyter"] = None  # as where the model is served without it: import fails
payload = json.load(sys.stdin)
import mlflow
try:
    model = mlflow.pyfunc.load_model(payload["uri"])
    print(json.dumps({"got": model.predict(payload["input"])}))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


def test_a_typed_model_needs_verta_jupyter_where_it_is_served_and_says_so(make_package, tmp_path,
                                                                         mlflow_bin):
    """Turning JSON into predict's DataFrame is verta_jupyter's job: the export requires it, and
    without it the model refuses to load instead of handing predict a list."""
    from verta_jupyter import __version__

    sample = [{"x": 1.5, "name": "a"}]
    typed = export_mlflow(make_package(FRAME, "Frame", sample=sample), tmp_path / "typed")
    plain = export_mlflow(make_package(ECHO, "Echo", sample={"a": 1}), tmp_path / "plain")
    assert f"verta-jupyter=={__version__}" in (typed / "requirements.txt").read_text().split()
    assert "verta-jupyter" not in (plain / "requirements.txt").read_text()
    refused = in_mlflow(WITHOUT_VERTA_JUPYTER, {"uri": str(typed), "input": sample}, cwd=tmp_path,
                        env=MLFLOW_ENV)
    assert "Frame.predict takes" in refused["error"], refused
    assert f"install verta-jupyter=={__version__}" in refused["error"]
    served = in_mlflow(WITHOUT_VERTA_JUPYTER, {"uri": str(plain), "input": {"a": 1}}, cwd=tmp_path,
                       env=MLFLOW_ENV)
    assert served == {"got": {"type": "dict", "data": {"a": 1}}}
