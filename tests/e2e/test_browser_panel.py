"""The predict panel in a real browser, in JupyterLab 4 and Notebook 7: run the quickstart, type
JSON, click Predict, read the answer; then invalid JSON, a model exception and a worker timeout,
each shown in the page, with the panel still answering afterwards. Screenshots of every state go
to test-artifacts/e2e/."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import skip_without_playwright

skip_without_playwright()

from playwright.sync_api import Page, expect  # noqa: E402
from ui import cell_error_text, open_notebook, run_all  # noqa: E402

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

    def predict(self, text: str) -> None:
        self.type(text)
        self.button.click()  # waits until the kernel has re-enabled it

    def type(self, text: str) -> None:
        self.input.fill(text)

    def expect_answer(self, *fragments: str) -> None:
        for fragment in fragments:
            expect(self.result).to_contain_text(fragment)
        expect(self.error).to_have_text("")
        expect(self.button).to_be_enabled()


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
    # The editor starts with the logged sample.
    expect(panel.input).to_have_value(re.compile(r'"text":\s*"the quick brown fox"'))
    shots(page, "1-ran")

    panel.predict('{"text": "The incredible journey of a mapmaker"}')
    panel.expect_answer('"words": 3', '"longest": "incredible"')
    shots(page, "2-predicted")

    panel.type('{"text": "unterminated')
    expect(panel.error).to_contain_text("Invalid JSON")
    expect(panel.error).to_contain_text("line 1")
    expect(panel.button).to_be_disabled()
    shots(page, "3-invalid-json")

    panel.predict('{"text": "fixed at last"}')
    panel.expect_answer('"words": 3', '"longest": "fixed"')
    shots(page, "4-recovered")


def test_model_exception_and_timeout(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, E2E_NOTEBOOKS / "faults.ipynb")

    panel.predict('{"x": 21}')
    panel.expect_answer('"double": 42')
    shots(page, "1-predicted")

    panel.predict('{"x": 1, "fail": "loudly"}')
    expect(panel.error).to_contain_text("The model raised an exception")
    expect(panel.error).to_contain_text("cannot handle fail='loudly'")
    # The traceback is collapsed, and holds the model's own frames, not the worker's.
    traceback = panel.error.locator(".vj-traceback")
    expect(traceback.locator("pre")).not_to_be_visible()
    traceback.locator("summary").click()
    expect(traceback.locator("pre")).to_contain_text("raise ValueError")
    expect(traceback.locator("pre")).to_contain_text("in predict")
    expect(traceback.locator("pre")).not_to_contain_text("worker.py")
    shots(page, "2-model-exception")

    panel.predict('{"x": 5}')
    panel.expect_answer('"double": 10')

    panel.predict('{"x": 1, "sleep": 60}')
    expect(panel.error).to_contain_text("timed out", timeout=30_000)
    expect(panel.error).to_contain_text("2 s")
    shots(page, "3-timeout")

    # A new worker starts for the next call.
    panel.predict('{"x": 50}')
    panel.expect_answer('"double": 100')
    shots(page, "4-recovered")


def test_dataframe_model_answers_with_a_table(page, jupyter, shots):
    panel = _run_notebook(page, jupyter, REPO / "notebooks" / "dataframe.ipynb")

    panel.predict('[{"rooms": 2, "area": 50}, {"rooms": 1, "area": 20.5}]')
    table = panel.result.locator("table.vj-table")
    expect(table.locator("th")).to_have_text(["price"])
    expect(table.locator("tbody td")).to_have_text(["160000.0", "80500.0"])
    shots(page, "table")
