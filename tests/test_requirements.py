"""Requirement pins against REAL installed distributions, built and installed by the test.

Two distributions share the PEP 420 namespace package `vjtestns` (vjns-alpha ships
vjtestns/alpha, vjns-beta ships vjtestns/beta), one has a local version label (vjlocal
1.0+cu121) and one is imported only lazily by a local helper module. The wheels are built by
`pip wheel` from source trees written here and installed with `pip install --target` into a
folder that the tests put on sys.path, as a user's `pip install` in a running kernel would.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from verta_jupyter.capture import capture_model, requirements

_DISTS = {  # name: (version, {relative path: source})
    "vjns-alpha": ("1.2.0", {"vjtestns/alpha/__init__.py": "VALUE = 'alpha'\n"}),
    "vjns-beta": ("3.4.0", {"vjtestns/beta/__init__.py": "VALUE = 'beta'\n"}),
    "vjlocal": ("1.0+cu121", {"vjlocal_mod/__init__.py": "def scale(x):\n    return 2 * x\n"}),
    "vjlazy": ("0.3.0", {"vjlazy_mod/__init__.py": "def shout(s):\n    return s.upper()\n"}),
    "vjlate": ("2.0.0", {"vjlate_mod/__init__.py": "X = 1\n"}),  # built, installed by a test
}
_MODULES = ("vjtestns", "vjlocal_mod", "vjlazy_mod", "vjlate_mod", "vj_helper_outer", "vj_helper_inner")
_PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def _write_source_tree(root: Path, name: str, version: str, files: dict[str, str]) -> Path:
    tree = root / name
    for relative, text in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(text)
    top = next(iter(files)).split("/")[0]
    (tree / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "{version}"

        [tool.setuptools.packages.find]
        include = ["{top}*"]
        namespaces = true
        """))
    return tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The distributions, really built; all but vjlate installed into a folder on sys.path.
    Yields the wheels' folder."""
    root = tmp_path_factory.mktemp("dists")
    trees = [_write_source_tree(root / "src", n, v, f) for n, (v, f) in _DISTS.items()]
    wheels, target = root / "wheels", root / "site"
    subprocess.run([*_PIP, "wheel", "--no-deps", "-w", str(wheels), *map(str, trees)],
                   check=True, timeout=300, capture_output=True)
    _install(target, [w for w in sorted(wheels.glob("*.whl")) if not w.name.startswith("vjlate-")])
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield wheels
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.split(".")[0] in _MODULES]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _install(target: Path, wheels: list[Path]) -> None:
    subprocess.run([*_PIP, "install", "--no-deps", "--no-index", "--target", str(target),
                    *map(str, wheels)], check=True, timeout=120, capture_output=True)


def _capture(shell, cell: str, name: str = "M"):
    shell.run(textwrap.dedent(cell))
    return capture_model(shell.ns[name], shell.ns)


def test_both_namespace_distributions_are_candidates(installed):
    # The enemy's setup: the top-level name alone cannot tell the two providers apart.
    assert sorted(requirements.candidates("vjtestns.beta")) == ["vjns-alpha", "vjns-beta"]


@pytest.mark.parametrize("part, dist", [("alpha", "vjns-alpha==1.2.0"), ("beta", "vjns-beta==3.4.0")])
def test_namespace_submodule_pins_the_distribution_that_holds_its_file(installed, shell, part, dist):
    captured = _capture(shell, f"""
        import vjtestns.{part}

        class M:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                return vjtestns.{part}.VALUE
        """)
    assert captured.requirements == [dist]


def test_namespace_module_bound_by_from_import(installed, shell):
    captured = _capture(shell, """
        from vjtestns import beta as b

        class M:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                return b.VALUE
        """)
    assert captured.requirements == ["vjns-beta==3.4.0"]


def test_local_version_label_is_dropped_from_the_pin(installed, shell):
    assert metadata.version("vjlocal") == "1.0+cu121"  # really installed with its label
    captured = _capture(shell, """
        from vjlocal_mod import scale

        class M:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                return scale(data)
        """)
    assert captured.requirements == ["vjlocal==1.0"]


@pytest.mark.parametrize("version, pinned", [
    ("2.3.1+cu121", "2.3.1"), ("1.2.3rc0+ab45", "1.2.3rc0"), ("1.2.3.dev0+ab.4-5_x", "1.2.3.dev0"),
    ("1.2.3.post0", "1.2.3.post0"), ("1.0", "1.0"), ("weird+", "weird+"), ("1+a+b", "1+a+b")])
def test_pinned_version(version, pinned):
    assert requirements.pinned_version(version) == pinned


def test_a_folder_added_to_sys_path_mid_session_is_seen(installed):
    # What was learnt before the folder was on sys.path must not hide its distributions.
    site = next(p for p in sys.path if p.endswith("site") and (Path(p) / "vjtestns").is_dir())
    sys.path.remove(site)
    try:
        assert requirements.candidates("vjtestns") == []
    finally:
        sys.path.insert(0, site)
    assert len(requirements.candidates("vjtestns")) == 2


def test_a_pip_install_mid_session_is_seen(installed, tmp_path):
    # `%pip install` into a site-packages folder already on sys.path, after a capture.
    site = tmp_path / "site-packages"
    site.mkdir()
    sys.path.insert(0, str(site))
    try:
        assert requirements.candidates("vjlate_mod") == []
        _install(site, list(installed.glob("vjlate-*.whl")))
        assert requirements.candidates("vjlate_mod") == ["vjlate"]
        assert requirements.requirement_for("vjlate_mod") == "vjlate==2.0.0"
    finally:
        sys.path.remove(str(site))


def test_bundled_local_module_brings_what_it_imports_lazily(installed, shell, tmp_path):
    # vj_helper_outer imports vjlazy_mod and vj_helper_inner only inside a function: neither is
    # imported when the model is captured, yet both are needed when predict runs elsewhere.
    local = tmp_path / "local"
    local.mkdir()
    (local / "vj_helper_inner.py").write_text("def exclaim(s):\n    return s + '!'\n")
    (local / "vj_helper_outer.py").write_text(textwrap.dedent("""\
        def loud(s):
            import vjlazy_mod
            import vj_helper_inner
            return vj_helper_inner.exclaim(vjlazy_mod.shout(s))
        """))
    sys.path.insert(0, str(local))
    try:
        captured = _capture(shell, """
            import vj_helper_outer

            class M:
                def __init__(self, artifacts):
                    pass

                def predict(self, data):
                    return vj_helper_outer.loud(data)
            """)
    finally:
        sys.path.remove(str(local))
    assert captured.requirements == ["vjlazy==0.3.0"]
    assert set(captured.bundled) == {"vj_helper_outer.py", "vj_helper_inner.py"}


def test_cloudpickle_is_required_only_when_a_value_needs_it(shell):
    by_value = _capture(shell, """
        made = {}
        exec("def double(x):\\n    return 2 * x", made)  # no source anywhere: bytecode,
        OPS = {"double": made["double"]}  # so this value needs cloudpickle to load

        class M:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                return OPS["double"](data)
        """)
    assert [r.split("==")[0] for r in by_value.requirements] == ["cloudpickle"]
    plain = _capture(shell, """
        from fractions import Fraction
        third = Fraction(1, 3)  # pickled by reference to the standard library

        class N:
            def __init__(self, artifacts):
                pass

            def predict(self, data):
                return float(third * data)
        """, name="N")
    assert "third" in plain.pickled and plain.requirements == []
