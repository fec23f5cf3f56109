"""Registered models and versions on MLflow's model registry, for `MlflowStore`.

A registered model is MLflow's registered model (name = id). A model version is an MLflow
model version whose source is a *backing run* in the experiment "verta_jupyter-registry": the
version's fields and artifacts (its model package) live on that run, because MLflow versions
have tags only and must point at a run's artifacts. Version id: "<model name>/<version>".
"""
from __future__ import annotations

from ....errors import NotFoundError, StoreError
from ..base import Entity
from .store import (NAMESPACE_TAG, REGISTRY_EXPERIMENT, VERSION_NAME_TAG, MlflowStore,
                     _version_entity)


def get_or_create_model(store: MlflowStore, name: str) -> Entity:
    def find():
        try:
            return store.http.call("GET", "registered-models/get", {"name": name})["registered_model"]
        except NotFoundError:
            return None

    def create():
        tags = [{"key": NAMESPACE_TAG, "value": store.namespace}] if store.namespace else []
        store.http.call("POST", "registered-models/create", {"name": name, "tags": tags},
                        retry=False)
        return find()

    return store._model_entity(store._create_safely(find, create))


def get_or_create_version(store: MlflowStore, model_name: str, name: str | None) -> Entity:
    if name is not None:
        for mv in _versions(store, model_name):
            if _version_entity(mv).name == name:
                return _version_entity(mv)
    registry = store._get_or_create_experiment(store._exp_prefix + REGISTRY_EXPERIMENT,
                                               store._kind_tags("registry"))
    run = store._get_or_create_run(registry["experiment_id"], None)
    run_id = run["info"]["run_id"]

    def find():
        found = _versions(store, model_name, f"run_id = '{run_id}'")
        return found[0] if found else None

    def create():
        body = {"name": model_name, "source": run["info"]["artifact_uri"], "run_id": run_id,
                "tags": [{"key": VERSION_NAME_TAG, "value": name}] if name is not None else []}
        return store.http.call("POST", "model-versions/create", body, retry=False)["model_version"]

    mine = _version_entity(store._create_safely(find, create))
    if name is None:
        return mine
    # Two processes may have created the same named version at once: keep the lowest number.
    same = [v for v in find_versions(store, model_name, name, None)]
    winner = same[0] if same else mine
    if winner.id != mine.id:
        store.http.call("DELETE", "model-versions/delete",
                        {"name": model_name, "version": mine.id.rpartition("/")[2]})
    return winner


def backing_run_id(store: MlflowStore, version_id: str) -> str:
    name, _, version = str(version_id).rpartition("/")
    if not name.startswith(store._model_prefix) or not version.isdigit():
        raise store._not_found("model_version", version_id)
    data = store._call_nf("model_version", version_id, "GET", "model-versions/get",
                          {"name": name, "version": version})
    run_id = data["model_version"].get("run_id")
    if not run_id:
        raise StoreError(f"model version {version_id!r} on {store.location} was not created by "
                         "verta_jupyter (it has no backing run); create a new version instead")
    return run_id


def find_versions(store: MlflowStore, model_name: str | None, name: str | None,
                  tag: str | None) -> list[Entity]:
    found = [_version_entity(mv) for mv in _versions(store, model_name)]
    if name is not None:
        found = [e for e in found if e.name == name]
    if tag is not None:
        registry = store._experiments("registry")
        runs = store._search_runs([e["experiment_id"] for e in registry], f"tags.`{tag}` LIKE '%'")
        tagged = {r["info"]["run_id"] for r in runs}
        found = [e for e in found if _run_of(store, e) in tagged]
    return sorted(found, key=lambda e: (e.created_at, int(e.id.rpartition("/")[2])))


def _versions(store: MlflowStore, model_name: str | None, extra: str | None = None) -> list[dict]:
    filters = [f"name = '{model_name}'"] if model_name is not None else []
    if extra:
        filters.append(extra)
    body = {"filter": " and ".join(filters)} if filters else {}
    return store._paged("GET", "model-versions/search", body, "model_versions")


def _run_of(store: MlflowStore, entity: Entity) -> str | None:
    name, _, version = entity.id.rpartition("/")
    return store.http.call("GET", "model-versions/get",
                           {"name": name, "version": version})["model_version"].get("run_id")
