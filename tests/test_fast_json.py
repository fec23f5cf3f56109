"""JSON encoding with and without orjson: the same strict values either way (no NaN tokens,
floats that round-trip exactly, keys as the known-types conversion makes them), in `dumps` and
in the worker's output path."""
from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verta_jupyter.errors import ErrorKind, JsonConversionError
from verta_jupyter.jsonify import output
from verta_jupyter.jsonify.output import dumps, dumps_plain, to_json_compatible
from verta_jupyter.worker import protocol


def _refuse(token: str):
    raise ValueError(f"non-strict JSON token {token}")


def strict_loads(text: str):
    return json.loads(text, parse_constant=_refuse)


@pytest.fixture(params=["orjson", "json"])
def encoder(request, monkeypatch):
    """Each test runs with orjson (installed by the [test] extra) and without it."""
    if request.param == "orjson":
        assert output._orjson is not None, "orjson is in the [test] extra: pip install -e '.[test]'"
    else:
        monkeypatch.setattr(output, "_orjson", None)
    return request.param


def bits(value: float) -> bytes:
    return struct.pack(">d", value)


def same(a, b) -> bool:
    """Equal JSON values, floats bit for bit (so -0.0 is not 0.0)."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and bits(a) == bits(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES)
def test_the_same_strict_values_with_and_without_orjson(value):
    expected = to_json_compatible(value)
    texts = {}
    for name, module in (("orjson", output._orjson), ("json", None)):
        saved, output._orjson = output._orjson, module
        try:
            texts[name] = dumps(value)
        finally:
            output._orjson = saved
    for text in texts.values():
        assert same(strict_loads(text), expected), text


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=50))
def test_floats_round_trip_bit_for_bit(values):
    assert output._orjson is not None
    assert same(strict_loads(dumps(values)), values)
    assert same(strict_loads(dumps_plain(values)), values)


@pytest.mark.parametrize("value", [5e-324, 1.7976931348623157e308, 0.1 + 0.2, 1e16, 1e-7, -0.0,
                                   123456789012345678.0, 2.0 ** -1074 * 3])
def test_edge_floats_are_exact(encoder, value):
    assert same(strict_loads(dumps([value])), [value])


def test_no_nan_or_infinity_tokens(encoder):
    text = dumps({"a": math.nan, "b": [math.inf, -math.inf], "c": 1.5})
    assert strict_loads(text) == {"a": None, "b": [None, None], "c": 1.5}
    assert "NaN" not in text and "Infinity" not in text


def test_keys_are_converted_as_to_json_compatible_does(encoder):
    value = {1: "int", 2.5: "float", False: "bool", None: "none", uuid.UUID(int=7): "uuid",
             datetime.date(2024, 5, 1): "date"}
    assert strict_loads(dumps(value)) == to_json_compatible(value) == {
        "1": "int", "2.5": "float", "false": "bool", "null": "none",
        "00000000-0000-0000-0000-000000000007": "uuid", "2024-05-01": "date"}


def test_keys_that_collide_are_refused(encoder):
    with pytest.raises(JsonConversionError, match="same JSON string form"):
        dumps({1: "a", "1": "b"})


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: float
    when: datetime.datetime


def test_known_types_have_one_form_whichever_encoder(encoder):
    import numpy as np  # a test dependency: missing, the test fails rather than skips
    value = {"colour": Colour.RED, "level": Level.HIGH, "name": Name("ada"),
             "point": Point(0.5, datetime.datetime(2024, 5, 1, 12, 0, 0, 7,
                                                   tzinfo=datetime.timezone.utc)),
             "id": uuid.UUID(int=1), "array": np.array([1.5, np.nan]), "n": np.int64(3),
             "when": datetime.datetime(2024, 5, 1, 12, 0)}
    assert strict_loads(dumps(value)) == to_json_compatible(value)
    assert strict_loads(dumps(value))["point"]["when"] == "2024-05-01T12:00:00.000007+00:00"


@pytest.mark.parametrize("value", [2 ** 100, -(2 ** 70), "\ud800 lone surrogate", [[[[[[0]]]]]] * 2])
def test_values_past_orjson_limits_fall_back_to_the_standard_encoder(encoder, value):
    assert strict_loads(dumps(value)) == value


def test_nesting_deeper_than_orjson_allows(encoder):
    deep = []
    for _ in range(400):
        deep = [deep]
    assert strict_loads(dumps(deep)) == deep


def test_keyword_arguments_still_reach_json_dumps(encoder):
    assert dumps({"b": 1, "a": [1.0]}, indent=2, sort_keys=True) == '{\n  "a": [\n    1.0\n  ],\n  "b": 1\n}'


def test_dumps_plain_refuses_what_needs_conversion(encoder):
    for value in (datetime.date(2024, 1, 1), Point(1.0, datetime.datetime(2024, 1, 1)),
                  {"a": {1, 2}}):
        with pytest.raises(TypeError):
            dumps_plain(value)


# -- the worker's output path ----------------------------------------------------------------

@pytest.mark.parametrize("value", [
    {"scores": [0.1, 0.2 + 0.1, -0.0, 1e300]}, [math.nan, 1.0], {"big": 2 ** 90},
    {"when": datetime.date(2024, 1, 2), 3: "int key"}, Point(2.5, datetime.datetime(2024, 1, 1)),
])
def test_worker_output_encoding_matches_the_conversion(encoder, value):
    text = protocol.to_json_text(value, root="result", kind=ErrorKind.OUTPUT)
    assert same(strict_loads(text), to_json_compatible(value))


def test_worker_output_encoding_of_a_data_frame(encoder):
    import pandas as pd  # a core dependency
    frame = pd.DataFrame({"x": [0.1, math.nan, 3.0], "label": ["a", "b", None],
                          "n": [1, 2, 3]})
    text = protocol.to_json_text(frame, root="result", kind=ErrorKind.OUTPUT)
    assert strict_loads(text) == to_json_compatible(frame) == [
        {"x": 0.1, "label": "a", "n": 1}, {"x": None, "label": "b", "n": 2},
        {"x": 3.0, "label": None, "n": 3}]


def test_a_real_worker_answers_exact_floats_and_known_types(make_package):
    from verta_jupyter.worker.client import WorkerClient

    package = make_package('''
        import math
        class Floats:
            def __init__(self, artifacts):
                pass
            def predict(self, data):
                return {"thirds": [i / 3 for i in range(data)], "nan": math.nan, "big": 2 ** 80,
                        "tiny": 5e-324}
        ''', "Floats")
    with WorkerClient(package) as worker:
        answer = worker.predict(7)
    assert same(answer, {"thirds": [i / 3 for i in range(7)], "nan": None, "big": 2 ** 80,
                         "tiny": 5e-324})
