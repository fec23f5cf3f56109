"""Registered models and versions on MLflow's model registry, on a `TrackingServer`.

A registered model is MLflow's registered model (name = id). A model version is an MLflow
model version whose source is a *backing run* in the experiment "verta_jupyter-registry": the
version's fields and artifacts (its model package) live on that run, because MLflow versions
have tags only and must point at a run's artifacts. Version id: "<model name>/<version>".

Uses only `TrackingServer`'s public surface; `MlflowStore` calls in here, never the reverse.
"""
from __future__ import annotations

from ....errors import NotFoundError, StoreError
from ..base import Entity
from . import answers
from .names import VERSION_NAME_TAG, _seconds, _version_entity
from .server import NAMESPACE_TAG, REGISTRY_EXPERIMENT, TrackingServer


def model_entity(server: TrackingServer, model: dict) -> Entity:
    return Entity(kind="registered_model", id=model["name"],
                  name=model["name"][len(server.model_prefix):],
                  created_at=_seconds(model.get("creation_timestamp")))


def get_model(server: TrackingServer, id: str) -> Entity:
    model = server.get_for("registered_model", id, "GET", "registered-models/get", {"name": id},
                           "registered_model", answers.registered_model)
    if not server.mine(model):
        raise server.not_found("registered_model", id)
    return model_entity(server, model)


def find_models(server: TrackingServer) -> list[Entity]:
    found = server.paged("GET", "registered-models/search", {}, "registered_models",
                         answers.registered_model)
    return [model_entity(server, m) for m in found if server.mine(m)]


def get_or_create_model(server: TrackingServer, name: str) -> Entity:
    def find():
        try:
            return server.get_one("GET", "registered-models/get", {"name": name},
                                  "registered_model", answers.registered_model)
        except NotFoundError:
            return None

    def create():
        tags = [{"key": NAMESPACE_TAG, "value": server.namespace}] if server.namespace else []
        server.call("POST", "registered-models/create", {"name": name, "tags": tags}, retry=False)
        return find()

    return model_entity(server, server.create_safely(find, create))


def get_version(server: TrackingServer, id: str) -> Entity:
    name, _, version = id.rpartition("/")
    if not name or not version.isdigit():
        raise server.not_found("model_version", id)
    get_model(server, name)
    return _version_entity(_version(server, id))


def get_or_create_version(server: TrackingServer, model_name: str, name: str | None) -> Entity:
    if name is not None:
        for mv in _versions(server, model_name):
            if _version_entity(mv).name == name:
                return _version_entity(mv)
    registry = server.get_or_create_experiment(server.experiment_prefix + REGISTRY_EXPERIMENT,
                                               server.kind_tags("registry"))
    run = server.get_or_create_run(registry["experiment_id"], None)
    run_id = run["info"]["run_id"]

    def find():
        found = _versions(server, model_name, f"run_id = '{run_id}'")
        return found[0] if found else None

    def create():
        body = {"name": model_name, "source": run["info"]["artifact_uri"], "run_id": run_id,
                "tags": [{"key": VERSION_NAME_TAG, "value": name}] if name is not None else []}
        return server.get_one("POST", "model-versions/create", body, "model_version",
                              answers.model_version, retry=False)

    mine = _version_entity(server.create_safely(find, create))
    if name is None:
        return mine
    # Two processes may have created the same named version at once: keep the lowest number.
    same = find_versions(server, model_name, name, None)
    winner = same[0] if same else mine
    if winner.id != mine.id:
        server.call("DELETE", "model-versions/delete",
                    {"name": model_name, "version": mine.id.rpartition("/")[2]})
    return winner


def backing_run_id(server: TrackingServer, version_id: str) -> str:
    """The run that holds a model version's fields and artifacts."""
    name, _, version = str(version_id).rpartition("/")
    if not name.startswith(server.model_prefix) or not version.isdigit():
        raise server.not_found("model_version", version_id)
    run_id = _version(server, version_id).get("run_id")
    if not run_id:
        raise StoreError(f"model version {version_id!r} on {server.location} was not created by "
                         "verta_jupyter (it has no backing run); create a new version instead")
    return run_id


def find_versions(server: TrackingServer, model_name: str | None, name: str | None,
                  tag: str | None) -> list[Entity]:
    found = [_version_entity(mv) for mv in _versions(server, model_name)]
    if name is not None:
        found = [e for e in found if e.name == name]
    if tag is not None:
        registry = server.experiments("registry")
        runs = server.search_runs([e["experiment_id"] for e in registry], f"tags.`{tag}` LIKE '%'")
        tagged = {r["info"]["run_id"] for r in runs}
        found = [e for e in found if _version(server, e.id).get("run_id") in tagged]
    return sorted(found, key=lambda e: (e.created_at, int(e.id.rpartition("/")[2])))


def _version(server: TrackingServer, id: str) -> dict:
    name, _, version = id.rpartition("/")
    return server.get_for("model_version", id, "GET", "model-versions/get",
                          {"name": name, "version": version}, "model_version", answers.model_version)


def _versions(server: TrackingServer, model_name: str | None, extra: str | None = None) -> list[dict]:
    filters = [f"name = '{model_name}'"] if model_name is not None else []
    if extra:
        filters.append(extra)
    body = {"filter": " and ".join(filters)} if filters else {}
    return server.paged("GET", "model-versions/search", body, "model_versions",
                        answers.model_version)
