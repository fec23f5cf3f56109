"""What each `%%verta_model` cell logged in this kernel, so that re-running a cell replaces its
own model and nothing else.

Re-running a cell is how notebooks iterate. "The same cell" is the front end's cell id when it
sends one (JupyterLab, Notebook 7 and VS Code do; editing a cell keeps its id), else the cell's
exact text. A cell may replace the run's model only while the store's record of that model
(content digest, stored name, size) is still the one its last log produced: a model logged since
by another cell or the Python API has another record, even with the same content, and still needs
`--overwrite`.

What a cell logged is also kept on the run itself (the attribute `verta_jupyter.logged_by`:
the cell, the notebook when the front end names it, the record), so "Restart Kernel and Run All"
replaces each cell's own model as a plain re-run does, instead of stopping at the first
`%%verta_model` cell.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from .errors import VertaError

__all__ = ["CellLog", "LOGGED_BY", "cell_key", "run_target", "model_record",
           "already_logged_message"]

LOGGED_BY = "verta_jupyter.logged_by"  # run attribute: which cell logged the run's model


@dataclass(frozen=True)
class Logged:
    record: str  # the store's record of the model this cell logged (see model_record)
    at: str  # local time of day, as the user reads it


class CellLog:
    """What each `%%verta_model` cell logged in this kernel: (cell, run) -> the stored model.

    A re-run may replace the run's model only while it is still the one this cell logged: the
    store's record of it (content digest, stored name, size) proves it. A model logged since by
    another cell or the API has another record, even when its content is the same.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, tuple], Logged] = {}

    def get(self, cell_key: str | None, target: tuple | None, run=None) -> Logged | None:
        """What this cell logged to this run: in this kernel, else (given `run`) in an earlier
        kernel session, as the run's `LOGGED_BY` attribute says."""
        if cell_key is None or target is None:
            return None
        mine = self._entries.get((cell_key, target))
        if mine is None and run is not None:
            mine = _logged_in_earlier_session(run, cell_key)
        return mine

    def remember(self, cell_key: str | None, target: tuple | None, record: str | None,
                 run=None) -> None:
        """Note that this cell logged `record` to this run, here and (given `run`) on the run."""
        if cell_key is None or target is None or not record:
            return
        self._entries[(cell_key, target)] = Logged(record, time.strftime("%H:%M:%S"))
        if run is not None:
            _keep_on_run(run, cell_key, record)


def _keep_on_run(run, cell_key: str, record: str) -> None:
    value = {"cell": cell_key, "record": record, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        run.log_attribute(LOGGED_BY, value, overwrite=True)
    except (VertaError, AttributeError, TypeError):
        pass  # only a later session's re-run needs it, and then --overwrite still works


def _logged_in_earlier_session(run, cell_key: str) -> Logged | None:
    try:
        value = run.get_attribute(LOGGED_BY)
    except (VertaError, KeyError, LookupError, AttributeError, TypeError):
        return None
    if not isinstance(value, dict) or value.get("cell") != cell_key:
        return None
    record, at = value.get("record"), str(value.get("at", ""))
    day, _, clock = at.partition(" ")
    when = f"{clock} on {day}, in an earlier kernel session" if clock else "in an earlier kernel session"
    return Logged(record, when) if isinstance(record, str) and record else None


def cell_key(cell_id: str | None, text: str, notebook: str | None = None) -> str:
    """Who "this cell" is: the front end's cell id (stable while the cell is edited), else a
    digest of its exact text (a terminal or a client that sends no id); within the notebook
    the server names (`JPY_SESSION_NAME`), so a copy of the notebook is another cell."""
    where = f"{notebook}::" if notebook else ""
    if cell_id:
        return f"{where}cell-id:{cell_id}"
    return f"{where}text:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def run_target(run) -> tuple | None:
    """Which store entity a run is (kind, store, id); None for a run we cannot identify."""
    rid = getattr(run, "id", None)
    if rid is None or not callable(getattr(run, "model_info", None)):
        return None
    return (type(run).__name__, str(getattr(run, "store_location", "")), str(rid))


def model_record(run) -> str | None:
    """The store's record of the model on `run` now (digest, stored name, size), or None if
    there is none or the store cannot say (then log_model tells)."""
    try:
        info = run.model_info()
    except VertaError:
        return None
    return f"{info.digest} {getattr(info, 'filename', '')} {getattr(info, 'size', '')}"


def already_logged_message(mine: Logged | None, where: str) -> str:
    """The refusal to replace a model this cell did not log (on run `where`), with the flag
    that allows it."""
    if mine is not None:
        why = (f"it is no longer the one this cell logged at {mine.at} (another cell or the "
               "Python API replaced it since)")
    else:
        why = ("not by this cell (by another cell or the Python API; re-running the cell that "
               "logged it replaces it without a flag)")
    return (f"a model is already logged on {where}, {why}. Add --overwrite to the %%verta_model "
            "line to replace it")
