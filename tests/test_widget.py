"""PredictPanel logic in plain Python: set values, click, read the widgets — for every state.

The model behind the panel is a real package captured from a real IPython shell, served by a
real worker process (or in-process when asked); sources include a real run in a LocalStore.
"""
from __future__ import annotations

import datetime
import html
import json
import re
import subprocess
import sys
import textwrap
import time

import pytest

from served_models import FAULTY, TABLE, dead
from verta_jupyter.capture import capture_model
from verta_jupyter.panel.widget import InvalidJsonError, PredictPanel, parse_json

pytestmark = pytest.mark.timeout(120)
_NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture
def faulty_package(shell, tmp_path):
    shell.run(FAULTY)
    return capture_model(shell.ns["Faulty"], shell.ns).save(tmp_path / "faulty", sample_input={"x": 1})


@pytest.fixture
def panel(faulty_package):
    made = PredictPanel(faulty_package, timeout=5.0)
    yield made
    made.close()


def cells(page: str, tag: str = "td") -> list[str]:
    """The text of every <td> (or <th>) of an HTML table, in order."""
    return [html.unescape(c) for c in re.findall(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", page, flags=re.S)]


def _set_and_click(panel: PredictPanel, text: str) -> None:
    panel.input.value = text
    panel.predict_button.click()


def test_every_part_has_its_css_class(panel):
    parts = {"vj-input": panel.input, "vj-predict": panel.predict_button, "vj-result": panel.result,
             "vj-error": panel.error, "vj-status": panel.status, "vj-history": panel.history_box,
             "vj-reset": panel.reset_button, "vj-raw-toggle": panel.raw_toggle,
             "vj-snippets": panel.snippets, "vj-model-info": panel.model_info,
             "vj-csv": panel.csv_upload}
    for css, widget in parts.items():
        assert css in widget._dom_classes, css
    assert "vj-panel" in panel._dom_classes and panel.children


def test_prefilled_with_the_logged_example_and_reset(panel):
    assert json.loads(panel.input.value) == {"x": 1}
    panel.input.value = '{"x": 99}'
    panel.reset_button.click()
    assert json.loads(panel.input.value) == {"x": 1} and not panel.reset_button.disabled


def test_sample_input_overrides_the_example(faulty_package):
    panel = PredictPanel(faulty_package, sample_input={"x": 5})
    try:
        assert json.loads(panel.input.value) == {"x": 5}
    finally:
        panel.close()


def test_predict_shows_pretty_json_latency_load_time_and_identity(panel, faulty_package):
    panel.predict_button.click()
    assert panel.error.value == "" and panel.error_kind is None
    assert "&quot;y&quot;: 2" in panel.result.value and "vj-pretty" in panel.result.value
    assert " round trip" in panel.status.value and "model loaded in" in panel.status.value
    assert "isolated worker" in panel.status.value
    assert "Faulty" in panel.model_info.value
    assert panel.model.digest[:12] in panel.model_info.value
    assert str(faulty_package) in panel.model_info.value
    assert repr(panel).startswith("PredictPanel(Faulty, package ")


def test_terminal_text_form_is_whole(panel, shell):
    """A terminal shows the panel as text; ipywidgets cut it at 110 characters, which took the
    end of the one instruction it gives ("or call .predict_json(te…")."""
    data, _ = shell.ip.display_formatter.format(panel)  # IPython's own display path
    assert data["text/plain"] == repr(panel)
    assert data["text/plain"].endswith("or call .predict_json(text))") and "…" not in data["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in data  # front ends still get the widget


def test_predict_json_is_the_button_path(panel):
    text = panel.predict_json('{"x": 4}')
    assert text == '{"y": 8}'
    panel.raw_toggle.value = True
    _set_and_click(panel, '{"x": 4}')
    assert panel.last_output_text == text and text.replace('"', "&quot;") in panel.result.value
    panel.raw_toggle.value = False
    assert "vj-pretty" in panel.result.value and "vj-raw" not in panel.result.value


def test_invalid_json_reports_line_and_column_and_disables_predict(panel):
    panel.input.value = '{\n  "x": 1,\n  "y": \n}'
    assert panel.predict_button.disabled and panel.error_kind == "invalid-json"
    assert "line 4, column 1" in panel.error.value and "Invalid JSON" in panel.error.value
    panel.predict_button.click()  # disabled: nothing happens
    assert not panel.history
    panel.input.value = '{"x": NaN}'
    assert panel.predict_button.disabled and "NaN is not JSON; use null" in panel.error.value
    assert "line 1, column 7" in panel.error.value
    panel.input.value = '{"x": 3}'
    assert not panel.predict_button.disabled and panel.error.value == ""
    panel.predict_button.click()
    assert "&quot;y&quot;: 6" in panel.result.value


@pytest.mark.parametrize("text, words", [
    ('{"text": "unterminated', "a string starts here and never ends"),
    ('{"x": 1,}', "a key in double quotes was expected here"),
    ('{"x": 1} 2', "more text after the end of the JSON value"),
    ('[1 2]', "a comma (or the closing bracket) was expected here"),
    ('', None),
])
def test_invalid_json_messages_are_complete_sentences_with_a_caret(panel, text, words):
    panel.input.value = text
    if words is None:
        assert panel.error.value == ""
        return
    message = html.unescape(panel.error.value)
    assert words in message and not re.search(r"\b(at|starting at)\s*<", panel.error.value)
    assert '<pre class="vj-error-where"' in panel.error.value and "^</pre>" in panel.error.value


@pytest.mark.parametrize("prefix", [0, 30, 180, 5000])
def test_the_caret_points_at_the_mistake_on_a_long_line(panel, prefix):
    """A one-line JSON document pasted from a log: the mistake at column 5,000 is shown in an
    excerpt with the caret under it (the caret used to stop at column 200, under nothing)."""
    text = '{"note": "' + "n" * prefix + '", "x": 1 "y": 2}'
    panel.input.value = text
    where = re.search(r'<pre class="vj-error-where"[^>]*>(.*?)</pre>', panel.error.value, re.S)
    excerpt, caret_line = html.unescape(where.group(1)).split("\n")
    caret = caret_line.index("^")
    assert caret_line == " " * caret + "^"
    assert excerpt[caret] == '"' and excerpt[caret:].startswith('"y"')  # the missing comma's spot
    assert len(excerpt) <= 102  # an excerpt (with its ellipses), never the whole line
    assert excerpt.startswith("…") == (prefix > 100)


def test_a_wide_table_sits_in_its_own_scroll_box(panel, shell):
    from verta_jupyter.panel.render import output_html

    wide = [{f"column_{c}": "v" * 30 for c in range(40)}]
    page = output_html(json.dumps(wide), raw=False)
    assert page.startswith('<div class="vj-table-scroll"><table class="vj-table"')
    assert "1 row × 40 columns; scroll the table sideways for the rest" in page
    assert cells(page) == ["v" * 30] * 40
    assert "vj-table-shape" not in output_html(json.dumps([{"a": 1, "b": 2}]), raw=False)
    assert ".vj-table-scroll { max-width: 100%; max-height: 32em; overflow: auto; }" in \
        panel.children[0].value  # the panel's stylesheet makes it scroll (seen in tests/e2e)


def test_an_edited_input_marks_the_result_stale_until_predict(panel):
    _set_and_click(panel, '{"x": 2}')
    assert not panel.stale and "vj-stale" not in panel.result._dom_classes
    panel.input.value = '{"text": "unterminated'  # invalid: the result stays, marked stale
    assert panel.stale and "vj-stale" in panel.result._dom_classes
    assert "&quot;y&quot;: 4" in panel.result.value and "earlier input" in panel.stale_box.value
    panel.input.value = '{"x": 2}'  # back to the very input it answers: fresh again
    assert not panel.stale and panel.stale_box.value == ""
    panel.input.value = '{"x": 5}'
    assert panel.stale
    panel.predict_button.click()
    assert not panel.stale and "&quot;y&quot;: 10" in panel.result.value


def test_an_error_is_said_once_and_tracebacks_name_model_py(panel):
    _set_and_click(panel, '{"do": "raise"}')
    box = html.unescape(panel.error.value)
    assert box.count("The model raised an exception") == 1
    assert "raised" not in panel.status.value and "Failed after" in panel.status.value
    assert 'File "model.py", line' in box and "in _lookup" in box
    assert str(panel.model.package_dir) not in box and "sha256" not in box


def test_a_long_model_message_is_said_once_in_full(make_package):
    """A model whose message is a page long (a dumped row, a long path): the error box cuts its
    line short and the traceback, folded, ends with the message whole; it was shown twice."""
    package = make_package('''
        class Verbose:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                raise ValueError("no rule for row " + "field=value;" * data["n"] + " end")
    ''', "Verbose", sample={"n": 0})
    panel = PredictPanel(package, timeout=30.0)
    try:
        _set_and_click(panel, '{"n": 200}')
        message = html.unescape(re.search(r'class="vj-error-message">(.*?)</span>', panel.error.value).group(1))
        assert len(message) < 400 and message.endswith("… (the whole message ends the traceback)")
        assert message.startswith("Verbose.predict raised ValueError: no rule for row field=value;")
        trace = html.unescape(re.search(r"<pre>(.*?)</pre>", panel.error.value, re.S).group(1))
        assert trace.rstrip().endswith("field=value; end")  # whole, once
        assert html.unescape(panel.error.value).count("field=value;" * 200) == 1
        _set_and_click(panel, '{"n": 1}')  # a short message is shown whole, as before
        assert "no rule for row field=value; end" in html.unescape(panel.error.value)
        assert "whole message" not in panel.error.value
    finally:
        panel.close()


def test_history_rows_show_icon_time_latency_and_a_cut_input(panel):
    long_text = json.dumps({"x": 1, "note": "w" * 200})
    _set_and_click(panel, long_text)
    (item,) = panel.history_box.children
    label = item.description
    assert re.match(r"✓ \d\d:\d\d:\d\d · +[\d.]+ (s|ms|µs) · \{", label), label
    assert label.endswith("…") and len(label) < 110 and item.tooltip.startswith("Restore: ")
    assert "History" in panel.history_title.value and "restore" in panel.history_title.value
    _set_and_click(panel, '{"x": 3}')
    panel.history_box.children[1].click()
    assert panel.input.value == long_text and not panel.stale
    assert "vj-history-current" in panel.history_box.children[1]._dom_classes
    assert "vj-history-current" not in panel.history_box.children[0]._dom_classes


# -- the form generated from the sample -------------------------------------------------------

FORM_MODEL = """
class Scorer:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"score": data["count"] * 2 + (1 if data["flag"] else 0), "name": data["name"],
                "weight": data["weight"], "tags": data["tags"]}
"""


@pytest.fixture
def form_panel(make_package):
    sample = {"name": "ada", "count": 3, "weight": 0.5, "flag": True, "tags": ["a"]}
    package = make_package(FORM_MODEL, "Scorer", sample=sample)
    made = PredictPanel(package, timeout=10.0)
    yield made
    made.close()


def test_the_form_has_one_typed_field_per_key(form_panel):
    import ipywidgets as widgets

    form = form_panel.form
    assert list(form.fields) == ["name", "count", "weight", "flag", "tags"]
    kinds = {k: type(f) for k, f in form.fields.items()}
    assert kinds == {"name": widgets.Text, "count": widgets.IntText, "weight": widgets.FloatText,
                     "flag": widgets.Checkbox, "tags": widgets.Text}
    tabs = [c for c in form_panel.children if isinstance(c, widgets.Tab)]
    assert tabs and tabs[0].titles == ("Form", "JSON") and tabs[0].children[1] is form_panel.input


def test_form_labels_share_one_width_and_name_their_key_whole():
    """Fields line up in one column whatever the names' lengths (a long name pushed its own
    field out of line), and a name the label cannot hold on one line is its tooltip too."""
    from verta_jupyter.panel.form import LABEL_CHARS, InputForm

    long_name = "days_since_the_customer_last_opened_a_support_ticket"
    form = InputForm({"width": 2, long_name: 3, "tags": ["a"]}, lambda _: None)
    labels = [row.children[0] for row in form.children[:-1]]
    assert [label.value for label in labels] == ["width", long_name, "tags (JSON)"]
    assert {label.layout.width for label in labels} == {f"{LABEL_CHARS + 2}ch"}
    assert labels[1].tooltip == long_name
    short = InputForm({"a": 1, "bb": 2}, lambda _: None)
    assert {row.children[0].layout.width for row in short.children[:-1]} == {"4ch"}


def test_editing_a_field_updates_the_json_and_predict_uses_it(form_panel):
    form = form_panel.form
    form.fields["count"].value = 10
    form.fields["flag"].value = False
    form.fields["name"].value = "grace"
    assert json.loads(form_panel.input.value) == {"name": "grace", "count": 10, "weight": 0.5,
                                                 "flag": False, "tags": ["a"]}
    form_panel.predict_button.click()
    assert json.loads(form_panel.last_output_text) == {"score": 20, "name": "grace",
                                                       "weight": 0.5, "tags": ["a"]}


def test_editing_the_json_updates_the_form_and_a_misfit_is_explained(form_panel):
    form = form_panel.form
    form_panel.input.value = json.dumps({"name": "x", "count": 7, "weight": 2, "flag": False,
                                         "tags": []})
    assert form.fields["count"].value == 7 and form.fields["weight"].value == 2.0
    assert form.fields["tags"].value == "[]" and form.note.value == ""
    form_panel.input.value = json.dumps({"other": 1})
    assert "other keys or types" in form.note.value and form.fields["count"].value == 7
    form.fields["tags"].value = "[1, "  # a JSON field that is not JSON: said, JSON untouched
    assert "'tags' is not JSON" in html.unescape(form.note.value) and json.loads(form_panel.input.value) == {"other": 1}
    form.fields["tags"].value = "[1, 2]"
    assert json.loads(form_panel.input.value)["tags"] == [1, 2] and form.note.value == ""


def test_a_records_sample_gets_a_small_table_editor(make_package, tmp_path):
    from verta_jupyter.panel.form import RecordsForm

    scale = tmp_path / "scale.txt"
    scale.write_text("2")
    package = make_package(TABLE, "Table", artifact_keys=["scale"],
                           sample=[{"a": 1, "b": 2}, {"a": 3, "b": 4.5}])
    panel = PredictPanel(package, artifacts={"scale": scale})
    try:
        table = panel.form
        assert isinstance(table, RecordsForm) and table.kinds == {"a": "int", "b": "float"}
        table.rows[1]["a"].value = 10
        assert json.loads(panel.input.value) == [{"a": 1, "b": 2.0}, {"a": 10, "b": 4.5}]
        table.add_button.click()  # a new row starts as a copy of the last one
        assert len(json.loads(panel.input.value)) == 3
        removes = [w for w in table.grid.children if "vj-records-remove" in w._dom_classes]
        removes[0].click()
        assert json.loads(panel.input.value) == [{"a": 10, "b": 4.5}, {"a": 10, "b": 4.5}]
        panel.predict_button.click()
        assert panel.error_kind is None and cells(panel.result.value)[2] == "29.0"
        panel.input.value = '[{"a": 7, "b": 1}]'  # the JSON drives the table too
        assert table.value() == [{"a": 7, "b": 1.0}] and table.note.value == ""
        panel.input.value = '[{"z": 1}]'
        assert "other columns or types" in table.note.value
    finally:
        panel.close()


def test_no_form_for_a_sample_that_is_a_plain_value(shell, tmp_path):
    shell.run(FAULTY)
    package = capture_model(shell.ns["Faulty"], shell.ns).save(tmp_path / "scalar", sample_input=5)
    panel = PredictPanel(package)
    try:
        assert panel.form is None and panel.input in panel.children
    finally:
        panel.close()


def test_without_an_example_the_editor_starts_empty_and_predict_waits(shell, tmp_path):
    shell.run(FAULTY)
    package = capture_model(shell.ns["Faulty"], shell.ns).save(tmp_path / "no-example")
    panel = PredictPanel(package)
    try:
        assert panel.input.value == "" and panel.predict_button.disabled
        assert panel.reset_button.disabled and panel.error.value == ""
        _set_and_click(panel, '{"x": 1}')
        assert panel.last_output_text == '{"y": 2}'
        panel.input.value = "  "
        assert panel.predict_button.disabled and panel.error_kind is None
    finally:
        panel.close()


def test_parse_json_positions():
    with pytest.raises(InvalidJsonError) as info:
        parse_json("[1,\n 2,,]")
    assert (info.value.line, info.value.column) == (2, 4)


def test_model_exception_is_shown_with_a_collapsible_trimmed_traceback(panel):
    _set_and_click(panel, '{"do": "raise"}')
    assert panel.error_kind == "model" and "vj-error-model" in panel.error.value
    assert "KeyError" in panel.error.value and "<details" in panel.error.value
    assert "in _lookup" in panel.error.value and "worker.py" not in panel.error.value
    assert panel.result.value == "" and not panel.predict_button.disabled
    _set_and_click(panel, '{"x": 2}')
    assert panel.error.value == "" and "&quot;y&quot;: 4" in panel.result.value


def test_output_not_json_compatible_is_its_own_error(panel):
    _set_and_click(panel, '{"do": "object"}')
    assert panel.error_kind == "output" and "Output is not JSON-compatible" in panel.error.value
    assert "result[&quot;bad&quot;]" in panel.error.value
    _set_and_click(panel, '{"x": 1}')
    assert panel.error_kind is None


def test_worker_crash_is_reported_and_the_next_call_works(panel):
    _set_and_click(panel, '{"do": "abort"}')
    assert panel.error_kind == "crash" and "SIGABRT" in panel.error.value
    # said once: the error box says what failed, the status line only when and where
    assert "The worker crashed" in panel.error.value and "crashed" not in panel.status.value
    assert "Failed after" in panel.status.value
    _set_and_click(panel, '{"x": 1}')
    assert panel.error_kind is None and panel.predictor.starts == 2


def test_timeout_is_reported_and_the_next_call_works(faulty_package, tmp_path):
    panel = PredictPanel(faulty_package, timeout=1.5)
    try:
        _set_and_click(panel, json.dumps({"do": "hang", "pidfile": str(tmp_path / "pid")}))
        assert panel.error_kind == "timeout" and "did not answer within 1.5 s" in panel.error.value
        # the remedy is the panel's own timeout, never the worker's internals
        assert "run.panel(timeout=60)" in panel.error.value and "WorkerClient" not in panel.error.value
        _set_and_click(panel, '{"x": 1}')
        assert panel.error_kind is None and "&quot;y&quot;: 2" in panel.result.value
    finally:
        panel.close()


def test_megabytes_of_prints_do_not_disturb_the_panel(panel):
    _set_and_click(panel, '{"do": "shout", "megabytes": 8, "x": 5}')
    assert panel.error_kind is None and "&quot;y&quot;: 10" in panel.result.value


def test_busy_state_blocks_double_submits(panel):
    seen = []

    def during(change):
        seen.append(change["new"])
        if change["new"]:  # a second click while the first call runs
            panel.predict_button.click()
            panel.click_predict()
            seen.append(panel.status.value)

    panel.predict_button.observe(during, names="disabled")
    panel.predict_button.click()
    assert seen[0] is True and "Predicting..." in seen[1] and seen[-1] is False
    assert len(panel.history) == 1 and panel.predict_button.description == "Predict"


def test_history_keeps_calls_and_click_restores(panel):
    _set_and_click(panel, '{"x": 1}')
    _set_and_click(panel, '{"do": "raise"}')
    _set_and_click(panel, '{"x": 7}')
    items = panel.history_box.children
    assert len(items) == 3 and all("vj-history-item" in b._dom_classes for b in items)
    assert items[0].description.startswith("✓ ") and items[1].description.startswith("✗ ")
    assert "raised" in items[1].description and " · {\"x\": 7}" in items[0].description
    items[2].click()  # the oldest
    assert panel.input.value == '{"x": 1}' and "&quot;y&quot;: 2" in panel.result.value
    items = panel.history_box.children
    items[1].click()
    assert panel.error_kind == "model" and panel.input.value == '{"do": "raise"}'


def test_history_is_capped(faulty_package):
    panel = PredictPanel(faulty_package, history_size=2)
    try:
        for x in range(4):
            _set_and_click(panel, json.dumps({"x": x}))
        assert len(panel.history_box.children) == 2
        assert '{"x": 3}' in panel.history_box.children[0].description
    finally:
        panel.close()


def test_python_snippet_runs_and_gives_the_panel_output(panel):
    _set_and_click(panel, '{"x": 12}')
    assert "vj-snippet-python" in panel.snippets.value and "curl" in panel.snippets.value
    python, curl = panel.model.snippets(panel.input.value)
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "{'y': 24}" and json.loads(panel.last_output_text) == {"y": 24}
    body = curl.split("<<'JSON'\n", 1)[1].rsplit("\nJSON", 1)[0]
    assert json.loads(body) == {"x": 12} and "Content-Type: application/json" in curl


def upload(panel: PredictPanel, name: str, content: bytes) -> None:
    """What choosing a file in the browser does to the FileUpload widget."""
    panel.csv_upload.value = ({"name": name, "type": "text/csv", "size": len(content),
                               "content": memoryview(content), "last_modified": _NOW},)


def test_records_output_is_a_pandas_like_table(make_package, tmp_path):
    scale = tmp_path / "scale.txt"
    scale.write_text("2")
    package = make_package(TABLE, "Table", artifact_keys=["scale"])
    panel = PredictPanel(package, artifacts={"scale": scale})
    try:
        _set_and_click(panel, '[{"a": 1, "b": 2}, {"a": 3, "b": 4}]')
        page = panel.result.value
        assert panel.error_kind is None and '<table class="vj-table"' in page
        assert cells(page, "th") == ["", "a", "b", "total", "when", "0", "1"]  # header + index
        assert cells(page) == ["1", "2", "6.0", "2024-01-01T00:00:00", "3", "4", "14.0",
                               "2024-01-01T00:00:00"]
        numbers = re.findall(r'<td style="([^"]*)">6\.0</td>', page)
        assert numbers and "text-align:right" in numbers[0] and "border:1px solid" in numbers[0]
        dates = re.findall(r'<td style="([^"]*)">2024', page)
        assert "text-align:left" in dates[0]
        _set_and_click(panel, '"not a table"')
        assert panel.error_kind == "input" and "Input does not fit" in panel.error.value
    finally:
        panel.close()


def test_csv_batch_one_call_with_all_rows_for_a_table_model(make_package, tmp_path):
    scale = tmp_path / "scale.txt"
    scale.write_text("2")
    package = make_package(TABLE, "Table", artifact_keys=["scale"], sample=[{"a": 1, "b": 2}])
    panel = PredictPanel(package, artifacts={"scale": scale}, csv_row_limit=3)
    try:
        assert panel.batch.mode.value == "table"  # the sample is a list of records
        upload(panel, "rows.csv", b"a,b\n1,2\n3,\n5,6\n7,8\n9,10\n")
        assert panel.batch.rows == [{"a": 1, "b": 2.0}, {"a": 3, "b": None}, {"a": 5, "b": 6.0}]
        assert "rows.csv" in panel.csv_preview.value and "row cap 3" in panel.csv_preview.value
        assert not panel.batch.run_button.disabled and "3 rows" in panel.batch.run_button.description
        panel.batch.run_button.click()
        assert "3 rows predicted" in panel.batch.info.value and "failed" not in panel.batch.info.value
        # the model echoes a and b back (DataFrame.assign): they are not repeated
        assert cells(panel.batch.table.value, "th")[:5] == ["", "a", "b", "total", "when"]
        lines = panel.batch.csv().splitlines()
        assert lines[0] == "a,b,total,when" and lines[1] == "1,2.0,6.0,2024-01-01T00:00:00"
        assert lines[2] == "3,,,2024-01-01T00:00:00"  # null in, null out: empty cells
        assert 'download="rows-predictions.csv"' in panel.batch.download.value
        assert "data:text/csv;charset=utf-8;base64," in panel.batch.download.value
        assert panel.input.value == panel.model.example_text  # the single-input editor is untouched
    finally:
        panel.close()


def test_csv_batch_one_call_per_row_keeps_going_past_a_failing_row(panel):
    assert panel.batch.mode.value == "rows"  # the sample is one object
    upload(panel, "calls.csv", b"x,do\n1,\n2,raise\n3,\n")
    panel.batch.run_button.click()
    results = panel.batch.results
    assert [r.get("y") for r in results] == [2, None, 6]
    assert "KeyError" in results[1]["error"] and "1 failed" in panel.batch.info.value
    assert cells(panel.batch.table.value, "th")[:5] == ["", "x", "do", "y", "error"]
    assert len(panel.history) == 0  # batch calls are not single predictions


def test_csv_batch_stops_sending_rows_after_a_timeout(faulty_package, tmp_path):
    """A hung model times out on row 2; rows 3-6 are not sent (each would wait the whole
    timeout with the kernel busy), and say why; row 1's answer is kept."""
    pidfile = tmp_path / "pid"
    panel = PredictPanel(faulty_package, timeout=1.5)
    try:
        rows = "".join(f"{x},hang,{pidfile}\n" for x in range(3, 7))
        upload(panel, "calls.csv", f"x,do,pidfile\n1,,\n2,hang,{pidfile}\n{rows}".encode())
        started = time.perf_counter()
        panel.batch.run_button.click()
        assert time.perf_counter() - started < 2 * 1.5 + 5  # one timeout, not five
        results = panel.batch.results
        assert results[0]["y"] == 2 and results[1]["error"] == "no answer within 1.5 s (the model's worker was stopped)"
        assert [r["error"] for r in results[2:]] == ["not sent: row 2 timed out"] * 4
        assert "5 failed" in panel.batch.info.value
        assert dead(int(pidfile.read_text()))  # the hung call's own child went with its worker
    finally:
        panel.close()


def test_csv_batch_says_when_a_table_answer_does_not_match_the_rows(panel):
    panel.batch.mode.value = "table"
    upload(panel, "calls.csv", b"x\n1\n2\n")
    panel.batch.run_button.click()
    assert "cannot be matched to the rows" in panel.batch.error.value or \
        "list" in panel.batch.error.value
    assert panel.batch.results == [] and panel.batch.download.value == ""


def test_bad_csv_is_shown_not_raised(panel):
    upload(panel, "bad.csv", b'a,b\n"unterminated\n')
    assert "CSV could not be read: bad.csv" in panel.batch.error.value
    assert panel.batch.run_button.disabled and panel.error_kind is None


def test_load_failure_is_shown_and_the_panel_stays_usable(make_package, tmp_path):
    package = make_package(TABLE, "Table", artifact_keys=["scale"])
    panel = PredictPanel(package, artifacts={"scale": tmp_path / "absent"})
    try:
        _set_and_click(panel, '[{"a": 1, "b": 2}]')
        assert panel.error_kind == "load" and "in __init__" in panel.error.value
        assert not panel.predict_button.disabled and not panel.busy
    finally:
        panel.close()


def test_close_stops_the_worker(faulty_package):
    panel = PredictPanel(faulty_package)
    panel.predict_button.click()
    pid = panel.predictor.pid
    panel.close()
    assert dead(pid)


def test_a_class_is_captured_on_the_fly_and_in_process_mode_works(shell):
    shell.run(textwrap.dedent('''
        class Doubler:
            def __init__(self, artifacts):
                pass
            def predict(self, data):
                return [v * 2 for v in data]
    '''))
    panel = PredictPanel(shell.ns["Doubler"], sample_input=[1, 2], in_process=True)
    try:
        panel.predict_button.click()
        assert panel.last_output_text == "[2, 4]" and "in this kernel" in panel.status.value
        assert "Doubler" in panel.model_info.value
    finally:
        panel.close()


@pytest.fixture
def logged_run(shell, tmp_path):
    """A real run in a real LocalStore, with an artifact and the Table model logged."""
    from verta_jupyter import Client

    (tmp_path / "scale.txt").write_text("3")
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("panel-run")
    run.log_artifact("scale", tmp_path / "scale.txt")
    shell.run(TABLE)
    run.log_model(shell.ns["Table"], artifacts=["scale"], sample_input=[{"a": 1, "b": 1}],
                  namespace=shell.ns)
    return client, run


def test_a_real_run_is_a_source(logged_run):
    client, run = logged_run
    panel = PredictPanel(run)
    try:
        assert json.loads(panel.input.value) == [{"a": 1, "b": 1}]
        assert "panel-run" in panel.model_info.value and run.id in panel.model_info.value
        panel.predict_button.click()
        assert panel.error_kind is None and "6.0" in cells(panel.result.value)
    finally:
        panel.close()


def test_a_registered_model_version_is_a_source(logged_run):
    client, run = logged_run
    version = client.get_or_create_registered_model("pricing").create_version_from_run(run)
    panel = PredictPanel(version)
    try:
        assert "model pricing" in panel.model_info.value and "version 1" in panel.model_info.value
        panel.predict_button.click()
        assert panel.error_kind is None and "6.0" in cells(panel.result.value)
    finally:
        panel.close()


class _DownloadOnly:
    """The duck-typed source protocol: `download_model(path)` + `fetch_artifacts(keys)`
    (what the Verta client's runs offer), delegating to a real run."""

    def __init__(self, run):
        self.name, self.id, self._run = "duck", "d-1", run

    def download_model(self, path):
        return self._run.download_model(path)

    def fetch_artifacts(self, keys):
        return self._run.fetch_artifacts(keys)


def test_anything_with_download_model_and_fetch_artifacts_is_a_source(logged_run):
    panel = PredictPanel(_DownloadOnly(logged_run[1]))
    try:
        assert "run duck" in panel.model_info.value
        panel.predict_button.click()
        assert panel.error_kind is None and "6.0" in cells(panel.result.value)
    finally:
        panel.close()


def test_an_unusable_source_says_what_is_accepted():
    with pytest.raises(TypeError, match="pass a run, a model version, a model package directory"):
        PredictPanel(42)
