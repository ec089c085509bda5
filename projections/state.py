"""The evolved case as JSON, so a projector can continue from the row it left."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from suqiu.domain.model import Case, Enterprise, Status, field_names, plain

_FIELDS = field_names(Case)
_INSTANTS = frozenset(n for n in _FIELDS if n.endswith(("_at", "_due")))


def dump_case(case: Case) -> str:
    return _ENCODER.encode({name: getattr(case, name) for name in _FIELDS})


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enterprise):
        return plain(value)
    if isinstance(value, frozenset):
        return sorted(list(m) for m in value)
    raise TypeError(f"{type(value).__name__} in a case")


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json)  # one for all: json.dumps builds one per call


def load_case(text: str) -> Case:
    raw = json.loads(text)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _INSTANTS and value is not None:
            value = datetime.fromisoformat(value)
        elif name == "enterprise" and value is not None:
            value = Enterprise(**value)
        elif name == "status":
            value = Status(value)
        elif name == "sla_marks":
            value = frozenset(tuple(m) for m in value)
        values[name] = value
    return Case(**values)
