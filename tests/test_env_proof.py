"""The clean-environment proof: a REAL virtual environment holding only requirements.txt (built
by uv, or venv + pip), the model rebuilt there by the worker, compared with the notebook.

Requirements are kept tiny (stdlib, or `six`), so the package index is asked for one small
wheel at most; environments are cached in a folder of this module's own.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from verta_jupyter import Client
from verta_jupyter.capture import capture_model
from verta_jupyter.cli import main
from verta_jupyter.errors import CapturedByValueWarning, ValidationError
from verta_jupyter.validation.validate import validate
from verta_jupyter.worker import envproof

# The dynamic-import model warns VJ206 on purpose (that is what it is about); test_warnings.py
# covers the warning itself, these tests the proof.
pytestmark = pytest.mark.filterwarnings("ignore::verta_jupyter.errors.DynamicLookupWarning")

SIX_MODEL = """
import six

class Shouter:
    def __init__(self, artifacts):
        self.suffix = "!"

    def predict(self, data):
        return six.ensure_str(data["text"]).upper() + self.suffix
"""
# `six` is installed here, so the notebook and a fresh process of this interpreter are happy;
# the name is built at run time, so capture cannot see it and requirements.txt lacks it.
DYNAMIC_MODEL = """
import importlib

class Dynamic:
    def __init__(self, artifacts):
        self.helper = importlib.import_module("si" + "x")

    def predict(self, data):
        return self.helper.ensure_str(data["text"]).upper()
"""
SAMPLE = {"text": "hi"}


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("envs")


@pytest.fixture(autouse=True)
def private_caches(env_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_ENV_CACHE", str(env_cache))
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))


def _store_bytes(root: Path) -> dict[str, str]:
    """Every file of a store, by digest; SQLite's -shm is a reader's index, changed by reads."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith("-shm")}


def _rebuild_check(report):
    return next(c for c in report.checks if c.name == "rebuild")


def test_a_model_with_its_requirements_passes(shell):
    shell.run(SIX_MODEL)
    report = validate(shell.ns["Shouter"], namespace=shell.ns, sample_input=SAMPLE, proof="env")
    assert report.ok, report.error_message()
    assert report.captured.requirements == ["six==1.17.0"]
    assert report.rebuilt_output == "HI!"
    check = _rebuild_check(report)
    assert check.status == "ok" and "clean environment" in check.detail


def test_a_dynamic_import_missing_from_requirements_fails_with_vj501_and_logs_nothing(shell, tmp_path):
    shell.run(DYNAMIC_MODEL)
    client = Client(store=tmp_path / "store")
    run = client.set_experiment_run("dynamic")
    before = _store_bytes(tmp_path / "store")
    with pytest.raises(ValidationError) as failed:
        run.log_model(shell.ns["Dynamic"], sample_input=SAMPLE, namespace=shell.ns, proof="env")
    assert failed.value.codes == ["VJ501"]
    message = str(failed.value)
    assert "module 'six' is imported but not in requirements.txt" in message
    assert "here it comes from six==1.17.0" in message and "`import six`" in message
    assert _store_bytes(tmp_path / "store") == before
    assert run._store.list_artifacts("run", run.id) == []
    client.store.close()


def test_the_same_model_passes_the_process_proof(shell):
    # Why the clean environment is needed: this interpreter has six, so the old proof passes.
    shell.run(DYNAMIC_MODEL)
    report = validate(shell.ns["Dynamic"], namespace=shell.ns, sample_input=SAMPLE)
    assert report.ok and report.rebuilt_output == "HI"


def test_the_second_proof_with_the_same_requirements_reuses_the_environment(shell, tmp_path):
    cache = tmp_path / "fresh-envs"
    shell.run(SIX_MODEL)
    first_package = capture_model(shell.ns["Shouter"], shell.ns).save(
        tmp_path / "one", sample_input=SAMPLE)
    first = envproof.prove_in_clean_env(first_package, sample_input=SAMPLE, cache_dir=cache)
    shell.run(SIX_MODEL.replace('"!"', '"?"'))  # another package, the same requirements
    second_package = capture_model(shell.ns["Shouter"], shell.ns).save(
        tmp_path / "two", sample_input=SAMPLE)
    info = first.environment.path / "vj-env.json"
    built = (os.stat(first.environment.path).st_ino, info.read_text())
    second = envproof.prove_in_clean_env(second_package, sample_input=SAMPLE, cache_dir=cache)
    assert first.ok and second.ok
    assert (first.rebuild.output, second.rebuild.output) == ("HI!", "HI?")
    assert first.environment.reused is False and second.environment.reused is True
    assert second.environment.path == first.environment.path
    assert (os.stat(second.environment.path).st_ino, info.read_text()) == built
    assert [p.name for p in cache.iterdir() if p.name != ".use"] == [first.environment.key]


def test_the_environment_holds_only_the_requirements(env_cache):
    env = envproof.ensure_environment(["six==1.17.0"])
    import subprocess

    from verta_jupyter.worker.process import child_environment

    listing = subprocess.run([env.python, "-I", "-c", "import importlib.metadata as m; "
                              "print(sorted(d.metadata['Name'] for d in m.distributions()))"],
                             capture_output=True, text=True, timeout=60, env=child_environment())
    names = set(json.loads(listing.stdout.replace("'", '"')))
    assert "six" in names and not {"verta-jupyter", "cloudpickle", "pandas", "ipython"} & names


_BUILD = """
import json, sys
from verta_jupyter.worker.envproof import ensure_environment
env = ensure_environment([], cache_dir=sys.argv[1])
print(json.dumps({"path": str(env.path), "python": env.python, "key": env.key}))
"""


def test_racing_processes_building_one_environment_both_get_a_whole_one(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "race"
    racers = [subprocess.Popen([sys.executable, "-c", _BUILD, str(cache)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err
        results.append(json.loads(out))
    assert results[0] == results[1] and Path(results[0]["python"]).exists()
    # no staging folder left (".use" holds use markers: envcache.py)
    assert [p.name for p in cache.iterdir() if p.name != ".use"] == [results[0]["key"]]


def test_an_uninstallable_pin_fails_with_vj501_naming_it(shell, tmp_path):
    shell.run(SIX_MODEL)
    captured = capture_model(shell.ns["Shouter"], shell.ns)
    captured.requirements = ["six==0.0.0"]  # what a wrong pin looks like to the index
    package = captured.save(tmp_path / "pkg", sample_input=SAMPLE)
    proof = envproof.prove_in_clean_env(package, sample_input=SAMPLE)
    assert not proof.ok and proof.stage == "environment"
    assert "requirements.txt" in proof.error and "six==0.0.0" in proof.error
    assert not list(Path(os.environ["VERTA_JUPYTER_ENV_CACHE"]).glob(".building-*"))


def test_a_modified_requirements_file_is_refused_before_anything_installs(shell, tmp_path):
    shell.run(SIX_MODEL)
    package = capture_model(shell.ns["Shouter"], shell.ns).save(tmp_path / "pkg")
    (package / "requirements.txt").write_text("six==1.17.0\nsomething-else==1.0\n")
    proof = envproof.prove_in_clean_env(package, cache_dir=tmp_path / "untouched")
    assert not proof.ok and proof.stage == "package" and "modified" in proof.error
    assert not (tmp_path / "untouched").exists()


def test_pip_fallback_when_uv_is_not_there(shell, tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_ENV_INSTALLER", "pip")
    shell.run(SIX_MODEL)
    package = capture_model(shell.ns["Shouter"], shell.ns).save(tmp_path / "pkg", sample_input=SAMPLE)
    proof = envproof.prove_in_clean_env(package, sample_input=SAMPLE, cache_dir=tmp_path / "envs")
    assert proof.ok, proof.error
    assert proof.environment.installer == "pip" and proof.rebuild.output == "HI!"


def _another_python() -> str | None:
    import sys

    for version in ("3.12", "3.13", "3.10"):
        if version != f"{sys.version_info[0]}.{sys.version_info[1]}":
            try:
                envproof.find_interpreter(version)
                return version
            except envproof.EnvironmentBuildError:
                continue
    return None


def test_proof_under_another_python(shell, tmp_path):
    version = _another_python()
    if version is None:  # nothing else installed: the refusal must say where it looked
        with pytest.raises(envproof.EnvironmentBuildError, match="pyenv install 3.12"):
            envproof.find_interpreter("3.12")
        return
    shell.run(SIX_MODEL)
    package = capture_model(shell.ns["Shouter"], shell.ns).save(tmp_path / "pkg", sample_input=SAMPLE)
    proof = envproof.prove_in_clean_env(package, sample_input=SAMPLE, python=version)
    assert proof.ok, proof.error
    assert proof.rebuild.python.startswith(version + ".") and proof.rebuild.output == "HI!"


def test_an_unknown_python_version_is_refused_clearly():
    with pytest.raises(envproof.EnvironmentBuildError, match=r"no Python 3\.99 .*pyenv install 3\.99"):
        envproof.find_interpreter("3.99")


def test_magic_proof_env(shell):
    shell.run("%load_ext verta_jupyter")
    shell.run("%%verta_model --no-log --no-panel --proof env --sample '{\"text\": \"hi\"}'\n"
              + SIX_MODEL)
    magics = shell.ip.magics_manager.registry["VertaMagics"]
    assert "clean environment" in _rebuild_check(magics.last_outcome.report).detail
    error = shell.run_failing("%%verta_model --no-log --no-panel --proof env --sample '{\"text\": \"hi\"}'\n"
                              + DYNAMIC_MODEL)
    assert isinstance(error, ValidationError) and error.codes == ["VJ501"] and "'six'" in str(error)


def test_cli_model_verify_env(shell, tmp_path, capsys):
    shell.run(DYNAMIC_MODEL + SIX_MODEL)
    client = Client(store=tmp_path / "store")
    dynamic = client.set_experiment_run("dynamic")
    dynamic.log_model(shell.ns["Dynamic"], sample_input=SAMPLE, namespace=shell.ns)  # process proof
    plain = client.set_experiment_run("plain")
    plain.log_model(shell.ns["Shouter"], sample_input=SAMPLE, namespace=shell.ns)
    client.store.close()
    store = str(tmp_path / "store")
    assert main(["model", "verify", dynamic.id, "--store", store]) == 0
    assert "ok in a fresh process" in capsys.readouterr().out
    assert main(["model", "verify", dynamic.id, "--env", "--store", store]) == 1
    err = capsys.readouterr().err
    assert "[VJ501]" in err and "module 'six' is imported but not in requirements.txt" in err
    assert main(["model", "verify", plain.id, "--env", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "ok in a clean environment" in out and "sample output matches" in out
    assert main(["model", "verify", plain.id, "--python", "3.12", "--store", store]) == 1
    assert "add --env" in capsys.readouterr().err


def test_model_verify_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["model", "verify", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "--env" in out and "--python" in out


def test_an_unknown_proof_is_refused(shell):
    shell.run(SIX_MODEL)
    with pytest.raises(ValueError, match="proof='docker': use 'process'"):
        validate(shell.ns["Shouter"], namespace=shell.ns, proof="docker")


def test_a_damaged_cached_environment_is_rebuilt(tmp_path):
    first = envproof.ensure_environment([], cache_dir=tmp_path / "envs")
    (first.path / "vj-env.json").unlink()  # someone cleaned up by hand
    again = envproof.ensure_environment([], cache_dir=tmp_path / "envs")
    assert again.reused is False and again.path == first.path and Path(again.python).exists()
    assert envproof.ensure_environment([], cache_dir=tmp_path / "envs").reused is True


def test_a_value_that_needs_cloudpickle_brings_it_and_passes(shell):
    shell.run("""
made = {}
exec("def double(x):\\n    return 2 * x", made)  # no source anywhere: bytecode,
OPS = {"double": made["double"]}  # so this value needs cloudpickle to load

class Doubler:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return OPS["double"](data)
""")
    with pytest.warns(CapturedByValueWarning, match="'OPS'"):
        report = validate(shell.ns["Doubler"], namespace=shell.ns, sample_input=21, proof="env")
    assert report.ok, report.error_message()
    assert [r.split("==")[0] for r in report.captured.requirements] == ["cloudpickle"]
    assert report.rebuilt_output == 42
