"""Version 1 files on disk, read by this version (cloudpickle keeps old pickles the same way).

tests/fixtures/v1/ holds a model package (format `verta_jupyter.model/1`) and an embedded store
(format `verta_jupyter.store`, version 1) written once by verta_jupyter 0.1.0 with
make_fixtures.py there, and never regenerated. If a test here fails, this version stopped
reading what version 1 users have on disk: fix the reader or add a migration, never the
fixtures. Tests work on a copy (opening a store writes a cache, WAL files, or a migration) and
check that the committed files are left byte for byte as they were.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verta_jupyter import Client, load_package

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())  # Python's JSON: has Infinity
STORED = EXPECTED["store"]
INPUTS = [p["input"] for p in EXPECTED["predictions"]]
OUTPUTS = [p["output"] for p in EXPECTED["predictions"]]


def tree_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root`."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(root: Path) -> tuple[dict[str, str], list[str]]:
    """Every file's digest and every folder's name: opening a store in place would add some."""
    return tree_digests(root), sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                                      if p.is_dir())


COMMITTED = snapshot(FIXTURES)


@pytest.fixture
def v1(tmp_path, monkeypatch):
    """A private copy of the fixtures; afterwards the committed files must be unchanged."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "v1"
    shutil.copytree(FIXTURES, copy)
    yield copy
    assert snapshot(FIXTURES) == COMMITTED, "a test modified the committed v1 fixtures"


def artifact_paths(root: Path) -> dict[str, str]:
    return {"vocab": str(root / "artifacts" / "vocab.txt"), "rules": str(root / "artifacts" / "rules")}


def in_fresh_process(script: str, cwd: Path) -> object:
    """Run `script` in a fresh `python -I` in `cwd`; return the JSON it prints."""
    done = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(script)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed `verta-jupyter` console script (beside this interpreter)."""
    script = Path(sys.executable).with_name("verta-jupyter")
    command = str(script) if script.exists() else shutil.which("verta-jupyter")
    assert command, "the verta-jupyter console script is not installed"
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# -- which version these are -------------------------------------------------------------------
def test_the_fixtures_are_version_1():
    """Read from the committed files without opening them as a store (that would write)."""
    manifest = json.loads((FIXTURES / "package" / "verta_model.json").read_text())
    assert manifest["format"] == "verta_jupyter.model/1" == EXPECTED["package_format"]
    assert manifest["verta_jupyter"] == EXPECTED["written_by"]["verta_jupyter"] == "0.1.0"
    store = FIXTURES / "store"
    marker = json.loads((store / "VERTA_STORE.json").read_text())
    assert marker == {"format": "verta_jupyter.store", "version": 1} == EXPECTED["store_format"]
    header = (store / "metadata.sqlite3").read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\x00")
    assert int.from_bytes(header[60:64], "big") == 1  # PRAGMA user_version
    # one file holds every row: no WAL or shared-memory file was committed beside it
    assert sorted(p.name for p in store.iterdir()) == ["VERTA_STORE.json", "blobs", "metadata.sqlite3"]


# -- the model package -------------------------------------------------------------------------
def test_v1_package_rebuilds_and_predicts(v1):
    cls = load_package(v1 / "package")
    assert cls.__name__ == EXPECTED["class_name"]
    assert cls.__verta_package__["manifest"]["artifact_keys"] == EXPECTED["artifact_keys"]
    model = cls(artifacts=artifact_paths(v1))
    assert [model.predict(x) for x in INPUTS] == OUTPUTS
    package = v1 / "package"
    assert json.loads((package / "input_example.json").read_text()) == INPUTS[0]
    assert json.loads((package / "output_example.json").read_text()) == OUTPUTS[0]


def test_v1_package_with_the_pickle_fast_path_asked_for(v1):
    """class.pkl is used only on an exact Python + cloudpickle match; else source, with a note."""
    cls = load_package(v1 / "package", use_pickle=True)
    info = cls.__verta_package__
    assert info["loaded_from"] in ("class.pkl", "model.py")
    if info["loaded_from"] == "model.py":
        assert info["notes"], "falling back to source must say why"
    assert cls(artifacts=artifact_paths(v1)).predict(INPUTS[1]) == OUTPUTS[1]


def test_v1_package_rebuilds_in_a_fresh_process(v1, tmp_path):
    outputs = in_fresh_process(f"""
        import json
        from verta_jupyter import load_package
        model = load_package({str(v1 / "package")!r})(artifacts={artifact_paths(v1)!r})
        print(json.dumps([model.predict(x) for x in {INPUTS!r}]))
    """, cwd=tmp_path)
    assert outputs == OUTPUTS


# -- the embedded store ------------------------------------------------------------------------
def test_v1_run_reads_back(v1):
    client = Client(store=v1 / "store")
    try:
        run = client.get_experiment_run(id=STORED["run_id"])
        assert run.name == STORED["run_name"]
        assert run.experiment.name == STORED["experiment"]
        assert run.project.name == STORED["project"]
        assert [r.id for r in client.find_runs(project=STORED["project"],
                                               experiment=STORED["experiment"])] == [run.id]
        assert run.get_tags() == STORED["tags"]
        assert run.get_attributes() == STORED["attributes"]
        hyperparameters = run.get_hyperparameters()
        assert hyperparameters == STORED["hyperparameters"]
        assert {k: type(v) for k, v in hyperparameters.items()} == {
            k: type(v) for k, v in STORED["hyperparameters"].items()}  # 2 stays int, True bool
        metrics = run.get_metrics()
        assert metrics == STORED["metrics"] and math.isinf(metrics["divergence"])
        assert run.get_requirements() == STORED["requirements"]
    finally:
        client.store.close()


def test_v1_artifacts_come_back_with_their_content(v1):
    client = Client(store=v1 / "store")
    try:
        run = client.get_experiment_run(id=STORED["run_id"])
        expected = STORED["artifacts"]
        assert sorted(run.get_artifact_keys()) == sorted(expected)
        paths = run.fetch_artifacts(["vocab", "rules"])
        vocab = Path(paths["vocab"])
        assert vocab.is_file()
        assert hashlib.sha256(vocab.read_bytes()).hexdigest() == expected["vocab"]["sha256"]
        assert vocab.read_bytes() == (v1 / "artifacts" / "vocab.txt").read_bytes()
        rules = Path(paths["rules"])
        assert rules.is_dir()
        assert tree_digests(rules) == expected["rules"]["files"] == tree_digests(
            v1 / "artifacts" / "rules")
        assert run.get_artifact("thresholds") == expected["thresholds"]["value"]
    finally:
        client.store.close()


def test_v1_logged_model_loads_and_predicts(v1):
    client = Client(store=v1 / "store")
    try:
        run = client.get_experiment_run(id=STORED["run_id"])
        info = run.model_info()
        assert info.digest == STORED["model"]["digest"]
        assert info.meta["class_name"] == STORED["model"]["class_name"]
        assert info.meta["package_digest"] == STORED["model"]["package_digest"]
        cls = run.get_model()
        assert cls.__name__ == STORED["model"]["class_name"]
        assert cls.__verta_package__["digest"] == STORED["model"]["package_digest"]
        model = run.load_model()  # built with the paths of its artifacts "rules" and "vocab"
        assert [model.predict(x) for x in INPUTS] == OUTPUTS
        downloaded = Path(run.download_model(v1 / "downloaded"))
        assert load_package(downloaded)(artifacts=artifact_paths(v1)).predict(INPUTS[0]) == OUTPUTS[0]
    finally:
        client.store.close()


def test_v1_registered_model_version_loads_and_predicts(v1):
    client = Client(store=v1 / "store")
    try:
        registered = STORED["registered_model"]
        version = client.get_registered_model(registered["name"]).get_version(registered["version"])
        assert version.id == registered["id"]
        assert [version.load_model().predict(x) for x in INPUTS] == OUTPUTS
    finally:
        client.store.close()


def test_v1_store_in_a_fresh_process(v1, tmp_path):
    outputs = in_fresh_process(f"""
        import json
        from verta_jupyter import Client
        client = Client(store={str(v1 / "store")!r})
        model = client.get_experiment_run(id={STORED["run_id"]!r}).load_model()
        print(json.dumps([model.predict(x) for x in {INPUTS!r}]))
        client.store.close()
    """, cwd=tmp_path)
    assert outputs == OUTPUTS


def test_v1_store_from_the_command_line(v1, tmp_path):
    store = str(v1 / "store")
    check = cli("store", "check", "--store", store, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "PROBLEM" not in check.stdout and check.stdout.splitlines()[-1] == "ok"

    shown = cli("runs", "show", STORED["run_id"], "--json", "--store", store, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert (run["name"], run["tags"]) == (STORED["run_name"], STORED["tags"])
    assert run["hyperparameters"] == STORED["hyperparameters"]
    assert run["metrics"] == STORED["metrics"]
    digests = {a["key"]: a["digest"] for a in run["artifacts"]}
    assert digests["vocab"] == f"sha256:{STORED['artifacts']['vocab']['sha256']}"

    manifest = cli("model", "manifest", STORED["run_id"], "--store", store, cwd=tmp_path)
    source = cli("model", "source", STORED["run_id"], "--store", store, cwd=tmp_path)
    assert manifest.returncode == 0 and source.returncode == 0, manifest.stderr + source.stderr
    files = json.loads(manifest.stdout)["files"]
    assert hashlib.sha256(source.stdout.encode()).hexdigest() == files["model.py"]
    assert f"class {STORED['model']['class_name']}:" in source.stdout
