"""`MlflowStore`: the `Store` protocol on an MLflow tracking server, over its REST API.

No `mlflow` import: one `requests.Session` (`rest`). Modules: `server` (the shared surface:
checked calls, experiments, runs), `registry` (models, versions), `artifacts`, `fields`,
`logged` (MLflow 3 logged models), `answers` (what an answer must look like), `check`.
Mapping (docs/mlflow.md):

- project "P"            -> MLflow experiment "P" tagged `verta_jupyter.kind=project`
- experiment "E" in P    -> MLflow experiment "P/E" (a "/" in P is written "%2F")
- run                    -> MLflow run (name, start/end time; status FINISHED: a Verta run is a
                            record, not a process)
- registered model       -> MLflow registered model (its name is its id)
- model version          -> MLflow model version whose source is a backing run in the
                            experiment "verta_jupyter-registry"; the version's fields and
                            artifacts live on that run. Id: "<model name>/<version>".
- fields                 -> params/metrics/tags (see `fields`)
- artifacts, model       -> run artifacts through the proxied `mlflow-artifacts` endpoints,
                            published by one tag after every byte is stored (`artifacts`);
                            overwrite=False claims the key first with a write-once param;
                            a run's model is also an MLflow 3 logged model (`logged`)

Non-idempotent creates are safe to retry: experiments and registered models are get-or-create
by name; runs carry a client-generated id tag that a retry looks up before creating again;
two processes racing to create the same named run both settle on the oldest.
"""
from __future__ import annotations

import dataclasses
import json
import os
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Mapping

from ....errors import AlreadyExistsError, NotFoundError, StoreError
from ....package.mlflow_export import ModelIdentity
from . import answers
from . import artifacts as arts
from . import fields as fields_codec
from . import logged, registry
from ..base import (ARTIFACT_TYPES, MODEL_KEY, OWNER_KINDS, PARENT_KIND, ArtifactInfo,
                    CheckResult, Entity, Progress, check_field, check_kind, transfer_artifacts)
from .check import check_store
from .fields import PREFIX
from .names import _escape, _generated, _name_filter, _run_data
from .rest import RetryPolicy
from .server import PROJECT_TAG, TrackingServer

NAMESPACE_ENV = "VERTA_JUPYTER_MLFLOW_NAMESPACE"
#: A run param that claims an artifact key for an `overwrite=False` upload: MLflow params are
#: write-once (a different value is refused by the server's own transaction), so of two racing
#: claims exactly one is accepted.
CLAIM_PARAM = PREFIX + "claim."
#: The same for a field's key with `overwrite=False`: `verta_jupyter.once.<field>.<key>` = a
#: token of the writing call (a prefix no artifact claim starts with).
FIELD_CLAIM_PARAM = PREFIX + "once."


class MlflowStore:
    """A store on the MLflow tracking server at `url` ("http://host:5000").

    Credentials and TLS settings come from MLflow's own variables (MLFLOW_TRACKING_USERNAME +
    PASSWORD, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_INSECURE_TLS, MLFLOW_TRACKING_SERVER_CERT_PATH,
    MLFLOW_TRACKING_CLIENT_CERT_PATH) in `env` (default os.environ). `timeout` is (connect, read)
    seconds for every request.

    `namespace` (or `?namespace=NAME` in the URL, or env VERTA_JUPYTER_MLFLOW_NAMESPACE) keeps
    several independent stores on one server: experiment names get the prefix "NAME/",
    registered model names "NAME.", and each store sees only its own.
    """

    def __init__(self, url: str, *, namespace: str | None = None,
                 timeout: tuple[float, float] = (5.0, 60.0),
                 retry_policy: RetryPolicy | None = None, env=None):
        env = os.environ if env is None else env
        try:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(str(url)).query))
        except ValueError:
            query = {}  # the URL check below says what is wrong with it
        ns = namespace if namespace is not None else query.get("namespace", env.get(NAMESPACE_ENV, ""))
        self.server = TrackingServer(url, ns, timeout=timeout, retry_policy=retry_policy, env=env)
        self.http = self.server.http
        self.namespace = self.server.namespace
        self.location = self.server.location

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
        server = self.server
        if kind == "project":
            name = name if name is not None else _generated(kind)
            return server.experiment_entity("project", server.get_or_create_experiment(
                server.experiment_prefix + _escape(name), server.kind_tags("project")))
        if kind == "experiment":
            project = self.get("project", parent_id)
            exp_name = f"{_escape(project.name)}/{name if name is not None else _generated(kind)}"
            return server.experiment_entity("experiment", server.get_or_create_experiment(
                server.experiment_prefix + exp_name,
                {**server.kind_tags("experiment"), PROJECT_TAG: parent_id}))
        if kind == "run":
            return server.run_entity(server.get_or_create_run(parent_id, name))
        if kind == "registered_model":
            name = name if name is not None else _generated(kind)
            return registry.get_or_create_model(server, server.model_prefix + name)
        return registry.get_or_create_version(server, parent_id, name)

    def get(self, kind: str, id: str) -> Entity:
        check_kind(kind)
        id = str(id)
        server = self.server
        if kind in ("project", "experiment"):
            if not id.isdigit():
                raise server.not_found(kind, id)
            exp = server.get_for(kind, id, "GET", "experiments/get", {"experiment_id": id},
                                 "experiment", answers.experiment)
            if not server.mine(exp, kind) or exp.get("lifecycle_stage", "active") != "active":
                raise server.not_found(kind, id)
            return server.experiment_entity(kind, exp)
        if kind == "run":
            run = server.get_run(id)
            if run["info"].get("lifecycle_stage", "active") != "active":
                raise server.not_found(kind, id)
            return server.run_entity(run)
        if kind == "registered_model":
            return registry.get_model(server, id)
        return registry.get_version(server, id)

    def find(self, kind: str, *, parent_id: str | None = None, ancestor_id: str | None = None,
             name: str | None = None, tag: str | None = None) -> list[Entity]:
        check_kind(kind)
        server = self.server
        if kind in ("project", "experiment"):
            found = [server.experiment_entity(kind, e) for e in server.experiments(kind)]
            found = [e for e in found if (parent_id is None or e.parent_id == parent_id)
                     and (ancestor_id is None) and (name is None or e.name == name)]
        elif kind == "run":
            found = self._find_runs(parent_id, ancestor_id, name, tag)
        elif kind == "registered_model":
            found = [e for e in registry.find_models(server) if (name is None or e.name == name)
                     and parent_id is None and ancestor_id is None]
        else:
            found = ([] if ancestor_id is not None
                     else registry.find_versions(server, parent_id, name, tag))
        return sorted(found, key=lambda e: (e.created_at, e.id))

    def _find_runs(self, parent_id, ancestor_id, name, tag) -> list[Entity]:
        server = self.server
        if parent_id is not None:
            exp_ids = [parent_id]
        else:
            exps = [server.experiment_entity("experiment", e) for e in server.experiments("experiment")]
            exp_ids = [e.id for e in exps if ancestor_id is None or e.parent_id == ancestor_id]
        filters = [_name_filter(name)] if name is not None else []
        if tag is not None:
            filters.append(f"tags.`{tag}` LIKE '%'")
        runs = server.search_runs(exp_ids, " and ".join(filters) or None)
        return [server.run_entity(r) for r in runs]

    # -- key-value fields -------------------------------------------------------------------
    def put_fields(self, kind: str, id: str, field: str, values: Mapping[str, Any],
                   overwrite: bool = True) -> None:
        """See `Store.put_fields`. With `overwrite=False` every key is first claimed by a
        write-once run param (as `put_artifact` claims a key), so of racing writers exactly one
        writes (docs/mlflow.md, "overwrite=False")."""
        check_field(field)
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        if not values:
            return
        if not overwrite:
            run = self._claim_fields(kind, id, run_id, field, [str(k) for k in values])
        payload = fields_codec.encode(field, values, _run_data(run))
        for batch in fields_codec.batches(payload):
            # Safe to repeat: params are re-sent with the same value, tags are set, metrics
            # carry an explicit timestamp (the server ignores an identical row).
            self.server.call("POST", "runs/log-batch", {"run_id": run_id, **batch})

    def _claim_fields(self, kind: str, id: str, run_id: str, field: str,
                      keys: list[str]) -> dict:
        """Claim `keys` of `field` with one write-once param each, all holding one token; return
        the run as it is after the claim. AlreadyExistsError if any key was claimed by another
        writer or already holds a value (logged with overwrite=True, or before claims existed).
        Params go 100 to a request (MLflow's limit) and each request is all or none."""
        token = uuid.uuid4().hex
        params = [{"key": f"{FIELD_CLAIM_PARAM}{field}.{k}", "value": token} for k in keys]
        refused = None
        for batch in fields_codec.batches({"params": params, "metrics": [], "tags": []}):
            try:  # a retried request after a lost reply sends the same token: accepted
                self.server.call("POST", "runs/log-batch", {"run_id": run_id, **batch})
            except StoreError as exc:  # refused (someone else's claim): the re-read says whose
                refused = exc
                break
        run = self.server.get_run(run_id)
        data = _run_data(run)
        claims = {p["key"]: p["value"] for p in data["params"]}
        logged = fields_codec.decode(field, data)
        mine = [claims.get(p["key"]) for p in params]
        taken = sorted(k for k, c in zip(keys, mine) if c not in (None, token) or k in logged)
        if taken:
            raise self._fields_exist(kind, id, field, taken,
                                     unpublished=not any(k in logged for k in taken))
        if None in mine:  # refused for another reason (or not shown yet): say so, write nothing
            raise refused or StoreError(f"MLflow server {self.location} accepted the claim of "
                                        f"{field} on {kind} {id} but does not show it; retry")
        return run

    def _fields_exist(self, kind: str, id: str, field: str, keys: list[str],
                      unpublished: bool) -> AlreadyExistsError:
        state = ("is already being logged by another process (or by a call that stopped "
                 "before writing it)" if unpublished else "is already logged")
        return AlreadyExistsError(f"{field[:-1]} {', '.join(map(repr, keys))} {state} on {kind} "
                                  f"{id} on MLflow server {self.location}; nothing was written. "
                                  "Pass overwrite=True to replace it")

    def get_fields(self, kind: str, id: str, field: str) -> dict[str, Any]:
        check_field(field)
        try:
            return fields_codec.decode(field, _run_data(self._owner_run(kind, id)))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{kind} {id} on MLflow server {self.location} holds a {field} value "
                             f"we cannot read ({exc}); it was changed outside verta_jupyter. Log "
                             "the value again (overwrite=True) to repair it.") from None

    # -- artifacts --------------------------------------------------------------------------
    def put_artifact(self, kind: str, id: str, key: str, path: Path, *, type: str,
                     meta: Mapping[str, Any] | None = None, progress: Progress | None = None,
                     overwrite: bool = True) -> ArtifactInfo:
        """Upload to a fresh generation, then publish it with one tag. With `overwrite=False`
        the key is first claimed by a write-once run param, so of two racing writers exactly
        one publishes and the other gets AlreadyExistsError (docs/mlflow.md, "overwrite=False")."""
        if type not in ARTIFACT_TYPES:
            raise StoreError(f"unknown artifact type {type!r}; use one of {ARTIFACT_TYPES}")
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        root = self.server.artifact_root(run_id)
        tags = _run_data(run)["tags"]
        old = tags.get(arts.INFO_TAG + key)
        if old is not None and not overwrite:
            raise self._exists(kind, id, key)
        info, tag = arts.upload(self.http, root, key, Path(path), type=type, meta=meta,
                                progress=progress)
        gen = json.loads(tag["value"])["gen"]
        try:
            if not overwrite:
                self._claim(kind, id, run_id, key, gen)
            tags = {**tags, tag["key"]: tag["value"]}
            self._export_native(root, key, type, Path(path), gen, tags, run_id)
            if type == "model" and kind == "run":
                info, tag = self._log_mlflow_model(run, Path(path), info, tag, tags)
            # The single step that publishes the artifact: every byte above is already stored.
            self.server.call("POST", "runs/set-tag", {"run_id": run_id, **tag})
        except AlreadyExistsError:
            arts.delete_generation(self.http, root, key, gen)  # the loser's staging folder
            raise
        if type != "model":  # a model logged earlier may use this artifact: point MLmodel at it
            arts.refresh_mlflow_model(self.http, root, key, tags, self._identity(run_id))
        if old:
            old_gen = arts.generation_of(old)
            if old_gen:
                arts.delete_generation(self.http, root, key, old_gen)
        return info

    def _export_native(self, root: str, key: str, type: str, path: Path, gen: str,
                       tags: Mapping[str, str], run_id: str) -> None:
        """The protocol's native export of a "model" (base.ARTIFACT_TYPES): the MLflow model
        files at the run's root, so MLflow users load it with MLflow's own tools too. Written
        before the publishing tag; other types have no native form."""
        if type == "model":
            arts.write_mlflow_model(self.http, root, path, gen, key, tags, self._identity(run_id))

    def _identity(self, run_id: str) -> ModelIdentity:
        """MLmodel's run_id and mlflow_version (the server's) for the files at a run's root."""
        return ModelIdentity(mlflow_version=self.server.mlflow_version(), run_id=run_id)

    def _log_mlflow_model(self, run: dict, path: Path, info: ArtifactInfo, tag: dict,
                          tags: Mapping[str, str]) -> tuple[ArtifactInfo, dict]:
        """The run's model as an MLflow 3 logged model too (logged.py); its id goes into the
        info record (meta `mlflow_model_id`) that the tag publishes. Unchanged on MLflow 2."""
        model_id = logged.log_model(self.server, run, path, info, tags)
        if model_id is None:
            return info, tag
        record = json.loads(tag["value"])
        record["mlflow_model_id"] = model_id  # top level: also when meta is in a side file
        return (dataclasses.replace(info, meta={**info.meta, "mlflow_model_id": model_id}),
                {**tag, "value": json.dumps(record, sort_keys=True)})

    def _claim(self, kind: str, id: str, run_id: str, key: str, gen: str) -> None:
        """Claim `key` for generation `gen` with a write-once param; AlreadyExistsError if
        another writer's claim (or a published artifact) got there first."""
        param = CLAIM_PARAM + key
        try:
            self.server.call("POST", "runs/log-parameter",
                             {"run_id": run_id, "key": param, "value": gen})
        except StoreError as exc:
            refused = exc
        else:
            refused = None
        run = self.server.get_run(run_id)
        data = _run_data(run)
        claimed = {p["key"]: p["value"] for p in data["params"]}.get(param)
        if claimed == gen and arts.INFO_TAG + key not in data["tags"]:
            return  # ours (a lost reply to a retried call is ours too)
        if claimed is not None or arts.INFO_TAG + key in data["tags"]:
            raise self._exists(kind, id, key, unpublished=arts.INFO_TAG + key not in data["tags"])
        raise refused or StoreError(f"MLflow server {self.location} accepted the claim of "
                                    f"artifact {key!r} on {kind} {id} but does not show it; retry")

    def _exists(self, kind: str, id: str, key: str, unpublished: bool = False) -> AlreadyExistsError:
        state = ("is being logged by another process (or an upload that stopped before "
                 "publishing it claimed it)" if unpublished else "is already logged")
        what = "a model" if key == MODEL_KEY else f"artifact {key!r}"
        return AlreadyExistsError(f"{what} {state} on {kind} {id} on MLflow server "
                                  f"{self.location}; pass overwrite=True to replace it")

    def artifact_info(self, kind: str, id: str, key: str) -> ArtifactInfo:
        return self._artifact(kind, id, key)[0]

    def list_artifacts(self, kind: str, id: str) -> list[ArtifactInfo]:
        run = self._owner_run(kind, id)
        tags = _run_data(run)["tags"]
        root = self.server.artifact_root(run["info"]["run_id"])
        return [arts.parse_info(self.http, root, k[len(arts.INFO_TAG):], v)[0]
                for k, v in sorted(tags.items()) if k.startswith(arts.INFO_TAG)]

    def fetch_artifact(self, kind: str, id: str, key: str, dest: Path, *,
                       progress: Progress | None = None) -> Path:
        info, gen, run_id = self._artifact(kind, id, key)
        return arts.fetch(self.http, self.server.artifact_root(run_id), info, gen, Path(dest),
                          progress)

    def _artifact(self, kind: str, id: str, key: str) -> tuple[ArtifactInfo, str, str]:
        run = self._owner_run(kind, id)
        run_id = run["info"]["run_id"]
        text = _run_data(run)["tags"].get(arts.INFO_TAG + key)
        if text is None:
            raise NotFoundError(f"no artifact {key!r} in {kind} {id} on {self.location}; log it "
                                f"first with log_artifact({key!r}, ...)")
        info, gen = arts.parse_info(self.http, self.server.artifact_root(run_id), key, text)
        return info, gen, run_id

    # -- maintenance ------------------------------------------------------------------------
    def check(self, verify_blobs: bool = True) -> CheckResult:
        """Every published artifact's files are on the server with the recorded total size
        (by listing: `verify_blobs` would mean downloading every file, so it is not done)."""
        return check_store(self.server)

    def collect_garbage(self, min_age: float = 3600.0) -> dict[str, int]:
        """The tracking server manages its own storage: refused, with what to use instead."""
        raise StoreError(f"{self.location} is an MLflow tracking server, which manages its own "
                         "storage; nothing is collected from here (the server's `mlflow gc` "
                         "removes deleted runs)")

    def copy_artifacts(self, src_kind: str, src_id: str, dst_kind: str, dst_id: str,
                       extra_meta: Mapping[str, Any] | None = None) -> None:
        """Download each artifact and upload it to the other owner (the REST API has no copy)."""
        transfer_artifacts(self, src_kind, src_id, self, dst_kind, dst_id, extra_meta)

    # -- owners -----------------------------------------------------------------------------
    def _owner_run(self, kind: str, id: str) -> dict:
        """The MLflow run (one GET) holding an owner's fields and artifacts: the run itself, or
        a model version's backing run."""
        if kind not in OWNER_KINDS:
            raise StoreError(f"a {kind} has no fields or artifacts; use a run or a model version")
        run_id = str(id) if kind == "run" else registry.backing_run_id(self.server, id)
        run = self.server.get_run(run_id)
        if run["info"].get("lifecycle_stage", "active") != "active":
            raise self.server.not_found(kind, id)
        self.server.run_entity(run)  # remembers the artifact root
        return run
