"""Secret detection (VJ203): the whole captured value graph, object attributes, bundled local
modules, comments, and credential formats in ordinarily named globals; no false positives on
ordinary model values; a budget that says when it stops (VJ209)."""
from __future__ import annotations

import hashlib
import sys
import textwrap
import uuid

import pytest

from verta_jupyter.capture import capture_model
from verta_jupyter.errors import SecretScanIncompleteWarning, ValidationError, VertaWarning
from verta_jupyter.validation.secrets import (BUDGET_VARIABLE, credential_kind, scan_budget,
                                              secret_problems)
from verta_jupyter.validation.validate import validate

GITHUB = "ghp_" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7c"
DAPI = "dapi" + "0123456789abcdef0123456789abcdef"
ACCOUNT_KEY = ("DefaultEndpointsProtocol=https;AccountName=reviews;AccountKey="
               "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0YWJjZGVmZ2g=="
               ";EndpointSuffix=core.windows.net")

USES = "class MyModel:\n    def __init__(self, artifacts):\n        self.c = {name}\n" \
       "    def predict(self, data):\n        return 1\n"


def scan(shell, cells: str, uses: str, **kwargs):
    shell.run(textwrap.dedent(cells))
    shell.run(USES.format(name=uses))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    return secret_problems(captured, shell.ns, **kwargs)


def only(found, code="VJ203"):
    assert [p.code for p in found] == [code], found
    return found[0]


def assert_never_echoed(problem, secret: str):
    assert secret[4:] not in str(problem) and secret[4:] not in repr(problem)


# -- the value graph, whole ------------------------------------------------------------------

def test_token_four_levels_deep_in_a_config_dict(shell):
    found = only(scan(shell, f'CONFIG = {{"prod": {{"db": {{"auth": {{"token": "{GITHUB}"}}}}}}}}\n',
                      "CONFIG"))
    assert "'CONFIG[\"prod\"][\"db\"][\"auth\"][\"token\"]'" in found.message
    assert found.name == "CONFIG" and "GitHub token" in found.message
    assert_never_echoed(found, GITHUB)


def test_token_two_hundred_levels_deep_is_found_without_recursion(shell):
    cells = (f"deep = '{DAPI}'\n"
             "for _ in range(200):\n    deep = {'next': deep}\n")
    found = only(scan(shell, cells, "deep"))
    assert found.message.startswith("'deep" + '["next"]' * 200 + "'")


def test_token_past_the_old_thousand_item_cut_off(shell):
    cells = f"items = ['word%d' % i for i in range(5000)] + ['{GITHUB}']\n"
    found = only(scan(shell, cells, "items"))
    assert "'items[5000]'" in found.message


@pytest.mark.parametrize("cells, label", [
    (f"from types import SimpleNamespace\nsettings = SimpleNamespace(region='eu', token='{GITHUB}')\n",
     "settings.token"),
    ("from dataclasses import dataclass\n@dataclass\nclass Settings:\n    region: str\n    auth: str\n"
     f"settings = Settings('eu', '{GITHUB}')\n", "settings.auth"),
    ("class Settings:\n    def __init__(self):\n        self.hosts = ['a', 'b']\n"
     f"        self.creds = {{'db': '{GITHUB}'}}\nsettings = Settings()\n", "settings.creds[\"db\"]"),
    ("class Settings:\n    __slots__ = ('region', 'secret')\n    def __init__(self):\n"
     f"        self.region, self.secret = 'eu', '{GITHUB}'\nsettings = Settings()\n", "settings.secret"),
    ("from dataclasses import dataclass\n@dataclass(slots=True)\nclass Inner:\n    value: str\n"
     f"settings = {{'layers': [Inner('x'), Inner('{GITHUB}')]}}\n", "settings[\"layers\"][1].value"),
])
def test_token_in_object_attributes_of_every_kind(shell, cells, label):
    found = only(scan(shell, cells, "settings"))
    assert f"'{label}'" in found.message, found.message
    assert_never_echoed(found, GITHUB)


def test_token_in_state_no_attribute_shows_is_found_in_the_pickle(shell):
    # a functools.partial keeps its arguments in C-level fields: no __dict__ or __slots__ entry
    cells = ("import functools\ndef header(token, name):\n    return {name: token}\n"
             f"auth = functools.partial(header, '{DAPI}')\n")
    found = only(scan(shell, cells, "auth"))
    assert found.name == "auth" and "pickled state" in found.message and "Databricks" in found.message
    assert_never_echoed(found, DAPI)


def test_token_hidden_beside_megabytes_of_binary_floats_is_still_found(shell):
    """The pickle scan reads only printable runs: a token among 8 MB of random float bytes
    (which hold stray printable runs of their own) must still be one of them."""
    cells = ("import functools, numpy as np\ndef header(token, weights, name):\n    return {name: token}\n"
             f"auth = functools.partial(header, '{DAPI}', np.random.default_rng(1).random(1_000_000))\n")
    found = only(scan(shell, cells, "auth"))
    assert found.name == "auth" and "pickled state" in found.message and "Databricks" in found.message
    assert_never_echoed(found, DAPI)


def test_token_in_string_arrays_and_data_frame_cells(shell):
    cells = ("import numpy as np, pandas as pd\n"
             f"notes = pd.DataFrame({{'n': [1, 2, 3], 'note': ['ok', 'fine', '{DAPI}']}})\n"
             f"labels = np.array(['spam', 'ham', '{GITHUB}'])\n")
    shell.run(cells)
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n        self.c = (notes, labels)\n"
              "    def predict(self, data):\n        return 1\n")
    found = secret_problems(capture_model(shell.ns["MyModel"], shell.ns), shell.ns)
    labels = sorted(p.message.split("'")[1] for p in found)
    assert labels == ['labels[2]', 'notes["note"][2]'], found


def test_every_column_of_a_wide_frame_is_read(shell):
    # each column is a new Series object: none may be mistaken for one already walked
    shell.ns["TOKEN_TEXT"] = DAPI
    shell.run("import pandas as pd\n"
              "wide = pd.DataFrame({f'c{i}': ['x%d' % i] * 3 for i in range(12)})\n"
              "wide['last'] = ['a', 'b', TOKEN_TEXT]\ndel TOKEN_TEXT\n")
    shell.run(USES.format(name="wide"))
    found = only(secret_problems(capture_model(shell.ns["MyModel"], shell.ns), shell.ns))
    assert "'wide[\"last\"][2]'" in found.message


def test_a_two_million_item_list_stops_at_the_budget_without_copying_it(shell):
    shell.run("import itertools\nHUGE = list(itertools.repeat('word', 2_000_000))\n")
    shell.run(USES.format(name="HUGE"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    warning = only(secret_problems(captured, shell.ns, budget=50_000), "VJ209")
    assert warning.name == "HUGE" and "50,000 objects" in warning.message


def test_a_cycle_is_walked_once(shell):
    cells = f"loop = {{'name': 'x'}}\nloop['self'] = loop\nloop['auth'] = '{GITHUB}'\n"
    found = only(scan(shell, cells, "loop"))
    assert "'loop[\"auth\"]'" in found.message


# -- formats in ordinarily named globals ------------------------------------------------------

def test_azure_connection_string_with_account_key(shell):
    found = only(scan(shell, f"storage = '{ACCOUNT_KEY}'\n", "storage"))
    assert "AccountKey=" in found.message and "'storage'" in found.message
    assert_never_echoed(found, ACCOUNT_KEY.split("AccountKey=")[1])


def test_databricks_token(shell):
    found = only(scan(shell, f"workspace = {{'host': 'adb-1.azuredatabricks.net', 'pat': '{DAPI}'}}\n",
                      "workspace"))
    assert "Databricks token" in found.message and "'workspace[\"pat\"]'" in found.message


@pytest.mark.parametrize("text, kind", [
    ("AKIAIOSFODNN7EXAMPLE", "AWS access key id"),
    (ACCOUNT_KEY, "AccountKey="),
    ("https://acct.blob.core.windows.net/c?sv=2023-01-03&sig=abcdefghijklmnopqrstuvwxyz0123456789%3D",
     "shared access signature"),
    (DAPI, "Databricks"),
    (GITHUB, "GitHub"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "GitHub"),
    ("glpat-abcdefghij0123456789", "GitLab"),
    ("xoxb-1234567890-abcdefghijkl", "Slack token"),
    ("https://hooks.slack.com/services/T0000/B0000/abcdefghijklmnopqrstuvwx", "Slack"),
    ("sk_live_abcdefghijklmnop0123", "Stripe"),
    ("AIzaSyA-abcdefghijklmnopqrstuvwxyz01234", "Google API key"),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "sk- API key"),
    ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "Hugging Face"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "JSON Web Token"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=", "private key"),
    ("postgresql://admin:s3cr3t@db.internal:5432/prod", "URL with a password"),
    ("Server=tcp:db.example.com;Database=prod;User Id=ml;Password=Tr0ub4dor&3;", "connection string"),
])
def test_common_credential_formats_are_named(text, kind):
    assert kind in (credential_kind(text) or ""), (text, credential_kind(text))


@pytest.mark.parametrize("text", [
    "postgresql://admin:***@db.internal/prod", "postgresql://admin:{password}@db/prod",
    "https://example.com/path?q=1", "Password=", "the password policy", "sk-learn",
])
def test_placeholders_and_prose_are_not_credentials(text):
    assert credential_kind(text) is None


# -- bundled local modules and comments -------------------------------------------------------

@pytest.fixture
def settings_module(tmp_path, monkeypatch):
    (tmp_path / "vj_secret_settings.py").write_text(
        "REGION = 'eu-west-1'\n"
        "# the warehouse, read by the model\n"
        f"WAREHOUSE = {{'host': 'db.internal', 'token': '{GITHUB}'}}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("vj_secret_settings", None)


def test_token_in_a_bundled_settings_module(shell, settings_module):
    shell.run("import vj_secret_settings\n"
              "class MyModel:\n    def __init__(self, artifacts):\n"
              "        self.region = vj_secret_settings.REGION\n"
              "    def predict(self, data):\n        return 1\n")
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    assert "vj_secret_settings.py" in captured.bundled
    found = only(secret_problems(captured, shell.ns))
    assert found.where == "vj_secret_settings.py line 3"
    assert "'vj_secret_settings.token'" in found.message and "bundled local module" in found.message
    assert_never_echoed(found, GITHUB)


def test_credential_in_a_comment_of_the_captured_source(shell):
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n"
              "        # staging login: password = Hunter2x9\n        pass\n"
              f"    def predict(self, data):  # {DAPI}\n        return 1\n")
    found = secret_problems(capture_model(shell.ns["MyModel"], shell.ns), shell.ns)
    assert [p.code for p in found] == ["VJ203", "VJ203"], found
    assert all(p.where.startswith("model.py line") for p in found)
    assert any("Databricks token" in p.message for p in found)
    for p in found:
        assert "unter2x9" not in str(p) and DAPI[4:] not in str(p)


def test_ordinary_comments_are_not_secrets(shell):
    shell.run("class MyModel:\n    def __init__(self, artifacts):\n"
              "        # token: split on whitespace; password fields are dropped upstream\n"
              "        # see https://example.com/docs?page=2 and key=value pairs\n        pass\n"
              "    def predict(self, data):\n        return 1\n")
    assert secret_problems(capture_model(shell.ns["MyModel"], shell.ns), shell.ns) == []


# -- no false positives on ordinary model values ---------------------------------------------

def test_ordinary_model_values_are_not_secrets(shell):
    shell.ns["VOCAB"] = [f"word{i}" for i in range(20_000)] + ["don't", "naïve", "e-mail"]
    shell.ns["DATA_HASHES"] = {f"part-{i}.parquet": hashlib.sha256(str(i).encode()).hexdigest()
                               for i in range(2_000)}
    shell.ns["IDS"] = [str(uuid.UUID(int=i * 7919)) for i in range(2_000)]
    shell.ns["CONFIG"] = {"api_version": "2024-05-01", "sort_key": "score", "token_pattern": r"(?u)\b\w\w+\b",
                          "model_sha": "3f786850e387550fdab836ed7e6dc881de23001b", "key_columns": ["user_id"],
                          "endpoint": "https://api.example.com/v1/predict", "max_tokens": 256}
    shell.run("import numpy as np, pandas as pd\n"
              "FRAME = pd.DataFrame({'id': IDS, 'h': list(DATA_HASHES.values()), 'x': np.arange(2000.0)})\n"
              "class MyModel:\n    def __init__(self, artifacts):\n"
              "        self.v, self.h, self.i, self.c, self.f = VOCAB, DATA_HASHES, IDS, CONFIG, FRAME\n"
              "    def predict(self, data):\n        return 1\n")
    assert secret_problems(capture_model(shell.ns["MyModel"], shell.ns), shell.ns) == []


# -- the budget says when it stops -----------------------------------------------------------

def test_past_the_budget_a_warning_names_the_value(shell):
    found = scan(shell, "BIG = {'rows': [['w%d' % i] for i in range(3000)]}\n", "BIG", budget=1000)
    warning = only(found, "VJ209")
    assert not warning.is_error and warning.name == "BIG" and "'BIG'" in warning.message


def test_budget_from_the_environment_through_validate(shell, monkeypatch):
    monkeypatch.setenv(BUDGET_VARIABLE, "500")
    shell.run("ROWS = [['w%d' % i] for i in range(2000)]\n")
    shell.run(USES.format(name="ROWS"))
    with pytest.warns(VertaWarning) as seen:  # VJ208 too: ROWS is pickled
        report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    assert "VJ209" in [p.code for p in report.warnings] and report.ok
    assert any(isinstance(w.message, SecretScanIncompleteWarning) and w.message.code == "VJ209"
               and "'ROWS'" in str(w.message) for w in seen)


def test_a_bad_budget_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(BUDGET_VARIABLE, "lots")
    with pytest.raises(ValidationError, match=f"{BUDGET_VARIABLE}='lots' is not a whole number"):
        scan_budget()


# -- end to end: the model is refused, the secret never shown ---------------------------------

def test_validate_refuses_a_deep_secret_and_never_echoes_it(shell):
    shell.run(f'CONFIG = {{"db": {{"auth": {{"token": "{GITHUB}"}}}}}}\n')
    shell.run(USES.format(name="CONFIG"))
    report = validate(shell.ns["MyModel"], namespace=shell.ns, sample_input=1, check_rebuild=False)
    assert [p.code for p in report.errors] == ["VJ203"]
    assert 'CONFIG["db"]["auth"]["token"]' in report.error_message()
    assert GITHUB[4:] not in report.error_message()
