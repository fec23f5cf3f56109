"""The public API: names in __all__, docstrings, and a light `import verta_jupyter`."""
from __future__ import annotations

import subprocess
import sys

import verta_jupyter

HEAVY = ["IPython", "ipywidgets", "pandas", "requests", "numpy", "cloudpickle"]


def test_import_is_light_in_a_clean_interpreter():
    code = ("import sys, verta_jupyter, verta_jupyter.package.load, verta_jupyter.worker.__main__; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_public_name_exists_and_has_a_docstring():
    for name in verta_jupyter.__all__:
        if name == "__version__":
            continue
        value = getattr(verta_jupyter, name)
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_public_names_are_the_contract():
    expected = {"Client", "capture_model", "CapturedModel", "load_package", "validate", "ValidationReport",
                "PredictPanel", "to_json_compatible", "from_json_compatible", "Endpoint", "VertaError",
                "load_ipython_extension", "unload_ipython_extension", "__version__"}
    assert set(verta_jupyter.__all__) == expected


def test_readme_documents_every_catalog_code():
    from pathlib import Path

    from verta_jupyter.catalog import CATALOG

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [code for code in CATALOG if f"| {code} |" not in readme]
    assert missing == []
