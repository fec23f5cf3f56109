"""%%verta_model through IPython's real shell: running the cell, flags, picking the class,
logging to a run, the summary, and the engine on its own."""
from __future__ import annotations

import re

import inspect
import json

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from mlflow_server import mlflow_server  # noqa: F401 (fixture)
from verta_jupyter.capture.cells import top_level_classes
from verta_jupyter.errors import NoSampleWarning, ValidationError
from verta_jupyter.modelcell import ModelCell, Options
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


def shown_error(ip, cell: str) -> tuple[BaseException, str, int]:
    """Run a failing cell; return its error, what IPython printed for it, and its prompt number."""
    number = ip.ip.execution_count
    with capture_output() as captured:
        error = ip.run_failing(cell)
    return error, captured.stdout + captured.stderr, number


@pytest.mark.parametrize("body, line, kind", [
    ("\nclass MyModel(:\n    pass\n", 3, "SyntaxError"),
    ("class MyModel:\n    def predict(self, data):\n        return 1\n      x = 2\n", 5, "IndentationError"),
    ("class MyModel:\ndef predict(self, data):\n    return 1\n", 3, "IndentationError"),
    ("x = 1\nprint('unclosed\n", 3, "SyntaxError"),
])
def test_syntax_error_in_the_body_reads_like_a_plain_cells(ip, body, line, kind):
    error, shown, number = shown_error(ip, magic("--no-log", body))
    assert error.lineno == line and error.error_type == kind
    assert isinstance(error.__cause__, SyntaxError)
    assert f"Cell In[{number}], line {line}" in shown and kind in shown
    assert len(shown.strip().splitlines()) <= 5, shown  # IPython's short form, no frames
    for noise in ("verta_jupyter", "tokenize", "Traceback", "run_cell_magic"):
        assert noise not in shown
    # the same text in a plain cell ("pass" where the magic line was)
    plain_error, plain, plain_number = shown_error(ip, "pass\n" + body)
    if isinstance(plain_error, SyntaxError) and "<tokenize>" not in plain:
        assert plain.replace(f"In[{plain_number}]", "In[N]") == shown.replace(f"In[{number}]", "In[N]")


def test_top_level_await_is_a_short_cell_error_that_says_what_to_do(ip):
    """A plain cell may await at top level; this magic runs its body synchronously. The compiler's
    error is shown like a plain cell's, never as frames of ours."""
    body = "import asyncio\nawait asyncio.sleep(0)\nclass MyModel:\n    pass\n"
    error, shown, number = shown_error(ip, magic("--no-log", body))
    assert error.lineno == 3 and isinstance(error.__cause__, SyntaxError)
    assert f"Cell In[{number}], line 3" in shown and "await in a cell before it" in shown
    assert len(shown.strip().splitlines()) <= 5 and "codeop" not in shown and "Traceback" not in shown


def test_syntax_error_leaves_nothing_logged(store_ip):
    store_ip.run_failing(magic("--no-panel", "class MyModel(:\n    pass\n"))
    assert store_ip.ip.run_cell("run.model_info()").error_in_exec is not None


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
    problem_line = next(line for line in str(error).splitlines() if "[VJ402]" in line)
    assert problem_line.count("MyModel.predict") == 1  # "cell line 7, in MyModel.predict: raised"
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


def test_summary_headline_counts_read_aloud(shell):
    """'no problems found', '1 warning', never '0 error(s), 0 warning(s)'."""
    shell.run(SEED_BODY)
    clean = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    assert "; no problems found; " in repr(ModelSummary(clean)).splitlines()[0]
    with pytest.warns(NoSampleWarning):
        warned = validate(shell.ns["MyModel"], namespace=shell.ns, check_rebuild=False)
    headline = repr(ModelSummary(warned)).splitlines()[0]
    assert "; 1 warning; " in headline and "(s)" not in headline and "0 error" not in headline
    shell.run("class Broken:\n    def __init__(self, artifacts): pass\n")
    broken = validate(shell.ns["Broken"], namespace=shell.ns)
    assert "NOT logged; 1 error, 1 warning; " in repr(ModelSummary(broken)).splitlines()[0]


def test_summary_shows_a_captured_set_in_sorted_order(shell):
    """A set prints in hash order, different in every kernel; the summary sorts it."""
    shell.run('STOP = {"the", "a", "on", "of", "an"}\nMIXED = {1, "a"}\n'
              + SEED_BODY.replace('{"echo": data}', "[w for w in data if w not in STOP and w not in MIXED]"))
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=["a", "cat"], check_rebuild=False)
    text = repr(ModelSummary(report))
    assert "STOP = {'a', 'an', 'of', 'on', 'the'}, captured" in text
    assert "MIXED = {" in text  # no order between 1 and 'a': shown as Python shows it


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
    store_ip.run("run.log_model(MyModel, overwrite=True, sample_input=1)")  # the Python API replaces it
    error = store_ip.run_failing(magic("--run run --no-panel", SEED_BODY))
    assert "--overwrite" in str(error) and "overwrite=True" not in str(error)
    run_magic(store_ip, "--run run --no-panel --overwrite --sample 5", SEED_BODY)
    assert store_ip.run("run.load_model().predict(5)") == {"echo": 5}


# -- re-running a cell replaces what that cell logged -----------------------------------------

API_MODEL = ("class ApiModel:\n    def __init__(self, artifacts): pass\n"
             "    def predict(self, data): return 'api'\n")  # a model logged by the Python API
SCALED = SEED_BODY.replace('{"echo": data}', "data * FACTOR")


def digest(ip, run="run") -> str:
    return ip.run(f"{run}.model_info().digest")


def test_rerunning_the_same_cell_replaces_its_own_model(store_ip):
    store_ip.run("FACTOR = 2")
    first = run_magic(store_ip, "--no-panel --sample 1", SCALED)[0].data["text/plain"]
    assert "replaced" not in first.splitlines()[0]
    store_ip.run("FACTOR = 3")  # what a user changes between two runs of the cell
    again = run_magic(store_ip, "--no-panel --sample 1", SCALED)[0].data
    assert re.search(r"; replaced the model this cell logged at \d\d:\d\d:\d\d;",
                     again["text/plain"].splitlines()[0])
    assert "replaced the model this cell logged at" in again["text/html"]
    assert store_ip.run("run.load_model().predict(1)") == 3
    store_ip.run("FACTOR = 4")
    run_magic(store_ip, "--no-panel --sample 1", SCALED)  # and again: it is still this cell's
    assert store_ip.run("run.load_model().predict(1)") == 4


def run_cell_with_id(ip, code: str, cell_id: str):
    """Run a cell as ipykernel does for JupyterLab / Notebook 7: with the front end's cell id."""
    with capture_output() as captured:
        result = ip.ip.run_cell(code, store_history=True, cell_id=cell_id)
    return result, captured.outputs


def test_an_edited_cell_is_the_same_cell_when_the_front_end_sends_its_id(store_ip):
    result, _ = run_cell_with_id(store_ip, magic("--no-panel --sample 1", SEED_BODY), "cell-a")
    result.raise_error()
    edited = SEED_BODY.replace('{"echo": data}', '{"echo": data, "v": 2}')
    result, outputs = run_cell_with_id(store_ip, magic("--no-panel --sample 2", edited), "cell-a")
    result.raise_error()
    assert "replaced the model this cell logged at" in outputs[0].data["text/plain"]
    assert store_ip.run("run.load_model().predict(1)") == {"echo": 1, "v": 2}


def test_another_cell_with_the_same_text_still_needs_overwrite(store_ip):
    run_cell_with_id(store_ip, magic("--no-panel", SEED_BODY), "cell-a")[0].raise_error()
    before = digest(store_ip)
    result, _ = run_cell_with_id(store_ip, magic("--no-panel --sample 1", SCALED.replace("FACTOR", "2")),
                                 "cell-b")
    error = result.error_in_exec
    assert error is not None and "not by this cell" in str(error)
    assert "Add --overwrite to the %%verta_model line" in str(error)
    assert "overwrite=True" not in str(error) and digest(store_ip) == before
    result, outputs = run_cell_with_id(
        store_ip, magic("--no-panel --overwrite --sample 1", SCALED.replace("FACTOR", "2")), "cell-b")
    result.raise_error()
    assert "replaced the run's previous model (--overwrite)" in outputs[0].data["text/plain"]
    assert store_ip.run("run.load_model().predict(1)") == 2


def test_a_model_logged_by_the_api_in_between_is_not_replaced_without_overwrite(store_ip):
    run_magic(store_ip, "--no-panel", SEED_BODY)
    store_ip.run(API_MODEL)
    store_ip.run("run.log_model(ApiModel, overwrite=True, sample_input=1)")
    before = digest(store_ip)
    error = store_ip.run_failing(magic("--no-panel", SEED_BODY))
    assert "no longer the one this cell logged at" in str(error) and "--overwrite" in str(error)
    assert digest(store_ip) == before and store_ip.run("run.load_model().predict(0)") == "api"


def test_a_model_from_a_model_logged_by_the_api_first_needs_overwrite(store_ip):
    store_ip.run(API_MODEL)
    store_ip.run("run.log_model(ApiModel, sample_input=1)")
    error = store_ip.run_failing(magic("--no-panel", SEED_BODY))
    assert "not by this cell" in str(error)
    assert store_ip.run("run.load_model().predict(0)") == "api"


def restart_extension(ip):
    """What a kernel restart does to the extension: a new instance that remembers nothing."""
    ip.run("%unload_ext verta_jupyter")
    ip.run("%load_ext verta_jupyter")


def test_after_a_restart_the_cell_still_replaces_its_own_model(store_ip):
    store_ip.run("FACTOR = 2")
    run_magic(store_ip, "--no-panel --sample 1", SCALED)
    restart_extension(store_ip)
    store_ip.run("FACTOR = 5")
    text = run_magic(store_ip, "--no-panel --sample 1", SCALED)[0].data["text/plain"]
    assert "in an earlier kernel session" in text.splitlines()[0]
    assert store_ip.run("run.load_model().predict(1)") == 5


def test_after_a_restart_a_model_the_api_logged_since_still_needs_overwrite(store_ip):
    run_magic(store_ip, "--no-panel", SEED_BODY)
    store_ip.run(API_MODEL)
    store_ip.run("run.log_model(ApiModel, overwrite=True, sample_input=1)")
    restart_extension(store_ip)
    before = digest(store_ip)
    error = store_ip.run_failing(magic("--no-panel", SEED_BODY))
    assert "no longer the one this cell logged" in str(error) and "--overwrite" in str(error)
    assert digest(store_ip) == before


@pytest.mark.parametrize("planted", ["'not a dict'", "{'cell': 1}", "{'cell': None, 'record': []}",
                                     "{'record': 'x'}", "[1, 2]"])
def test_a_garbled_logged_by_attribute_is_ignored_never_trusted(store_ip, planted):
    store_ip.run(API_MODEL)
    store_ip.run("run.log_model(ApiModel, sample_input=1)")
    store_ip.run(f"run.log_attribute('verta_jupyter.logged_by', {planted}, overwrite=True)")
    error = store_ip.run_failing(magic("--no-panel", SEED_BODY))
    assert "not by this cell" in str(error)
    assert store_ip.run("run.load_model().predict(0)") == "api"


def test_the_same_cell_pointed_at_another_run_does_not_replace_that_runs_model(store_ip):
    store_ip.run("run_b = client.set_experiment_run('b')")
    store_ip.run(API_MODEL)
    store_ip.run("run_b.log_model(ApiModel, sample_input=1)")
    run_magic(store_ip, "--run run --no-panel", SEED_BODY)  # this cell logs to run
    error = store_ip.run_failing(magic("--run run_b --no-panel", SEED_BODY))  # then to run_b
    assert "not by this cell" in str(error) and store_ip.run("run_b.load_model().predict(0)") == "api"


def test_rerunning_a_cell_closes_the_panel_it_showed_before(store_ip):
    line = "--sample '{\"text\": \"hi\"}'"
    run_magic(store_ip, line, SEED_BODY)
    registry = store_ip.ip.magics_manager.registry["VertaMagics"]
    first = registry.last_panel
    assert json.loads(first.predict_json("1")) == {"echo": 1} and first.predictor.running
    run_magic(store_ip, line, SEED_BODY)
    second = registry.last_panel
    try:
        assert second is not first and not first.predictor.running  # its worker is stopped
        assert json.loads(second.predict_json("2")) == {"echo": 2}
    finally:
        second.close()


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


# -- the summary says only what is true and durable ------------------------------------------

def test_summary_names_the_stored_package_and_how_to_get_it_back(store_ip, tmp_path):
    (tmp_path / "vocab.txt").write_text("good\n")
    store_ip.run(f"run.log_artifact('vocab', r'{tmp_path / 'vocab.txt'}')")
    body = SEED_BODY.replace("pass", "self.words = open(artifacts['vocab']).read().split()")
    (summary,) = run_magic(store_ip, "--no-panel --artifacts vocab --sample 1", body)
    text, page = summary.data["text/plain"], summary.data["text/html"]
    package_id = store_ip.run("run.model_info().meta['package_digest'][:12]")
    assert f"package: {package_id} in the store; get it back: run.get_model()" in text
    assert "run.download_model('folder')" in text and package_id in page
    assert "vj-packages-" not in text and "/tmp/" not in text.split("logged to")[1].split("\n", 1)[1]
    assert "construct  MyModel(artifacts={'vocab': <path>})" in text  # a dict, as __init__ gets it
    # the same id as the panel's identity line
    store_ip.run("from verta_jupyter import PredictPanel\np = PredictPanel(run)")
    try:
        assert f"package {package_id}" in store_ip.ns["p"].model_info.value
    finally:
        store_ip.run("p.close()")


def test_summary_for_a_run_held_in_no_variable_says_how_to_reach_it(store_ip, tmp_path):
    store_ip.run("client.set_experiment_run('unnamed')")  # the current run, in no variable
    (summary,) = run_magic(store_ip, "--no-panel --sample 1", SEED_BODY)
    text = summary.data["text/plain"]
    assert f"Client(store={str(tmp_path / 'store')!r}).get_experiment_run(id=" in text


def test_summary_counts_match_the_uses_list(shell):
    shell.run(SEED_BODY)
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    text = repr(ModelSummary(report))
    assert "0 dependencies" in text and "uses: nothing outside the class" in text
    shell.run(HIDDEN_STATE)
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    text = repr(ModelSummary(report))
    listed = text.split("uses:\n", 1)[1].split("requirements:", 1)[0].strip().splitlines()
    assert f"{len(listed)} dependencies" in text  # THRESHOLD, score, math


def test_no_log_summary_says_the_package_is_not_stored(ip):
    (summary,) = run_magic(ip, "--no-log --no-panel --sample 1", SEED_BODY)
    text = summary.data["text/plain"]
    assert re.search(r"package: [0-9a-f]{12}, not stored \(--no-log\)", text)
    assert "vj-packages-" not in text


def test_every_checks_table_cell_states_its_alignment(shell):
    shell.run(SEED_BODY)
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    table = ModelSummary(report)._checks_html()
    cells = re.findall(r"<td([^>]*)>", table)
    assert cells and all("text-align:" in c for c in cells)
    details = re.findall(r'<td class="vj-check-detail" style="([^"]*)"', table)
    assert details and all("text-align:left" in d for d in details)


def test_rerunning_a_cell_against_an_mlflow_server(ip, mlflow_server):
    """The same rule on the remote store: the cell replaces its own model, not the API's."""
    import uuid

    location = f"{mlflow_server.url}?namespace=rerun{uuid.uuid4().hex[:8]}"
    ip.run(f"from verta_jupyter import Client\nclient = Client(store={location!r})\n"
           "run = client.set_experiment_run('iterate')\nFACTOR = 2")
    run_magic(ip, "--no-panel --sample 1", SCALED)
    ip.run("FACTOR = 5")
    (summary,) = run_magic(ip, "--no-panel --sample 1", SCALED)
    assert "replaced the model this cell logged at" in summary.data["text/plain"]
    assert ip.run("run.load_model().predict(1)") == 5
    ip.run(API_MODEL)
    ip.run("run.log_model(ApiModel, overwrite=True, sample_input=1)")
    error = ip.run_failing(magic("--no-panel --sample 1", SCALED))
    assert "no longer the one this cell logged" in str(error)
    assert ip.run("run.load_model().predict(1)") == "api"
