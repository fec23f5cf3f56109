"""The harness itself, proven on a trivial notebook: a cell's printed text shows in the page and a
core ipywidgets Button clicked in the browser runs its Python callback in the kernel."""
from __future__ import annotations

from pathlib import Path

import pytest
from harness import skip_without_playwright

skip_without_playwright()

from ui import open_notebook, outputs, run_all  # noqa: E402

pytestmark = pytest.mark.browser

E2E_NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def test_smoke_text_and_widget_click(page, jupyter, shots):
    name = jupyter.add_notebook(E2E_NOTEBOOKS / "smoke.ipynb")
    open_notebook(page, jupyter.notebook_url(name))
    run_all(page)

    outputs(page).filter(has_text="hello from the kernel").wait_for()
    label = page.locator(".vj-test-label")
    assert label.inner_text() == "not clicked"
    page.locator(".vj-test-button").click()
    label.get_by_text("clicked 1").wait_for()
    page.locator(".vj-test-button").click()
    label.get_by_text("clicked 2").wait_for()
    shots(page, "clicked")
