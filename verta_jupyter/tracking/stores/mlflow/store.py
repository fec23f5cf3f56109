"""`MlflowStore`: the `Store` protocol on an MLflow tracking server, over its REST API.

No `mlflow` import: one `requests.Session` (see `mlflow_rest`). Mapping (docs/mlflow.md):

- project "P"            -> MLflow experiment "P" tagged `verta_jupyter.kind=project`
- experiment "E" in P    -> MLflow experiment "P/E" (a "/" in P is written "%2F")
- run                    -> MLflow run (name, start/end time; status FINISHED: a Verta run is a
                            record, not a process)
- registered model       -> MLflow registered model (its name is its id)
- model version          -> MLflow model version whose source is a backing run in the
                            experiment "verta_jupyter-registry"; the version's fields and
                            artifacts live on that run. Id: "<model name>/<version>".
- fields                 -> params/metrics/tags (see `mlflow_fields`)
- artifacts, model       -> run artifacts through the proxied `mlflow-artifacts` endpoints,
                            published by one tag after every byte is stored (`mlflow_artifacts`)

Non-idempotent creates are safe to retry: experiments and registered models are get-or-create
by name; runs carry a client-generated id tag that a retry looks up before creating again;
two processes racing to create the same named run both settle on the oldest.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from ....errors import AlreadyExistsError, NotFoundError, StoreError
from . import artifacts as arts
from . import fields as fields_codec
from ..base import (ARTIFACT_TYPES, OWNER_KINDS, PARENT_KIND, ArtifactInfo, CheckResult, Entity,
                   Progress, check_field, check_kind)
from .fields import PREFIX
from .names import (VERSION_NAME_TAG, _escape,  # noqa: F401
                           _generated, _name_filter, _run_data, _tags, _taglist, _unescape,
                           _version_entity)
from .rest import MlflowHttp, RetryPolicy, TransientError

KIND_TAG = PREFIX + "kind"
PROJECT_TAG = PREFIX + "project_id"
CLIENT_ID_TAG = PREFIX + "client_id"
NAMESPACE_TAG = PREFIX + "namespace"
NAMESPACE_ENV = "VERTA_JUPYTER_MLFLOW_NAMESPACE"
REGISTRY_EXPERIMENT = "verta_jupyter-registry"
PAGE = 1000


class MlflowStore:
    """A store on the MLflow tracking server at `url` ("http://host:5000").

    Credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD (basic) or MLFLOW_TRACKING_TOKEN
    (bearer). `timeout` is (connect, read) seconds for every request.

    `namespace` (or `?namespace=NAME` in the URL, or env VERTA_JUPYTER_MLFLOW_NAMESPACE) keeps
    several independent stores on one server: experiment names get the prefix "NAME/",
    registered model names "NAME.", and each store sees only its own.
    """

    def __init__(self, url: str, *, namespace: str | None = None,
                 timeout: tuple[float, float] = (5.0, 60.0),
                 retry_policy: RetryPolicy | None = None, env=None):
        env = os.environ if env is None else env
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        ns = namespace if namespace is not None else query.get("namespace", env.get(NAMESPACE_ENV, ""))
        if not re.fullmatch(r"[A-Za-z0-9_-]*", ns):
            raise StoreError(f"MLflow namespace {ns!r} may hold only letters, digits, '_' and '-'")
        self.namespace = ns
        self.http = MlflowHttp(url, timeout=timeout, retry_policy=retry_policy, env=env)
        self.location = self.http.url + (f"?namespace={ns}" if ns else "")
        self._exp_prefix = f"{ns}/" if ns else ""
        self._model_prefix = f"{ns}." if ns else ""
        self._roots: dict[str, str] = {}  # run id -> artifact root (never changes)

    def __repr__(self) -> str:
        return f"MlflowStore({self.location!r})"

    def __reduce__(self):
        raise TypeError(f"{self!r} is a connection to a tracking server and cannot be pickled; "
                        "a model must not depend on the tracking client.")

    def close(self) -> None:
        self.http.close()

    # -- entities ---------------------------------------------------------------------------
    def get_or_create(self, kind: str, name: str | None, parent_id: str | None = None) -> Entity:
        check_kind(kind)
        if PARENT_KIND[kind] and not parent_id:
            raise StoreError(f"a {kind} needs a parent {PARENT_KIND[kind]}")
        if parent_id:
            self.get(PARENT_KIND[kind], parent_id)
        if kind == "project":
            name = name if name is not None else _generated(kind)
            return self._experiment_entity("project", self._get_or_create_experiment(
                self._exp_prefix + _escape(name), self._kind_tags("project")))
        if kind == "experiment":
            project = self.get("project", parent_id)
            exp_name = f"{_escape(project.name)}/{name if name is not None else _generated(kind)}"
            return self._experiment_entity("experiment", self._get_or_create_experiment(
                self._exp_prefix + exp_name, {**self._kind_tags("experiment"), PROJECT_TAG: parent_id}))
        if kind == "run":
            return self._run_entity(self._get_or_create_run(parent_id, name))
        from .registry import get_or_create_model, get_or_create_version

        if kind == "registered_model":
            name = name if name is not None else _generated(kind)
            return get_or_create_model(self, self._model_prefix + name)
        return get_or_create_version(self, parent_id, name)

    def get(self, kind: str, id: str) -> Entity:
        check_kind(kind)
        id = str(id)
        if kind in ("project", "experiment"):
            if not id.isdigit():
                raise self._not_found(kind, id)
            exp = self._call_nf(kind, id, "GET", "experiments/get", {"experiment_id": id})["experiment"]
            if not self._mine(exp, kind) or exp.get("lifecycle_stage") != "active":
                raise self._not_found(kind, id)
            return self._experiment_entity(kind, exp)
        if kind == "run":
            run = self._get_run(id)
            if run["info"].get("lifecycle_stage") != "active":
                raise self._not_found(kind, id)
            return self._run_entity(run)
        if kind == "registered_model":
            model = self._call_nf(kind, id, "GET", "registered-models/get", {"name": id})
            if not self._mine(model["registered_model"]):
                raise self._not_found(kind, id)
            return self._model_entity(model["registered_model"])
        name, _, version = id.rpartition("/")
        if not name or not version.isdigit():
            raise self._not_found(kind, id)
        self.get("registered_model", name)
        mv = self._call_nf(kind, id, "GET", "model-versions/get", {"name": name, "version": version})
        return _version_entity(mv["model_version"])

    def find(self, kind: str, *, parent_id: str | None = None, ancestor_id: str | None = None,
             name: str | None = None, tag: str | None = None) -> list[Entity]:
        check_kind(kind)
        if kind in ("project", "experiment"):
            found = [self._experiment_entity(kind, e) for e in self._experiments(kind)]
            found = [e for e in found if (parent_id is None or e.parent_id == parent_id)
                     and (ancestor_id is None) and (name is None or e.name == name)]
        elif kind == "run":
            found = self._find_runs(parent_id, ancestor_id, name, tag)
        elif kind == "registered_model":
            found = [self._model_entity(m) for m in self._paged(
                "GET", "registered-models/search", {}, "registered_models") if self._mine(m)]
            found = [e for e in found if (name is None or e.name == name)
                     and parent_id is None and ancestor_id is None]
        else:
            from .registry import find_versions

            found = [] if ancestor_id is not None else find_versions(self, parent_id, name, tag)
        return sorted(found, key=lambda e: (e.created_at, e.id))

    # -- key-value fields -------------------------------------------------------------------
    def put_fields(self, kind: str, id: str, field: str, values: Mapping[str, Any]) -> None:
        check_field(field)
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        if not values:
            return
        payload = fields_codec.encode(field, values, _run_data(run))
        for batch in fields_codec.batches(payload):
            # Safe to repeat: params are re-sent with the same value, tags are set, metrics
            # carry an explicit timestamp (the server ignores an identical row).
            self.http.call("POST", "runs/log-batch", {"run_id": run_id, **batch})

    def get_fields(self, kind: str, id: str, field: str) -> dict[str, Any]:
        check_field(field)
        return fields_codec.decode(field, _run_data(self._owner_run(kind, id)))

    # -- artifacts --------------------------------------------------------------------------
    def put_artifact(self, kind: str, id: str, key: str, path: Path, *, type: str,
                     meta: Mapping[str, Any] | None = None,
                     progress: Progress | None = None, overwrite: bool = True) -> ArtifactInfo:
        # overwrite=False: the tracking layer's check before upload is all MLflow's REST API
        # allows so far (no conditional set-tag); the atomic version is the MLflow half of #12
        if type not in ARTIFACT_TYPES:
            raise StoreError(f"unknown artifact type {type!r}; use one of {ARTIFACT_TYPES}")
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        root = self._root(run_id)
        tags = _run_data(run)["tags"]
        old = tags.get(arts.INFO_TAG + key)
        info, tag = arts.upload(self.http, root, key, Path(path), type=type, meta=meta,
                                progress=progress)
        tags = {**tags, tag["key"]: tag["value"]}
        if type == "model":  # MLflow users load it with MLflow's own tools, too
            arts.write_mlflow_model(self.http, root, Path(path), json.loads(tag["value"])["gen"],
                                    key, tags)
        # The single step that publishes the artifact: every byte above is already stored.
        self.http.call("POST", "runs/set-tag", {"run_id": run_id, **tag})
        if type != "model":  # a model logged earlier may use this artifact: point MLmodel at it
            arts.refresh_mlflow_model(self.http, root, key, tags)
        if old:
            arts.delete_generation(self.http, root, key, json.loads(old)["gen"])
        return info

    def artifact_info(self, kind: str, id: str, key: str) -> ArtifactInfo:
        return self._artifact(kind, id, key)[0]

    def list_artifacts(self, kind: str, id: str) -> list[ArtifactInfo]:
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        tags = _run_data(run)["tags"]
        root = self._root(run_id)
        return [arts.parse_info(self.http, root, k[len(arts.INFO_TAG):], v)[0]
                for k, v in sorted(tags.items()) if k.startswith(arts.INFO_TAG)]

    def fetch_artifact(self, kind: str, id: str, key: str, dest: Path, *,
                       progress: Progress | None = None) -> Path:
        info, gen, run_id = self._artifact(kind, id, key)
        return arts.fetch(self.http, self._root(run_id), info, gen, Path(dest), progress)

    def _artifact(self, kind: str, id: str, key: str) -> tuple[ArtifactInfo, str, str]:
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        text = _run_data(run)["tags"].get(arts.INFO_TAG + key)
        if text is None:
            raise NotFoundError(f"no artifact {key!r} in {kind} {id} on {self.location}; log it "
                                f"first with log_artifact({key!r}, ...)")
        info, gen = arts.parse_info(self.http, self._root(run_id), key, text)
        return info, gen, run_id

    # -- maintenance ------------------------------------------------------------------------
    def check(self) -> CheckResult:
        """Every published artifact's files are on the server with the recorded total size."""
        from .check import check_store

        return check_store(self)

    # -- experiments ------------------------------------------------------------------------
    def _get_or_create_experiment(self, name: str, tags: dict[str, str]) -> dict:
        def find():
            try:
                return self.http.call("GET", "experiments/get-by-name",
                                      {"experiment_name": name})["experiment"]
            except NotFoundError:
                return None

        def create():
            self.http.call("POST", "experiments/create", {"name": name, "tags": _taglist(tags)},
                           retry=False)
            return find()

        exp = self._create_safely(find, create)
        if exp.get("lifecycle_stage") != "active":
            raise StoreError(f"MLflow experiment {name!r} on {self.location} is deleted; restore it "
                             "in the MLflow UI (or `mlflow experiments restore`) or use another name")
        missing = {k: v for k, v in tags.items() if _tags(exp).get(k) != v}
        for key, value in missing.items():  # adopt an experiment made outside verta_jupyter
            self.http.call("POST", "experiments/set-experiment-tag",
                           {"experiment_id": exp["experiment_id"], "key": key, "value": value})
            exp.setdefault("tags", []).append({"key": key, "value": value})
        return exp

    def _kind_tags(self, kind: str) -> dict[str, str]:
        return {KIND_TAG: kind, **({NAMESPACE_TAG: self.namespace} if self.namespace else {})}

    def _mine(self, obj: dict, kind: str | None = None) -> bool:
        """In this store's namespace (and of this kind, for an experiment)?"""
        tags = _tags(obj)
        return (kind is None or tags.get(KIND_TAG) == kind) and tags.get(NAMESPACE_TAG, "") == self.namespace

    def _model_entity(self, model: dict) -> Entity:
        return Entity(kind="registered_model", id=model["name"],
                      name=model["name"][len(self._model_prefix):],
                      created_at=int(model.get("creation_timestamp", 0)) / 1000)

    def _experiment_entity(self, kind: str, exp: dict) -> Entity:
        tags = _tags(exp)
        bare = exp["name"][len(self._exp_prefix):]
        name = _unescape(bare) if kind == "project" else bare.split("/", 1)[-1]
        return Entity(kind=kind, id=exp["experiment_id"], name=name,
                      parent_id=tags.get(PROJECT_TAG) if kind == "experiment" else None,
                      created_at=int(exp.get("creation_time", 0)) / 1000)

    def _experiments(self, kind: str) -> list[dict]:
        found = self._paged("POST", "experiments/search",
                            {"filter": f"tags.`{KIND_TAG}` = '{kind}'"}, "experiments")
        return [e for e in found if self._mine(e, kind)]

    # -- runs -------------------------------------------------------------------------------
    def _get_or_create_run(self, experiment_id: str, name: str | None) -> dict:
        client_id = uuid.uuid4().hex
        if name is not None:
            existing = self._search_runs([experiment_id], _name_filter(name))
            if existing:
                return existing[0]

        def find():
            found = self._search_runs([experiment_id], f"tags.`{CLIENT_ID_TAG}` = '{client_id}'")
            return found[0] if found else None

        def create():
            body = {"experiment_id": experiment_id, "start_time": fields_codec.now_ms(),
                    "tags": _taglist({CLIENT_ID_TAG: client_id})}
            if name is not None:
                body["run_name"] = name
            return self.http.call("POST", "runs/create", body, retry=False)["run"]

        run = self._create_safely(find, create)
        info = run["info"]
        self.http.call("POST", "runs/update", {"run_id": info["run_id"], "status": "FINISHED",
                                               "end_time": info["start_time"]})
        if name is None:
            return run
        # Two processes may have created the same name at once: everyone keeps the oldest.
        same = self._search_runs([experiment_id], _name_filter(name))
        winner = same[0] if same else run
        if winner["info"]["run_id"] != info["run_id"]:
            self.http.call("POST", "runs/delete", {"run_id": info["run_id"]})
        return winner

    def _search_runs(self, experiment_ids: list[str], filter: str | None = None) -> list[dict]:
        if not experiment_ids:
            return []
        body: dict[str, Any] = {"experiment_ids": experiment_ids,
                                "order_by": ["attributes.start_time ASC"]}
        if filter:
            body["filter"] = filter
        runs = self._paged("POST", "runs/search", body, "runs")
        return sorted(runs, key=lambda r: (int(r["info"]["start_time"]), r["info"]["run_id"]))

    def _find_runs(self, parent_id, ancestor_id, name, tag) -> list[Entity]:
        if parent_id is not None:
            exp_ids = [parent_id]
        else:
            exps = [self._experiment_entity("experiment", e) for e in self._experiments("experiment")]
            exp_ids = [e.id for e in exps if ancestor_id is None or e.parent_id == ancestor_id]
        filters = [_name_filter(name)] if name is not None else []
        if tag is not None:
            filters.append(f"tags.`{tag}` LIKE '%'")
        runs = self._search_runs(exp_ids, " and ".join(filters) or None)
        return [self._run_entity(r) for r in runs]

    def _get_run(self, run_id: str) -> dict:
        return self._call_nf("run", run_id, "GET", "runs/get", {"run_id": run_id})["run"]

    def _run_entity(self, run: dict) -> Entity:
        info = run["info"]
        self._roots.setdefault(info["run_id"], arts.artifact_root(info["artifact_uri"], self.location))
        return Entity(kind="run", id=info["run_id"], name=info.get("run_name", ""),
                      parent_id=info["experiment_id"], created_at=int(info["start_time"]) / 1000)

    def _root(self, run_id: str) -> str:
        if run_id not in self._roots:
            self._run_entity(self._get_run(run_id))
        return self._roots[run_id]

    def _owner_run(self, kind: str, id: str) -> dict:
        """The MLflow run (one GET) holding an owner's fields and artifacts: the run itself, or
        a model version's backing run."""
        if kind not in OWNER_KINDS:
            raise StoreError(f"a {kind} has no fields or artifacts; use a run or a model version")
        if kind == "run":
            run_id = str(id)
        else:
            from .registry import backing_run_id

            run_id = backing_run_id(self, id)
        run = self._get_run(run_id)
        if run["info"].get("lifecycle_stage") != "active":
            raise self._not_found(kind, id)
        self._run_entity(run)  # remembers the artifact root
        return run

    # -- plumbing ---------------------------------------------------------------------------
    def _create_safely(self, find: Callable[[], Any], create: Callable[[], Any]) -> Any:
        """Find, else create once; after an ambiguous failure, find again before retrying."""
        delays = self.http.retry_policy.delays()
        for _ in range(2 * self.http.retry_policy.attempts):
            found = find()
            if found is not None:
                return found
            try:
                made = create()
                if made is not None:
                    return made
            except AlreadyExistsError:
                continue  # someone else made it: the next find() returns it
            except TransientError:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)
        raise StoreError(f"MLflow server {self.location} says it exists but does not return it; "
                         "check that it is not deleted (MLflow UI, or `mlflow gc`) and retry")

    def _paged(self, method: str, endpoint: str, body: dict, key: str) -> list[dict]:
        out, token = [], None
        while True:
            page = {**body, "max_results": PAGE, **({"page_token": token} if token else {})}
            data = self.http.call(method, endpoint, page)
            out.extend(data.get(key, []))
            token = data.get("next_page_token")
            if not token:
                return out

    def _call_nf(self, kind: str, id: str, method: str, endpoint: str, body: dict) -> dict:
        try:
            return self.http.call(method, endpoint, body)
        except NotFoundError:
            raise self._not_found(kind, id) from None
        except StoreError as exc:
            if "INVALID_PARAMETER_VALUE" in str(exc):
                raise self._not_found(kind, id) from None
            raise

    def _not_found(self, kind: str, id: str) -> NotFoundError:
        return NotFoundError(f"no {kind.replace('_', ' ')} with id {id!r} on MLflow server "
                             f"{self.location}; check the id (list them with the client's find "
                             "methods or the MLflow UI)")
