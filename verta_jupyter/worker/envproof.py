"""The clean-environment proof: rebuild and run a model package where ONLY its requirements.txt
is installed.

The fresh-process rebuild runs this interpreter, with every package of the notebook installed,
so a missing or wrong pin, or a module the model imports dynamically (`importlib.import_module`
of a name in a string, which capture cannot see), passes it and fails at deployment. Here the
package runs in a new virtual environment built from its requirements.txt (with uv when it is
installed, `pip install verta-jupyter[env]`; else the standard library's venv and pip), through
the same worker bootstrap as every other fresh process (`worker.process.child_command`).

Environments are cached by the hash of (requirements, interpreter) under
$VERTA_JUPYTER_ENV_CACHE, else ~/.cache/verta_jupyter/envs (XDG respected): the second proof
with the same requirements starts the worker at once. An environment is built in a temporary
sibling folder and renamed into place when complete, so a reader never sees half of one and two
processes building the same one at once both end with a whole one. Each use touches the
environment and holds a use marker while it runs; building a new one prunes the least recently
used others (`envcache`: the 5 most recent and any used in 14 days stay, one in use always).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PackageError
from ..package.format import MISSING, verify_package
from .envcache import INFO as _INFO
from .envcache import EnvLease, acquire, prune_environments, touch
from .process import child_environment, run_isolated
from .rebuild import RebuildResult, rebuild_in_subprocess

__all__ = ["prove_in_clean_env", "ensure_environment", "find_interpreter", "env_cache_root",
           "missing_module", "EnvProof", "Environment", "EnvironmentBuildError"]

ENV_CACHE_VARIABLE = "VERTA_JUPYTER_ENV_CACHE"
_INSTALL_TIMEOUT = 900.0
_STALE_BUILD_SECONDS = 3600.0
_NO_MODULE = re.compile(r"No module named '([^']+)'")


class EnvironmentBuildError(Exception):
    """The clean environment could not be made (no interpreter, an uninstallable pin, ...)."""

    def __init__(self, message: str, *, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclass
class Environment:
    """A cached virtual environment holding exactly one requirements list."""

    path: Path
    python: str  # its interpreter
    key: str  # sha256 of (requirements, interpreter)
    reused: bool  # found in the cache, not built by this call
    installer: str  # "uv" | "pip"
    build_seconds: float  # how long building it took (when it was built)
    requirements: list[str] = field(default_factory=list)
    lease: EnvLease = field(default_factory=lambda: EnvLease(None), repr=False, compare=False)

    def release(self) -> None:
        """Done with it: pruning may remove it again (a process that exits releases it too)."""
        self.lease.release()


@dataclass
class EnvProof:
    """What the clean environment made of a package; `error` is one line for a VJ501 message."""

    ok: bool
    rebuild: RebuildResult | None = None
    environment: Environment | None = None
    error: str = ""
    details: str = ""  # the model's traceback, or the installer's output
    missing_module: str | None = None
    seconds: float = 0.0
    stage: str = "model"  # what failed: "package" (digests), "environment" (build), "model"


def env_cache_root() -> Path:
    """$VERTA_JUPYTER_ENV_CACHE, else ~/.cache/verta_jupyter/envs ($XDG_CACHE_HOME respected)."""
    configured = os.environ.get(ENV_CACHE_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "verta_jupyter" / "envs"


def prove_in_clean_env(package_dir, *, artifacts: dict | None = None, sample_input=MISSING,
                       python: str | None = None, timeout: float = 60.0,
                       cache_dir: str | os.PathLike | None = None) -> EnvProof:
    """Build (or reuse) a clean environment from the package's requirements.txt, then rebuild the
    model there and predict `sample_input` through the worker. Never raises for a failed proof:
    the result says what went wrong (`missing_module` when an import was not satisfied)."""
    started = time.perf_counter()
    package_dir = Path(package_dir)
    try:
        verify_package(package_dir)  # a modified requirements.txt must not choose what installs
    except PackageError as exc:
        return EnvProof(ok=False, error=str(exc), stage="package",
                        seconds=time.perf_counter() - started)
    lines = read_requirements(package_dir / "requirements.txt")
    try:
        env = ensure_environment(lines, python=python, cache_dir=cache_dir)
    except EnvironmentBuildError as exc:
        return EnvProof(ok=False, error=str(exc), details=exc.output, stage="environment",
                        seconds=time.perf_counter() - started)
    try:
        result = rebuild_in_subprocess(package_dir, artifacts=artifacts, sample_input=sample_input,
                                       timeout=timeout, python=env.python)
    finally:
        env.release()
    proof = EnvProof(ok=result.ok, rebuild=result, environment=env,
                     seconds=time.perf_counter() - started)
    if not result.ok:
        proof.details = result.traceback or result.error
        proof.missing_module = missing_module(f"{result.error}\n{result.traceback}")
        proof.error = _explain(result.error, proof.missing_module, lines)
    return proof


def read_requirements(path: Path) -> list[str]:
    """The requirement lines of a requirements.txt (comments and blank lines dropped)."""
    if not path.is_file():
        return []
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def missing_module(text: str) -> str | None:
    """The module a ModuleNotFoundError names ("No module named 'x'"), if any."""
    found = _NO_MODULE.findall(text or "")
    return found[-1] if found else None


def _explain(error: str, module: str | None, lines: list[str]) -> str:
    if module is None:
        return f"{error} (in a clean environment with only requirements.txt installed)"
    from ..capture.requirements import requirement_for

    here = requirement_for(module)
    if here and here in lines:  # the right distribution is pinned, yet the module is not there
        return (f"module '{module}' is missing although requirements.txt lists {here}, which "
                "provides it here: that release does not ship it for the environment's Python or "
                "platform, or this interpreter has it from somewhere else too")
    provided = f"; here it comes from {here}" if here else ""
    listed = f"which lists {', '.join(lines)}" if lines else "which is empty"
    return (f"module '{module}' is imported but not in requirements.txt ({listed}): it is "
            f"imported dynamically (e.g. importlib.import_module with a name in a string), so "
            f"capture could not see it{provided}")


# -- environments ----------------------------------------------------------------------------
def ensure_environment(requirements: list[str], *, python: str | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Environment:
    """The cached environment holding exactly `requirements` for interpreter `python` (None:
    this one's base interpreter; "3.12": a Python 3.12 found on this machine; or a path),
    built when it is not cached yet. It is marked in use by this process (so no pruning removes
    it) until `Environment.release()`. Raises EnvironmentBuildError."""
    base = _base_interpreter(python)
    identity = _interpreter_identity(base)
    lines = sorted(dict.fromkeys(requirements), key=str.lower)
    key = hashlib.sha256(json.dumps({"requirements": lines, "python": identity},
                                    sort_keys=True).encode()).hexdigest()[:24]
    root = Path(cache_dir) if cache_dir is not None else env_cache_root()
    final = root / key
    lease = acquire(root, key) if root.is_dir() else None
    try:
        cached = _cached(final)
        if cached is not None:
            touch(final)
            return Environment(final, cached["python"], key, True, cached["installer"],
                               cached["build_seconds"], lines, lease)
        root.mkdir(parents=True, exist_ok=True)
        lease = lease or acquire(root, key)
        _remove_stale_builds(root)
        if final.exists() and _cached(final) is None:  # no vj-env.json: damaged by hand
            _discard(final)
        env = _build(root, final, key, base, identity, lines)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    env.lease = lease
    prune_environments(root, spare=(key,))  # a new one in: the least recently used others out
    return env


def _cached(path: Path) -> dict | None:
    try:
        info = json.loads((path / _INFO).read_text())
    except (OSError, ValueError):
        return None
    python = _env_python(path)
    if python is None or not Path(python).resolve().exists():  # its base interpreter was removed
        _discard(path)
        return None
    return {**info, "python": python}


def _build(root: Path, final: Path, key: str, base: str, identity: dict,
           lines: list[str]) -> Environment:
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f".building-{key}-", dir=root))
    try:
        installer = _create(staging, base, lines)
        seconds = time.perf_counter() - started
        (staging / _INFO).write_text(json.dumps({
            "requirements": lines, "interpreter": identity, "installer": installer,
            "build_seconds": seconds, "created": time.time()}, indent=2))
        try:
            os.rename(staging, final)
        except OSError as exc:  # another process finished the same environment first: use that one
            if _cached(final) is None:
                raise EnvironmentBuildError(f"could not move the new environment to {final}: "
                                            f"{exc}") from exc
            _discard(staging)
    except BaseException:
        _discard(staging)
        raise
    return Environment(final, _env_python(final) or "", key, False, installer, seconds, lines)


def _create(target: Path, base: str, lines: list[str]) -> str:
    """Make a virtual environment at `target` holding `lines`; return the installer used."""
    uv = _uv_binary()
    if uv:
        _run([uv, "venv", "--quiet", "--no-python-downloads", "--python", base, str(target)],
             "create the environment")
        if lines:
            _run([uv, "pip", "install", "--quiet", "--no-python-downloads",
                  "--python", _env_python(target) or "", *_requirement_args(target, lines)],
                 "install requirements.txt")
        return "uv"
    _run([base, "-m", "venv", str(target)], "create the environment")
    if lines:
        _run([_env_python(target) or "", "-m", "pip", "install", "--quiet",
              "--disable-pip-version-check", *_requirement_args(target, lines)],
             "install requirements.txt")
    return "pip"


def _requirement_args(target: Path, lines: list[str]) -> list[str]:
    listing = target / "requirements.txt"
    listing.write_text("".join(f"{line}\n" for line in lines))
    return ["-r", str(listing)]


def _run(command: list[str], what: str) -> None:
    environment = child_environment()
    environment.pop("VIRTUAL_ENV", None)  # the notebook's venv must not be the installer's target
    environment.setdefault("UV_PYTHON_DOWNLOADS", "never")
    try:
        done = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=_INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentBuildError(f"could not {what} within {_INSTALL_TIMEOUT:g} s (is the "
                                    "package index reachable?)", output=str(exc.stderr or "")) from None
    except OSError as exc:
        raise EnvironmentBuildError(f"could not {what}: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or "") + (done.stdout or "")
        raise EnvironmentBuildError(f"could not {what} in a clean environment: "
                                    f"{_first_error_line(output)}", output=output)


def _first_error_line(output: str) -> str:
    """The line that says why: uv's "Because ..." cause, else the first error line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "Because " in line:
            return line[line.index("Because "):]
    for line in lines:
        if line.lower().startswith(("error", "×")):
            return line.lstrip("× ").strip()
    return lines[-1] if lines else "the installer failed without a message"


def _uv_binary() -> str | None:
    """uv from its Python package (`pip install uv`), else on PATH; None means use pip."""
    if os.environ.get("VERTA_JUPYTER_ENV_INSTALLER", "").lower() == "pip":
        return None
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def _env_python(env: Path) -> str | None:
    """The interpreter of a virtual environment, on POSIX (bin/) and Windows (Scripts/)."""
    for candidate in (env / "bin" / "python", env / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    return None


def _discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_stale_builds(root: Path) -> None:
    """Staging folders left by a build that was killed (an hour old: never one in progress)."""
    now = time.time()
    for entry in root.glob(".building-*"):
        try:
            if now - entry.stat().st_mtime > _STALE_BUILD_SECONDS:
                _discard(entry)
        except OSError:
            pass


# -- interpreters ----------------------------------------------------------------------------
def _base_interpreter(python: str | None) -> str:
    if python is None:
        return getattr(sys, "_base_executable", None) or sys.executable
    if re.fullmatch(r"\d+\.\d+", python):
        return find_interpreter(python)
    if not Path(python).exists():
        raise EnvironmentBuildError(f"no interpreter at {python}: give a version like 3.12 or "
                                    "the path of a python executable")
    return python


def find_interpreter(version: str) -> str:
    """A Python `version` ("3.12") on this machine: this one, `python3.12` on PATH, or a pyenv
    version (~/.pyenv/versions). Raises EnvironmentBuildError naming where it looked."""
    if platform.python_version().startswith(version + ".") or platform.python_version() == version:
        return getattr(sys, "_base_executable", None) or sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)
    found += sorted(pyenv.glob(f"{version}.*/python.exe"), reverse=True)
    on_path = shutil.which(f"python{version}")
    for candidate in [*map(str, found), *([on_path] if on_path else [])]:
        if _interpreter_identity(candidate)["version"].startswith(version + "."):
            return candidate
    raise EnvironmentBuildError(f"no Python {version} interpreter found (looked in {pyenv} and "
                                f"for python{version} on PATH): install one, e.g. `pyenv install "
                                f"{version}`, or leave out --python")


def _interpreter_identity(python: str) -> dict:
    """What makes environments differ: implementation, full version, platform, base path."""
    if python in (sys.executable, getattr(sys, "_base_executable", None)):
        return {"implementation": sys.implementation.name, "version": platform.python_version(),
                "platform": f"{sys.platform}-{platform.machine()}",
                "base": os.path.realpath(python)}
    script = ("import json, platform, sys; print(json.dumps({'implementation': "
              "sys.implementation.name, 'version': platform.python_version(), 'platform': "
              "sys.platform + '-' + platform.machine()}))")
    try:
        info = json.loads(run_isolated(python, script, timeout=60).stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentBuildError(f"cannot run the interpreter {python}: {exc}") from None
    return {**info, "base": os.path.realpath(python)}
