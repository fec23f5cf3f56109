"""What a person does in JupyterLab 4 and Notebook 7, as Playwright steps that work in both.

Clicks go through the real menus and widgets. The one thing read from the page's JavaScript is
whether the notebook's kernel is connected and idle (the server runs with
`expose_app_in_browser`, as JupyterLab's own UI tests do): the toolbar's indicator reads "idle"
before any kernel exists, so it cannot tell "ready" from "not started yet".
"""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Locator, Page

KERNEL_IDLE_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = widget && widget.sessionContext && widget.sessionContext.session
      && widget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
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
    # On a busy machine Lab may ask which kernel to start (its kernel list arrived late);
    # a person would accept the preselected Python 3, so do that whenever the dialog shows.
    select_kernel = page.locator(".jp-Dialog").filter(has_text="Select Kernel")
    page.add_locator_handler(
        select_kernel, lambda dialog: dialog.get_by_role("button", name="Select").click()
    )
    page.goto(url)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout)


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
