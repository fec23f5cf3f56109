"""Small pure helpers for `MlflowStore`: name escaping, tag lists, search filters, entities."""
from __future__ import annotations

import uuid
from typing import Any, Mapping

from ....errors import StoreError
from ..base import Entity
from .fields import PREFIX

VERSION_NAME_TAG = PREFIX + "version_name"


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F")


def _unescape(name: str) -> str:
    return name.replace("%2F", "/").replace("%25", "%")


def _generated(kind: str) -> str:
    return f"{kind.replace('_', '-')}-{uuid.uuid4().hex[:8]}"


def _tags(obj: dict) -> dict[str, str]:
    tags = obj.get("tags", [])
    return {t["key"]: t.get("value", "") for t in tags} if isinstance(tags, list) else dict(tags)


def _taglist(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def _run_data(run: dict) -> dict:
    data = run.get("data", {})
    return {"params": data.get("params", []), "metrics": data.get("metrics", []),
            "tags": _tags(data)}


def _name_filter(name: str) -> str:
    if "'" not in name:
        return f"attributes.run_name = '{name}'"
    if '"' not in name:
        return f'attributes.run_name = "{name}"'
    raise StoreError(f"run name {name!r} contains both quote characters, which MLflow's search "
                     "cannot express; choose a name without one of them")


def _version_entity(mv: dict) -> Entity:
    name = _tags(mv).get(VERSION_NAME_TAG) or mv["version"]
    return Entity(kind="model_version", id=f"{mv['name']}/{mv['version']}", name=name,
                  parent_id=mv["name"], created_at=_seconds(mv.get("creation_timestamp")))


def _seconds(ms: Any) -> float:
    """MLflow's millisecond timestamps (a number or digits) as seconds; 0 when absent."""
    text = str(ms or 0)
    return int(text) / 1000 if text.lstrip("-").isdigit() else 0.0
