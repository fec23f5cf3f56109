"""MLflow 3 logged models: a model logged to a run also becomes an entry of MLflow 3's Models
view, which `mlflow.search_logged_models` lists and `models:/<model_id>` loads.

The calls are those `mlflow.pyfunc.log_model` makes (measured against `mlflow server` 3.17):
`POST logged-models` (experiment, name, source_run_id) -> `POST runs/outputs` (the run's link
to it) -> upload the model's files under the artifact URI the server assigned -> `PATCH
logged-models/<id>` status READY.

A logged model is a self-contained, immutable snapshot (MLflow 3's contract: `mlflow models
serve -m models:/<id>` and docker builds download only its folder), and the server assigns its
folder (`<experiment>/models/<id>/artifacts`), so it cannot point at the run's copy: the package
and the artifacts it uses are stored a second time there. The package is uploaded from the
local copy being logged; each artifact is downloaded from the run (its digest verified) and
uploaded again. Replacing the run's model or an artifact later does not change a logged model,
as in MLflow.

An MLflow 2 server has no such endpoints: its 404 means no logged model, one note per store,
and the model is still logged (it loads as `runs:/<run id>/` and `models:/<name>/<version>`).
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ....errors import NotFoundError, StoreError
from ....package.mlflow_export import PACKAGE_DIR, ModelIdentity, mlflow_files
from ..base import ArtifactInfo, iter_tree
from . import answers
from . import artifacts as arts
from .fields import PREFIX
from .server import NAMESPACE_TAG, TrackingServer

log = logging.getLogger(__name__)

#: MLflow's ids are "m-" + 32 hex digits; anything that is not a plain name is refused before it
#: becomes part of a path or URL.
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: What a logged model's name may not hold (mlflow.utils.validation._validate_logged_model_name).
_BAD_NAME = re.compile(r"[/:.%\"']")
MODEL_TYPE = "verta_jupyter"
DIGEST_TAG = PREFIX + "model_digest"


def log_model(server: TrackingServer, run: dict, package: Path, info: ArtifactInfo,
              tags: Mapping[str, str]) -> str | None:
    """Create the logged model of `package` (just uploaded to `run`), linked to the run, with
    its files in place and status READY; its id, or None on a server without logged models."""
    if server.no_logged_models or any(arts.INFO_TAG + key not in tags
                                      for key in _artifact_keys(package)):
        return None  # (an artifact it needs is missing: no MLflow files at the run either)
    run_id = run["info"]["run_id"]
    created = _create(server, run, info)
    if created is None:
        return None
    model_id, root = _checked(server, created, run_id)
    try:
        server.call("POST", "runs/outputs",
                    {"run_id": run_id, "models": [{"model_id": model_id, "step": 0}]}, retry=False)
        _upload(server, run_id, model_id, root, package, tags)
    except Exception:
        _finalize(server, model_id, "LOGGED_MODEL_UPLOAD_FAILED", best_effort=True)
        raise
    _finalize(server, model_id, "LOGGED_MODEL_READY")
    return model_id


def _create(server: TrackingServer, run: dict, info: ArtifactInfo) -> dict | None:
    """`POST logged-models`: the answer, or None (and one note) where the API does not exist."""
    name = _BAD_NAME.sub("_", str(info.meta.get("class_name") or "model")) or "model"
    tags = {DIGEST_TAG: info.digest, **({NAMESPACE_TAG: server.namespace}
                                        if server.namespace else {})}
    body = {"experiment_id": run["info"]["experiment_id"], "name": name,
            "source_run_id": run["info"]["run_id"], "model_type": MODEL_TYPE,
            "tags": [{"key": k, "value": v} for k, v in tags.items()]}
    try:  # a lost reply is not retried: a second create would be a second (pending) model
        return server.call("POST", "logged-models", body, retry=False)
    except StoreError as exc:
        if not _unsupported(exc):
            raise
    server.no_logged_models = True
    log.warning("MLflow server %s has no logged-model API (an MLflow 2 server): models logged "
                "to it load as runs:/<run id>/ and models:/<name>/<version>, but MLflow 3's "
                "Models view and models:/<model_id> need an MLflow 3 server.", server.location)
    return None


def _unsupported(exc: StoreError) -> bool:
    """The server does not know the endpoint (MLflow 2 answers 404, some proxies 405 or 501)."""
    text = str(exc)
    return isinstance(exc, NotFoundError) or any(
        mark in text for mark in ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "HTTP 405", "HTTP 501"))


def _checked(server: TrackingServer, answer: dict, run_id: str) -> tuple[str, str]:
    """(model id, artifact root) from the create answer, both checked: the id is a plain name
    and the folder is the logged model's own (`.../models/<id>/artifacts`), never the run's
    or anything outside; else a StoreError naming the server, before anything is uploaded."""
    what = "POST logged-models"
    info = answers.one(server.http, answer, "model", answers.logged_model, what)["info"]
    model_id = info["model_id"]
    if not _MODEL_ID.fullmatch(model_id):
        raise server.http.malformed(what, f"a model_id that is a plain name, got {model_id!r:.80}")
    root = arts.artifact_root(info["artifact_uri"], server.location)
    run_root = server.artifact_root(run_id)
    if not root.endswith(f"models/{model_id}/artifacts") or root == run_root or \
            root.startswith(run_root + "/") or run_root.startswith(root + "/"):
        raise server.http.malformed(
            what, f"the logged model's own folder (<experiment>/models/{model_id}/artifacts), "
                  f"got {info['artifact_uri']!r:.120}")
    return model_id, root


def _upload(server: TrackingServer, run_id: str, model_id: str, root: str, package: Path,
            tags: Mapping[str, str]) -> None:
    """The package, its artifacts (copied from the run) and the MLflow files; MLmodel last."""
    http = server.http
    run_root = server.artifact_root(run_id)
    files = [(f"{PACKAGE_DIR}/{rel}", local) for rel, local in iter_tree(package)]
    placed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vj-logged-model-") as tmp:
        for key in _artifact_keys(package):
            info, gen = arts.parse_info(http, run_root, key, tags[arts.INFO_TAG + key])
            local = arts.fetch(http, run_root, info, gen, Path(tmp) / "a" / key / info.filename,
                               None)
            placed[key] = f"artifacts/{key}/{info.filename}"
            files += ([(f"{placed[key]}/{rel}", p) for rel, p in iter_tree(local)]
                      if local.is_dir() else [(placed[key], local)])
        identity = ModelIdentity(mlflow_version=server.mlflow_version(), run_id=run_id,
                                 model_id=model_id, artifact_path=f"mlflow-artifacts:/{root}")
        native = mlflow_files(package, PACKAGE_DIR, placed, identity)
        for name, text in native.items():
            (Path(tmp) / name).write_text(text)
        files += [(name, Path(tmp) / name) for name in native if name != "MLmodel"]
        arts.parallel(lambda item: http.upload(item[1], f"{root}/{item[0]}"), files)
        http.upload(Path(tmp) / "MLmodel", f"{root}/MLmodel")


def _artifact_keys(package: Path) -> list[str]:
    from ....package.format import read_manifest

    return list(read_manifest(package).get("artifact_keys", []))


def _finalize(server: TrackingServer, model_id: str, status: str, best_effort: bool = False) -> Any:
    try:
        return server.call("PATCH", f"logged-models/{model_id}",
                           {"model_id": model_id, "status": status})
    except StoreError:
        if not best_effort:
            raise
        return None
