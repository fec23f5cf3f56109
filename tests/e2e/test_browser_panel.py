"""The predict panel in a real browser, in JupyterLab 4 and Notebook 7: run the quickstart, type
JSON, click Predict, read the answer; then invalid JSON (the result marked stale), a model
exception and a worker timeout, each shown in the page, with the panel still answering
afterwards; the form, the history, the CSV batch mode. Screenshots of every state go to
test-artifacts/e2e/.

Every wait for a model's answer uses ANSWER_TIMEOUT (a worker's cold start on a loaded machine),
never Playwright's 5 s default."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import skip_without_playwright

skip_without_playwright()

from playwright.sync_api import Page, expect  # noqa: E402
from ui import ANSWER_TIMEOUT, cell_error_text, open_notebook, run_all  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
E2E_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


class Panel:
    """The PredictPanel's parts, found by their stable CSS classes."""

    def __init__(self, page: Page):
        self.root = page.locator(".vj-panel")
        self.input = self.root.locator(".vj-input textarea")
        self.button = self.root.locator("button.vj-predict")
        self.result = self.root.locator(".vj-result")
        self.error = self.root.locator(".vj-error")
        self.status = self.root.locator(".vj-status")
        self.history = self.root.locator(".vj-history-item")
        self.tabs = self.root.locator(".vj-editor-tabs .lm-TabBar-tab")

    def show_tab(self, title: str) -> None:
        """Pick the Form or JSON tab (a panel without a form has no tabs)."""
        if self.tabs.count():
            self.tabs.filter(has_text=title).click()

    def predict(self, text: str) -> None:
        self.type(text)
        self.button.click(timeout=ANSWER_TIMEOUT)  # waits until the kernel has re-enabled it

    def type(self, text: str) -> None:
        self.show_tab("JSON")
        self.input.fill(text)

    def expect_settled(self) -> None:
        """The call is over in the page: the status line and the button are no longer busy
        (the kernel sends the error, the status and the button as separate updates)."""
        expect(self.button).to_have_text("Predict", timeout=ANSWER_TIMEOUT)
        expect(self.status).not_to_contain_text("Predicting")

    def expect_answer(self, *fragments: str) -> None:
        for fragment in fragments:
            expect(self.result).to_contain_text(fragment, timeout=ANSWER_TIMEOUT)
        expect(self.error).to_have_text("")
        expect(self.button).to_be_enabled(timeout=ANSWER_TIMEOUT)


def _expect_inside(inner, outer) -> None:
    """`inner`'s box, borders included, lies within `outer`'s (nothing runs out on the right)."""
    a, b = inner.bounding_box(), outer.bounding_box()
    assert a is not None and b is not None
    assert a["x"] >= b["x"] - 0.5 and a["x"] + a["width"] <= b["x"] + b["width"] + 0.5, (a, b)


def _run_notebook(page: Page, jupyter, source: Path) -> Panel:
    name = jupyter.add_notebook(source)
    open_notebook(page, jupyter.notebook_url(name))
    run_all(page)
    assert cell_error_text(page) == "", cell_error_text(page)
    panel = Panel(page)
    expect(panel.root).to_have_count(1)
    panel.root.scroll_into_view_if_needed()
    return panel


def test_quickstart_predict_and_invalid_json(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "quickstart.ipynb")
    # The notebook's own cells ran to the end: the model came back in a fresh process.
    expect(page.locator(".jp-OutputArea-output").filter(has_text="fresh process:")).to_contain_text(
        "'longest': 'cat'")
    # The summary's checks table reads left to right (Notebook 7's stylesheet right-aligns td).
    detail = page.locator(".vj-checks .vj-check-detail").first
    assert detail.evaluate("td => getComputedStyle(td).textAlign") == "left"
    # The editor starts with the logged sample.
    panel.show_tab("JSON")
    _expect_inside(panel.input, panel.root)
    expect(panel.input).to_have_value(re.compile(r'"text":\s*"the quick brown fox"'))
    shots(page, "1-ran")

    panel.predict('{"text": "The incredible journey of a mapmaker"}')
    panel.expect_answer('"words": 3', '"longest": "incredible"')
    shots(page, "2-predicted")

    panel.type('{"text": "unterminated')
    expect(panel.error).to_contain_text("Invalid JSON")
    expect(panel.error).to_contain_text("line 1, column 10: a string starts here and never ends")
    expect(panel.button).to_be_disabled()
    # the previous answer stays, marked as answering an earlier input
    expect(panel.result).to_have_class(re.compile(r"\bvj-stale\b"))
    expect(panel.root.locator(".vj-stale-note")).to_contain_text("earlier input")
    shots(page, "3-invalid-json-stale")

    panel.predict('{"text": "fixed at last"}')
    panel.expect_answer('"words": 3', '"longest": "fixed"')
    expect(panel.result).not_to_have_class(re.compile(r"\bvj-stale\b"))
    expect(panel.root.locator(".vj-stale-note")).to_have_count(0)
    shots(page, "4-recovered")


def test_model_exception_and_timeout(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, E2E_NOTEBOOKS / "faults.ipynb")

    panel.predict('{"x": 21}')
    panel.expect_answer('"double": 42')
    shots(page, "1-predicted")

    panel.predict('{"x": 1, "fail": "loudly"}')
    expect(panel.error).to_contain_text("The model raised an exception", timeout=ANSWER_TIMEOUT)
    expect(panel.error).to_contain_text("cannot handle fail='loudly'")
    panel.expect_settled()
    # said once: the status line has the timing, not the title again
    expect(panel.status).to_contain_text("Failed after")
    expect(panel.status).not_to_contain_text("raised")
    # The traceback is collapsed, and holds the model's own frames, not the worker's.
    traceback = panel.error.locator(".vj-traceback")
    expect(traceback.locator("pre")).not_to_be_visible()
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_contain_text("raise ValueError")
    expect(traceback.locator("pre")).to_contain_text("in predict")
    expect(traceback.locator("pre")).not_to_contain_text("worker.py")
    expect(traceback.locator("pre")).to_contain_text('File "model.py", line')
    expect(traceback.locator("pre")).not_to_contain_text("sha256")
    shots(page, "2-model-exception")

    panel.predict('{"x": 5}')
    panel.expect_answer('"double": 10')

    panel.predict('{"x": 1, "sleep": 60}')
    expect(panel.error).to_contain_text("timed out", timeout=ANSWER_TIMEOUT)
    expect(panel.error).to_contain_text("2 s")
    panel.expect_settled()
    expect(panel.status).to_contain_text("Failed after")
    shots(page, "3-timeout")

    # A new worker starts for the next call.
    panel.predict('{"x": 50}')
    panel.expect_answer('"double": 100')
    shots(page, "4-recovered")


def test_dataframe_model_answers_with_a_table(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "dataframe.ipynb")

    panel.predict('[{"rooms": 2, "area": 50}, {"rooms": 1, "area": 20.5}]')
    table = panel.result.locator("table.vj-table")
    # the first Predict starts a worker that imports pandas and scikit-learn: a cold start
    expect(table.locator("tbody td")).to_have_text(["160000.0", "80500.0"], timeout=ANSWER_TIMEOUT)
    expect(table.locator("thead th")).to_have_text(["", "price"])
    expect(table.locator("tbody th")).to_have_text(["0", "1"])  # the row index, as pandas shows
    _expect_inside(panel.input, panel.root)  # the editor's right border inside the panel
    _expect_inside(panel.root, page.locator(".jp-OutputArea-output").filter(has=panel.root))
    cell = table.locator("tbody td").first
    assert cell.evaluate("td => getComputedStyle(td).textAlign") == "right"
    assert cell.evaluate("td => getComputedStyle(td).borderTopStyle") == "solid"
    shots(page, "table")

    # a list-of-records sample gets a small table editor as its Form tab
    panel.show_tab("Form")
    cells = panel.root.locator(".vj-records .vj-records-cell input")
    expect(cells).to_have_count(4)  # 2 rows x (rooms, area)
    cells.nth(0).fill("3")
    panel.root.locator("button.vj-records-add").click()
    expect(cells).to_have_count(6)
    shots(page, "table-editor")
    panel.button.click(timeout=ANSWER_TIMEOUT)
    expect(table.locator("tbody tr")).to_have_count(3, timeout=ANSWER_TIMEOUT)
    expect(panel.history).to_have_count(2)
    panel.show_tab("JSON")
    expect(panel.input).to_have_value(re.compile(r'"rooms": 3'))


def test_history_lists_calls_and_restores_one(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "quickstart.ipynb")
    panel.predict('{"text": "first call of the day"}')
    panel.expect_answer('"longest": "first"')
    long_text = '{"text": "' + "a rather long sentence " * 6 + '"}'
    panel.predict(long_text)
    panel.expect_answer('"words": 18')
    expect(panel.history).to_have_count(2)
    newest = panel.history.first
    expect(newest).to_contain_text(re.compile(r"✓ \d\d:\d\d:\d\d · .* · \{"))
    expect(newest).to_contain_text("…")  # the long input is cut with an ellipsis
    expect(panel.root.locator(".vj-history-title")).to_contain_text("click an entry to restore")
    # a row reads as a list row: its text starts at the left edge, on one line
    box = newest.bounding_box()
    assert box is not None and box["height"] < 40
    assert newest.evaluate("b => getComputedStyle(b).textAlign") in ("left", "start")
    shots(page, "1-two-calls")

    panel.history.nth(1).click()
    expect(panel.input).to_have_value('{"text": "first call of the day"}')
    expect(panel.result).to_contain_text('"longest": "first"')
    expect(panel.status).to_contain_text("Restored the call from")
    expect(panel.history.nth(1)).to_have_class(re.compile(r"\bvj-history-current\b"))
    shots(page, "2-restored")


def test_form_tab_edit_a_field_and_predict(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "quickstart.ipynb")
    expect(panel.tabs).to_have_text(["Form", "JSON"])
    panel.show_tab("Form")
    field = panel.root.locator(".vj-form-row").filter(has_text="text").locator("input")
    expect(field).to_have_value("the quick brown fox")
    shots(page, "1-form")
    field.fill("a form filled by hand")
    panel.button.click(timeout=ANSWER_TIMEOUT)
    panel.expect_answer('"words": 4', '"longest": "filled"')
    shots(page, "2-predicted")
    panel.show_tab("JSON")  # the JSON editor followed the form
    expect(panel.input).to_have_value(re.compile(r'"text": "a form filled by hand"'))


def test_csv_batch_upload_predict_download(page, jupyter, shots, tmp_path):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "quickstart.ipynb")
    panel.root.get_by_text("Batch: predict a CSV file").click()
    batch = panel.root.locator(".vj-batch")
    expect(batch.locator(".vj-batch-intro")).to_contain_text("choose a CSV file")
    csv_file = tmp_path / "sentences.csv"
    csv_file.write_text("text\nthe cat sat\nan extraordinary afternoon\nhi\n")
    with page.expect_file_chooser() as chooser:  # what a person does: click, pick a file
        batch.locator(".vj-csv").click()
    chooser.value.set_files(str(csv_file))
    expect(batch.locator(".vj-csv-preview")).to_contain_text("sentences.csv: 3 rows × 1 column")
    shots(page, "1-uploaded")
    batch.locator("button.vj-batch-run").click()
    table = batch.locator(".vj-batch-result table")
    expect(table.locator("thead th")).to_have_text(["", "text", "words", "longest"],
                                                   timeout=ANSWER_TIMEOUT)
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody tr").nth(1)).to_contain_text("extraordinary")
    link = batch.locator("a.vj-download")
    expect(link).to_contain_text("sentences-predictions.csv")
    shots(page, "2-predicted")
    with page.expect_download(timeout=ANSWER_TIMEOUT) as info:
        link.click()
    saved = tmp_path / "downloaded.csv"
    info.value.save_as(saved)
    assert saved.read_text().splitlines() == [
        "text,words,longest", "the cat sat,2,cat", "an extraordinary afternoon,2,extraordinary",
        "hi,1,hi"]


def test_editing_and_rerunning_the_model_cell_replaces_its_model(page, jupyter, shots):
    """The main loop of notebook work: edit the %%verta_model cell, run it again. Lab and
    Notebook 7 send the cell's id with each run, so the edited cell is still "this cell"."""
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "quickstart.ipynb")
    cell = page.locator(".jp-CodeCell").filter(has_text="%%verta_model")
    editor = cell.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# edited: a comment is enough to change the cell")
    page.keyboard.press("Shift+Enter")
    summary = cell.locator(".vj-summary")
    expect(summary).to_contain_text("replaced the model this cell logged at", timeout=ANSWER_TIMEOUT)
    summary.scroll_into_view_if_needed()
    shots(page, "rerun-summary")
    expect(cell.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
           ).to_have_count(0)
    panel = Panel(page)
    expect(panel.root).to_have_count(1)  # the cell's new panel; the old one went with its output
    panel.root.scroll_into_view_if_needed()
    panel.predict('{"text": "edited and run again"}')
    panel.expect_answer('"words": 4', '"longest": "edited"')
    shots(page, "rerun-predicted")


def _expect_scrolls_inside(box, panel_root) -> None:
    """`box` lies within the panel, and what does not fit scrolls inside it."""
    _expect_inside(box, panel_root)
    fits = box.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    style = box.evaluate("e => getComputedStyle(e).overflowX")
    assert fits or style in ("auto", "scroll"), (fits, style)


def test_long_values_stay_inside_the_panel(page, jupyter, shots):
    """What real models return: a long unbroken string, a table of 40 columns, an error with a
    long message and a 30-frame traceback, an invalid input on one long line. Each stays in the
    panel (scrolling in its own box), so the Predict button never moves off the page."""
    panel = _run_notebook(page, jupyter, E2E_NOTEBOOKS / "long_values.ipynb")
    output = page.locator(".jp-OutputArea-output").filter(has=panel.root)

    panel.show_tab("Form")  # a long field name: the fields still line up, the name shows whole
    fields = panel.root.locator(".vj-form-row .vj-form-field")
    expect(fields).to_have_count(2)
    lefts = {round(fields.nth(i).bounding_box()["x"]) for i in range(2)}
    assert len(lefts) == 1, lefts
    long_label = panel.root.locator(".vj-form-row").nth(1).locator(".vj-form-label")
    expect(long_label).to_have_text("days_since_the_customer_last_opened_a_support_ticket")
    assert long_label.evaluate("e => e.scrollWidth <= e.clientWidth + 1")  # wrapped, not cut
    label_box = long_label.bounding_box()
    assert label_box["x"] + label_box["width"] <= min(lefts) + 0.5
    shots(page, "0-long-field-name")

    panel.predict('{"width": 20}')
    expect(panel.result).to_contain_text('"width": 20', timeout=ANSWER_TIMEOUT)
    _expect_scrolls_inside(panel.result.locator("pre"), panel.root)
    _expect_inside(panel.root, output)
    shots(page, "1-long-string")

    panel.predict('{"width": 3, "table": true}')
    table = panel.result.locator("table.vj-table")
    expect(table.locator("thead th")).to_have_count(41, timeout=ANSWER_TIMEOUT)
    _expect_scrolls_inside(panel.result.locator(".vj-table-scroll"), panel.root)
    expect(panel.result.locator(".vj-table-shape")).to_contain_text("3 rows × 40 columns")
    _expect_inside(panel.root, output)
    shots(page, "2-wide-table")

    panel.predict('{"width": 20, "fail": true}')
    expect(panel.error).to_contain_text("The model raised an exception", timeout=ANSWER_TIMEOUT)
    panel.expect_settled()
    _expect_inside(panel.error.locator(".vj-error-message"), panel.root)
    expect(panel.error.locator(".vj-error-message")).to_contain_text("whole message ends the traceback")
    traceback = panel.error.locator(".vj-traceback")
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_contain_text("in deep")
    _expect_scrolls_inside(traceback.locator("pre"), panel.root)
    box = traceback.locator("pre").bounding_box()
    assert box is not None and box["height"] < 500, box  # 30 frames scroll in a bounded box
    _expect_inside(panel.history.first, panel.root)
    _expect_inside(panel.root, output)
    shots(page, "3-long-error")

    panel.type('{"width": 1, "note": "' + "unbroken" * 60)
    expect(panel.error).to_contain_text("Invalid JSON")
    _expect_scrolls_inside(panel.error.locator(".vj-error-where"), panel.root)
    _expect_inside(panel.root, output)
    shots(page, "4-long-invalid-input")


# WCAG contrast ratio of an element's text against the first opaque background behind it.
CONTRAST_JS = """(el) => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const behind = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c;
    }
    return [255, 255, 255];
  };
  const channel = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  const lum = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(behind(el));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_dark_theme_keeps_every_state_readable(page, jupyter, shots):
    """Theme > JupyterLab Dark: the summary's marks, the answer, the error, the history and its
    restored entry keep their text readable (the restored entry was white on pale blue)."""
    panel = _run_notebook(page, jupyter, E2E_NOTEBOOKS / "faults.ipynb")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                  "{theme: 'JupyterLab Dark'})")
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    panel.predict('{"x": 21}')
    panel.expect_answer('"double": 42')
    panel.predict('{"x": 1, "fail": "loudly"}')
    expect(panel.error).to_contain_text("The model raised an exception", timeout=ANSWER_TIMEOUT)
    panel.expect_settled()
    readable = {"error": panel.error.locator(".vj-error-message"),
                "failed entry": panel.history.first}
    contrast = {name: part.evaluate(CONTRAST_JS) for name, part in readable.items()}
    panel.history.nth(1).click()  # restore the answer
    expect(panel.history.nth(1)).to_have_class(re.compile(r"\bvj-history-current\b"))
    page.mouse.move(0, 0)  # no hover colour on the entry just clicked
    for name, part in {"answer": panel.result.locator("pre"), "status": panel.status,
                       "restored entry": panel.history.nth(1),
                       "summary mark": page.locator(".vj-summary .vj-check td").first,
                       "summary detail": page.locator(".vj-summary .vj-check-detail").first}.items():
        contrast[name] = part.evaluate(CONTRAST_JS)
    shots(page, "panel")
    # 4.5 is WCAG AA for body text; 3 for the coloured marks and the bold error title's line
    low = {k: round(v, 2) for k, v in contrast.items() if v < (3 if k in ("summary mark", "error") else 4.5)}
    assert not low, f"text too faint in the dark theme: {low}"
