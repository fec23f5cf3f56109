"""The `verta-jupyter` command line, against a real store (and once through the installed script)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store_contract import EchoModel
from verta_jupyter import Client
from verta_jupyter.cli import main

COMMANDS = [[], ["runs"], ["runs", "list"], ["runs", "show"], ["model"], ["model", "manifest"],
            ["model", "source"], ["model", "download"], ["store"], ["store", "check"],
            ["store", "gc"]]


@pytest.fixture
def logged(tmp_path, monkeypatch):
    """A store with one run holding metrics, an artifact and a model, plus a registered version."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("baseline")
    run.log_metric("acc", 0.75)
    run.log_tag("best")
    (tmp_path / "v.json").write_text('["a", "b"]')
    run.log_artifact("vocab", str(tmp_path / "v.json"))
    run.log_model(EchoModel, artifacts=["vocab"], sample_input={"words": ["a"]})
    client.set_experiment_run("other")
    client.get_or_create_registered_model("echo").create_version_from_run(run)
    return tmp_path / "store", run


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: verta-jupyter") and "--help" in out


def test_runs_list_and_filters(logged, capsys):
    store, run = logged
    code, out, _ = cli(capsys, "runs", "list", "--store", store)
    assert code == 0 and [line.split()[1] for line in out.splitlines()] == ["baseline", "other"]
    code, out, _ = cli(capsys, "runs", "list", "--store", store, "--tag", "best", "--json")
    assert code == 0 and json.loads(out) == [{"id": run.id, "name": "baseline"}]


def test_runs_show(logged, capsys):
    store, run = logged
    code, out, _ = cli(capsys, "runs", "show", run.id, "--store", store)
    assert code == 0 and "ExperimentRun 'baseline'" in out and "acc=0.75" in out
    code, out, _ = cli(capsys, "runs", "show", run.id, "--store", store, "--json")
    shown = json.loads(out)
    assert shown["metrics"] == {"acc": 0.75} and shown["tags"] == ["best"]
    assert "vocab" in [a["key"] for a in shown["artifacts"]]


def test_model_manifest_source_and_download(logged, capsys, tmp_path):
    store, run = logged
    code, out, _ = cli(capsys, "model", "manifest", run.id, "--store", store)
    manifest = json.loads(out)
    assert code == 0 and manifest["class_name"] == "EchoModel" and manifest["artifact_keys"] == ["vocab"]
    code, out, _ = cli(capsys, "model", "source", "--registered-model", "echo", "--version", "1",
                       "--store", store)
    assert code == 0 and "class EchoModel" in out
    code, out, _ = cli(capsys, "model", "download", run.id, tmp_path / "pkg", "--store", store)
    assert code == 0 and Path(out.strip()) == (tmp_path / "pkg").resolve()
    assert (tmp_path / "pkg" / "model.py").read_text().count("class EchoModel") == 1


def test_store_check_reports_damage_with_exit_status(logged, capsys):
    store, run = logged
    code, out, _ = cli(capsys, "store", "check", "--store", store)
    assert code == 0 and out.strip().endswith("ok") and "1 registered_model" in out
    blobs = [p for p in (store / "blobs").rglob("*") if p.is_file()]
    blobs[0].write_bytes(b"tampered")
    code, out, _ = cli(capsys, "store", "check", "--store", store)
    assert code == 1 and "PROBLEM" in out and blobs[0].name in out


def test_errors_are_one_line_and_never_create_a_store(tmp_path, capsys, logged):
    store, _ = logged
    code, _, err = cli(capsys, "runs", "show", "no-such-id", "--store", store)
    assert code == 1 and err.startswith("verta-jupyter: error:") and "no-such-id" in err
    code, _, err = cli(capsys, "runs", "list", "--store", tmp_path / "typo")
    assert code == 1 and "no verta_jupyter store" in err and not (tmp_path / "typo").exists()
    code, _, err = cli(capsys, "model", "source", "--store", store)
    assert code == 1 and "run id" in err


def test_installed_script(logged):
    store, run = logged
    script = shutil.which("verta-jupyter", path=str(Path(sys.executable).parent))
    assert script, "the verta-jupyter console script is not installed next to this python"
    proc = subprocess.run([script, "runs", "list", "--store", str(store)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and run.id in proc.stdout


def test_store_gc(logged, capsys):
    store, run = logged
    (store / "tmp" / "put-stray").write_bytes(b"half")
    code, out, _ = cli(capsys, "store", "gc", "--store", store)
    assert code == 0 and "removed 0 temporary" in out  # too young: could be a write in progress
    code, out, _ = cli(capsys, "store", "gc", "--store", store, "--min-age", "0")
    assert code == 0 and "removed 1 temporary file(s)" in out
    code, out, _ = cli(capsys, "store", "check", "--store", store)
    assert code == 0 and "note" not in out
