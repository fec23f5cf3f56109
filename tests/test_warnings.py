"""Validation warnings reach scripts, CI jobs and papermill runs through `warnings`, as
VertaWarning subclasses carrying the code; the magic shows them once, in its summary."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

from verta_jupyter.catalog import CATALOG
from verta_jupyter.errors import (CapturedByValueWarning, DynamicLookupWarning, NoSampleWarning,
                                  Problem, VertaWarning)

SCRIPT = textwrap.dedent('''\
    import sys, warnings
    from verta_jupyter import Client
    {prelude}

    class MyModel:
        def __init__(self, artifacts):
            pass

        def predict(self, data):
            return data

    run = Client(store=sys.argv[1]).set_experiment_run("nightly")
    logged = run.log_model(MyModel)
    print(repr(logged))
    print("IPython loaded:", "IPython" in sys.modules)
''')
LOG_LINE = 13  # the `run.log_model(MyModel)` line above


def run_script(tmp_path, *python_flags: str, prelude: str = "") -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(prelude=prelude))
    return subprocess.run([sys.executable, *python_flags, str(script), str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_a_plain_script_sees_the_warning_at_its_own_line(tmp_path):
    done = run_script(tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"train.py:{LOG_LINE}: NoSampleWarning: [VJ304] no sample input was given for MyModel" in done.stderr
    assert done.stderr.count("[VJ304]") == 1
    assert "warning: [VJ304]" in done.stdout  # LoggedModel's repr lists it
    assert "IPython loaded: False" in done.stdout


@pytest.mark.parametrize("flags, prelude", [
    # -W resolves a category before site-packages are importable, so from the command line a CI
    # job names VertaWarning's base class; in code, VertaWarning itself
    (("-W", "error::UserWarning"), ""),
    ((), "from verta_jupyter.errors import VertaWarning; warnings.simplefilter('error', VertaWarning)"),
])
def test_a_ci_job_fails_on_verta_warnings_and_logs_nothing(tmp_path, flags, prelude):
    done = run_script(tmp_path, *flags, prelude=prelude)
    assert done.returncode == 1
    assert "verta_jupyter.errors.NoSampleWarning: [VJ304]" in done.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from verta_jupyter import Client\n"
         "run = Client(store=sys.argv[1]).set_experiment_run('nightly')\n"
         "from verta_jupyter.errors import NotFoundError\n"
         "try:\n    run.model_info()\nexcept NotFoundError:\n    print('no model')\n",
         str(tmp_path / "store")], capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "no model", check.stderr


def test_an_error_is_never_hidden_behind_a_warning_raised_first(tmp_path):
    broken = SCRIPT.replace("def predict(self, data):", "def predict(self, data, extra):")
    assert broken != SCRIPT
    script = tmp_path / "train.py"
    script.write_text(broken.format(prelude=""))
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", str(script),
                           str(tmp_path / "store")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "ValidationError" in done.stderr and "[VJ113]" in done.stderr
    assert "NoSampleWarning" not in done.stderr


def test_one_kind_can_be_silenced_by_its_class(tmp_path):
    done = run_script(tmp_path, prelude="from verta_jupyter.errors import NoSampleWarning; "
                                        "warnings.simplefilter('ignore', NoSampleWarning)")
    assert done.returncode == 0 and "VJ304" not in done.stderr


def test_validate_warns_with_the_code_at_the_callers_line(shell):
    shell.run("import numpy as np\nweights = np.array([0.5, 2.0])\n"
              "class MyModel:\n    def __init__(self, artifacts): pass\n"
              "    def predict(self, data):\n        return float(weights.sum() * eval('data'))\n")
    from verta_jupyter import validate

    with pytest.warns(VertaWarning) as seen:
        report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=2, check_rebuild=False)
    assert report.ok
    issued = {w.message.code: w for w in seen}
    assert set(issued) == {p.code for p in report.warnings} == {"VJ206", "VJ208"}
    assert isinstance(issued["VJ206"].message, DynamicLookupWarning)
    assert isinstance(issued["VJ208"].message, CapturedByValueWarning)
    assert issued["VJ208"].message.problem in report.warnings
    assert all(w.filename == __file__ for w in seen)  # the caller's line, not ours


def test_the_magic_shows_warnings_once_in_its_summary(shell, tmp_path, monkeypatch):
    from IPython.utils.capture import capture_output

    monkeypatch.chdir(tmp_path)
    shell.run("%load_ext verta_jupyter")
    cell = ("%%verta_model --no-log --no-panel\nclass MyModel:\n    def __init__(self, artifacts):\n"
            "        pass\n    def predict(self, data):\n        return data\n")
    with warnings.catch_warnings(record=True) as issued, capture_output() as shown:
        warnings.simplefilter("always")
        shell.run(cell)
    assert [w for w in issued if issubclass(w.category, VertaWarning)] == []
    text = "\n".join([shown.stdout, shown.stderr] + [o.data.get("text/plain", "") for o in shown.outputs])
    assert text.count("[VJ304]") == 1, text


def test_the_python_api_in_a_notebook_still_warns(shell):
    shell.run("%load_ext verta_jupyter")
    shell.run("class MyModel:\n    def __init__(self, artifacts): pass\n"
              "    def predict(self, data): return data\n")
    with pytest.warns(NoSampleWarning):
        shell.run("from verta_jupyter import validate\nreport = validate(MyModel, check_rebuild=False)")


def test_logged_model_repr_lists_its_warnings(shell, tmp_path):
    from verta_jupyter import Client

    shell.run("class MyModel:\n    def __init__(self, artifacts): pass\n"
              "    def predict(self, data): return data\n")
    run = Client(store=tmp_path / "store").set_experiment_run("r")
    with pytest.warns(NoSampleWarning):
        logged = run.log_model(shell.ns["MyModel"], namespace=shell.ns, check_rebuild=False)
    assert "warning: [VJ304] no sample input was given for MyModel" in repr(logged)
    quiet = run.log_model(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, overwrite=True,
                          check_rebuild=False)
    assert "warnings: none" in repr(quiet)


def test_every_catalog_warning_has_its_own_class():
    for code, check in CATALOG.items():
        if check.severity == "warning":
            found = Problem(code, "m", severity="warning")
            made = VertaWarning.for_problem(found)
            assert type(made) is not VertaWarning and made.code == type(made).code == code
            assert made.problem is found and str(made) == str(found)
