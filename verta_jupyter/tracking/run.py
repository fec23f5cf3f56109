"""Projects, experiments and runs: `ExperimentRun` is where hyperparameters, metrics, artifacts
and the model of one run live; experiments group runs, projects group experiments.

Verta's names and rules (see `Loggable` for the shared methods): re-logging a key raises
`AlreadyExistsError` unless `overwrite=True`; a model is logged as a class, never an instance,
and comes back rebuilt from the store (`get_model`), never from the live notebook.
"""
from __future__ import annotations

from typing import Any

from .named import Named
from .owner import Loggable
from .stores.base import Store


class ExperimentRun(Loggable):
    """One run of an experiment. Get one with `Client().set_experiment_run(name)`, or reopen it
    anywhere with `Client(store=...).get_experiment_run(id=run.id)`."""

    _kind = "run"

    @property
    def experiment(self):
        """The `Experiment` this run belongs to."""
        return Experiment(self._store, self._store.get("experiment", self._entity.parent_id))

    @property
    def project(self):
        """The `Project` this run belongs to."""
        return self.experiment.project

    def _context(self) -> list[tuple[str, str]]:
        try:
            experiment = self.experiment
            return [("experiment", experiment.name), ("project", experiment.project.name)]
        except LookupError:
            return []


class Project(Named):
    """A project: a group of experiments."""

    def find_runs(self, *, name: str | None = None, tag: str | None = None) -> list[ExperimentRun]:
        """Runs of every experiment of this project, oldest first."""
        return find_runs(self._store, ancestor_id=self.id, name=name, tag=tag)

    @property
    def experiments(self) -> list[Experiment]:
        """The project's experiments, oldest first."""
        return [Experiment(self._store, e) for e in self._store.find("experiment", parent_id=self.id)]


class Experiment(Named):
    """An experiment: a group of runs inside a project."""

    @property
    def project(self) -> Project:
        """The project this experiment belongs to."""
        return Project(self._store, self._store.get("project", self._entity.parent_id))

    def find_runs(self, *, name: str | None = None, tag: str | None = None) -> list[ExperimentRun]:
        """Runs of this experiment, oldest first."""
        return find_runs(self._store, parent_id=self.id, name=name, tag=tag)


def find_runs(store: Store, **filters: Any) -> list[ExperimentRun]:
    """Runs in `store` matching the store's `find` filters, oldest first."""
    return [ExperimentRun(store, e) for e in store.find("run", **filters)]
