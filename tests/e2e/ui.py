"""What a person does in JupyterLab 4 and Notebook 7, as Playwright steps that work in both.

Clicks go through the real menus and widgets. What is read from the page's JavaScript is only
whether the notebook's kernel is connected and idle, and whether its cells have run (the server
runs with `expose_app_in_browser`, as JupyterLab's own UI tests do): the toolbar's indicator reads
"idle" before any kernel exists, so it cannot tell "ready" from "not started yet".
"""
from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Locator, Page

# A model's answer can wait for a worker's cold start: a fresh Python importing pandas and
# scikit-learn takes 2.5 s on an idle 2-core machine and several times that beside a test
# suite. Every wait for an answer uses this, never Playwright's 5 s default.
ANSWER_TIMEOUT = 90_000

# "ready" once the notebook's kernel is connected and idle; "dialog" while Lab asks which
# kernel to start (it does when its kernel list arrives after the notebook opens).
KERNEL_STATE_JS = """() => {
  const dialogs = Array.from(document.querySelectorAll('.jp-Dialog'));
  if (dialogs.some((d) => d.textContent.includes('Select Kernel'))) return 'dialog';
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
      && widget.sessionContext.session.kernel;
  const ready = !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
  return ready ? 'ready' : false;
}"""

# True once every code cell has run (an execution count, none queued) and the kernel is idle.
ALL_CELLS_RAN_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
      && widget.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = widget.content.widgets.filter((cell) => cell.model.type === 'code');
  return cells.every((cell) => cell.model.executionCount !== null
      && !cell.node.querySelector('.jp-InputPrompt').textContent.includes('*'));
}"""


def open_notebook(page: Page, url: str, *, timeout: float = 90_000) -> None:
    """Open a notebook and wait until its kernel is connected and idle."""
    page.goto(url)
    deadline = time.monotonic() + timeout / 1000
    while True:
        remaining = max(1.0, (deadline - time.monotonic()) * 1000)
        state = page.wait_for_function(KERNEL_STATE_JS, timeout=remaining).json_value()
        if state == "ready":
            return
        # A person would accept the preselected kernel (the notebook's own Python 3).
        dialog = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
        dialog.get_by_role("button", name="Select", exact=True).click()
        dialog.wait_for(state="detached")


def run_all(page: Page, *, wait: bool = True, timeout: float = 120_000) -> None:
    """Run > Run All Cells from the menu bar; by default wait for every cell to finish."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    if wait:
        page.wait_for_function(ALL_CELLS_RAN_JS, timeout=timeout)


def outputs(page: Page) -> Locator:
    """Every rendered cell output (not the cells' source text)."""
    return page.locator(".jp-OutputArea-output")


def cell_error_text(page: Page) -> str:
    """Text of any traceback shown in the notebook ("" if none): for failure messages."""
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    return "\n".join(errors.all_inner_texts())


def shoot(page: Page, folder: Path, name: str) -> Path:
    """Save a full-page screenshot as test evidence; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
