"""Rebuild a class from a model package, here or in a fresh process.

Source is the durable record: `load_package` verifies every digest, then runs model.py as a
module with a unique name (two packages may hold classes of the same name). The class.pkl fast
path is taken only when asked for and only when Python and cloudpickle versions match exactly;
anything else falls back to source with a note, never to a crash.

`rebuild_in_subprocess` is the proof that a package stands alone: a fresh `python -I` in another
working directory, no notebook state, builds the model and predicts the sample.
"""
from __future__ import annotations

import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PackageError
from .package import MISSING, package_digest, verify_package

_counter = itertools.count(1)


def load_package(path, *, use_pickle: bool = False) -> type:
    """The class rebuilt from the model package at `path` (digests verified first).

    `cls.__verta_package__` records where it came from: path, manifest, how it was loaded, notes.
    """
    path = Path(path).resolve()
    manifest = verify_package(path)
    notes: list[str] = []
    cls = _from_class_pickle(path, manifest, notes) if use_pickle else None
    loaded_from = "class.pkl" if cls is not None else "model.py"
    if cls is None:
        cls = _from_source(path, manifest)
    cls.__verta_package__ = {"path": str(path), "manifest": manifest, "loaded_from": loaded_from,
                             "notes": notes, "digest": package_digest(manifest)}
    return cls


def _from_source(path: Path, manifest: dict) -> type:
    module_name = f"_vj_model_{package_digest(manifest)[:12]}_{next(_counter)}"
    model_py = path / "model.py"
    module = types.ModuleType(module_name)
    module.__file__ = str(model_py)
    sys.modules[module_name] = module  # dataclasses and pickle look the module up while it runs
    saved_flag = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # never write __pycache__ into a (possibly read-only) package
    try:
        exec(compile(model_py.read_text(), str(model_py), "exec"), module.__dict__)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PackageError(f"model.py of {manifest['class_name']} failed to run: "
                           f"{type(exc).__name__}: {exc}. Are the packages in requirements.txt "
                           f"installed? ({', '.join(manifest['requirements']) or 'none needed'})") from exc
    finally:
        sys.dont_write_bytecode = saved_flag
    cls = getattr(module, manifest["class_name"], None)
    if not isinstance(cls, type):
        raise PackageError(f"model.py does not define class {manifest['class_name']!r}")
    return cls


def _from_class_pickle(path: Path, manifest: dict, notes: list[str]) -> type | None:
    if not (path / "class.pkl").exists():
        notes.append("no class.pkl in the package: loaded from source")
        return None
    try:
        import cloudpickle
    except ImportError:
        notes.append("cloudpickle is not installed: loaded from source")
        return None
    here = (platform.python_version(), cloudpickle.__version__)
    there = (manifest["python"], manifest["cloudpickle"])
    if here != there:
        notes.append(f"class.pkl refused: written by Python {there[0]} + cloudpickle {there[1]}, "
                     f"this is Python {here[0]} + cloudpickle {here[1]}; loaded from source")
        return None
    try:
        cls = cloudpickle.loads((path / "class.pkl").read_bytes())
    except Exception as exc:  # e.g. lru_cache helpers (cloudpickle issue #178)
        notes.append(f"class.pkl failed to load ({type(exc).__name__}: {exc}); loaded from source")
        return None
    return cls


@dataclass
class RebuildResult:
    """What a fresh process made of a package."""

    ok: bool
    output: object = None
    error: str = ""
    traceback: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    python: str = ""
    loaded_from: str = ""


_CHILD = r"""
import json, os, sys, traceback
request = json.loads(sys.stdin.read())
sys.path.insert(0, request["verta_path"])
result_fd = os.dup(1)
os.dup2(2, 1)  # the model's own prints go to stderr, never into our result
reply = {"python": sys.version.split()[0]}
try:
    from verta_jupyter.rebuild import load_package
    from verta_jupyter.jsonify import convert_input, to_json_compatible
    cls = load_package(request["package"], use_pickle=request["use_pickle"])
    info = cls.__verta_package__
    reply.update(notes=info["notes"], loaded_from=info["loaded_from"])
    model = cls(artifacts=request["artifacts"])
    if "sample" in request:
        reply["output"] = to_json_compatible(model.predict(convert_input(model.predict, request["sample"])))
    reply["ok"] = True
except BaseException as exc:
    reply.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
os.write(result_fd, json.dumps(reply, allow_nan=False).encode())
"""


def rebuild_in_subprocess(path, *, artifacts=None, sample_input=MISSING, timeout: float = 60.0,
                          python: str | None = None, use_pickle: bool = False) -> RebuildResult:
    """Load the package in a fresh `python -I` (another working directory), build, predict.

    `artifacts` maps keys to local paths; the output is JSON-compatible, ready to compare with
    the notebook's. `python` picks another interpreter (default: this one).
    """
    request = {"package": str(Path(path).resolve()), "artifacts": {k: str(v) for k, v in (artifacts or {}).items()},
               "verta_path": str(Path(__file__).resolve().parent.parent), "use_pickle": use_pickle}
    if sample_input is not MISSING:
        request["sample"] = sample_input
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vj-rebuild-") as cwd:
        reply, stderr = _run_child(python or sys.executable, json.dumps(request), cwd, timeout)
    seconds = time.perf_counter() - started
    if reply is None:
        return RebuildResult(ok=False, error=stderr.strip().splitlines()[-1] if stderr.strip() else "no reply",
                             traceback=stderr, seconds=seconds)
    return RebuildResult(ok=reply["ok"], output=reply.get("output"), error=reply.get("error", ""),
                         traceback=reply.get("traceback", ""), notes=reply.get("notes", []),
                         seconds=seconds, python=reply.get("python", ""), loaded_from=reply.get("loaded_from", ""))


def _run_child(python: str, request: str, cwd: str, timeout: float):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.Popen([python, "-I", "-c", _CHILD], cwd=cwd, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(request.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"the fresh process did not finish within {timeout:g} s (killed)"
    stderr = err.decode(errors="replace")
    try:
        return json.loads(out.decode()), stderr
    except ValueError:
        return None, stderr or f"the fresh process exited with code {proc.returncode} and no reply"
