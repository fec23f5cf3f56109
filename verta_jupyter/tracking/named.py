"""`Named`: what every stored entity object shares (id, name, identity by store + id)."""
from __future__ import annotations

from .stores.base import Entity, Store


class Named:
    """A project, experiment, run, registered model or version, as stored in one store."""

    def __init__(self, store: Store, entity: Entity):
        self._store = store
        self._entity = entity

    @property
    def store(self) -> Store:
        """The store this entity lives in."""
        return self._store

    @property
    def id(self) -> str:
        """The store's id: pass it to the matching `get_...(id=...)` from any process."""
        return self._entity.id

    @property
    def name(self) -> str:
        """The name, unique within its parent."""
        return self._entity.name

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and other.id == self.id
                and other._store.location == self._store.location)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, id={self.id!r})"
