"""The catalog of problems verta_jupyter can find: stable codes, severity, one remedy each.

Codes are public (notebooks, tests and docs refer to them); never rename one. The README's
"Validation catalog" section documents each code with a minimal example, and a test checks that
every code here appears there.

A remedy names what the user can change where they are: the Python API's argument
(`allow_secrets=True`) by default, the `%%verta_model` flag (`--allow-secrets`) when the magic
reports it. `in_context` picks the wording; a check whose remedy is the same everywhere has no
`magic_remedy`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import Problem

#: Artifact keys Verta's own model format uses; a user artifact may not take them.
RESERVED_ARTIFACT_KEYS = frozenset({"model.pkl", "model_api.json", "requirements.txt", "custom_modules"})
__all__ = ["Check", "CATALOG", "CONTEXTS", "problem", "remedy_for", "in_context"]

CONTEXTS = ("api", "magic")


@dataclass(frozen=True)
class Check:
    code: str
    severity: str  # "error" | "warning"
    title: str
    remedy: str  # in the Python API's words (log_model / validate arguments)
    magic_remedy: str = ""  # in %%verta_model's words, when they differ

    def remedy_in(self, context: str) -> str:
        """The remedy as a user in `context` ("api" or "magic") would act on it."""
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, not {context!r}")
        return self.magic_remedy if context == "magic" and self.magic_remedy else self.remedy


_CHECKS = [
    # -- finding the class
    Check("VJ101", "error", "no class", "Define a class with `__init__(self, artifacts)` and `predict(self, data)` in the cell."),
    Check("VJ102", "error", "several classes", "Pass the one to log: `run.log_model(MyModel)`.",
          "Name the one to log with `--class NAME` on the %%verta_model line."),
    Check("VJ103", "error", "instance instead of class", "Pass the class itself (`MyModel`), not an instance (`MyModel(...)`)."),
    Check("VJ104", "error", "source unavailable", "Define the class at the top level of a notebook cell or a .py file."),
    # -- the interface
    Check("VJ111", "error", "predict missing", "Add a method `def predict(self, data):`."),
    Check("VJ112", "error", "predict not a plain method", "Make `predict` a regular method: no staticmethod, classmethod or property."),
    Check("VJ113", "error", "predict arity", "Give `predict` exactly one argument besides `self`: `def predict(self, data):`."),
    Check("VJ114", "error", "__init__ without artifacts", "Accept artifacts by keyword: `def __init__(self, artifacts):` (or `artifacts=None`)."),
    # -- names and values the class uses
    Check("VJ201", "error", "unresolved name", "Define it in an earlier cell (and run that cell), or build it inside the class."),
    Check("VJ202", "error", "unpicklable value", "Create the resource inside `__init__` (or `predict`) instead of using a notebook global."),
    Check("VJ203", "error", "secret-looking value", "Read secrets from the environment at run time (`os.environ[...]`); never capture them. Pass `allow_secrets=True` to log_model only if it is not a secret.",
          "Read secrets from the environment at run time (`os.environ[...]`); never capture them. Add `--allow-secrets` to the %%verta_model line only if it is not a secret."),
    Check("VJ204", "error", "IPython-only name", "Use `print`/`logging` or plain Python instead: IPython is not there when the model is deployed."),
    Check("VJ205", "error", "value refers back to the notebook", "Re-run the cell that creates the value after the last definition of its class, or rebuild it inside `__init__`."),
    Check("VJ206", "warning", "dynamic lookup", "Refer to names directly: `eval`, `exec`, `globals()` and friends hide what the model needs."),
    Check("VJ207", "warning", "mutated global", "Keep state on `self`: a `global` statement changes notebook state that the deployed model will not share."),
    Check("VJ208", "warning", "captured by value", "The value was frozen at capture time; log the model again after changing it.",
          "The value was frozen at capture time; re-run this cell after changing it."),
    Check("VJ209", "warning", "secret scan incomplete", "Load a value this large from an artifact in `__init__` (`run.log_artifact`) instead of capturing it, or make sure it holds no secret."),
    Check("VJ210", "error", "module cannot be bundled", "Install it as a distribution (`pip install -e .` in its project) so requirements.txt can pin it, or put its code in a .py file beside the notebook."),
    # -- artifacts and samples
    Check("VJ301", "error", "artifact not logged", "Log it first with `run.log_artifact(key, path_or_obj)`, or drop it from `artifacts=`.",
          "Log it first with `run.log_artifact(key, path_or_obj)`, or drop it from `--artifacts`."),
    Check("VJ302", "error", "reserved artifact key", "Choose another key: model.pkl, model_api.json, requirements.txt and custom_modules are reserved."),
    Check("VJ303", "error", "sample not JSON", "Give a sample that JSON can carry: dicts, lists, strings, numbers, booleans, null."),
    Check("VJ304", "warning", "no sample", "Pass `sample_input=` so the model is tried before it is logged.",
          "Add `--sample VALUE` (JSON, or a notebook variable) to the %%verta_model line so the model is tried before it is logged."),
    # -- running the model
    Check("VJ401", "error", "construction raised", "Fix `__init__`; the traceback shows the line in your cell."),
    Check("VJ402", "error", "predict raised on the sample", "Fix `predict` or the sample; the traceback shows the line in your cell."),
    Check("VJ403", "error", "output not JSON-compatible", "Return dicts, lists, numbers, strings, or a known type (numpy, pandas, datetime, ...)."),
    # -- rebuild in a fresh process
    Check("VJ501", "error", "rebuild failed", "Give the model what the fresh process lacked: log a file it reads with `run.log_artifact(key, path)` and open `artifacts[key]` in `__init__`; build anything else inside the class.",
          "Give the model what the fresh process lacked: log a file it reads with `run.log_artifact(key, path)`, add `--artifacts key` and open `artifacts[key]` in `__init__`; build anything else inside the class."),
    Check("VJ502", "error", "rebuilt output differs", "Make `predict` depend only on its input and what `__init__` builds: set state inside the class, not on a module or global from another cell, and seed randomness there (`self.rng = random.Random(0)`)."),
    Check("VJ503", "warning", "no pickle fast path", "Nothing to do: the model rebuilds from source, which is the durable record."),
    Check("VJ504", "error", "rebuilt state differs", "Make the change in the named definition's own statement (edit the `def` or `class`), re-run that cell, then log again: the package rebuilds what the statements say, so it would rebuild a different model.")
]

CATALOG: dict[str, Check] = {c.code: c for c in _CHECKS}


def problem(code: str, message: str, *, name: str | None = None, where: str | None = None,
            remedy: str | None = None) -> Problem:
    """Make a `Problem` for catalog `code`, with the catalog's severity and default remedy."""
    check = CATALOG[code]
    return Problem(code=code, message=message, remedy=check.remedy if remedy is None else remedy,
                   severity=check.severity, name=name, where=where)


def remedy_for(code: str, context: str = "api") -> str:
    """Catalog `code`'s remedy in the words of `context` ("api" or "magic")."""
    return CATALOG[code].remedy_in(context)


def in_context(found: Problem, context: str) -> Problem:
    """`found` with its remedy reworded for `context`; a remedy written for this one problem
    (not the catalog's default) is kept as it is."""
    check = CATALOG.get(found.code)
    if check is None or found.remedy not in (check.remedy, check.magic_remedy):
        return found
    return replace(found, remedy=check.remedy_in(context))
