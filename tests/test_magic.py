"""%%verta_model through IPython's real shell: running the cell, flags, picking the class,
logging to a run, the summary, and the engine on its own."""
from __future__ import annotations

import re

import inspect
import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from verta_jupyter.capture.cells import top_level_classes
from verta_jupyter.errors import NoSampleWarning, ValidationError
from verta_jupyter.magic import ModelCell, Options
from verta_jupyter.package.format import MISSING
from verta_jupyter.validation.summary import ModelSummary
from verta_jupyter.validation.validate import validate

SEED_BODY = '''class MyModel(object):
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"echo": data}
'''


@pytest.fixture
def ip(shell):
    shell.run("%load_ext verta_jupyter")
    shell.ip.colors = "nocolor"
    return shell


def magic(line: str, body: str) -> str:
    return f"%%verta_model {line}\n{body}"


def run_magic(ip, line: str, body: str):
    """Run a magic cell that must succeed; return its displayed outputs."""
    with capture_output() as captured:
        ip.run(magic(line, body))
    return captured.outputs


# -- the cell runs like a normal cell first ----------------------------------------------------

def test_cell_runs_and_summary_is_a_text_and_html_bundle(ip):
    outputs = run_magic(ip, "--no-log --no-panel --sample '{\"text\": \"hi\"}'", SEED_BODY)
    assert isinstance(ip.ns["MyModel"], type)
    (summary,) = outputs
    assert {"text/plain", "text/html"} <= set(summary.data)
    text, page = summary.data["text/plain"], summary.data["text/html"]
    assert text.startswith("MyModel: validated, not logged")
    assert "✓ rebuild" in text and "{'echo': {'text': 'hi'}}" in text
    assert '<details class="vj-model-py">' in page and "class MyModel(object):" in page


def test_functions_in_the_body_keep_their_source_and_cell_lines(ip):
    body = "def helper(x):\n    return x + 1\n\n" + SEED_BODY.replace('{"echo": data}', "helper(data)")
    run_magic(ip, "--no-log --no-panel --sample 1", body)
    assert inspect.getsource(ip.ns["helper"]).startswith("def helper(x):")
    assert ip.ns["helper"].__code__.co_firstlineno == 2  # line 1 of the cell is the magic


def test_exception_in_the_body_fails_the_cell_as_usual(ip):
    error = ip.run_failing(magic("--no-log", "x = 1\n1 / 0\n"))
    assert isinstance(error, ZeroDivisionError)
    assert error.__traceback__.tb_next is not None
    frames = []
    tb = error.__traceback__
    while tb:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    assert frames[-1][1] == 3 and frames[-1][0].startswith("<ipython-input")


def test_syntax_error_in_the_body(ip):
    error = ip.run_failing(magic("--no-log", "\nclass MyModel(:\n    pass\n"))
    assert isinstance(error, SyntaxError) and error.lineno == 3


def test_leading_blank_lines_keep_line_numbers(ip):
    body = "\n\nclass MyModel:\n    def __init__(self, artifacts): pass\n    def predict(self): pass\n"
    error = ip.run_failing(magic("--no-log", body))
    assert isinstance(error, ValidationError)
    assert "cell line 6, in MyModel.predict" in str(error)


def test_help_lists_every_flag(ip):
    with capture_output() as captured:
        ip.run("%%verta_model?")
    for flag in ("--run", "--artifacts", "--sample", "--class", "--no-log", "--no-panel", "--overwrite"):
        assert flag in captured.stdout


# -- picking the class -----------------------------------------------------------------------

TWO_MODELS = SEED_BODY + "\nclass Other(MyModel):\n    pass\n"


def test_several_model_classes_need_class_flag(ip):
    error = ip.run_failing(magic("--no-log", TWO_MODELS))
    assert isinstance(error, ValidationError) and error.codes == ["VJ102"]
    assert "MyModel, Other" in str(error) and "--class MyModel" in str(error)


def test_class_flag_picks_one(ip):
    outputs = run_magic(ip, "--no-log --no-panel --class Other --sample 2", TWO_MODELS)
    assert outputs[0].data["text/plain"].startswith("Other:")


def test_helper_classes_without_predict_are_ignored(ip):
    body = "class Tokenizer:\n    pass\n\n" + SEED_BODY
    outputs = run_magic(ip, "--no-log --no-panel --sample 2", body)
    assert outputs[0].data["text/plain"].startswith("MyModel:")


def test_top_level_classes_looks_inside_compound_statements_only():
    cell = "if True:\n    class A: pass\nclass B:\n    class Inner: pass\ndef f():\n    class C: pass\n"
    assert top_level_classes(cell) == ["B", "A"]


# -- flags -----------------------------------------------------------------------------------

def test_sample_expression_is_evaluated_and_converted(ip):
    ip.run("import pandas as pd\nframe = pd.DataFrame({'a': [1, 2]})")
    body = SEED_BODY.replace('{"echo": data}', "len(data)")
    outputs = run_magic(ip, "--no-log --no-panel --sample frame", body)
    assert "[{'a': 1}, {'a': 2}] -> 2" in outputs[0].data["text/plain"]


def test_sample_with_double_quotes_and_spaces(ip):
    outputs = run_magic(ip, '--no-log --no-panel --sample "{\\"text\\": \\"two words\\"}"', SEED_BODY)
    assert "'two words'" in outputs[0].data["text/plain"]


@pytest.mark.parametrize("line, words", [
    ("--no-log --bogus", ["--bogus"]),
    ("--no-log --sample", ["--sample"]),
    ("--no-log --sample not_defined_anywhere", ["--sample", "not_defined_anywhere", "NameError"]),
    ("--no-log --sample '{\"a\": 1'", ["--sample"]),
    ("--no-log --class 'My Model'", ["--class"]),
    ("--no-log --artifacts ,", ["--artifacts"]),
    ("--run nope", ["--run nope", "set_experiment_run"]),
    ("--run 1x", ["--run"]),
    ("--no-log --sample 'unbalanced", ["unbalanced"]),
])
def test_bad_flags_are_usage_errors(ip, line, words):
    error = ip.run_failing(magic(line, SEED_BODY))
    assert type(error) is UsageError
    for word in words:
        assert word in str(error)


def test_run_flag_must_name_something_with_log_model(ip):
    ip.run("not_a_run = 42")
    error = ip.run_failing(magic("--run not_a_run", SEED_BODY))
    assert type(error) is UsageError and "'not_a_run' is a int" in str(error)


def test_sample_expression_that_is_not_json(ip):
    ip.run("import threading\nthing = threading.Lock()")
    error = ip.run_failing(magic("--no-log --sample thing", SEED_BODY))
    assert isinstance(error, ValidationError) and error.codes == ["VJ303"]


# -- logging to any object with a compatible log_model ---------------------------------------

FOREIGN_RUN = '''
class NotebookRun:
    """A user's own tracking object: the seed says anything with log_model can log a class."""
    def __init__(self):
        self.logged = []
    def log_model(self, model, artifacts=None, sample_input=None, overwrite=False):
        self.logged.append((model.__name__, artifacts, sample_input, overwrite))
my_run = NotebookRun()
'''


def test_foreign_run_gets_the_class_after_validation(ip):
    ip.run(FOREIGN_RUN)
    outputs = run_magic(ip, "--run my_run --no-panel --overwrite --sample 3", SEED_BODY)
    assert ip.ns["my_run"].logged == [("MyModel", None, 3, True)]
    assert "logged to NotebookRun" in outputs[0].data["text/plain"]


def test_foreign_run_gets_nothing_when_validation_fails(ip):
    ip.run(FOREIGN_RUN)
    body = SEED_BODY.replace('{"echo": data}', "data['missing']")
    error = ip.run_failing(magic("--run my_run --no-panel --sample '{}'", body))
    assert isinstance(error, ValidationError) and error.codes == ["VJ402"]
    assert "MyModel.predict" in str(error) and "cell line 7" in str(error)
    assert ip.ns["my_run"].logged == []


def test_allow_secrets_needs_a_log_model_that_takes_it(ip):
    ip.run(FOREIGN_RUN)
    error = ip.run_failing(magic("--run my_run --allow-secrets", SEED_BODY))
    assert type(error) is UsageError and "--allow-secrets" in str(error)


# -- the engine, without IPython -------------------------------------------------------------

def test_engine_runs_on_a_plain_namespace():
    namespace: dict = {"__name__": "__main__"}
    outcome = ModelCell(namespace, Options(log=False, sample={"a": 1}),
                        execute=_exec_into(namespace)).run(SEED_BODY)
    assert outcome.cls is namespace["MyModel"]
    assert outcome.report.ok and outcome.report.rebuilt_output == {"echo": {"a": 1}}
    assert outcome.logged_to == "" and outcome.seconds > 0


def _exec_into(namespace):
    import linecache

    def execute(cell: str) -> str:
        filename = "<engine-test-cell>"
        linecache.cache[filename] = (len(cell), None, cell.splitlines(True), filename)
        exec(compile(cell, filename, "exec"), namespace)
        return cell

    return execute


def test_engine_refuses_a_cell_without_a_class():
    namespace: dict = {}
    with pytest.raises(ValidationError) as info:
        ModelCell(namespace, Options(log=False)).run("x = 1\n")
    assert info.value.codes == ["VJ101"]


# -- the summary -----------------------------------------------------------------------------

HIDDEN_STATE = '''
import math
THRESHOLD = 0.5
def score(x):
    return math.tanh(x)
class MyModel:
    def __init__(self, artifacts):
        pass
    def predict(self, data):
        return score(data) > THRESHOLD
'''


def test_summary_shows_the_dependency_tree_and_captured_values(shell):
    shell.run(HIDDEN_STATE)
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    text = repr(ModelSummary(report, logged_to="run 'x'"))
    lines = text.splitlines()
    assert lines[0].startswith("MyModel: logged to run 'x'")
    score = next(i for i, line in enumerate(lines) if line.strip().startswith("score "))
    assert lines[score + 1].strip().startswith("math [module")  # used by score, one level deeper
    assert "THRESHOLD = 0.5, captured" in text
    assert re.search(r"score \[notebook: function score\] from cell In\[\d+\], line \d+", text)
    page = ModelSummary(report)._repr_html_()
    assert "THRESHOLD = 0.5, captured" in page and "vj-check vj-skipped" in page


def test_summary_never_shows_a_secret_value(shell):
    shell.run('API_TOKEN = "abcd1234efgh5678"\n' + SEED_BODY.replace("pass", "self.t = API_TOKEN"))
    with pytest.warns(NoSampleWarning):
        report = validate(shell.ns["MyModel"], namespace=shell.ns, allow_secrets=True, check_rebuild=False)
    text = repr(ModelSummary(report))
    assert "API_TOKEN = <hidden>" in text and "abcd1234" not in text.split("model.py")[0]


def test_summary_of_a_failed_report_says_not_logged(shell):
    shell.run("class MyModel:\n    def __init__(self, artifacts): pass\n")
    report = validate(shell.ns["MyModel"], namespace=shell.ns)
    text = repr(ModelSummary(report))
    assert "NOT logged" in text and "[VJ111]" in text and report.sample_input is MISSING


# -- logging to a real LocalStore ------------------------------------------------------------

@pytest.fixture
def store_ip(ip, tmp_path):
    ip.run(f"from verta_jupyter import Client\nclient = Client(store=r'{tmp_path / 'store'}')\n"
           "run = client.set_experiment_run('baseline')\n")
    return ip


def test_logs_to_the_current_run_and_the_store_rebuilds_it(store_ip):
    outputs = run_magic(store_ip, "--no-panel --sample '{\"text\": \"hi\"}'", SEED_BODY)
    assert "logged to ExperimentRun 'baseline'" in outputs[0].data["text/plain"]
    store_ip.run("rebuilt = run.get_model()\nanswer = run.load_model().predict({'text': 'yo'})")
    assert store_ip.ns["rebuilt"] is not store_ip.ns["MyModel"]
    assert store_ip.ns["answer"] == {"echo": {"text": "yo"}}


def test_run_flag_and_overwrite(store_ip):
    store_ip.run("other = client.set_experiment_run('other')")  # now the current run
    run_magic(store_ip, "--run run --no-panel", SEED_BODY)
    store_ip.run("run.model_info()")
    with pytest.raises(Exception):
        store_ip.run("other.model_info()")
    error = store_ip.run_failing(magic("--run run --no-panel", SEED_BODY))
    assert "--overwrite" in str(error)
    run_magic(store_ip, "--run run --no-panel --overwrite --sample 5", SEED_BODY)
    assert store_ip.run("run.load_model().predict(5)") == {"echo": 5}


def test_custom_model_with_dependencies(store_ip, tmp_path):
    """The seed's pattern: an artifact logged with log_artifact, read in __init__."""
    (tmp_path / "vocab.txt").write_text("good\ngreat\n")
    store_ip.run(f"run.log_artifact('vocab', r'{tmp_path / 'vocab.txt'}')")
    body = ("class Sentiment:\n    def __init__(self, artifacts):\n"
            "        self.words = set(open(artifacts['vocab']).read().split())\n"
            "    def predict(self, data):\n        return sum(w in self.words for w in data.split())\n")
    run_magic(store_ip, "--artifacts vocab --no-panel --sample '\"good day great\"'", body)
    assert store_ip.run("run.load_model().predict('great great meh')") == 2


def test_without_a_run_the_error_says_how_to_make_one(ip, monkeypatch):
    from verta_jupyter.tracking import client

    monkeypatch.setattr(client, "_current_run", None)
    error = ip.run_failing(magic("--no-panel", SEED_BODY))
    assert type(error) is UsageError
    assert "set_experiment_run" in str(error) and "--no-log" in str(error)


def test_panel_follows_the_summary(store_ip):
    outputs = run_magic(store_ip, "--sample '{\"text\": \"hi\"}'", SEED_BODY)
    assert len(outputs) == 2
    assert "application/vnd.jupyter.widget-view+json" in outputs[1].data
    panel = store_ip.ip.magics_manager.registry["VertaMagics"].last_panel
    try:
        model_id = outputs[1].data["application/vnd.jupyter.widget-view+json"]["model_id"]
        assert panel.model_id == model_id
        assert json.loads(panel.predict_json('{"text": "yo"}')) == {"echo": {"text": "yo"}}
    finally:
        panel.close()


def test_run_flag_takes_a_registered_model_version(store_ip):
    store_ip.run("version = client.get_or_create_registered_model('echo').create_version('v1')")
    outputs = run_magic(store_ip, "--run version --no-panel --sample 7", SEED_BODY)
    assert "logged to RegisteredModelVersion 'v1'" in outputs[0].data["text/plain"]
    assert store_ip.run("version.load_model().predict(7)") == {"echo": 7}
