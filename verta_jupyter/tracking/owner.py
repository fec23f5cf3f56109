"""What runs and model versions share: key-value fields, artifacts and a logged model.

`ExperimentRun` and `RegisteredModelVersion` are thin subclasses of `Loggable`. Every method
checks its input (keys, values, reserved names, overwrite) before the first write, so a call
that raises leaves the store unchanged.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..catalog import problem
from .._text import shorten
from ..errors import AlreadyExistsError, NotFoundError, StoreError, ValidationError, VertaError
from ..package.format import MISSING
from . import rules
from .cache import evict, fetch_cached
from .display import LoggedModel, Rows, html_summary, human_size, model_line, text_summary
from .named import Named
from .progress import total_size, transfer_progress
from .stores.base import MODEL_KEY, REQUIREMENTS_KEY, ArtifactInfo


class Loggable(Named):
    """A store entity that carries fields, artifacts and a model (a run or a model version)."""

    _kind = "run"

    @property
    def kind(self) -> str:
        """The store's kind for this owner: "run" or "model_version"."""
        return self._kind

    @property
    def store_location(self) -> str:
        """Where the store lives (a folder or an MLflow URL)."""
        return self._store.location

    def _label(self) -> str:
        return f"{self._kind.replace('_', ' ')} '{self.name}'"

    # -- key-value fields ------------------------------------------------------------------
    def _log_fields(self, field: str, values: Mapping[str, Any], overwrite: bool) -> None:
        if not isinstance(values, Mapping):
            raise rules.InvalidValueError(f"log_{field} takes a dict of key -> value, not "
                                          f"{type(values).__name__}")
        clean = {rules.check_key(k, field): rules.check_value(v, field, k) for k, v in values.items()}
        if not overwrite:  # early and naming the run; the store re-checks atomically
            existing = self._store.get_fields(self._kind, self.id, field)
            rules.refuse_existing(existing, clean, field, self._label())
        if clean:
            self._store.put_fields(self._kind, self.id, field, clean, overwrite=overwrite)

    def _get_field(self, field: str, key: str) -> Any:
        values = self._store.get_fields(self._kind, self.id, field)
        if key not in values:
            raise NotFoundError(f"no {rules._WHAT[field]} '{key}' on {self._label()}; logged: "
                                f"{sorted(values) or 'none'}")
        return values[key]

    def log_hyperparameter(self, key: str, value: Any, overwrite: bool = False) -> None:
        """Log one hyperparameter (str, int, float or bool)."""
        self._log_fields("hyperparameters", {key: value}, overwrite)

    def log_hyperparameters(self, hyperparams: Mapping[str, Any], overwrite: bool = False) -> None:
        """Log several hyperparameters at once (all or none)."""
        self._log_fields("hyperparameters", hyperparams, overwrite)

    def get_hyperparameter(self, key: str) -> Any:
        """The value logged for hyperparameter `key`."""
        return self._get_field("hyperparameters", key)

    def get_hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter, as logged."""
        return self._store.get_fields(self._kind, self.id, "hyperparameters")

    def log_metric(self, key: str, value: Any, overwrite: bool = False) -> None:
        """Log one metric (a number)."""
        self._log_fields("metrics", {key: value}, overwrite)

    def log_metrics(self, metrics: Mapping[str, Any], overwrite: bool = False) -> None:
        """Log several metrics at once (all or none)."""
        self._log_fields("metrics", metrics, overwrite)

    def get_metric(self, key: str) -> Any:
        """The value logged for metric `key`."""
        return self._get_field("metrics", key)

    def get_metrics(self) -> dict[str, Any]:
        """Every metric, as logged."""
        return self._store.get_fields(self._kind, self.id, "metrics")

    def log_attribute(self, key: str, value: Any, overwrite: bool = False) -> None:
        """Log one attribute (any JSON-like value: scalars, lists, dicts)."""
        self._log_fields("attributes", {key: value}, overwrite)

    def log_attributes(self, attributes: Mapping[str, Any], overwrite: bool = False) -> None:
        """Log several attributes at once (all or none)."""
        self._log_fields("attributes", attributes, overwrite)

    def get_attribute(self, key: str) -> Any:
        """The value logged for attribute `key`."""
        return self._get_field("attributes", key)

    def get_attributes(self) -> dict[str, Any]:
        """Every attribute, as logged."""
        return self._store.get_fields(self._kind, self.id, "attributes")

    def log_tag(self, tag: str) -> None:
        """Add a tag (a plain label; adding it twice is harmless)."""
        self.log_tags([tag])

    def log_tags(self, tags: Iterable[str]) -> None:
        """Add several tags."""
        if isinstance(tags, str):
            tags = [tags]
        clean = {rules.check_key(t, "tags"): None for t in tags}
        if clean:
            self._store.put_fields(self._kind, self.id, "tags", clean)

    def get_tags(self) -> list[str]:
        """The tags, sorted."""
        return sorted(self._store.get_fields(self._kind, self.id, "tags"))

    # -- artifacts -------------------------------------------------------------------------
    def log_artifact(self, key: str, artifact: Any, overwrite: bool = False) -> None:
        """Log a file (copied), a directory (stored file by file, fetched back as a directory),
        an open binary file object (its bytes), or any other object (pickled)."""
        rules.check_artifact_key(key)
        self._refuse_existing_artifact(key, overwrite)
        if isinstance(artifact, (str, os.PathLike)):
            path = Path(artifact)
            if not path.exists():
                raise NotFoundError(f"artifact '{key}': no file or directory at {path}; check the "
                                    "path, or pass the object itself to pickle it")
            self._put(key, path, "directory" if path.is_dir() else "file", overwrite=overwrite)
            return
        with tempfile.TemporaryDirectory(prefix="vj-artifact-") as tmp:
            path, type_ = _materialize(key, artifact, Path(tmp))
            self._put(key, path, type_, overwrite=overwrite)

    def _refuse_existing_artifact(self, key: str, overwrite: bool) -> None:
        if overwrite:
            return
        try:
            self._store.artifact_info(self._kind, self.id, key)
        except NotFoundError:
            self._store.get(self._kind, self.id)  # an unknown owner is still an error
            return
        what = "a model" if key == MODEL_KEY else f"artifact '{key}'"
        raise AlreadyExistsError(f"{what} is already logged on {self._label()}; pass "
                                 "overwrite=True to replace it")

    def _put(self, key: str, path: Path, type_: str, meta: Mapping | None = None, *,
             overwrite: bool) -> ArtifactInfo:
        # the store re-checks "key is free" atomically with the record (a racing writer loses)
        with transfer_progress(total_size(path), f"log {_shown(key)}") as progress:
            return self._store.put_artifact(self._kind, self.id, key, path, type=type_,
                                            meta=meta, progress=progress, overwrite=overwrite)

    def get_artifact_keys(self) -> list[str]:
        """Keys of the artifacts logged with log_artifact."""
        return [a.key for a in self._store.list_artifacts(self._kind, self.id)
                if not a.key.startswith("_") and a.key != REQUIREMENTS_KEY]

    def get_artifact(self, key: str) -> Any:
        """A pickled object comes back unpickled; a file or directory as its local path (str)."""
        info = self._store.artifact_info(self._kind, self.id, key)
        path = self._fetch(info)
        if info.type == "object":
            import pickle  # cloudpickle's reconstructors are imported by the pickle itself

            with open(path, "rb") as f:
                return pickle.load(f)
        return str(path)

    def fetch_artifacts(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: local path}: the file itself for a file, a directory for a directory.
        Fetched copies are cached by content, so fetching again is free."""
        if isinstance(keys, str):
            keys = [keys]
        infos = [self._store.artifact_info(self._kind, self.id, k) for k in keys]
        return {info.key: str(self._fetch(info)) for info in infos}

    def _fetch(self, info: ArtifactInfo) -> Path:
        with transfer_progress(info.size, f"fetch {_shown(info.key)}") as progress:
            return fetch_cached(self._store, self._kind, self.id, info, progress)

    def log_requirements(self, requirements: Iterable[str] | str | os.PathLike,
                         overwrite: bool = False) -> None:
        """Record the environment: a list of "dist==version" lines or a requirements file."""
        if isinstance(requirements, (str, os.PathLike)):
            lines = Path(requirements).read_text().splitlines()
        else:
            lines = list(requirements)
        bad = [r for r in lines if not isinstance(r, str)]
        if bad:
            raise rules.InvalidValueError(f"requirements must be strings, not {bad[0]!r}")
        self._refuse_existing_artifact(REQUIREMENTS_KEY, overwrite)
        with tempfile.TemporaryDirectory(prefix="vj-req-") as tmp:
            path = Path(tmp) / REQUIREMENTS_KEY
            path.write_text("".join(line.strip() + "\n" for line in lines if line.strip()))
            self._put(REQUIREMENTS_KEY, path, "file", overwrite=overwrite)

    def get_requirements(self) -> list[str]:
        """The lines logged with log_requirements."""
        info = self._store.artifact_info(self._kind, self.id, REQUIREMENTS_KEY)
        return self._fetch(info).read_text().splitlines()

    # -- the model -------------------------------------------------------------------------
    def log_model(self, model: type, artifacts: Iterable[str] | None = None,
                  sample_input: Any = MISSING, overwrite: bool = False, *,
                  namespace: dict | None = None, cell_source: str | None = None,
                  allow_secrets: bool = False, check_rebuild: bool = True,
                  proof: str = "process", proof_python: str | None = None) -> LoggedModel:
        """Validate the class `model`, package it, and store the package (the class is logged,
        never an instance). `artifacts` are keys logged earlier with log_artifact; the model
        gets them as `model(artifacts={key: local_path})`. `proof="env"` proves the package in
        a clean environment holding only its requirements.txt. Nothing is written if this raises."""
        keys = self._check_model_args(model, artifacts, overwrite)
        paths = self.fetch_artifacts(keys)
        from ..package.format import package_digest, read_manifest
        from ..validation.validate import prepare_model
        from ..worker.scratch import remove_scratch

        prepared = prepare_model(model, namespace=namespace, cell_source=cell_source,
                                 artifacts=paths, sample_input=sample_input,
                                 check_rebuild=check_rebuild, allow_secrets=allow_secrets,
                                 proof=proof, proof_python=proof_python)
        try:
            manifest = read_manifest(prepared.package_dir)
            meta = {"class_name": manifest.get("class_name"), "artifact_keys": keys,
                    "package_digest": package_digest(manifest), "python": manifest.get("python"),
                    "requirements": manifest.get("requirements", [])}
            info = self._put(MODEL_KEY, Path(prepared.package_dir), "model", meta,
                             overwrite=overwrite)
        finally:  # stored (or not): the temp copy has served its purpose
            remove_scratch(prepared.package_dir)
        return LoggedModel(self, info, prepared.report)

    def _check_model_args(self, model: Any, artifacts: Any, overwrite: bool) -> list[str]:
        if not isinstance(model, type):
            name = type(model).__name__
            raise ValidationError(problems=[problem(
                "VJ103", f"log_model got an instance of {name}, not the class", name=name)])
        keys = [artifacts] if isinstance(artifacts, str) else list(artifacts or [])
        for key in keys:
            rules.check_artifact_key(key)
        logged = {a.key for a in self._store.list_artifacts(self._kind, self.id)}
        missing = [k for k in keys if k not in logged]
        if missing:
            raise ValidationError(problems=[problem(
                "VJ301", f"artifact '{k}' was never logged on {self._label()}", name=k)
                for k in missing])
        if MODEL_KEY in logged and not overwrite:
            raise AlreadyExistsError(f"a model is already logged on {self._label()}; pass "
                                     "overwrite=True to replace it")
        return keys

    def model_info(self) -> ArtifactInfo:
        """The stored package's metadata (class name, digest, artifact keys)."""
        try:
            return self._store.artifact_info(self._kind, self.id, MODEL_KEY)
        except NotFoundError:
            raise NotFoundError(f"no model is logged on {self._label()}; log one with "
                                ".log_model(MyModel)") from None

    def model_package_dir(self) -> Path:
        """The local (cached, read-only by convention) directory of the logged model package."""
        return self._fetch(self.model_info())

    def get_model(self) -> type:
        """The model class rebuilt from the stored package (never the live notebook class)."""
        from ..errors import PackageError
        from ..package.load import load_package

        path = self.model_package_dir()
        try:
            return load_package(path)
        except PackageError:
            evict(path)  # the cached copy was edited: fetch the stored one again, once
            return load_package(self.model_package_dir())

    def load_model(self) -> Any:
        """An instance: the rebuilt class built with `artifacts={key: local_path}`."""
        cls = self.get_model()
        keys = cls.__verta_package__["manifest"].get("artifact_keys", [])
        return cls(artifacts=self.fetch_artifacts(keys))

    def download_model(self, download_to_path: str | os.PathLike) -> str:
        """Write the model package to a new (or empty) folder; return its path."""
        dest = Path(download_to_path)
        if dest.exists():
            if not dest.is_dir() or any(dest.iterdir()):
                raise StoreError(f"{dest} already exists and is not an empty folder; "
                                 "choose a new path")
            dest.rmdir()
        info = self.model_info()
        with transfer_progress(info.size, "download model") as progress:
            self._store.fetch_artifact(self._kind, self.id, MODEL_KEY, dest, progress=progress)
        return str(dest)

    def export_mlflow(self, path: str | os.PathLike) -> str:
        """Write the logged model as an MLflow model directory (pyfunc, models from code) at
        `path`: `mlflow.pyfunc.load_model(path)` and `mlflow models serve -m path` answer like
        `load_model()`. See docs/mlflow.md."""
        from ..package.mlflow_export import export_mlflow
        from ..package.format import read_manifest

        package = self.model_package_dir()
        keys = read_manifest(package).get("artifact_keys", [])
        return str(export_mlflow(package, path, artifacts=self.fetch_artifacts(keys)))

    def panel(self, **options):
        """A predict panel (widget) on the rebuilt model; options go to `PredictPanel`."""
        from ..panel.widget import PredictPanel

        return PredictPanel(self, **options)

    # -- display ---------------------------------------------------------------------------
    def _context(self) -> list[tuple[str, str]]:
        return []

    def _summary_rows(self) -> Rows:
        """(label, text) lines describing this owner; store failures become a line, never a
        crash (a repr that raises hides the object it should describe)."""
        rows = [("id", self.id), *self._context(), ("store", self.store_location)]
        try:
            store, kind = self._store, self._kind
            for field in ("hyperparameters", "metrics", "attributes"):
                values = store.get_fields(kind, self.id, field)
                if values:
                    rows.append((field, ", ".join(f"{k}={shorten(repr(v), 40)}" for k, v in values.items())))
            tags = store.get_fields(kind, self.id, "tags")
            if tags:
                rows.append(("tags", ", ".join(sorted(tags))))
            artifacts = store.list_artifacts(kind, self.id)
            user = [a for a in artifacts if a.key not in (MODEL_KEY, REQUIREMENTS_KEY)]
            if user:
                rows.append(("artifacts", ", ".join(f"{a.key} ({a.type}, {human_size(a.size)})"
                                                    for a in user)))
            model = [a for a in artifacts if a.key == MODEL_KEY]
            if model:
                rows.append(("model", model_line(model[0])))
        except VertaError as exc:
            rows.append(("error", str(exc)))
        return rows

    def __repr__(self) -> str:
        return text_summary(f"{type(self).__name__} '{self.name}'", self._summary_rows())

    def _repr_html_(self) -> str:
        return html_summary(f"{type(self).__name__} '{self.name}'", self._summary_rows())


def _shown(key: str) -> str:
    return "model" if key == MODEL_KEY else key


def _materialize(key: str, artifact: Any, tmp: Path) -> tuple[Path, str]:
    """Write a non-path artifact to a file: a binary stream's bytes, else a pickle."""
    if hasattr(artifact, "read"):
        name = Path(getattr(artifact, "name", "") or key).name or key
        path = tmp / name
        with open(path, "wb") as out:
            while chunk := artifact.read(1 << 20):
                out.write(chunk.encode() if isinstance(chunk, str) else chunk)
        return path, "file"
    import cloudpickle

    path = tmp / f"{key}.pkl"
    try:
        with open(path, "wb") as out:
            cloudpickle.dump(artifact, out)
    except Exception as exc:
        raise rules.InvalidValueError(f"artifact '{key}': cannot pickle a "
                                      f"{type(artifact).__name__} ({exc}); save it to a file and "
                                      "log the path") from exc
    return path, "object"
