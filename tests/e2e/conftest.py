"""Fixtures for real-browser tests: Debian's Chromium driven by Playwright against real Jupyter
servers (JupyterLab 4 and Notebook 7) on 127.0.0.1.

In CI (`CI=true`) a missing browser is a failure; elsewhere the tests skip with the reason.
Playwright's own browser download is never used: it cannot work here and is not needed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
from harness import in_ci

CHROMIUM = os.environ.get("VJ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
# Playwright's `expect` waits 5 s by default, whatever the page's own timeout: too short for
# anything the kernel does on a loaded machine. Waits for a model's answer use ANSWER_TIMEOUT
# (ui.py) explicitly; this default covers every other check of a kernel-driven change.
EXPECT_TIMEOUT = 30_000


def _unavailable(reason: str):
    if in_ci():
        pytest.fail(f"{reason} (required in CI: run scripts/test.sh, which installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e .[test])")
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT)
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    except Exception as exc:  # a broken browser install is the same as a missing one
        playwright.stop()
        _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture(scope="session", params=["lab", "notebook"])
def jupyter(request, tmp_path_factory):
    """A real JupyterLab 4 / Notebook 7 server in temporary folders, stopped afterwards."""
    from harness import start_server

    if importlib.util.find_spec("jupyterlab") is None or importlib.util.find_spec("notebook") is None:
        _unavailable("jupyterlab/notebook are not installed (pip install -e .[test])")
    server = start_server(request.param, tmp_path_factory.mktemp(f"jupyter-{request.param}"))
    yield server
    leftovers = server.stop()
    assert not leftovers, f"processes outlived the {server.kind} server: {leftovers}"


@pytest.fixture
def page(browser, jupyter, request):
    """A fresh browser page; the test's kernels are shut down afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    # Screenshots are overwritten by name each run; a failure shot from an earlier run would lie.
    failed_shot = ARTIFACTS / f"FAILED-{request.node.name}.png"
    failed_shot.unlink(missing_ok=True)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(failed_shot), full_page=True)
    context.close()
    _shutdown_kernels(jupyter)
    # Each test starts as a new user would, with an empty store: the notebooks log to fixed
    # run names ("quickstart"), and a model another test logged there is not this cell's.
    store = jupyter.base / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()


@pytest.fixture
def shots(jupyter, request):
    """`shots(page, state)` saves test-artifacts/e2e/<test>-<server>-<state>.png."""
    from ui import shoot

    test = request.node.originalname.removeprefix("test_")
    return lambda page, state: shoot(page, ARTIFACTS, f"{test}-{jupyter.kind}-{state}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Let the page fixture see whether the test body failed, to keep a screenshot of it.
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def _shutdown_kernels(server) -> None:
    # Each test opens its own copy of a notebook; its kernel is no use to the next test.
    with urllib.request.urlopen(server.url("api/sessions"), timeout=10) as response:
        sessions = json.load(response)
    for session in sessions:
        request = urllib.request.Request(server.url(f"api/sessions/{session['id']}"), method="DELETE")
        urllib.request.urlopen(request, timeout=30).close()
