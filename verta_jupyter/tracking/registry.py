"""The model registry: `RegisteredModel` and its numbered `RegisteredModelVersion`s.

A version carries its own copy of a run's model and artifacts, so changing the run later never
changes a registered version. In the local store the copy shares the blobs (one transaction of
metadata); other stores fetch and put the bytes.
"""
from __future__ import annotations

from ..errors import NotFoundError
from .named import Named
from .owner import Loggable
from .run import ExperimentRun
from .stores.base import transfer_artifacts


class RegisteredModelVersion(Loggable):
    """One version of a registered model: `log_model`, `get_model`, `load_model`, artifacts and
    fields work as on a run."""

    _kind = "model_version"

    @property
    def version(self) -> str:
        """The version's name: "1", "2", ... unless it was named."""
        return self.name

    @property
    def registered_model(self) -> RegisteredModel:
        """The registered model this version belongs to."""
        return RegisteredModel(self._store, self._store.get("registered_model", self._entity.parent_id))

    def _context(self) -> list[tuple[str, str]]:
        try:
            return [("registered model", self.registered_model.name)]
        except LookupError:
            return []


class RegisteredModel(Named):
    """A named model in the registry; versions are numbered "1", "2", ... unless named."""

    def __repr__(self) -> str:
        return f"RegisteredModel({self.name!r}, id={self.id!r}, versions={len(self.versions)})"

    @property
    def versions(self) -> list[RegisteredModelVersion]:
        """Every version, oldest first."""
        return [RegisteredModelVersion(self._store, e)
                for e in self._store.find("model_version", parent_id=self.id)]

    def create_version(self, name: str | None = None) -> RegisteredModelVersion:
        """Get or create version `name` (the next number if None)."""
        entity = self._store.get_or_create("model_version", name, self.id)
        return RegisteredModelVersion(self._store, entity)

    def get_version(self, name: str | None = None, id: str | None = None) -> RegisteredModelVersion:
        """An existing version by name ("1") or id."""
        if id is not None:
            return RegisteredModelVersion(self._store, self._store.get("model_version", id))
        found = self._store.find("model_version", parent_id=self.id, name=str(name))
        if not found:
            raise NotFoundError(f"registered model {self.name!r} has no version {name!r}; "
                                f"it has {[v.name for v in self.versions]}")
        return RegisteredModelVersion(self._store, found[0])

    def create_version_from_run(self, run: ExperimentRun, name: str | None = None
                                ) -> RegisteredModelVersion:
        """A new version holding a copy of the run's model, artifacts and requirements."""
        run.model_info()  # refuse before creating anything: the run must have a model
        version = self.create_version(name)
        provenance = {"source_run_id": run.id}
        same_store = (type(run.store) is type(self._store)
                      and run.store.location == self._store.location)
        if same_store:  # the store copies within itself (the local store shares the blobs)
            self._store.copy_artifacts(run.kind, run.id, version.kind, version.id, provenance)
        else:
            transfer_artifacts(run.store, run.kind, run.id, self._store, version.kind, version.id,
                               provenance)
        return version
