"""`TrackingServer`: one namespace on one MLflow tracking server, as checked entities.

The small public surface that `MlflowStore` (the store protocol) and `registry` (registered
models and versions) share: experiments and runs found or created safely, searches paged with
a bound, every answer checked by `answers` before a field is read. Neither of those modules
reaches into the other; both use this one.
"""
from __future__ import annotations

import re
import time
import uuid
from typing import Any, Callable

from ....errors import AlreadyExistsError, NotFoundError, StoreError
from ..base import Entity
from . import answers
from . import artifacts as arts
from . import fields as fields_codec
from .fields import PREFIX
from .names import _name_filter, _seconds, _tags, _taglist, _unescape
from .rest import MlflowHttp, RetryPolicy, TransientError

KIND_TAG = PREFIX + "kind"
PROJECT_TAG = PREFIX + "project_id"
CLIENT_ID_TAG = PREFIX + "client_id"
NAMESPACE_TAG = PREFIX + "namespace"
REGISTRY_EXPERIMENT = "verta_jupyter-registry"
PAGE = 1000
#: No listing we make comes near this many pages (a million entities); a server that keeps
#: sending tokens past it is broken, and we stop rather than loop for ever.
MAX_PAGES = 1000


class TrackingServer:
    """The MLflow server at `url`, seen through the namespace `namespace` ("" = none)."""

    def __init__(self, url: str, namespace: str, *, timeout: tuple[float, float],
                 retry_policy: RetryPolicy | None, env) -> None:
        if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", namespace):
            raise StoreError(f"MLflow namespace {namespace!r} may hold only letters, digits, '_' "
                             "and '-'")
        self.namespace = namespace
        self.http = MlflowHttp(url, timeout=timeout, retry_policy=retry_policy, env=env)
        self.location = self.http.url + (f"?namespace={namespace}" if namespace else "")
        self.experiment_prefix = f"{namespace}/" if namespace else ""
        self.model_prefix = f"{namespace}." if namespace else ""
        self._roots: dict[str, str] = {}  # run id -> artifact root (never changes)
        #: Set when the server answered that it has no logged-model API (MLflow 2): not asked
        #: again by this store.
        self.no_logged_models = False
        self._version: str | None | bool = False  # False: not asked yet

    # -- calls ------------------------------------------------------------------------------
    def call(self, method: str, endpoint: str, body: dict | None = None, *, retry: bool = True
             ) -> dict:
        return self.http.call(method, endpoint, body, retry=retry)

    def get_one(self, method: str, endpoint: str, body: dict, key: str, check: answers.Check,
                *, retry: bool = True) -> dict:
        """One checked entity from a get/create call (`key` names it in the answer)."""
        return answers.one(self.http, self.call(method, endpoint, body, retry=retry), key, check,
                           f"{method} {endpoint}")

    def get_for(self, kind: str, id: str, method: str, endpoint: str, body: dict, key: str,
                check: answers.Check) -> dict:
        """`get_one` for the entity `kind` `id`: "does not exist" becomes `not_found`."""
        try:
            return self.get_one(method, endpoint, body, key, check)
        except NotFoundError:
            raise self.not_found(kind, id) from None
        except StoreError as exc:
            if "INVALID_PARAMETER_VALUE" in str(exc):
                raise self.not_found(kind, id) from None
            raise

    def paged(self, method: str, endpoint: str, body: dict, key: str, check: answers.Check
              ) -> list[dict]:
        """Every page of a search, bounded: a repeated page token or more than MAX_PAGES pages
        is a broken server, reported as such rather than followed for ever."""
        out, token, seen = [], None, set()
        what = f"{method} {endpoint}"
        for _ in range(MAX_PAGES):
            page = {**body, "max_results": PAGE, **({"page_token": token} if token else {})}
            data = self.call(method, endpoint, page)
            out.extend(answers.many(self.http, data, key, check, what))
            token = answers.page_token(self.http, data, what)
            if token is None:
                return out
            if token in seen:
                raise self.http.malformed(what, "a new page token for each page, got one it "
                                                "had sent before (the listing would never end)")
            seen.add(token)
        raise self.http.malformed(what, f"a listing that ends within {MAX_PAGES} pages of {PAGE}")

    def create_safely(self, find: Callable[[], Any], create: Callable[[], Any]) -> Any:
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

    def not_found(self, kind: str, id: str) -> NotFoundError:
        return NotFoundError(f"no {kind.replace('_', ' ')} with id {id!r} on MLflow server "
                             f"{self.location}; check the id (list them with the client's find "
                             "methods or the MLflow UI)")

    def mlflow_version(self) -> str | None:
        """The server's MLflow version (`GET /version`), for the MLmodel files we write; None
        if it does not say or says something that is not a version. Asked once."""
        if self._version is False:
            self._version = None
            try:
                response = self.http.request("GET", self.http.url + "/version", retry=False,
                                             what="GET /version")
                text = self.http.read_answer(response, "GET /version")[:64].decode("ascii")
            except (StoreError, UnicodeDecodeError):
                return None
            if re.fullmatch(r"[0-9]+(\.[0-9A-Za-z+-]+){1,4}", text.strip()):
                self._version = text.strip()
        return self._version

    # -- ownership --------------------------------------------------------------------------
    def kind_tags(self, kind: str) -> dict[str, str]:
        return {KIND_TAG: kind, **({NAMESPACE_TAG: self.namespace} if self.namespace else {})}

    def mine(self, obj: dict, kind: str | None = None) -> bool:
        """In this namespace (and of this kind, for an experiment)?"""
        tags = _tags(obj)
        return ((kind is None or tags.get(KIND_TAG) == kind)
                and tags.get(NAMESPACE_TAG, "") == self.namespace)

    # -- experiments ------------------------------------------------------------------------
    def get_or_create_experiment(self, name: str, tags: dict[str, str]) -> dict:
        def find():
            try:
                return self.get_one("GET", "experiments/get-by-name", {"experiment_name": name},
                                    "experiment", answers.experiment)
            except NotFoundError:
                return None

        def create():
            self.call("POST", "experiments/create", {"name": name, "tags": _taglist(tags)},
                      retry=False)
            return find()

        exp = self.create_safely(find, create)
        if exp.get("lifecycle_stage", "active") != "active":
            raise StoreError(f"MLflow experiment {name!r} on {self.location} is deleted; restore it "
                             "in the MLflow UI (or `mlflow experiments restore`) or use another name")
        missing = {k: v for k, v in tags.items() if _tags(exp).get(k) != v}
        for key, value in missing.items():  # adopt an experiment made outside verta_jupyter
            self.call("POST", "experiments/set-experiment-tag",
                      {"experiment_id": exp["experiment_id"], "key": key, "value": value})
            exp.setdefault("tags", []).append({"key": key, "value": value})
        return exp

    def experiments(self, kind: str) -> list[dict]:
        found = self.paged("POST", "experiments/search",
                           {"filter": f"tags.`{KIND_TAG}` = '{kind}'"}, "experiments",
                           answers.experiment)
        return [e for e in found if self.mine(e, kind)]

    def experiment_entity(self, kind: str, exp: dict) -> Entity:
        tags = _tags(exp)
        bare = exp["name"][len(self.experiment_prefix):]
        name = _unescape(bare) if kind == "project" else bare.split("/", 1)[-1]
        return Entity(kind=kind, id=exp["experiment_id"], name=name,
                      parent_id=tags.get(PROJECT_TAG) if kind == "experiment" else None,
                      created_at=_seconds(exp.get("creation_time")))

    # -- runs -------------------------------------------------------------------------------
    def get_or_create_run(self, experiment_id: str, name: str | None) -> dict:
        client_id = uuid.uuid4().hex
        if name is not None:
            existing = self.search_runs([experiment_id], _name_filter(name))
            if existing:
                return existing[0]

        def find():
            found = self.search_runs([experiment_id], f"tags.`{CLIENT_ID_TAG}` = '{client_id}'")
            return found[0] if found else None

        def create():
            body = {"experiment_id": experiment_id, "start_time": fields_codec.now_ms(),
                    "tags": _taglist({CLIENT_ID_TAG: client_id})}
            if name is not None:
                body["run_name"] = name
            return self.get_one("POST", "runs/create", body, "run", answers.run, retry=False)

        run = self.create_safely(find, create)
        info = run["info"]
        self.call("POST", "runs/update", {"run_id": info["run_id"], "status": "FINISHED",
                                          "end_time": int(info["start_time"])})
        if name is None:
            return run
        # Two processes may have created the same name at once: everyone keeps the oldest.
        same = self.search_runs([experiment_id], _name_filter(name))
        winner = same[0] if same else run
        if winner["info"]["run_id"] != info["run_id"]:
            self.call("POST", "runs/delete", {"run_id": info["run_id"]})
        return winner

    def search_runs(self, experiment_ids: list[str], filter: str | None = None) -> list[dict]:
        if not experiment_ids:
            return []
        body: dict[str, Any] = {"experiment_ids": experiment_ids,
                                "order_by": ["attributes.start_time ASC"]}
        if filter:
            body["filter"] = filter
        runs = self.paged("POST", "runs/search", body, "runs", answers.run)
        return sorted(runs, key=lambda r: (int(r["info"]["start_time"]), r["info"]["run_id"]))

    def get_run(self, run_id: str) -> dict:
        return self.get_for("run", run_id, "GET", "runs/get", {"run_id": run_id}, "run", answers.run)

    def run_entity(self, run: dict) -> Entity:
        info = run["info"]
        self._roots.setdefault(info["run_id"], arts.artifact_root(info["artifact_uri"], self.location))
        return Entity(kind="run", id=info["run_id"], name=info.get("run_name") or "",
                      parent_id=info["experiment_id"], created_at=_seconds(info["start_time"]))

    def artifact_root(self, run_id: str) -> str:
        if run_id not in self._roots:
            self.run_entity(self.get_run(run_id))
        return self._roots[run_id]

