"""`ExperimentRun`: where hyperparameters, metrics, artifacts and the model of one run live.

Verta's names and rules (see `Loggable` for the shared methods): re-logging a key raises
`AlreadyExistsError` unless `overwrite=True`; a model is logged as a class, never an instance,
and comes back rebuilt from the store (`get_model`), never from the live notebook.
"""
from __future__ import annotations

from .owner import Loggable


class ExperimentRun(Loggable):
    """One run of an experiment. Get one with `Client().set_experiment_run(name)`, or reopen it
    anywhere with `Client(store=...).get_experiment_run(id=run.id)`."""

    _kind = "run"

    @property
    def experiment(self):
        """The `Experiment` this run belongs to."""
        from .client import Experiment

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
