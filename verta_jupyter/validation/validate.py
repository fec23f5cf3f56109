"""The validation catalog: every check a model class must pass before it is logged.

`validate(cls, ...)` runs the checks cheap -> expensive and returns a `ValidationReport` whose
findings are catalog `Problem`s (codes in `verta_jupyter.catalog`). Static checks (class,
interface, artifacts, sample, capture, secrets) always all run, so the user sees every mistake
at once; the checks that execute user code (construct, predict, rebuild in a fresh process) are
skipped once an error is known, because their failures would only echo the first one.

`prepare_model(...)` is what `run.log_model` calls: the same checks, plus a `ValidationError`
when anything is wrong, so nothing reaches a store unless it passed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from . import checks as _checks
from .checks import json_sample_problem
from .secrets import secret_problems
from .warn import warn_problems
from .._text import shorten
from ..capture.fingerprint import differences
from ..catalog import problem
from ..errors import Problem, ValidationError, VertaError
from ..package.format import MISSING, package_digest, read_manifest
from ..worker.scratch import remove_scratch, scratch_dir

__all__ = ["validate", "prepare_model", "ValidationReport", "PreparedModel", "CheckStatus"]


@dataclass
class CheckStatus:
    """One row of the summary: a check's name, "ok" | "warning" | "error" | "skipped", why."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ValidationReport:
    """Everything validation found out about one model class."""

    class_name: str
    problems: list[Problem] = field(default_factory=list)
    checks: list[CheckStatus] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)  # code -> trimmed traceback / fresh-process error
    captured: Any = None  # CapturedModel, once capture succeeded
    sample_input: Any = MISSING
    sample_output: Any = MISSING  # the notebook model's output, JSON-compatible
    rebuilt_output: Any = MISSING
    rebuild_notes: list[str] = field(default_factory=list)
    package_dir: Path | None = None  # a temporary folder: removed once the package is stored
    package_digest: str = ""  # the package's durable id (the store and the panel show it)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per check, plus "total"."""
        times = {c.name: c.seconds for c in self.checks}
        times["total"] = sum(times.values())
        return times

    def error_message(self) -> str:
        """The text of the ValidationError: one line per error, then any trimmed traceback."""
        lines = [f"{self.class_name} cannot be logged:"] + [f"  {p}" for p in self.errors]
        for code in dict.fromkeys(p.code for p in self.errors):
            if self.details.get(code):
                lines += ["", f"[{code}] details:", self.details[code].rstrip()]
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        """Raise ValidationError (carrying this report) when there is any error."""
        if not self.ok:
            raise ValidationError(self.error_message(), self.errors, report=self)


class PreparedModel(NamedTuple):
    """A validated model: its package directory, the report, and the CapturedModel."""

    package_dir: Path
    report: ValidationReport
    captured: Any


def validate(cls, *, namespace: dict | None = None, cell_source: str | None = None,
             artifacts: Mapping[str, Any] | list[str] | None = None, sample_input: Any = MISSING,
             check_rebuild: bool = True, allow_secrets: bool = False, proof: str = "process",
             proof_python: str | None = None) -> ValidationReport:
    """Run the validation catalog on `cls` and return the report (never raises for findings).

    `artifacts` maps each artifact key to its local path (None for a key that was never logged);
    a plain list of keys only checks the keys. `sample_input` MISSING or None means no sample:
    the fresh-process rebuild then checks import and construction only. `proof="env"` runs the
    rebuild in a clean environment holding only the package's requirements.txt (cached by its
    hash; `proof_python="3.12"` picks another interpreter) instead of this interpreter.
    """
    _check_proof(proof)
    run = _Validation(cls, namespace, cell_source, artifacts, sample_input, allow_secrets,
                      proof=proof, proof_python=proof_python)
    run.static_checks()
    if run.report.ok:
        run.runtime_checks(check_rebuild)
    else:
        run.skip("construct", "predict", "package", "rebuild", reason="skipped after an error")
    warn_problems(run.report.problems)  # scripts and CI see them; the magic shows its summary
    return run.report


def prepare_model(cls, *, namespace: dict | None = None, cell_source: str | None = None,
                  artifacts: Mapping[str, Any] | list[str] | None = None, sample_input: Any = MISSING,
                  check_rebuild: bool = True, allow_secrets: bool = False, proof: str = "process",
                  proof_python: str | None = None) -> PreparedModel:
    """Validate `cls` and return its package; raise ValidationError(report=...) on any error."""
    report = validate(cls, namespace=namespace, cell_source=cell_source, artifacts=artifacts,
                      sample_input=sample_input, check_rebuild=check_rebuild,
                      allow_secrets=allow_secrets, proof=proof, proof_python=proof_python)
    try:
        report.raise_for_errors()
    except ValidationError:
        remove_scratch(report.package_dir)  # a failed package is never used: no temp left
        raise
    return PreparedModel(report.package_dir, report, report.captured)


class _Validation:
    """One validation run: holds the inputs and fills the report check by check."""

    def __init__(self, cls, namespace, cell_source, artifacts, sample_input, allow_secrets, *,
                 proof: str = "process", proof_python: str | None = None):
        self.cls, self.namespace, self.cell_source = cls, namespace, cell_source
        self.artifact_paths = _artifact_paths(artifacts)
        self.sample = None if sample_input is None else sample_input
        self.has_sample = sample_input is not MISSING and sample_input is not None
        self.allow_secrets = allow_secrets
        self.proof, self.proof_python = proof, proof_python  # how the rebuild check proves
        name = getattr(cls, "__name__", None) if isinstance(cls, type) else type(cls).__name__
        self.report = ValidationReport(class_name=name or repr(cls),
                                       sample_input=sample_input if self.has_sample else MISSING)

    # -- bookkeeping
    def record(self, name: str, found: list[Problem], started: float, detail: str = "") -> None:
        self.report.problems.extend(found)
        status = ("error" if any(p.is_error for p in found)
                  else "warning" if found else "ok")
        self.report.checks.append(CheckStatus(name, status, detail, time.perf_counter() - started))

    def skip(self, *names: str, reason: str) -> None:
        for name in names:
            self.report.checks.append(CheckStatus(name, "skipped", reason))

    # -- static checks: no user code runs
    def static_checks(self) -> None:
        started = time.perf_counter()
        found = _checks.class_problems(self.cls)
        self.record("class", found, started, self.report.class_name)
        if found:
            self.skip("interface", "capture", "secrets", reason="no class to check")
            return
        started = time.perf_counter()
        self.record("interface", _checks.interface_problems(self.cls), started,
                    "__init__(self, artifacts) and predict(self, data)")
        started = time.perf_counter()
        self.record("artifacts", _checks.artifact_problems(self.artifact_paths, self.report.class_name),
                    started, ", ".join(self.artifact_paths) or "none")
        started = time.perf_counter()
        sample_found = ([json_sample_problem(self.sample, self.report.class_name)] if self.has_sample
                        else [problem("VJ304", f"no sample input was given for {self.report.class_name}",
                                      name=self.report.class_name)])
        self.record("sample", [p for p in sample_found if p], started,
                    "given" if self.has_sample else "none: rebuild checks import and construction only")
        self.capture()

    def capture(self) -> None:
        from ..capture import capture_model
        from ..errors import CaptureError

        started = time.perf_counter()
        try:
            captured = capture_model(self.cls, namespace=self.namespace, cell_source=self.cell_source)
        except CaptureError as exc:
            self.record("capture", list(exc.problems), started, "free names could not all be captured")
            self.skip("secrets", reason="nothing captured")
            return
        self.report.captured = captured
        found = list(captured.warnings)
        if getattr(captured, "class_pickle", b"") is None:
            why = getattr(captured, "class_pickle_skipped", "") or f"cloudpickle cannot dump {self.report.class_name}"
            found.append(problem("VJ503", f"{why}, so the package has no class.pkl", name=self.report.class_name))
        used = len([d for d in captured.dependencies if d.name != captured.class_name])  # not itself
        self.record("capture", found, started, f"{_count(used, 'dependency', 'dependencies')}, "
                    f"{_count(len(captured.requirements), 'requirement', 'requirements')}")
        started = time.perf_counter()
        found = [] if self.allow_secrets else secret_problems(captured, self._namespace())
        self.record("secrets", found, started, "allowed by the caller" if self.allow_secrets
                    else f"{len(found)} found" if found else "none found")

    def _namespace(self) -> dict:
        if self.namespace is not None:
            return self.namespace
        module = sys.modules.get(getattr(self.cls, "__module__", ""), None)
        return vars(module) if module is not None else {}

    # -- runtime checks: user code runs, cheapest first
    def runtime_checks(self, check_rebuild: bool) -> None:
        if self.has_sample:
            self.sample = json.loads(json.dumps(self.sample))  # what the deployed model receives
            if not self.notebook_predict():
                self.skip("package", "rebuild", reason="skipped after an error")
                return
        else:
            self.skip("construct", "predict", reason="no sample input")
        if not self.package():
            self.skip("rebuild", reason="skipped after an error")
        elif check_rebuild:
            self.rebuild()
        else:
            self.skip("rebuild", reason="not requested")

    def notebook_predict(self) -> bool:
        from ..jsonify.input import convert_input
        from ..jsonify.output import to_json_compatible
        from ..errors import JsonConversionError

        name = self.report.class_name
        started = time.perf_counter()
        try:
            model = self.cls(artifacts=dict(self.artifact_paths))
        except Exception as exc:
            return self._raised("construct", "VJ401", f"{name}(artifacts=artifacts) raised {_one_line(exc)}",
                                exc, started)
        keys = ", ".join(f"{k!r}: <path>" for k in sorted(self.artifact_paths))
        self.record("construct", [], started, f"{name}(artifacts={{{keys}}})")
        started = time.perf_counter()
        try:
            output = model.predict(convert_input(model.predict, self.sample))
        except Exception as exc:
            return self._raised("predict", "VJ402", f"{name}.predict raised {_one_line(exc)} on the sample",
                                exc, started)
        try:
            self.report.sample_output = to_json_compatible(output)
        except JsonConversionError as exc:
            found = [problem("VJ403", f"{name}.predict returned a value of type {exc.type_name}, which "
                             "has no JSON form", name=name, where=exc.path)]
            self.record("predict", found, started, "output has no JSON form")
            return False
        self.record("predict", [], started, "output is JSON-compatible")
        return True

    def _raised(self, check: str, code: str, message: str, exc: BaseException, started: float) -> bool:
        frames, where = _checks.user_frames(exc, self.cls)
        said, _, rest = message.partition(" raised ")
        if rest and where.endswith(f"in {said}"):  # "cell line 6, in M.predict: raised KeyError"
            message = f"raised {rest}"
        self.report.details[code] = frames
        self.record(check, [problem(code, message, name=self.report.class_name, where=where)], started,
                    _one_line(exc))
        return False

    def package(self) -> bool:
        started = time.perf_counter()
        target = Path(tempfile.mkdtemp(prefix=f"{self.report.class_name}-", dir=_package_root()))
        try:
            self.report.package_dir = self.report.captured.save(
                target, sample_input=self.sample if self.has_sample else MISSING,
                sample_output=self.report.sample_output, artifact_keys=tuple(self.artifact_paths))
        except VertaError as exc:
            self.record("package", list(exc.problems) or [problem("VJ501", str(exc),
                                                                  name=self.report.class_name)], started)
            return False
        self.report.package_dir = Path(self.report.package_dir or target)
        self.report.package_digest = package_digest(read_manifest(self.report.package_dir))
        self.record("package", [], started, str(self.report.package_dir))
        return True

    def rebuild(self) -> None:
        from ..worker.rebuild import rebuild_in_subprocess

        if self.proof == "env":
            return self.rebuild_in_clean_env()
        name = self.report.class_name
        started = time.perf_counter()
        result = rebuild_in_subprocess(self.report.package_dir, artifacts=dict(self.artifact_paths),
                                       sample_input=self.sample if self.has_sample else MISSING)
        self.report.rebuild_notes = list(result.notes or [])
        if not result.ok:
            self.report.details["VJ501"] = result.traceback or result.error
            found = [problem("VJ501", f"{name} failed in a fresh process: {result.error}", name=name)]
            self.record("rebuild", found, started, "fresh process")
            return
        found = _fidelity_problems(name, self.report.captured.fingerprint, result.fingerprint)
        if self.has_sample:
            self.report.rebuilt_output = result.output
            if not _same_output(self.report.sample_output, result.output):
                found.append(problem(
                    "VJ502", f"{name}.predict gave {_short(self.report.sample_output)} in the notebook but "
                    f"{_short(result.output)} after rebuild", name=name))
        detail = "import, construct, predict, compare" if self.has_sample else "import and construct only"
        self.record("rebuild", found, started, detail)

    def rebuild_in_clean_env(self) -> None:
        from ..worker.envproof import prove_in_clean_env

        name = self.report.class_name
        started = time.perf_counter()
        proof = prove_in_clean_env(self.report.package_dir, artifacts=dict(self.artifact_paths),
                                   sample_input=self.sample if self.has_sample else MISSING,
                                   python=self.proof_python)
        if proof.rebuild is not None:
            self.report.rebuild_notes = list(proof.rebuild.notes or [])
        if not proof.ok:
            self.report.details["VJ501"] = proof.details or proof.error
            self.record("rebuild", [clean_env_problem(name, proof)], started, "clean environment")
            return
        found = []
        if self.has_sample:
            self.report.rebuilt_output = proof.rebuild.output
            if not _same_output(self.report.sample_output, proof.rebuild.output):
                found.append(problem(
                    "VJ502", f"{name}.predict gave {_short(self.report.sample_output)} in the notebook "
                    f"but {_short(proof.rebuild.output)} in a clean environment", name=name))
        env = proof.environment
        how = "cached" if env.reused else f"built in {env.build_seconds:.1f} s"
        self.record("rebuild", found, started,
                    f"clean environment ({env.installer}, Python {proof.rebuild.python}, "
                    f"{len(env.requirements)} requirements, {how})")


def _check_proof(proof: str) -> None:
    if proof not in ("process", "env"):
        raise ValueError(f"proof={proof!r}: use 'process' (a fresh process of this interpreter) "
                         "or 'env' (a clean environment holding only requirements.txt)")


def clean_env_problem(name: str, proof) -> Problem:
    """The VJ501 problem for a failed clean-environment proof (`worker.envproof.EnvProof`)."""
    remedy = None
    if proof.missing_module:
        top = proof.missing_module.split(".")[0]
        remedy = (f"Import it with a plain `import {proof.missing_module}` in the class or the cell, "
                  f"so capture sees '{top}' and pins the distribution that provides it.")
    elif proof.stage == "environment":
        remedy = ("Check that every pin in requirements.txt is served by the package index (a local "
                  "build or a private index is not) and that the index is reachable.")
    return problem("VJ501", f"{name} failed in a clean environment with only requirements.txt "
                   f"installed: {proof.error}", name=name, remedy=remedy)


def _artifact_paths(artifacts) -> dict[str, Any]:
    if artifacts is None:
        return {}
    if isinstance(artifacts, Mapping):
        return {str(k): (None if v is None else os.fspath(v)) for k, v in artifacts.items()}
    if isinstance(artifacts, str):
        artifacts = [k for k in artifacts.split(",") if k.strip()]
    # keys alone: nothing says they were logged, so each is reported as not logged (VJ301)
    return {str(k).strip(): None for k in artifacts}


def _same_output(a: Any, b: Any) -> bool:
    """Equal JSON values; floats within a relative 1e-9 (BLAS may reorder sums across processes)."""
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and not isinstance(a, bool) and not isinstance(b, bool)
                and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_output(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_output(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _fidelity_problems(name: str, notebook: dict, rebuilt: dict) -> list[Problem]:
    """VJ504: captured objects whose structure differs after rebuild, whatever the sample."""
    if not notebook or not rebuilt:
        return []  # loaded from class.pkl, or an older worker: nothing to compare
    paths = differences(notebook, rebuilt)
    if not paths:
        return []
    shown = ", ".join(f"'{p}'" for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return [problem("VJ504", f"{name} rebuilt from its package differs from the notebook's in {shown}",
                    name=paths[0].split(".")[0])]


def _short(value: Any) -> str:
    return shorten(json.dumps(value, allow_nan=False, default=repr))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


_ROOT: list[str] = []


def _package_root() -> str:
    """One temporary folder per process for packages; removed when the process exits (or, if
    it is killed, by the next process's sweep: the folder is named by its owner's pid)."""
    if not _ROOT:
        import atexit

        _ROOT.append(str(scratch_dir("packages")))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]
