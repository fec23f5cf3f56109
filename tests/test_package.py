"""Model package v1: manifest, digests, tamper refusal, unique modules, the class.pkl fast path."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from verta_jupyter import capture_model, load_package
from verta_jupyter.errors import PackageError
from verta_jupyter.package.format import FORMAT, MANIFEST, read_manifest, verify_package
from verta_jupyter.worker.rebuild import rebuild_in_subprocess

MODEL = """
import collections
COUNTS = collections.Counter("abracadabra")

class {name}:
    def __init__(self, artifacts):
        self.key = artifacts.get("k")

    def predict(self, data):
        return {{"tag": "{tag}", "n": COUNTS[data]}}
"""


@pytest.fixture
def package(shell, tmp_path):
    shell.run(MODEL.format(name="MyModel", tag="one"))
    captured = capture_model(shell.ns["MyModel"], shell.ns)
    return captured.save(tmp_path / "pkg", sample_input="a", sample_output={"tag": "one", "n": 5},
                         artifact_keys=["vocab"])


def test_manifest_describes_the_package(package):
    manifest = read_manifest(package)
    assert manifest["format"] == FORMAT
    assert manifest["entry"] == "model:MyModel"
    assert manifest["artifact_keys"] == ["vocab"]
    assert manifest["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(manifest["files"]) == {"model.py", "values/0.pkl", "class.pkl", "requirements.txt",
                                      "input_example.json", "output_example.json"}
    assert json.loads((package / "output_example.json").read_text()) == {"tag": "one", "n": 5}
    names = {d["name"]: d["kind"] for d in manifest["dependencies"]}
    assert names == {"MyModel": "notebook", "COUNTS": "value"}


def test_model_py_is_standalone_and_readable(package):
    source = (package / "model.py").read_text()
    assert "class MyModel:" in source and "import collections" not in source.split("class MyModel")[1]
    done = subprocess.run([sys.executable, "-I", "-B", "-c", "import sys; sys.path.insert(0, '.'); import model; print(model.MyModel({}).predict('b'))"],
                          cwd=package, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'tag': 'one', 'n': 2}"


@pytest.mark.parametrize("target", ["model.py", "values/0.pkl", "requirements.txt"])
def test_a_modified_file_is_refused(package, target):
    path = package / target
    path.write_bytes(path.read_bytes() + b"\n# changed")
    with pytest.raises(PackageError, match=f"'{target}' was modified"):
        load_package(package)


def test_an_extra_or_missing_file_is_refused(package):
    (package / "evil.py").write_text("print('hi')")
    with pytest.raises(PackageError, match="unexpected file 'evil.py'"):
        verify_package(package)
    (package / "evil.py").unlink()
    (package / "requirements.txt").unlink()
    with pytest.raises(PackageError, match="'requirements.txt' is missing"):
        verify_package(package)


def test_not_a_package_is_a_clear_error(tmp_path):
    with pytest.raises(PackageError, match="not a verta_jupyter model package"):
        load_package(tmp_path)


def test_writing_into_a_non_empty_folder_is_refused(shell, tmp_path):
    shell.run(MODEL.format(name="MyModel", tag="x"))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "keep.txt").write_text("mine")
    with pytest.raises(PackageError, match="not empty"):
        capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    assert (tmp_path / "pkg" / "keep.txt").read_text() == "mine"


def test_two_packages_with_the_same_class_name_load_side_by_side(shell, tmp_path):
    packages = []
    for tag in ("one", "two"):
        shell.run(MODEL.format(name="MyModel", tag=tag))
        packages.append(capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / tag))
    first, second = (load_package(p) for p in packages)
    assert first is not second and first.__module__ != second.__module__
    assert first({}).predict("a")["tag"] == "one"
    assert second({}).predict("a")["tag"] == "two"


def test_loading_writes_nothing_into_the_package(package):
    before = sorted(p.name for p in package.rglob("*"))
    load_package(package)({}).predict("a")
    assert sorted(p.name for p in package.rglob("*")) == before


def test_class_pickle_fast_path_used_only_on_exact_versions(package):
    cls = load_package(package, use_pickle=True)
    assert cls.__verta_package__["loaded_from"] == "class.pkl"
    assert cls({}).predict("r") == {"tag": "one", "n": 2}
    manifest = json.loads((package / MANIFEST).read_text())
    manifest["python"] = "3.99.0"
    (package / MANIFEST).write_text(json.dumps(manifest))
    cls = load_package(package, use_pickle=True)
    assert cls.__verta_package__["loaded_from"] == "model.py"
    assert "class.pkl refused" in cls.__verta_package__["notes"][0]


def test_class_from_a_py_file_is_captured_by_source_and_survives_the_file(tmp_path, monkeypatch):
    source_dir = tmp_path / "src"
    source_dir.mkdir()
    (source_dir / "vj_script_model.py").write_text(textwrap.dedent("""
        RATE = 3
        def scale(x):
            return x * RATE
        class FileModel:
            def __init__(self, artifacts):
                pass
            def predict(self, data):
                return scale(data)
    """))
    monkeypatch.syspath_prepend(str(source_dir))
    import vj_script_model

    captured = capture_model(vj_script_model.FileModel)
    package = captured.save(tmp_path / "pkg", sample_input=2)
    (source_dir / "vj_script_model.py").unlink()
    sys.modules.pop("vj_script_model")
    assert "def scale(x):" in captured.source
    result = rebuild_in_subprocess(package, sample_input=2)
    assert result.ok, result.traceback
    assert result.output == 6


def test_class_from_an_installed_distribution_is_referenced_by_import(tmp_path):
    from sklearn.dummy import DummyRegressor

    captured = capture_model(DummyRegressor)
    assert "from sklearn.dummy import DummyRegressor" in captured.source
    assert [r.split("==")[0] for r in captured.requirements] == ["scikit-learn"]


def test_rebuild_reports_a_model_that_fails_in_a_fresh_process(shell, tmp_path):
    shell.run("import os\nclass MyModel:\n    def __init__(self, artifacts):\n"
              "        self.path = artifacts['data']\n    def predict(self, data):\n"
              "        return open(self.path).read()")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    result = rebuild_in_subprocess(package, artifacts={"data": tmp_path / "nope.txt"}, sample_input=1)
    assert not result.ok
    assert "FileNotFoundError" in result.error and "nope.txt" in result.traceback


def test_rebuild_times_out_a_hung_model(shell, tmp_path):
    shell.run("import time\nclass MyModel:\n    def __init__(self, artifacts):\n        pass\n"
              "    def predict(self, data):\n        time.sleep(60)")
    package = capture_model(shell.ns["MyModel"], shell.ns).save(tmp_path / "pkg")
    result = rebuild_in_subprocess(package, sample_input=1, timeout=2)
    assert not result.ok and "did not finish within 2 s" in result.error
