"""The tracking API on the embedded store: notebook classes logged from a real IPython shell and
rebuilt in a fresh process, nothing written when log_model refuses, Verta's value rules, display,
progress, the registry, and threads sharing one client."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from verta_jupyter import Client
from verta_jupyter.errors import AlreadyExistsError, NotFoundError, NoSampleWarning, StoreError, ValidationError
from verta_jupyter.tracking.stores.base import MODEL_KEY

CELLS = [
    "import json, math\nSCALE = 2.5",
    "def tokenize(text):\n    return [t for t in text.lower().split() if t]",
    textwrap.dedent("""\
        class Scorer:
            def __init__(self, artifacts):
                with open(artifacts["weights"]) as f:
                    self.weights = json.load(f)

            def predict(self, data):
                words = tokenize(data["text"])
                return {"score": math.fsum(self.weights.get(w, 0.0) for w in words) * SCALE}
        """),
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def client(tmp_path):
    c = Client(store=tmp_path / "store")
    yield c
    c.store.close()


@pytest.fixture
def notebook_run(shell, client, tmp_path):
    """A run with a weights artifact and the Scorer class defined in notebook cells."""
    for cell in CELLS:
        shell.run(cell)
    run = client.set_experiment_run("notebook")
    (tmp_path / "weights.json").write_text(json.dumps({"good": 1.0, "bad": -1.0}))
    run.log_artifact("weights", str(tmp_path / "weights.json"))
    return run, shell


def state(client: Client, run) -> tuple:
    """Everything a run holds, plus the store's blob count: 'unchanged' means equal."""
    store = client.store
    fields = tuple(tuple(sorted(store.get_fields("run", run.id, f).items()))
                   for f in ("hyperparameters", "metrics", "attributes", "tags"))
    return fields, tuple(store.list_artifacts("run", run.id)), len(list(store.blobs.all()))


def test_notebook_class_round_trips_through_a_fresh_process(notebook_run, client, tmp_path):
    run, shell = notebook_run
    sample = {"text": "good good bad"}
    logged = run.log_model(shell.ns["Scorer"], artifacts=["weights"], sample_input=sample,
                           namespace=shell.ns, cell_source=CELLS[2])
    assert logged.report is not None and logged.class_name == "Scorer"
    expected = shell.ns["Scorer"](artifacts=run.fetch_artifacts(["weights"])).predict(sample)
    script = textwrap.dedent(f"""
        import json
        from verta_jupyter import Client
        run = Client(store={client.store.location!r}).get_experiment_run(id={run.id!r})
        print(json.dumps(run.load_model().predict({sample!r})))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={"VERTA_JUPYTER_CACHE": str(tmp_path / "fresh-cache"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == expected == {"score": 2.5}


def test_failed_validation_writes_nothing(notebook_run, client):
    run, shell = notebook_run
    shell.run("class Broken:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data):\n        return data['missing']")
    before = state(client, run)
    with pytest.raises(ValidationError) as failed:
        run.log_model(shell.ns["Broken"], sample_input={"x": 1}, namespace=shell.ns)
    assert "VJ402" in failed.value.codes
    assert state(client, run) == before


def test_overwrite_refusal_comes_before_any_work(notebook_run, client):
    run, shell = notebook_run
    run.log_model(shell.ns["Scorer"], artifacts=["weights"], sample_input={"text": "good"},
                  namespace=shell.ns)
    before = state(client, run)
    with pytest.raises(AlreadyExistsError, match="overwrite=True"):
        run.log_model(shell.ns["Scorer"], artifacts=["weights"], namespace=shell.ns)
    assert state(client, run) == before


def test_numpy_values_become_plain_values(client):
    run = client.set_experiment_run()
    run.log_metric("acc", np.float32(0.5))
    run.log_hyperparameter("depth", np.int64(7))
    run.log_attribute("curve", np.array([1.0, 2.0]))
    assert run.get_metric("acc") == 0.5 and type(run.get_metric("acc")) is float
    assert run.get_hyperparameter("depth") == 7 and type(run.get_hyperparameter("depth")) is int
    assert run.get_attribute("curve") == [1.0, 2.0]


def test_parents_are_created_with_defaults_and_names_are_scoped(client):
    run = client.set_experiment_run("r")
    assert run.experiment.name == "default" and run.project.name == "default"
    client.set_project("other")
    other = client.set_experiment_run("r")  # same name, other project: another run
    assert other.id != run.id and other.project.name == "other"
    assert client.get_experiment_run("r") == other
    with pytest.raises(NotFoundError, match="nope"):
        client.get_experiment_run("nope")
    with pytest.raises(StoreError):
        client.set_experiment_run("")


def test_stream_and_directory_artifacts(client, tmp_path):
    run = client.set_experiment_run()
    run.log_artifact("stream", io.BytesIO(b"raw bytes"))
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x.txt").write_text("x")
    run.log_artifact("dir", tmp_path / "d")
    assert Path(run.get_artifact("stream")).read_bytes() == b"raw bytes"
    fetched = Path(run.fetch_artifacts("dir")["dir"])
    assert fetched.is_dir() and (fetched / "sub" / "x.txt").read_text() == "x"
    with pytest.raises(NotFoundError, match="no file or directory"):
        run.log_artifact("gone", str(tmp_path / "missing.bin"))


def test_requirements(client, tmp_path):
    run = client.set_experiment_run()
    run.log_requirements(["numpy==2.0.0", "pandas==2.2.0"])
    assert run.get_requirements() == ["numpy==2.0.0", "pandas==2.2.0"]
    with pytest.raises(AlreadyExistsError):
        run.log_requirements(["x==1"])
    assert run.get_artifact_keys() == []  # internal keys are not user artifacts


def test_download_model_refuses_a_non_empty_folder(notebook_run, tmp_path):
    run, shell = notebook_run
    with pytest.warns(NoSampleWarning):
        run.log_model(shell.ns["Scorer"], artifacts=["weights"], namespace=shell.ns)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    with pytest.raises(StoreError, match="not an empty folder"):
        run.download_model(tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    assert (Path(run.download_model(tmp_path / "empty")) / "model.py").is_file()


def test_registry_versions_and_display(notebook_run, client):
    run, shell = notebook_run
    run.log_model(shell.ns["Scorer"], artifacts=["weights"], sample_input={"text": "good"},
                  namespace=shell.ns)
    registered = client.get_or_create_registered_model("scorer")
    v1 = registered.create_version_from_run(run)
    v2 = registered.create_version()
    assert [v.name for v in registered.versions] == ["1", "2"]
    assert v1.load_model().predict({"text": "good"}) == {"score": 2.5}
    assert registered.get_version("1") == v1 and client.get_registered_model("scorer").id == registered.id
    with pytest.raises(NotFoundError):
        v2.get_model()
    assert "RegisteredModelVersion '1'" in repr(v1) and "scorer" in v1._repr_html_()
    assert "Scorer" in repr(v1) and MODEL_KEY not in repr(v1)
    empty = client.set_experiment_run("no-model")
    with pytest.raises(NotFoundError, match="no model"):
        registered.create_version_from_run(empty)
    assert len(registered.versions) == 2


def test_progress_bar_for_large_transfers(client, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VERTA_JUPYTER_PROGRESS_MIN_BYTES", "1000")
    (tmp_path / "big.bin").write_bytes(b"x" * 100_000)
    (tmp_path / "small.bin").write_bytes(b"x" * 10)
    run = client.set_experiment_run()
    run.log_artifact("small", str(tmp_path / "small.bin"))
    assert "log small" not in capsys.readouterr().err
    run.log_artifact("big", str(tmp_path / "big.bin"))
    assert "log big" in capsys.readouterr().err


def test_threads_share_one_client(client):
    runs = [client.set_experiment_run(f"t{i}") for i in range(4)]
    errors: list[BaseException] = []

    def work(run):
        try:
            for k in range(25):
                run.log_metric(f"m{k}", float(k))
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and all(len(r.get_metrics()) == 25 for r in runs)


def test_panel_is_built_from_the_stored_model(notebook_run):
    run, shell = notebook_run
    run.log_model(shell.ns["Scorer"], artifacts=["weights"], sample_input={"text": "good"},
                  namespace=shell.ns)
    panel = run.panel()
    try:
        assert json.loads(panel.predict_json('{"text": "good bad good"}')) == {"score": 2.5}
    finally:
        close = getattr(panel, "close", None)
        if close:
            close()


def test_an_edited_cached_copy_is_fetched_again(notebook_run):
    run, shell = notebook_run
    with pytest.warns(NoSampleWarning):
        run.log_model(shell.ns["Scorer"], artifacts=["weights"], namespace=shell.ns)
    weights = Path(run.fetch_artifacts(["weights"])["weights"])
    weights.write_text('{"good": 100.0}')  # a user edits the fetched file in place
    assert json.loads(Path(run.fetch_artifacts(["weights"])["weights"]).read_text()) == {"good": 1.0, "bad": -1.0}
    package = run.model_package_dir()
    source = (package / "model.py").read_text()
    (package / "model.py").write_text(source[:-1] + " ")  # same size: only the digest tells
    assert run.load_model().predict({"text": "good"}) == {"score": 2.5}


def test_set_experiment_run_takes_verta_keywords(client):
    run = client.set_experiment_run("tagged", tags=["a"], attrs={"owner": "me"})
    again = client.set_experiment_run("tagged", tags=["b"], attrs={"owner": "you"})
    assert again == run and run.get_tags() == ["a"] and run.get_attribute("owner") == "me"
    other = Client(store=client.store)
    assert other.set_experiment_run(id=run.id) == run
    from verta_jupyter.tracking.client import current_run

    assert current_run() == run


def test_get_by_name_never_creates(tmp_path):
    client = Client(store=tmp_path / "empty")
    with pytest.raises(NotFoundError, match="default"):
        client.get_experiment_run("nope")
    with pytest.raises(NotFoundError):
        client.get_experiment("nope")
    assert client.store.find("project") == [] and client.store.find("experiment") == []
    made = Client(store=tmp_path / "empty").set_experiment_run("here")
    assert client.get_experiment_run("here") == made


def test_fetched_files_of_a_local_store_are_cached_inside_it(tmp_path, monkeypatch):
    monkeypatch.delenv("VERTA_JUPYTER_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    (tmp_path / "vocab.txt").write_text("cat dog")
    run = Client(store=tmp_path / "store").set_experiment_run("cached")
    run.log_artifact("vocab", str(tmp_path / "vocab.txt"))
    path = run.fetch_artifacts(["vocab"])["vocab"]
    assert str(path).startswith(str(tmp_path / "store" / "cache"))
    assert not (tmp_path / "home").exists()
