"""`Client`: opens a store and finds or creates projects, experiments, runs and registered models.

`Client()` uses $VERTA_JUPYTER_STORE or else the folder `verta_store/` in the working directory
(like MLflow's `./mlruns`); `Client(store=PATH)` a folder; `Client(store="http://host:5000")` an
MLflow tracking server. `set_project`, `set_experiment` and `set_experiment_run` are
get-or-create, create missing parents under the name "default", and remember what they
returned, as Verta's client does.
"""
from __future__ import annotations

import os
import re
import weakref
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from .._urls import redact_url
from ..errors import NotFoundError, StoreError
from .registry import RegisteredModel
from .run import Experiment, ExperimentRun, Project, find_runs
from .stores.base import Entity, Store
from .stores.local.store import LocalStore
from .stores.mlflow.store import MlflowStore

DEFAULT_STORE = "verta_store"
DEFAULT_NAME = "default"

_current_run: ExperimentRun | None = None


def current_run() -> ExperimentRun | None:
    """The run most recently returned by any `Client.set_experiment_run` in this process."""
    return _current_run


#: "scheme://": a URL. A Windows path ("C:\\x", "C:/x") has no "//" after its drive's colon.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


class StoreChoice(NamedTuple):
    """Which store a `Client` opens (`spec`: a path, a URL or a store) and why (`origin`)."""

    spec: Any
    origin: str


def choose_store(store: Any = None, env: Mapping[str, str] | None = None) -> StoreChoice:
    """The store to open, in this order: the `store=` argument, $VERTA_JUPYTER_STORE,
    $MLFLOW_TRACKING_URI when it is an http(s) tracking server (as MLflow's own client would
    use it), else the folder `verta_store/` in the working directory."""
    env = os.environ if env is None else env
    if store is not None:
        return StoreChoice(store, "the store= argument")
    if env.get("VERTA_JUPYTER_STORE"):
        return StoreChoice(env["VERTA_JUPYTER_STORE"], "$VERTA_JUPYTER_STORE")
    uri = (env.get("MLFLOW_TRACKING_URI") or "").strip()
    if uri.lower().startswith(("http://", "https://")):
        return StoreChoice(uri, "$MLFLOW_TRACKING_URI (an MLflow tracking server)")
    if uri:
        return StoreChoice(DEFAULT_STORE, f"the default folder ./{DEFAULT_STORE} "
                           f"($MLFLOW_TRACKING_URI={redact_url(uri)!r} is not an http(s) "
                           "tracking server, so it is not used)")
    return StoreChoice(DEFAULT_STORE, f"the default folder ./{DEFAULT_STORE}")


def open_store(store: Any = None, origin: str | None = None) -> Store:
    """A store from a path, an http(s) URL, an existing store object, or (None) the one
    `choose_store` picks. A store that cannot be opened is a StoreError that also says where
    the path or URL came from (`origin`), e.g. a stale $MLFLOW_TRACKING_URI."""
    if store is None:
        store, origin = choose_store()
    try:
        return _open(store)
    except StoreError as exc:
        if origin is None or origin == "the store= argument" or type(exc) is not StoreError:
            raise  # (a leaf such as NotFoundError keeps its type for callers that catch it)
        raise StoreError(f"{exc} (The store was chosen by {origin}.)") from exc


def _open(store: Any) -> Store:
    if not isinstance(store, (str, os.PathLike)):
        if all(hasattr(store, m) for m in ("get_or_create", "put_artifact", "fetch_artifact")):
            return store
        raise StoreError(f"store={store!r} is neither a path, a URL nor a store; pass a folder "
                         "path or an http:// URL of an MLflow tracking server")
    text = os.fspath(store)
    if _URL_SCHEME.match(text):  # a URL, never a folder name (which would hold its password)
        if not text.lower().startswith(("http://", "https://")):
            raise StoreError(f"store {redact_url(text)!r} is not an http(s) URL or a folder; pass "
                             "an MLflow tracking server's address (e.g. http://127.0.0.1:5000) "
                             "or a folder path")
        return MlflowStore(text)
    return LocalStore(Path(text))


#: Why each store a Client opened was chosen: a run knows its store, not its Client, and the
#: magic's summary says which store and why.
_ORIGINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _remember_origin(store: Store, origin: str) -> None:
    try:
        _ORIGINS[store] = origin
    except TypeError:  # a store object that cannot be weakly referenced: no reason shown
        pass


def origin_of(store: Any) -> str | None:
    """Why `store` was chosen (`Client.store_origin`), if a Client in this process opened it."""
    try:
        return _ORIGINS.get(store)
    except TypeError:
        return None


class Client:
    """Entry point of the tracking API (Verta's names)."""

    def __init__(self, store: Any = None):
        choice = choose_store(store)
        self._store = open_store(choice.spec, choice.origin)
        #: Why this store was chosen ("the store= argument", "$MLFLOW_TRACKING_URI ...").
        self.store_origin: str = choice.origin
        _remember_origin(self._store, choice.origin)
        self.proj: Project | None = None
        self.expt: Experiment | None = None
        self.expt_run: ExperimentRun | None = None

    @property
    def store(self) -> Store:
        """The store this client reads and writes."""
        return self._store

    def __repr__(self) -> str:
        return f"Client(store={self._store.location!r})"

    # -- get-or-create ---------------------------------------------------------------------
    def set_project(self, name: str | None = None) -> Project:
        """Get or create the project `name` (a new project with a generated name if None)."""
        self.proj = Project(self._store, self._store.get_or_create("project", _name(name)))
        self.expt = self.expt_run = None
        return self.proj

    def set_experiment(self, name: str | None = None) -> Experiment:
        """Get or create experiment `name` in the current project (project "default" if none)."""
        if self.proj is None:
            self.set_project(DEFAULT_NAME)
        entity = self._store.get_or_create("experiment", _name(name), self.proj.id)
        self.expt = Experiment(self._store, entity)
        self.expt_run = None
        return self.expt

    def set_experiment_run(self, name: str | None = None, *, tags: list[str] | None = None,
                           attrs: dict[str, Any] | None = None, id: str | None = None
                           ) -> ExperimentRun:
        """Get or create run `name` in the current experiment (experiment "default" if none),
        or reopen the run `id`; it becomes the run `%%verta_model` logs to when `--run` is not
        given. `tags` and `attrs` are logged when the run is created (as in Verta)."""
        global _current_run
        if id is not None:
            run = self.get_experiment_run(id=id)
        else:
            if self.expt is None:
                self.set_experiment(DEFAULT_NAME)
            existed = name is not None and bool(
                self._store.find("run", parent_id=self.expt.id, name=_name(name)))
            run = ExperimentRun(self._store, self._store.get_or_create("run", _name(name), self.expt.id))
            if not existed:
                if tags:
                    run.log_tags(tags)
                if attrs:
                    run.log_attributes(attrs, overwrite=True)
        self.expt_run = _current_run = run
        return run

    # -- get -------------------------------------------------------------------------------
    def get_project(self, name: str | None = None, id: str | None = None) -> Project:
        """An existing project, by name or id (NotFoundError if absent)."""
        return Project(self._store, self._get("project", name, id))

    def get_experiment(self, name: str | None = None, id: str | None = None) -> Experiment:
        """An existing experiment, by id, or by name within the current project."""
        parent = None if id is not None else self._current_id("project")
        return Experiment(self._store, self._get("experiment", name, id, parent))

    def get_experiment_run(self, name: str | None = None, id: str | None = None) -> ExperimentRun:
        """An existing run, by id (from any process), or by name within the current experiment."""
        parent = None if id is not None else self._current_id("experiment")
        return ExperimentRun(self._store, self._get("run", name, id, parent))

    def _current_id(self, kind: str) -> str:
        """The current project/experiment id, else the "default" one; never creates (a get
        must leave the store as it was)."""
        current = self.proj if kind == "project" else self.expt
        if current is not None:
            return current.id
        parent = None if kind == "project" else self._current_id("project")
        found = self._store.find(kind, parent_id=parent, name=DEFAULT_NAME)
        if not found:
            raise NotFoundError(f"no current {kind} and no {kind} named {DEFAULT_NAME!r} in "
                                f"{self._store.location}; call set_{kind}(...) first or pass id=")
        return found[0].id

    def _get(self, kind: str, name: str | None, id: str | None, parent: str | None = None) -> Entity:
        if id is not None:
            return self._store.get(kind, id)
        if name is None:
            raise StoreError(f"get_{kind}: pass name= or id=")
        found = self._store.find(kind, parent_id=parent, name=name)
        if not found:
            raise NotFoundError(f"no {kind.replace('_', ' ')} named {name!r} in "
                                f"{self._store.location}; create it with set_{kind}({name!r})")
        return found[0]

    # -- find ------------------------------------------------------------------------------
    def find_runs(self, *, project: str | None = None, experiment: str | None = None,
                  name: str | None = None, tag: str | None = None) -> list[ExperimentRun]:
        """Runs matching every given filter (project/experiment by name), oldest first."""
        filters: dict[str, Any] = {"name": name, "tag": tag}
        if project is not None:
            proj = self.get_project(project)
            if experiment is not None:
                expt = Experiment(self._store, self._get("experiment", experiment, None, proj.id))
                filters["parent_id"] = expt.id
            else:
                filters["ancestor_id"] = proj.id
        elif experiment is not None:
            ids = [e.id for e in self._store.find("experiment", name=experiment)]
            return [r for i in ids for r in find_runs(self._store, parent_id=i, **filters)]
        return find_runs(self._store, **filters)

    # -- registry --------------------------------------------------------------------------
    def get_or_create_registered_model(self, name: str | None = None):
        """Get or create the registered model `name`."""
        return RegisteredModel(self._store, self._store.get_or_create("registered_model", _name(name)))

    def get_registered_model(self, name: str | None = None, id: str | None = None):
        """An existing registered model, by name or id."""
        return RegisteredModel(self._store, self._get("registered_model", name, id))


def _name(name: str | None) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or "\n" in name:
        raise StoreError(f"name {name!r} is not usable; give a non-empty, one-line string of at "
                         "most 256 characters")
    return name
