"""Packaging conventions: a wheel built from a clean clone carries py.typed, the LICENSE and SPDX
metadata; `--version` on the console script and `python -m verta_jupyter`; `%unload_ext`."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import verta_jupyter

REPO = Path(__file__).resolve().parent.parent
EXPECTED_VERSION = f"verta-jupyter {verta_jupyter.__version__}\n"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built offline from a fresh clone of the committed HEAD (not this work tree, so a
    file that is only on this disk cannot make it pass)."""
    tmp = tmp_path_factory.mktemp("wheel")
    clone = tmp / "clone"
    git("clone", "-q", "--no-hardlinks", str(REPO), str(clone))
    git("-C", str(clone), "checkout", "-q", git("-C", str(REPO), "rev-parse", "HEAD"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(tmp / "dist"), str(clone)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((tmp / "dist").glob("verta_jupyter-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        yield archive


def metadata(archive: zipfile.ZipFile):
    name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    return Parser().parsestr(archive.read(name).decode())


def test_wheel_holds_py_typed_and_the_license(wheel):
    names = wheel.namelist()
    assert "verta_jupyter/py.typed" in names
    assert "verta_jupyter/__main__.py" in names
    license_name = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    text = wheel.read(license_name).decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert text == (REPO / "LICENSE").read_text()
    assert not [n for n in names if n.startswith("tests/")]


def test_wheel_metadata_uses_an_spdx_license_expression(wheel):
    meta = metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert not [c for c in meta.get_all("Classifier") if c.startswith("License ::")]  # PEP 639


def test_wheel_classifiers_and_extras(wheel):
    meta = metadata(wheel)
    classifiers = set(meta.get_all("Classifier"))
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11, 12, 13)} <= classifiers
    assert {"Framework :: Jupyter", "Framework :: IPython", "Typing :: Typed",
            "Operating System :: POSIX :: Linux", "Operating System :: MacOS",
            "Operating System :: Microsoft :: Windows"} <= classifiers
    assert meta["Requires-Python"] == ">=3.10"
    assert "fast" in meta.get_all("Provides-Extra")
    assert any(r.startswith("orjson") and 'extra == "fast"' in r for r in meta.get_all("Requires-Dist"))


def test_version_matches_the_installed_distribution():
    assert verta_jupyter.__version__ == importlib.metadata.version("verta-jupyter")


def test_console_script_prints_the_version_on_stdout():
    script = shutil.which("verta-jupyter", path=str(Path(sys.executable).parent))
    assert script, "the verta-jupyter console script is not installed next to this python"
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, EXPECTED_VERSION, "")


def test_python_dash_m_is_the_same_command_line(tmp_path):
    version = subprocess.run([sys.executable, "-m", "verta_jupyter", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert (version.returncode, version.stdout, version.stderr) == (0, EXPECTED_VERSION, "")
    listing = subprocess.run([sys.executable, "-m", "verta_jupyter", "store", "check", "--store",
                              str(tmp_path / "absent")], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 1 and listing.stderr.startswith("verta-jupyter: error:")
    assert not (tmp_path / "absent").exists()  # the CLI's own rule: checking never creates a store


def test_no_subcommand_shows_help_with_version_flag():
    done = subprocess.run([sys.executable, "-m", "verta_jupyter"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "--version" in done.stdout and "{runs,model,store,envs}" in done.stdout


SEED_CELL = ("%%verta_model --no-log --no-panel --sample 1\nclass MyModel:\n"
             "    def __init__(self, artifacts):\n        pass\n    def predict(self, data):\n"
             "        return data\n")


def test_unload_ext_removes_the_magic_and_load_ext_brings_it_back(shell, tmp_path, monkeypatch):
    from IPython.core.error import UsageError

    monkeypatch.chdir(tmp_path)
    ip = shell.ip
    shell.run("%load_ext verta_jupyter")
    shell.run(SEED_CELL)
    shell.run("%unload_ext verta_jupyter")
    assert "verta_model" not in ip.magics_manager.magics["cell"]
    assert "VertaMagics" not in ip.magics_manager.registry
    error = shell.run_failing(SEED_CELL)
    assert type(error) is UsageError and "verta_model" in str(error)
    shell.run("%load_ext verta_jupyter")
    shell.run(SEED_CELL)
    shell.run("%reload_ext verta_jupyter")
    shell.run(SEED_CELL)
    shell.run("%unload_ext verta_jupyter")
