"""Known types <-> strict JSON: documented forms, error paths, input conversion, round trips."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import subprocess
import sys
import textwrap
import types
import typing
import uuid
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
import pandas as pd
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verta_jupyter.errors import JsonConversionError
from verta_jupyter.jsonify.input import convert_input, from_json_compatible
from verta_jupyter.jsonify.output import dumps, to_json_compatible


def _strict_loads(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str = ""
    when: Optional[dt.date] = None


class Item(pydantic.BaseModel):
    name: str
    price: Decimal
    tags: list[str] = []


# -- documented forms ----------------------------------------------------------------------

FORMS = [
    (None, None), (True, True), (3, 3), (2.5, 2.5), ("é", "é"),
    (float("nan"), None), (float("inf"), None), (-math.inf, None),
    ((1, "a"), [1, "a"]), ({3, 1, 2}, [1, 2, 3]), (frozenset({"b", "a"}), ["a", "b"]),
    (b"\x00hi", "AGhp"), (bytearray(b"hi"), "aGk="),
    (dt.datetime(2024, 5, 6, 7, 8, 9, 10), "2024-05-06T07:08:09.000010"),
    (dt.datetime(2024, 5, 6, tzinfo=dt.timezone.utc), "2024-05-06T00:00:00+00:00"),
    (dt.date(2024, 5, 6), "2024-05-06"), (dt.time(7, 8), "07:08:00"),
    (dt.timedelta(minutes=1, microseconds=500), 60.0005),
    (Decimal("1.10"), "1.10"), (Decimal("NaN"), None),
    (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    (PurePosixPath("/tmp/x"), "/tmp/x"),
    (Color.RED, "red"), (Color.BLUE, 2),
    (Point(1.0, float("nan")), {"x": 1.0, "y": None, "label": "", "when": None}),
    (Item(name="a", price=Decimal("2.50")), {"name": "a", "price": "2.50", "tags": []}),
    ({1: "a", None: "b", False: "c", 1.5: "d"}, {"1": "a", "null": "b", "false": "c", "1.5": "d"}),
    (np.int64(7), 7), (np.float32(0.5), 0.5), (np.float64("nan"), None), (np.bool_(True), True),
    (np.str_("s"), "s"), (np.datetime64("2024-01-02T03:04"), "2024-01-02T03:04"),
    (np.datetime64("NaT"), None), (np.timedelta64(90, "s"), 90.0),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    (np.array([1.0, np.nan, -np.inf]), [1.0, None, None]),
    (np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"), ["2024-01-01", None]),
    (np.array([{"a": np.float64("nan")}], dtype=object), [{"a": None}]),
    (pd.Series([1.0, None], index=["p", "q"]), [1.0, None]),
    (pd.Timestamp("2024-01-02 03:04:05.000000001"), "2024-01-02T03:04:05.000000001"),
    (pd.NaT, None), (pd.NA, None), (pd.Timedelta(seconds=2), 2.0),
]


@pytest.mark.parametrize("value, expected", FORMS, ids=lambda v: type(v).__name__)
def test_documented_form(value, expected):
    assert to_json_compatible(value) == expected
    assert _strict_loads(dumps(value)) == expected


def test_every_form_is_documented():
    text = (Path(__file__).parents[1] / "docs" / "json-types.md").read_text()
    for name in ["numpy", "ndarray", "DataFrame", "Series", "datetime", "date", "time",
                 "timedelta", "Timestamp", "Decimal", "UUID", "Path", "Enum", "set", "frozenset",
                 "tuple", "bytes", "dataclass", "pydantic", "NaN"]:
        assert name in text, name


def test_dataframe_becomes_records_with_column_names_and_nulls():
    df = pd.DataFrame({
        "n": [1, 2], "f": [0.5, np.nan], "s": ["x", None], "b": [True, False],
        "t": pd.to_datetime(["2024-01-01", None]).tz_localize("UTC"),
        "i": pd.array([1, None], dtype="Int64"), "c": pd.Categorical(["u", "v"]),
    }, index=["r1", "r2"])
    assert to_json_compatible(df) == [
        {"n": 1, "f": 0.5, "s": "x", "b": True, "t": "2024-01-01T00:00:00+00:00", "i": 1, "c": "u"},
        {"n": 2, "f": None, "s": None, "b": False, "t": None, "i": None, "c": "v"},
    ]
    assert _strict_loads(dumps(df)) == to_json_compatible(df)


def test_dataframe_matches_pandas_records_for_plain_columns():
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.25, np.nan, 3.0], 7: ["p", "q", "r"]})
    assert to_json_compatible(df) == json.loads(df.to_json(orient="records"))


def test_dataframe_edge_shapes():
    assert to_json_compatible(pd.DataFrame()) == []
    assert to_json_compatible(pd.DataFrame(index=[0, 1])) == [{}, {}]
    with pytest.raises(JsonConversionError, match="unique"):
        to_json_compatible(pd.DataFrame([[1, 2]], columns=["a", "a"]))


# -- errors name the type and the path -------------------------------------------------------

@pytest.mark.parametrize("value, path, type_name", [
    ({"scores": [1, 2, 3, object()]}, 'result["scores"][3]', "object"),
    ([{"a": {1j}}], 'result[0]["a"][0]', "complex"),
    (pd.DataFrame({"a": [1, 2], "b": ["ok", lambda: 0]}), 'result[1]["b"]', "function"),
    (pd.DataFrame({"a": [{"deep": [0, object()]}]}), 'result[0]["a"]["deep"][1]', "object"),
    (np.array([1 + 2j]), "result", "numpy.ndarray of dtype complex128"),
    ({(1, 2): "tuple key"}, 'result["(1, 2)"]', "tuple"),
    ({1: "a", "1": "b"}, "result", "dict"),
    ((x for x in []), "result", "generator"),
])
def test_error_names_type_and_path(value, path, type_name):
    with pytest.raises(JsonConversionError) as info:
        to_json_compatible(value)
    assert info.value.path == path
    assert info.value.type_name == type_name
    assert str(info.value).startswith(f"{path}: a value of type {type_name}")
    assert info.value.codes == ["VJ403"]


def test_error_root_is_configurable_and_names_notebook_classes():
    class Opaque:
        pass

    with pytest.raises(JsonConversionError, match=r'^output\["k"\]: .*Opaque'):
        to_json_compatible({"k": Opaque()}, root="output")


def test_import_does_not_load_numpy_or_pandas():
    code = ("import sys, verta_jupyter.jsonify.output as j; j.to_json_compatible({'a': [1.5, {2}]});"
            "print(sorted(m for m in ('numpy', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- input conversion --------------------------------------------------------------------------

def _module_from_source(source: str) -> types.ModuleType:
    module = types.ModuleType("user_model")
    exec(compile(textwrap.dedent(source), "user_model.py", "exec"), module.__dict__)
    return module


def test_convert_input_dataframe_from_records_with_future_annotations():
    module = _module_from_source("""
        from __future__ import annotations
        import pandas as pd
        class M:
            def predict(self, data: pd.DataFrame):
                return data
    """)
    frame = convert_input(module.M().predict, [{"a": 1, "b": None}, {"a": 2, "b": 0.5}])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["a", "b"] and math.isnan(frame["b"][0])
    columns = convert_input(module.M.predict, {"a": [1, 2]})  # the unbound function skips self
    assert columns["a"].tolist() == [1, 2]
    assert convert_input(module.M().predict, {"a": 1}).shape == (1, 1)


def test_convert_input_string_annotation_resolved_textually_when_name_is_missing():
    module = _module_from_source("""
        from __future__ import annotations
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import numpy as np
        def predict(data: np.ndarray):
            return data
    """)
    array = convert_input(module.predict, [[1, None], [2, 3]])
    assert isinstance(array, np.ndarray) and array.dtype == float and math.isnan(array[0, 1])


def test_convert_input_leaves_unannotated_and_plain_types_alone():
    def predict(data):
        return data

    def typed(data: dict):
        return data

    payload = {"a": [1, 2]}
    assert convert_input(predict, payload) is payload
    assert convert_input(typed, payload) is payload


def test_convert_input_dataclass_and_pydantic_and_reports_the_path():
    def by_point(data: list[Point]):
        return data

    def by_item(data: Item):
        return data

    assert convert_input(by_point, [{"x": 1, "y": 2, "when": "2024-01-01"}]) == [
        Point(1, 2, when=dt.date(2024, 1, 1))]
    assert convert_input(by_item, {"name": "a", "price": "1.5"}).price == Decimal("1.5")
    with pytest.raises(JsonConversionError) as info:
        convert_input(by_point, [{"x": 1, "y": 2}, {"x": 1, "y": 2, "when": "not a date"}])
    assert info.value.path == 'data[1]["when"]'


class Row(typing.TypedDict):
    x: int
    when: dt.date


class Pair(typing.NamedTuple):
    x: float
    when: dt.date


class HasX(typing.Protocol):
    x: int


def test_typed_dict_named_tuple_and_protocol_annotations_take_their_json_forms():
    """A TypedDict refuses isinstance() and a namedtuple is not built from one list: each has
    its own form, converted key by key or field by field."""
    def by_row(data: Row):
        return data

    def by_pair(data: list[Pair]):
        return data

    def by_protocol(data: HasX):
        return data

    assert convert_input(by_row, {"x": 1, "when": "2024-01-02"}) == {"x": 1, "when": dt.date(2024, 1, 2)}
    assert convert_input(by_pair, [[1, "2024-01-02"], {"x": 2, "when": "2024-01-03"}]) == [
        Pair(1.0, dt.date(2024, 1, 2)), Pair(2.0, dt.date(2024, 1, 3))]
    assert convert_input(by_protocol, {"x": 1}) == {"x": 1}
    with pytest.raises(JsonConversionError) as info:
        convert_input(by_pair, [[1, "2024-01-02"], [1, "not a date"]])
    assert info.value.path == "data[1][1]"
    with pytest.raises(JsonConversionError, match="expected a JSON object"):
        convert_input(by_row, [1, 2])


# -- round trips (hypothesis) ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_json_values_are_their_own_form(value):
    assert to_json_compatible(value) == value
    assert _strict_loads(dumps(value)) == value


@given(st.recursive(st.floats() | st.integers() | st.none(),
                    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                    | st.dictionaries(st.integers(), inner, max_size=4), max_leaves=20))
def test_dumps_is_always_strict_json(value):
    _strict_loads(dumps(value))


_finite = st.floats(allow_nan=False, allow_infinity=False)
offsets = st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30))])
KNOWN = [
    (dt.datetime, st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), offsets)),
    (dt.date, st.dates()), (dt.time, st.times()),
    (dt.timedelta, st.timedeltas(min_value=dt.timedelta(days=-999), max_value=dt.timedelta(days=999))),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    (uuid.UUID, st.uuids()), (bytes, st.binary()), (PurePosixPath, st.text(min_size=1).filter(
        lambda s: "\x00" not in s).map(PurePosixPath)),
    (Color, st.sampled_from(Color)), (frozenset[int], st.frozensets(st.integers())),
    (tuple[int, str], st.tuples(st.integers(), st.text())),
    (dict[str, list[dt.date]], st.dictionaries(st.text(), st.lists(st.dates(), max_size=3))),
    (dict[int, Optional[uuid.UUID]], st.dictionaries(st.integers(), st.none() | st.uuids())),
    (dict[uuid.UUID, Decimal], st.dictionaries(st.uuids(), st.decimals(allow_nan=False,
                                                                       allow_infinity=False))),
    (Point, st.builds(Point, _finite, _finite, st.text(),
                      st.none() | st.dates())),
    (Item, st.builds(Item, name=st.text(), price=st.decimals(allow_nan=False, allow_infinity=False),
                     tags=st.lists(st.text(), max_size=3))),
]


@pytest.mark.parametrize("annotation, strategy", KNOWN, ids=lambda v: getattr(v, "__name__", "s"))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_known_type_round_trip(annotation, strategy, data):
    value = data.draw(strategy)
    if isinstance(value, PurePosixPath) and str(value) != str(PurePosixPath(str(value))):
        return
    back = from_json_compatible(_strict_loads(dumps(value)), annotation)
    if annotation is dt.timedelta:  # seconds as a float: exact to the microsecond at this range
        assert abs(back - value) <= dt.timedelta(microseconds=1)
    else:
        assert back == value


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 20).flatmap(lambda n: st.fixed_dictionaries({
    "ints": st.lists(st.integers(-2**53, 2**53), min_size=n, max_size=n),
    "floats": st.lists(finite | st.just(float("nan")), min_size=n, max_size=n),
    "text": st.lists(st.text(), min_size=n, max_size=n),
})))
def test_dataframe_round_trip(columns):
    df = pd.DataFrame(columns)
    back = from_json_compatible(_strict_loads(dumps(df)), pd.DataFrame)
    if len(df) == 0:
        assert back.empty
        return
    # a column of only nulls has no type in JSON: pandas keeps it as None objects
    pd.testing.assert_frame_equal(back.astype({"floats": float}), df, check_dtype=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(finite | st.just(float("nan")) | st.just(float("inf")), min_size=3,
                         max_size=3), min_size=1, max_size=6))
def test_ndarray_round_trip_nonfinite_becomes_nan(rows):
    array = np.array(rows, dtype=float)
    back = from_json_compatible(_strict_loads(dumps(array)), np.ndarray)
    expected = np.where(np.isfinite(array), array, np.nan)
    np.testing.assert_array_equal(back, expected)


# -- abusive values: a clear error, never a RecursionError or a raw ValueError ----------------

def _nested(levels: int, leaf=None) -> list:
    out = [leaf]
    for _ in range(levels):
        out = [out]
    return out


def test_output_nested_past_the_recursion_limit_is_a_conversion_error():
    import numpy as np

    with pytest.raises(JsonConversionError, match=r"^prediction is nested too deeply for JSON "
                       r"here \(past Python's recursion limit of \d+ levels\)") as info:
        to_json_compatible(_nested(100_000, np.float32(1.5)), root="prediction")
    assert info.value.path == "prediction" and info.value.kind == "output"


@dataclasses.dataclass
class TreeNode:
    children: list[TreeNode]


def test_input_nested_past_the_recursion_limit_is_an_input_error():
    data: dict = {"children": []}
    for _ in range(100_000):
        data = {"children": [data]}
    with pytest.raises(JsonConversionError, match=r"^data is nested too deeply") as info:
        from_json_compatible(data, TreeNode)
    assert info.value.kind == "input" and info.value.path == "data"
    assert from_json_compatible({"children": [{"children": []}]}, TreeNode) == \
        TreeNode([TreeNode([])])


def test_oversized_int_is_located_without_recursion():
    from verta_jupyter.jsonify.output import oversized_int_message, oversized_int_path

    value = {"ok": [1, 2**64, True], "deep": _nested(50_000, {"n": 10 ** 5000})}
    path = oversized_int_path(value, root="result")
    assert path == 'result["deep"]' + "[0]" * 50_001 + '["n"]'
    assert oversized_int_path({"ok": [1, 2**64, -(10 ** 4000)]}) is None
    assert "more than 4300 digits" in oversized_int_message('result["n"]')
