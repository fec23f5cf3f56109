"""Shared fixtures: real components only (a real IPython shell, real temporary folders)."""
from __future__ import annotations

import itertools
import os
import tempfile
import textwrap

import pytest

# Keep IPython's history and profile out of the user's home while tests run.
os.environ.setdefault("IPYTHONDIR", tempfile.mkdtemp(prefix="vj-ipythondir-"))


class Shell:
    """A real IPython InteractiveShell with a `run(code)` that fails the test on a cell error."""

    def __init__(self, ip):
        self.ip = ip

    @property
    def ns(self) -> dict:
        return self.ip.user_ns

    def run(self, code: str):
        result = self.ip.run_cell(code, store_history=True)
        result.raise_error()
        return result.result

    def run_failing(self, code: str) -> BaseException:
        """Run a cell that must fail; return its exception."""
        result = self.ip.run_cell(code, store_history=True)
        error = result.error_in_exec or result.error_before_exec
        assert error is not None, "the cell was expected to fail"
        return error


@pytest.fixture
def shell():
    """A fresh namespace in IPython's real shell (the singleton, reset per test)."""
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.reset(new_session=True)
    # reset() keeps the compiler's __future__ flags: one test's `from __future__ import
    # annotations` would otherwise turn every later test's annotations into strings
    ip.compile.flags &= ~__import__("__future__").annotations.compiler_flag
    yield Shell(ip)
    ip.reset(new_session=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


_package_counter = itertools.count()


@pytest.fixture
def make_package(shell, tmp_path):
    """Run class source in the real shell, capture it, save it as a package; return its path."""
    from verta_jupyter.capture import capture_model
    from verta_jupyter.package.format import MISSING

    def make(source: str, name: str, sample=MISSING, artifact_keys=()):
        shell.run(textwrap.dedent(source))
        captured = capture_model(shell.ns[name], shell.ns)
        return captured.save(tmp_path / f"pkg-{name}-{next(_package_counter)}", sample_input=sample,
                             artifact_keys=artifact_keys)

    return make


#: Variables that say where tests would write and as whom (a developer's real tracking server
#: and its credentials) or that change what the package does. Every test starts without them,
#: and so does every process a test starts (children inherit os.environ); a test that needs one
#: sets it with monkeypatch. VERTA_JUPYTER_PORTABLE stays: scripts/test.sh sets it on purpose.
SCRUBBED_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_AUTH", "VERTA_JUPYTER_STORE", "VERTA_JUPYTER_MLFLOW_NAMESPACE",
    "VERTA_JUPYTER_WORKER_MEMORY", "VERTA_JUPYTER_WORKER_MESSAGE_LIMIT",
    "VERTA_JUPYTER_SECRET_SCAN_BUDGET", "VERTA_JUPYTER_PROGRESS_MIN_BYTES",
    "VERTA_JUPYTER_ENV_INSTALLER",
)


def scrubbed(name: str) -> bool:
    return name in SCRUBBED_VARIABLES or name.startswith("MLFLOW_TRACKING_")


@pytest.fixture(autouse=True)
def no_developer_tracking_environment(monkeypatch):
    """A developer's MLFLOW_TRACKING_URI, VERTA_JUPYTER_STORE or credentials must never route a
    test (or a worker or CLI process it starts) to their real server."""
    for name in [n for n in os.environ if scrubbed(n)]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_current_run_between_tests():
    """`set_experiment_run` remembers the process's current run (the magic's default target);
    each test starts without one, whatever the tests before it did."""
    from verta_jupyter.tracking import client

    client._current_run = None
    yield
    client._current_run = None
