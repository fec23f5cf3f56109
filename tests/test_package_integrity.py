"""Tampered code never runs although "digests verified": verification walks exactly what an import
can see, and a model loaded from a store is checked against the digest the *store* recorded, not
only against the package's own (re-signable) manifest.

Every attack here is the real one: a compiled `.pyc` an import would prefer to the verified
source, a symlinked folder an import follows, a cached package whose manifest was re-signed.
"""
from __future__ import annotations

import hashlib
import importlib._bootstrap_external as bootstrap
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verta_jupyter import Client, capture_model, load_package
from verta_jupyter.errors import PackageError
from verta_jupyter.package.format import MANIFEST, verify_package
from verta_jupyter.tracking.cache import content_digest

HELPER = "def shout(text):\n    return text.upper()\n"
EVIL = textwrap.dedent("""
    import pathlib
    pathlib.Path({sentinel!r}).write_text("tampered code ran")
    def shout(text):
        return "pwned"
""")


@pytest.fixture
def bundled(shell, tmp_path, monkeypatch):
    """A package whose model imports a local module, bundled as lib/vj_shout.py."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vj_shout.py").write_text(HELPER)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    shell.run("import vj_shout\n"
              "class Shouter:\n"
              "    def __init__(self, artifacts):\n"
              "        pass\n"
              "    def predict(self, data):\n"
              "        return vj_shout.shout(data)\n")
    package = capture_model(shell.ns["Shouter"], shell.ns).save(tmp_path / "pkg")
    sys.modules.pop("vj_shout", None)
    assert (package / "lib" / "vj_shout.py").is_file()
    return package


def _plant_pyc(package: Path, sentinel: Path) -> Path:
    """A .pyc for lib/vj_shout.py that an import accepts (source mtime and size match)."""
    source = package / "lib" / "vj_shout.py"
    stat = source.stat()
    code = compile(EVIL.format(sentinel=str(sentinel)), str(source), "exec")
    data = bootstrap._code_to_timestamp_pyc(code, int(stat.st_mtime), stat.st_size)
    pyc = Path(bootstrap.cache_from_source(str(source)))
    pyc.parent.mkdir()
    pyc.write_bytes(data)
    return pyc


def test_a_planted_pycache_is_refused(bundled, tmp_path):
    sentinel = tmp_path / "sentinel"
    pyc = _plant_pyc(bundled, sentinel)
    # the enemy's proof that this matters: a plain import runs the planted code
    probe = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                            " import vj_shout; print(vj_shout.shout('x'))", str(bundled / "lib")],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "pwned" and sentinel.exists()
    sentinel.unlink()
    with pytest.raises(PackageError, match="compiled code") as caught:
        load_package(bundled)
    assert pyc.relative_to(bundled).as_posix() in str(caught.value)
    assert not sentinel.exists()


def test_a_symlinked_folder_inside_a_package_is_refused(bundled, tmp_path):
    """os.walk does not descend into a linked folder, but an import does."""
    outside = tmp_path / "outside" / "vj_evil"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("raise SystemExit('tampered')\n")
    (bundled / "lib" / "vj_evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PackageError, match="'lib/vj_evil' is a symbolic link"):
        verify_package(bundled)


def test_a_symlinked_file_is_refused_even_with_the_right_bytes(bundled, tmp_path):
    """Same content today, anything tomorrow: a link is not a file the digest can vouch for."""
    copy = tmp_path / "model-copy.py"
    copy.write_bytes((bundled / "model.py").read_bytes())
    (bundled / "model.py").unlink()
    (bundled / "model.py").symlink_to(copy)
    with pytest.raises(PackageError, match="'model.py' is a symbolic link"):
        load_package(bundled)


@pytest.mark.parametrize("planted", [".hidden.py", "lib/.pth", "lib/vj_extra/__init__.py",
                                     "lib/vj_shout.pyc"])
def test_any_file_not_in_the_manifest_is_refused(bundled, planted):
    path = bundled / planted
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x = 1\n")
    with pytest.raises(PackageError, match="not in the manifest"):
        verify_package(bundled)


@pytest.mark.parametrize("hostile", ["../outside.py", "/etc/passwd", "C:\\x.py", "lib/../../x"])
def test_a_manifest_naming_paths_outside_the_package_is_refused(bundled, hostile):
    manifest = json.loads((bundled / MANIFEST).read_text())
    manifest["files"][hostile] = "0" * 64
    (bundled / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="the manifest lists a file"):
        verify_package(bundled)


def _resign(package: Path) -> None:
    """What an attacker with write access to the cache does after editing a file."""
    manifest = json.loads((package / MANIFEST).read_text())
    for rel in manifest["files"]:
        manifest["files"][rel] = hashlib.sha256((package / rel).read_bytes()).hexdigest()
    (package / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


class Echo:
    def __init__(self, artifacts):
        pass

    def predict(self, data):
        return {"echo": data}


def test_a_resigned_manifest_in_the_cache_is_caught(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    run = Client(store=tmp_path / "store").set_experiment_run()
    run.log_model(Echo, sample_input=1, check_rebuild=False)
    cached = run.model_package_dir()
    original = (cached / "model.py").read_bytes()
    sentinel = tmp_path / "sentinel"
    with open(cached / "model.py", "a") as f:
        f.write(f"\nimport pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n")
    _resign(cached)
    verify_package(cached)  # self-consistent: the package's own manifest cannot tell
    model = run.load_model()  # ...but the store's digest can
    assert model.predict(1) == {"echo": 1}
    assert not sentinel.exists()
    assert (run.model_package_dir() / "model.py").read_bytes() == original


def test_a_cached_file_edited_in_place_is_fetched_again(tmp_path, monkeypatch):
    """Same size, other bytes: a size check would trust it."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    run = Client(store=tmp_path / "store").set_experiment_run()
    (tmp_path / "v.txt").write_text("genuine")
    run.log_artifact("v", str(tmp_path / "v.txt"))
    first = Path(run.fetch_artifacts(["v"])["v"])
    first.write_text("forged!")
    assert Path(run.fetch_artifacts(["v"])["v"]).read_text() == "genuine"


def test_a_link_planted_in_a_cached_directory_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    run = Client(store=tmp_path / "store").set_experiment_run()
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_text("a")
    run.log_artifact("d", tmp_path / "tree")
    cached = Path(run.fetch_artifacts(["d"])["d"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("a")
    (cached / "a.txt").unlink()
    (cached / "a.txt").symlink_to(elsewhere)  # same bytes through a link
    assert content_digest(cached, "directory") is None
    again = Path(run.fetch_artifacts(["d"])["d"])
    assert not (again / "a.txt").is_symlink() and (again / "a.txt").read_text() == "a"


def test_the_cache_leaves_no_staging_folders_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    run = Client(store=tmp_path / "store").set_experiment_run()
    (tmp_path / "v.txt").write_text("genuine")
    run.log_artifact("v", str(tmp_path / "v.txt"))
    for _ in range(3):
        Path(run.fetch_artifacts(["v"])["v"]).write_text("forged!")
    run.fetch_artifacts(["v"])
    leftovers = [p for p in (tmp_path / "cache").rglob(".*")]
    assert leftovers == []
    assert not os.listdir(tmp_path / "store" / "tmp")


def test_a_lazy_import_of_a_bundled_module_writes_no_bytecode(shell, tmp_path, monkeypatch):
    """An import inside predict runs long after load_package: it must neither write a .pyc into
    the package (the stored package would then fail verification forever) nor read one."""
    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vj_lazy_outer.py").write_text(
        "def twice(x):\n    import vj_lazy_inner\n    return vj_lazy_inner.double(x)\n")
    (tmp_path / "src" / "vj_lazy_inner.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    shell.run("import vj_lazy_outer, vj_lazy_inner\n"
              "class Lazy:\n"
              "    def __init__(self, artifacts):\n"
              "        pass\n"
              "    def predict(self, data):\n"
              "        return vj_lazy_outer.twice(data)\n")
    run = Client(store=tmp_path / "store").set_experiment_run()
    run.log_model(shell.ns["Lazy"], sample_input=3, namespace=shell.ns)  # rebuild included
    for name in ("vj_lazy_outer", "vj_lazy_inner"):
        sys.modules.pop(name, None)
    assert run.load_model().predict(4) == 8
    stored = Path(run.download_model(tmp_path / "downloaded"))
    assert not list(stored.rglob("*.pyc")) and not list((tmp_path / "cache").rglob("*.pyc"))
    for name in ("vj_lazy_outer", "vj_lazy_inner"):
        sys.modules.pop(name, None)
    assert run.load_model().predict(5) == 10  # and again, from the verified cache


def test_a_cache_entry_replaced_by_a_link_is_not_followed(tmp_path, monkeypatch):
    """The entry folder itself swapped for a link to an attacker's folder with a forged copy."""
    import shutil

    monkeypatch.setenv("VERTA_JUPYTER_CACHE", str(tmp_path / "cache"))
    run = Client(store=tmp_path / "store").set_experiment_run()
    (tmp_path / "v.txt").write_text("genuine")
    run.log_artifact("v", str(tmp_path / "v.txt"))
    entry = Path(run.fetch_artifacts(["v"])["v"]).parent
    forged = tmp_path / "forged"
    shutil.copytree(entry, forged)
    (forged / "v.txt").write_text("forged!")
    shutil.rmtree(entry)
    entry.symlink_to(forged, target_is_directory=True)
    path = Path(run.fetch_artifacts(["v"])["v"])
    assert path.read_text() == "genuine" and not path.parent.is_symlink()
    assert (forged / "v.txt").read_text() == "forged!"  # the attacker's folder is left alone
